//! `/passport/github`: log-in with GitHub. The start redirects to GitHub with `state` and a PKCE
//! challenge, remembered in a short-lived HttpOnly cookie; the callback checks them, logs the
//! linked user in (the session cookie of `auth.rs`) and redirects to `/`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Redirect;
use axum::routing::get;
use serde::Deserialize;
use tower_cookies::cookie::SameSite;
use tower_cookies::{Cookie, Cookies};

use super::envelope::ApiError;
use super::extract::Params;
use crate::app::App;
use crate::domain::github::{self, PENDING_TTL, Pending};

/// The cookie of a log-in on its way through GitHub, sent back only to the callback.
const PENDING_COOKIE: &str = "IM_GITHUB_OAUTH";
const CALLBACK_PATH: &str = "/api/v1/passport/github/callback";

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/passport/github", get(show_github_authorize))
        .route("/passport/github/callback", get(show_github_callback))
}

fn pending_cookie(app: &App, value: String, max_age: std::time::Duration) -> Cookie<'static> {
    Cookie::build((PENDING_COOKIE, value))
        .path(CALLBACK_PATH)
        .http_only(true)
        // Lax: sent on the top-level navigation back from github.com, never on cross-site posts.
        .same_site(SameSite::Lax)
        .secure(app.config.cookie_secure)
        .max_age(
            max_age
                .try_into()
                .unwrap_or(tower_cookies::cookie::time::Duration::MINUTE),
        )
        .build()
}

async fn show_github_authorize(
    State(app): State<Arc<App>>,
    cookies: Cookies,
) -> Result<Redirect, ApiError> {
    let authorization = github::authorize(&app)?;
    cookies.add(pending_cookie(
        &app,
        authorization.pending.encode(),
        PENDING_TTL,
    ));
    Ok(Redirect::to(&authorization.url))
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

async fn show_github_callback(
    State(app): State<Arc<App>>,
    cookies: Cookies,
    Params(query): Params<CallbackQuery>,
) -> Result<Redirect, ApiError> {
    let pending = cookies
        .get(PENDING_COOKIE)
        .and_then(|cookie| Pending::decode(cookie.value()));
    // One use only, whatever the outcome.
    cookies.remove(pending_cookie(
        &app,
        String::new(),
        std::time::Duration::ZERO,
    ));
    let identity =
        github::complete(&app, query.code.as_deref(), query.state.as_deref(), pending).await?;
    super::auth::start_session(&app, &cookies, &identity).await;
    Ok(Redirect::to("/"))
}
