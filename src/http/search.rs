//! Finding users and groups to add: `POST /add/search`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use crate::app::App;
use crate::domain::Actor;
use crate::domain::search::{self, SearchResult};

pub fn router() -> Router<Arc<App>> {
    Router::new().route("/add/search", post(create_search))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchBody {
    search_value: String,
}

async fn create_search(
    State(app): State<Arc<App>>,
    _actor: Actor,
    Body(body): Body<SearchBody>,
) -> ApiResult<SearchResult> {
    ok(search::search(&app, &body.search_value).await?)
}
