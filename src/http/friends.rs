//! Friends: `GET /friend`, and answering a friend apply (`POST /add/friend`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use crate::app::App;
use crate::domain::Actor;
use crate::domain::friendship::{self, ApprovedFriend, ListedFriend};

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/friend", get(list_friends))
        .route("/add/friend", post(create_friend))
}

async fn list_friends(State(app): State<Arc<App>>, actor: Actor) -> ApiResult<Vec<ListedFriend>> {
    ok(friendship::list_friends(&app, &actor).await?)
}

/// The answer to an apply: `{id (apply id), approval}`.
#[derive(Deserialize)]
pub struct Answer {
    pub id: i32,
    pub approval: bool,
}

async fn create_friend(
    State(app): State<Arc<App>>,
    actor: Actor,
    Body(body): Body<Answer>,
) -> ApiResult<Option<ApprovedFriend>> {
    ok(friendship::answer_friend_apply(&app, &actor, body.id, body.approval).await?)
}
