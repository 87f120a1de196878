//! `/admin/users`: the users list, roles, bans and mutes, and the chat-user pages (create, edit,
//! delete; docs/protocol.md §4.6 documents these three, routes the original lacked).

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{IdBody, PageQuery, Params};
use crate::app::App;
use crate::domain::admin::Listing;
use crate::domain::users::{self, NewChatUser, UserChanges, UserQuery, UserRow};
use crate::http::envelope::{ApiResult, ok};
use crate::http::extract::{Admin, Body};
use crate::http::openapi::{AdminReads, AdminWrites, Answer, Null};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default()
        .routes(routes!(list_users, create_user, update_user, delete_user))
        .routes(routes!(update_user_roles))
        .routes(routes!(update_user_disabled))
        .routes(routes!(update_user_mute))
}

#[derive(Deserialize)]
struct UsersQuery {
    #[serde(flatten)]
    page: PageQuery,
    #[serde(flatten)]
    filter: UserFilter,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UserFilter {
    /// Keeps the users whose username contains it, in any case; empty: no filter.
    username: Option<String>,
    /// Keeps the users of this provider (`local`, `github`); empty: no filter.
    provider: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RolesBody {
    id: i32,
    role_ids: Vec<i32>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct DisabledBody {
    id: i32,
    disabled: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct MuteBody {
    id: i32,
    mute: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateBody {
    /// Under the rules of a sign-up's (docs/protocol.md §4.1).
    #[schema(min_length = 4, max_length = 64)]
    username: String,
    #[schema(min_length = 6, max_length = 128)]
    password: String,
    /// A default avatar or a file the admin uploaded; blank: a default one.
    #[schema(max_length = 1024, examples("/public/images/head2.png"))]
    avatar: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateBody {
    id: i32,
    #[schema(max_length = 32)]
    nickname: Option<String>,
    #[schema(max_length = 1024, examples("/public/images/head3.png"))]
    photo: Option<String>,
    #[schema(max_length = 100)]
    sign: Option<String>,
    /// A new password ends every session of the user.
    #[schema(min_length = 6, max_length = 128)]
    password: Option<String>,
}

/// A page of the users, each with profile and roles.
#[utoipa::path(get, path = "/users", tag = "admin", params(PageQuery, UserFilter),
    responses((status = 200, description = "`{count, rows}`; or a malformed paging or sorter",
               body = Answer<Listing<UserRow>>), AdminReads))]
async fn list_users(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Params(query): Params<UsersQuery>,
) -> ApiResult<Listing<UserRow>> {
    let filter = UserQuery {
        username: query.filter.username,
        provider: query.filter.provider,
    };
    ok(users::list_users(&app, &admin, &query.page.into(), filter).await?)
}

/// Replaces a user's roles; takes effect at once on their sessions and sockets.
#[utoipa::path(put, path = "/users/roles", tag = "admin", request_body = RolesBody,
    responses((status = 200, description = "`data` null; or `用户不存在`, `角色不存在`, \
               `不能对自己执行此操作`", body = Answer<Null>), AdminWrites))]
async fn update_user_roles(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RolesBody>,
) -> ApiResult<()> {
    users::set_user_roles(&app, &admin, body.id, body.role_ids).await?;
    ok(())
}

/// Bans (role `disabled` alone) or restores (role `user` alone) a user; a ban ends their
/// sessions and sockets.
#[utoipa::path(put, path = "/users/disabled", tag = "admin", request_body = DisabledBody,
    responses((status = 200, description = "`data` null; or `用户不存在`, `不能对自己执行此操作`",
               body = Answer<Null>), AdminWrites))]
async fn update_user_disabled(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<DisabledBody>,
) -> ApiResult<()> {
    users::set_user_disabled(&app, &admin, body.id, body.disabled).await?;
    ok(())
}

/// Mutes (role `mute` alone) or restores (role `user` alone) a user.
#[utoipa::path(put, path = "/users/mute", tag = "admin", request_body = MuteBody,
    responses((status = 200, description = "`data` null; or `用户不存在`, `不能对自己执行此操作`",
               body = Answer<Null>), AdminWrites))]
async fn update_user_mute(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<MuteBody>,
) -> ApiResult<()> {
    users::set_user_mute(&app, &admin, body.id, body.mute).await?;
    ok(())
}

/// Creates a local user, as a sign-up would.
#[utoipa::path(post, path = "/users", tag = "admin", request_body = CreateBody,
    responses((status = 200, description = "the user with profile and roles; or `参数校验失败`, \
               `用户名重复`", body = Answer<UserRow>), AdminWrites))]
async fn create_user(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<CreateBody>,
) -> ApiResult<UserRow> {
    let new = NewChatUser {
        username: body.username,
        password: body.password,
        avatar: body.avatar,
    };
    ok(users::create_user(&app, &admin, new).await?)
}

/// Changes a user's profile or password; a new password ends their sessions.
#[utoipa::path(put, path = "/users", tag = "admin", request_body = UpdateBody,
    responses((status = 200, description = "`data` null; or `参数校验失败`, `用户不存在`",
               body = Answer<Null>), AdminWrites))]
async fn update_user(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<UpdateBody>,
) -> ApiResult<()> {
    let changes = UserChanges {
        nickname: body.nickname,
        photo: body.photo,
        sign: body.sign,
        password: body.password,
    };
    users::update_user(&app, &admin, body.id, changes).await?;
    ok(())
}

/// Deletes a user and everything of theirs (docs/protocol.md §4.6).
#[utoipa::path(delete, path = "/users", tag = "admin", request_body = IdBody,
    responses((status = 200, description = "`data` null; or `用户不存在`, `不能对自己执行此操作`",
               body = Answer<Null>), AdminWrites))]
async fn delete_user(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<IdBody>,
) -> ApiResult<()> {
    users::delete_user(&app, &admin, body.id).await?;
    ok(())
}
