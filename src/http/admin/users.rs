//! `/admin/users`: the users list, roles, bans and mutes, and the chat-user pages (create, edit,
//! delete; docs/protocol.md §4.6 documents these three, routes the original lacked).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, put};
use serde::Deserialize;

use super::{IdBody, PageQuery, Params};
use crate::app::App;
use crate::domain::admin::Listing;
use crate::domain::users::{self, NewChatUser, UserChanges, UserQuery, UserRow};
use crate::http::envelope::{ApiResult, ok};
use crate::http::extract::{Admin, Body};

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/users",
            get(list_users)
                .post(create_user)
                .put(update_user)
                .delete(delete_user),
        )
        .route("/users/roles", put(update_user_roles))
        .route("/users/disabled", put(update_user_disabled))
        .route("/users/mute", put(update_user_mute))
}

#[derive(Deserialize)]
struct UsersQuery {
    #[serde(flatten)]
    page: PageQuery,
    username: Option<String>,
    provider: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RolesBody {
    id: i32,
    role_ids: Vec<i32>,
}

#[derive(Deserialize)]
struct DisabledBody {
    id: i32,
    disabled: bool,
}

#[derive(Deserialize)]
struct MuteBody {
    id: i32,
    mute: bool,
}

#[derive(Deserialize)]
struct CreateBody {
    username: String,
    password: String,
    avatar: Option<String>,
}

#[derive(Deserialize)]
struct UpdateBody {
    id: i32,
    nickname: Option<String>,
    photo: Option<String>,
    sign: Option<String>,
    password: Option<String>,
}

async fn list_users(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Params(query): Params<UsersQuery>,
) -> ApiResult<Listing<UserRow>> {
    let filter = UserQuery {
        username: query.username,
        provider: query.provider,
    };
    ok(users::list_users(&app, &admin, &query.page.into(), filter).await?)
}

async fn update_user_roles(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RolesBody>,
) -> ApiResult<()> {
    users::set_user_roles(&app, &admin, body.id, body.role_ids).await?;
    ok(())
}

async fn update_user_disabled(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<DisabledBody>,
) -> ApiResult<()> {
    users::set_user_disabled(&app, &admin, body.id, body.disabled).await?;
    ok(())
}

async fn update_user_mute(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<MuteBody>,
) -> ApiResult<()> {
    users::set_user_mute(&app, &admin, body.id, body.mute).await?;
    ok(())
}

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

async fn delete_user(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<IdBody>,
) -> ApiResult<()> {
    users::delete_user(&app, &admin, body.id).await?;
    ok(())
}
