//! Users as other users see them (user + `userInfo`, never the password), and editing one's own
//! profile (`/userinfo`).

use std::collections::HashMap;

use serde::Serialize;

use crate::app::App;
use crate::store::models::{User, UserInfo};
use crate::store::{self, DbConn};

use super::{Actor, DomainError, names, rbac};

/// A user with their profile: the `user + userInfo` shape of docs/protocol.md §3.4.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserWithInfo {
    #[serde(flatten)]
    pub user: User,
    pub user_info: Option<UserInfo>,
}

impl From<(User, Option<UserInfo>)> for UserWithInfo {
    fn from((user, user_info): (User, Option<UserInfo>)) -> Self {
        UserWithInfo { user, user_info }
    }
}

/// Users with their profiles by id, loaded in one query (lists must not query per row).
pub async fn load_people(
    conn: &mut DbConn,
    ids: &[i32],
) -> Result<HashMap<i32, UserWithInfo>, DomainError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    Ok(store::accounts::users_with_infos(conn, &ids)
        .await?
        .into_iter()
        .map(|row| (row.0.id, UserWithInfo::from(row)))
        .collect())
}

pub const NO_SUCH_USER: &str = "用户不存在";

/// The profile of user `user_id`.
pub async fn show_user_info(app: &App, user_id: i32) -> Result<UserInfo, DomainError> {
    let mut conn = app.db.get().await?;
    store::accounts::find_user_info(&mut conn, user_id)
        .await?
        .ok_or_else(|| DomainError::rejected(NO_SUCH_USER))
}

/// What `PUT /userinfo/:id` may change; an absent field keeps its value.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub nickname: Option<String>,
    pub photo: Option<String>,
    pub sign: Option<String>,
}

/// Changes the profile `user_info_id`: only its owner, or a user with the `admin` right, may
/// (the original let anyone rewrite anyone's profile, its `userId` included).
pub async fn update_user_info(
    app: &App,
    actor: &Actor,
    user_info_id: i32,
    change: ProfileChange,
) -> Result<(), DomainError> {
    let nickname = change
        .nickname
        .as_deref()
        .map(names::nickname)
        .transpose()?;
    let sign = change.sign.as_deref().map(names::sign).transpose()?;
    let mut conn = app.db.get().await?;
    let current = store::accounts::find_user_info_by_id(&mut conn, user_info_id)
        .await?
        .ok_or_else(|| DomainError::rejected(NO_SUCH_USER))?;
    if current.user_id != actor.user_id && rbac::require_admin(actor).is_err() {
        return Err(DomainError::NotPermitted);
    }
    // The photo is checked only when it changes: the H5 client sends the whole profile back,
    // and a photo set before these rules must not block a change of nickname.
    let photo = match change.photo {
        Some(photo) if photo != current.photo => {
            names::check_photo(&mut conn, &photo, Some(current.user_id), actor.user_id).await?;
            photo
        }
        _ => current.photo,
    };
    let nickname = nickname.unwrap_or(current.nickname);
    let sign = sign.or(current.sign);
    store::accounts::update_user_info(&mut conn, current.id, &nickname, &photo, sign.as_deref())
        .await?;
    Ok(())
}
