//! Finding users and groups to add: `POST /add/search`.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use super::openapi::{Answer, Writes};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::search::{self, SearchResult};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default().routes(routes!(create_search))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SearchBody {
    /// Trimmed; at most 64 characters.
    #[schema(max_length = 64)]
    search_value: String,
}

/// Users whose username, and open groups whose name, contain `searchValue` (at most 20 each).
#[utoipa::path(post, path = "/add/search", tag = "friends",
    request_body = SearchBody,
    responses((status = 200, description = "`{users, groups}`; or `搜索内容最多64个字符`",
               body = Answer<SearchResult>), Writes))]
async fn create_search(
    State(app): State<Arc<App>>,
    _actor: Actor,
    Body(body): Body<SearchBody>,
) -> ApiResult<SearchResult> {
    ok(search::search(&app, &body.search_value).await?)
}
