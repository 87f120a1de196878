//! Applies to befriend a user or join a group: `GET /applies`, `POST /applies`.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use super::openapi::{Answer, Reads, Writes};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::applies::{self, AppliesPage};
use crate::store::models::Apply;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default().routes(routes!(list_applies, create_apply))
}

/// The unhandled applies the user must answer, oldest first.
#[utoipa::path(get, path = "/applies", tag = "applies",
    responses((status = 200, description = "`{count, rows}`", body = Answer<AppliesPage>), Reads))]
async fn list_applies(State(app): State<Arc<App>>, actor: Actor) -> ApiResult<AppliesPage> {
    ok(applies::list_applies(&app, &actor).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ApplyBody {
    /// `user` (befriend user `toId`) or `group` (join group `toId`).
    #[serde(rename = "type")]
    #[schema(pattern = "^(user|group)$")]
    kind: String,
    to_id: i32,
}

/// Asks to befriend a user or to join a group; an existing unhandled apply is answered as it is.
#[utoipa::path(post, path = "/applies", tag = "applies",
    request_body = ApplyBody,
    responses((status = 200, description = "the apply; or a refusal of docs/protocol.md §4.2",
               body = Answer<Apply>), Writes))]
async fn create_apply(
    State(app): State<Arc<App>>,
    actor: Actor,
    Body(body): Body<ApplyBody>,
) -> ApiResult<Apply> {
    ok(applies::create_apply(&app, &actor, &body.kind, body.to_id).await?)
}
