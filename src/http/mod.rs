//! REST: one module per resource, each with its own `router()`, merged here under `/api/v1`,
//! and the OpenAPI document that the merged routers describe (`openapi.rs`).

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
pub mod openapi;
pub mod origin;
pub mod prometheus;
pub mod request_log;
pub mod search;
pub mod time_limit;
pub mod upload;
pub mod userinfo;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use crate::app::App;
use crate::domain::Actor;
use envelope::ApiError;

/// Every route under `/api/v1`, and `GET /api/openapi.json` describing them.
pub fn api_router(app: &App) -> anyhow::Result<Router<Arc<App>>> {
    let (routes, document) = v1();
    let document = openapi::finish(document, &app.config.cookie_name);
    // Every call under /api/v1, unknown routes included, within IM_REQUEST_TIMEOUT.
    let routes = routes.layer(from_fn_with_state(
        app.config.request_timeout(),
        time_limit::limit_request,
    ));
    Ok(routes.merge(openapi::router(&document)?))
}

/// The OpenAPI document of the routes under `/api/v1`, for a server whose session cookie is
/// `cookie_name`: what `GET /api/openapi.json` serves.
pub fn api_document(cookie_name: &str) -> utoipa::openapi::OpenApi {
    openapi::finish(v1().1, cookie_name)
}

/// The routes under `/api/v1`, each registered with the annotation that describes it, and the
/// document of their annotations.
fn v1() -> (Router<Arc<App>>, utoipa::openapi::OpenApi) {
    let (routes, document) = resources().split_for_parts();
    let routes = routes
        .fallback(unknown_route)
        .method_not_allowed_fallback(unknown_route);
    let document = utoipa::openapi::OpenApiBuilder::new()
        .build()
        .nest("/api/v1", document);
    (Router::new().nest("/api/v1", routes), document)
}

fn resources() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default()
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
}

/// An unknown route: "请登录" to a stranger (the original checked the session first), the
/// framework's 404 to a logged-in user.
async fn unknown_route(actor: Result<Actor, ApiError>) -> Response {
    match actor {
        Ok(_) => envelope::not_found(),
        Err(error) => error.into_response(),
    }
}
