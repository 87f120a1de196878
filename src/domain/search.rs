//! Finding people and groups to add (`POST /add/search`).

use serde::Serialize;

use crate::app::App;
use crate::store;
use crate::store::models::Group;

use super::DomainError;
use super::profiles::UserWithInfo;

/// At most this many users and this many groups per search: a page, not the whole directory.
pub const SEARCH_LIMIT: i64 = 20;
const VALUE_MAX: usize = 64;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResult {
    pub users: Vec<UserWithInfo>,
    pub groups: Vec<Group>,
}

/// Users whose username and groups (not disbanded) whose name contain `value`, taken literally:
/// `%` and `_` match only themselves (the original passed them to LIKE as wildcards). An empty
/// value finds nothing.
pub async fn search(app: &App, value: &str) -> Result<SearchResult, DomainError> {
    let value = value.trim();
    if value.chars().count() > VALUE_MAX {
        return Err(DomainError::invalid(format!(
            "搜索内容最多{VALUE_MAX}个字符"
        )));
    }
    if value.is_empty() {
        return Ok(SearchResult {
            users: Vec::new(),
            groups: Vec::new(),
        });
    }
    let mut conn = app.db.get().await?;
    let users = store::accounts::search_users(&mut conn, value, SEARCH_LIMIT)
        .await?
        .into_iter()
        .map(UserWithInfo::from)
        .collect();
    let groups = store::groups::search_open_groups(&mut conn, value, SEARCH_LIMIT).await?;
    Ok(SearchResult { users, groups })
}
