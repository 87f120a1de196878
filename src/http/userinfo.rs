//! A user's profile: `GET /userinfo/:id` and `PUT /userinfo/:id`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use super::extract::PathId;
use crate::app::App;
use crate::domain::Actor;
use crate::domain::profiles::{self, ProfileChange};
use crate::store::models::UserInfo;

pub fn router() -> Router<Arc<App>> {
    Router::new().route("/userinfo/{id}", get(show_user_info).put(update_user_info))
}

async fn show_user_info(
    State(app): State<Arc<App>>,
    _actor: Actor,
    PathId(user_id): PathId,
) -> ApiResult<UserInfo> {
    ok(profiles::show_user_info(&app, user_id).await?)
}

/// The H5 client sends its whole userInfo back with the changes; only these fields are read
/// (`userId` and the dates are the server's to decide).
#[derive(Deserialize)]
struct ProfileBody {
    /// The userInfo's id; the path's `:id` when absent.
    id: Option<i32>,
    nickname: Option<String>,
    photo: Option<String>,
    sign: Option<String>,
}

#[derive(serde::Serialize)]
struct Empty {}

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
