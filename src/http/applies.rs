//! Applies to befriend a user or join a group: `GET /applies`, `POST /applies`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use crate::app::App;
use crate::domain::Actor;
use crate::domain::applies::{self, AppliesPage};
use crate::store::models::Apply;

pub fn router() -> Router<Arc<App>> {
    Router::new().route("/applies", get(list_applies).post(create_apply))
}

async fn list_applies(State(app): State<Arc<App>>, actor: Actor) -> ApiResult<AppliesPage> {
    ok(applies::list_applies(&app, &actor).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplyBody {
    #[serde(rename = "type")]
    kind: String,
    to_id: i32,
}

async fn create_apply(
    State(app): State<Arc<App>>,
    actor: Actor,
    Body(body): Body<ApplyBody>,
) -> ApiResult<Apply> {
    ok(applies::create_apply(&app, &actor, &body.kind, body.to_id).await?)
}
