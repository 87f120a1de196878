//! REST: one module per resource, each with its own `router()`, merged here under `/api/v1`.

pub mod admin;
pub mod applies;
pub mod auth;
pub mod conversations;
pub mod envelope;
pub mod extract;
pub mod files;
pub mod friends;
pub mod github;
pub mod groups;
pub mod health;
pub mod home;
pub mod origin;
pub mod request_log;
pub mod search;
pub mod time_limit;
pub mod upload;
pub mod userinfo;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::domain::Actor;
use envelope::ApiError;

/// Every route under `/api/v1`.
pub fn api_router() -> Router<Arc<App>> {
    Router::new()
        .merge(auth::router())
        .merge(userinfo::router())
        .merge(conversations::router())
        .merge(groups::router())
        .merge(applies::router())
        .merge(friends::router())
        .merge(search::router())
        .merge(upload::router())
        .nest("/admin", admin::router())
        .merge(github::router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route)
}

/// An unknown route: "请登录" to a stranger (the original checked the session first), the
/// framework's 404 to a logged-in user.
async fn unknown_route(actor: Result<Actor, ApiError>) -> Response {
    match actor {
        Ok(_) => envelope::not_found(),
        Err(error) => error.into_response(),
    }
}
