//! The admin back office's REST routes (`app/router/v1/admin.js` of the original), all under
//! `/admin` and all behind the `admin` right through the [`Admin`](super::extract::Admin) extractor.

mod groups;
mod rights;
mod roles;
mod users;

use std::sync::Arc;

use axum::Router;
use serde::Deserialize;

pub use super::extract::Params;
use crate::app::App;
use crate::domain::admin::PageRequest;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .merge(rights::router())
        .merge(roles::router())
        .merge(groups::router())
        .merge(users::router())
}

/// Paging and sorting as the admin front end sends them: all strings, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    page_size: Option<String>,
    page_number: Option<String>,
    sorter: Option<String>,
}

impl From<PageQuery> for PageRequest {
    fn from(query: PageQuery) -> Self {
        PageRequest {
            page_size: query.page_size,
            page_number: query.page_number,
            sorter: query.sorter,
        }
    }
}

/// `{id}`: the body of a DELETE of one record.
#[derive(Debug, Deserialize)]
pub struct IdBody {
    pub id: i32,
}
