//! A user's profile: `GET /userinfo/:id` and `PUT /userinfo/:id`.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use super::extract::PathId;
use super::openapi::{Answer, ReadsById, WritesById};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::profiles::{self, ProfileChange};
use crate::store::models::UserInfo;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default().routes(routes!(show_user_info, update_user_info))
}

/// A user's profile.
#[utoipa::path(get, path = "/userinfo/{id}", tag = "profiles",
    params(("id" = i32, Path, description = "the user's id")),
    responses((status = 200, description = "the userInfo; or `用户不存在`, `参数校验失败`",
               body = Answer<UserInfo>), ReadsById))]
async fn show_user_info(
    State(app): State<Arc<App>>,
    _actor: Actor,
    PathId(user_id): PathId,
) -> ApiResult<UserInfo> {
    ok(profiles::show_user_info(&app, user_id).await?)
}

/// The H5 client sends its whole userInfo back with the changes; only these fields are read
/// (`userId` and the dates are the server's to decide).
#[derive(Deserialize, utoipa::ToSchema)]
struct ProfileBody {
    /// The userInfo's id; the path's `:id` when absent.
    id: Option<i32>,
    /// 1 to 32 characters once trimmed, no control, invisible or bidi characters.
    #[schema(max_length = 32)]
    nickname: Option<String>,
    /// A default avatar, an upload of the profile's owner (or of the acting admin), or the
    /// owner's GitHub avatar.
    #[schema(max_length = 1024, examples("/public/images/head1.png"))]
    photo: Option<String>,
    /// At most 100 characters, no control, invisible or bidi characters.
    #[schema(max_length = 100)]
    sign: Option<String>,
}

/// `{}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Empty {}

/// Changes a profile: its owner's, or anyone's for an admin. Absent fields keep their value.
#[utoipa::path(put, path = "/userinfo/{id}", tag = "profiles",
    params(("id" = i32, Path, description = "the userInfo's id (not the user's); the body's `id` wins")),
    request_body = ProfileBody,
    responses((status = 200, description = "`{}`; or `\"2\"` `无此权限`, `用户不存在`, a rule of \
               docs/protocol.md §4.2 broken", body = Answer<Empty>), WritesById))]
async fn update_user_info(
    State(app): State<Arc<App>>,
    actor: Actor,
    PathId(path_id): PathId,
    Body(body): Body<ProfileBody>,
) -> ApiResult<Empty> {
    let change = ProfileChange {
        nickname: body.nickname,
        photo: body.photo,
        sign: body.sign,
    };
    profiles::update_user_info(&app, &actor, body.id.unwrap_or(path_id), change).await?;
    ok(Empty {})
}
