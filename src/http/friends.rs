//! Friends: `GET /friend`, and answering a friend apply (`POST /add/friend`).

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
use crate::domain::friendship::{self, ApprovedFriend, ListedFriend};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default()
        .routes(routes!(list_friends))
        .routes(routes!(create_friend))
}

/// The user's friends, oldest friendship first, with their profile, conversation and presence.
#[utoipa::path(get, path = "/friend", tag = "friends",
    responses((status = 200, description = "the friends", body = Answer<Vec<ListedFriend>>), Reads))]
async fn list_friends(State(app): State<Arc<App>>, actor: Actor) -> ApiResult<Vec<ListedFriend>> {
    ok(friendship::list_friends(&app, &actor).await?)
}

/// The answer to an apply: `{id (apply id), approval}`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Reply {
    /// The apply's id.
    pub id: i32,
    pub approval: bool,
}

/// Answers a friend apply addressed to the user; either way the apply is handled.
#[utoipa::path(post, path = "/add/friend", tag = "applies",
    request_body = Reply,
    responses((status = 200, description = "on approval the friendship plus `target`, else `data` \
               null; or `参数错误`, `\"2\"` `无此权限`, `该申请已处理`, `操作冲突，请重试`",
               body = Answer<Option<ApprovedFriend>>), Writes))]
async fn create_friend(
    State(app): State<Arc<App>>,
    actor: Actor,
    Body(body): Body<Reply>,
) -> ApiResult<Option<ApprovedFriend>> {
    ok(friendship::answer_friend_apply(&app, &actor, body.id, body.approval).await?)
}
