//! Groups: `GET /groups`, `GET /groups/:id`, and answering an apply to join (`POST /add/group`).

use std::sync::Arc;

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use super::extract::PathId;
use super::friends::Reply;
use super::openapi::{Answer, Reads, ReadsById, Writes};
use crate::app::App;
use crate::domain::{Actor, groups};
use crate::store::models::Group;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default()
        .routes(routes!(list_groups))
        .routes(routes!(show_group))
        .routes(routes!(create_group_member))
}

/// The groups the user is a member of, oldest first, without disbanded ones.
#[utoipa::path(get, path = "/groups", tag = "groups",
    responses((status = 200, description = "the groups", body = Answer<Vec<Group>>), Reads))]
async fn list_groups(State(app): State<Arc<App>>, actor: Actor) -> ApiResult<Vec<Group>> {
    ok(groups::list_groups(&app, &actor).await?)
}

/// A group.
#[utoipa::path(get, path = "/groups/{id}", tag = "groups",
    params(("id" = i32, Path, description = "the group's id")),
    responses((status = 200, description = "the group; or `群组不存在`, `该群已解散`, `参数校验失败`",
               body = Answer<Group>), ReadsById))]
async fn show_group(
    State(app): State<Arc<App>>,
    _actor: Actor,
    PathId(id): PathId,
) -> ApiResult<Group> {
    ok(groups::show_group(&app, id).await?)
}

/// Answers an apply to join a group; only the group's owner may.
#[utoipa::path(post, path = "/add/group", tag = "applies",
    request_body = Reply,
    responses((status = 200, description = "the group; or `参数错误`, `群组不存在`, `\"2\"` \
               `无此权限`, `该群已解散`, `该申请已处理`", body = Answer<Group>), Writes))]
async fn create_group_member(
    State(app): State<Arc<App>>,
    actor: Actor,
    Body(body): Body<Reply>,
) -> ApiResult<Group> {
    ok(groups::answer_group_apply(&app, &actor, body.id, body.approval).await?)
}
