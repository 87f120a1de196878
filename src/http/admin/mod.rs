//! The admin back office's REST routes (`app/router/v1/admin.js` of the original), all under
//! `/admin` and all behind the `admin` right through the [`Admin`](super::extract::Admin) extractor.

mod groups;
mod rights;
mod roles;
mod users;

use std::sync::Arc;

use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

pub use super::extract::Params;
use crate::app::App;
use crate::domain::admin::PageRequest;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default()
        .merge(rights::router())
        .merge(roles::router())
        .merge(groups::router())
        .merge(users::router())
}

/// Paging and sorting as the admin front end sends them: all strings, all optional.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    /// Rows a page, 1 to 100 (default 10); empty means the default.
    page_size: Option<String>,
    /// The page, from 1 (default 1); empty means the default.
    page_number: Option<String>,
    /// A JSON object naming one key and its direction, e.g. `{"createdAt":"descend"}`; absent,
    /// empty, `{}` or unknown keys: by id.
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct IdBody {
    pub id: i32,
}
