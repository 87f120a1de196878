//! Groups: `GET /groups`, `GET /groups/:id`, and answering an apply to join (`POST /add/group`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use super::extract::PathId;
use super::friends::Answer;
use crate::app::App;
use crate::domain::{Actor, groups};
use crate::store::models::Group;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/groups", get(list_groups))
        .route("/groups/{id}", get(show_group))
        .route("/add/group", post(create_group_member))
}

async fn list_groups(State(app): State<Arc<App>>, actor: Actor) -> ApiResult<Vec<Group>> {
    ok(groups::list_groups(&app, &actor).await?)
}

async fn show_group(
    State(app): State<Arc<App>>,
    _actor: Actor,
    PathId(id): PathId,
) -> ApiResult<Group> {
    ok(groups::show_group(&app, id).await?)
}

async fn create_group_member(
    State(app): State<Arc<App>>,
    actor: Actor,
    Body(body): Body<Answer>,
) -> ApiResult<Group> {
    ok(groups::answer_group_apply(&app, &actor, body.id, body.approval).await?)
}
