//! `/passport/github`: log-in with GitHub. The start redirects to GitHub with `state` and a PKCE
//! challenge, remembered in a short-lived HttpOnly cookie; the callback checks them, logs the
//! linked user in (the session cookie of `auth.rs`) and redirects to `/`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Redirect;
use serde::Deserialize;
use tower_cookies::cookie::SameSite;
use tower_cookies::{Cookie, Cookies};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::ApiError;
use super::extract::Params;
use super::openapi::{Reads, Refusal};
use crate::app::App;
use crate::domain::github::{self, PENDING_TTL, Pending};

/// The cookie of a log-in on its way through GitHub, sent back only to the callback.
const PENDING_COOKIE: &str = "IM_GITHUB_OAUTH";
const CALLBACK_PATH: &str = "/api/v1/passport/github/callback";

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default()
        .routes(routes!(show_github_authorize))
        .routes(routes!(show_github_callback))
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

/// Starts a log-in with GitHub: a redirect to GitHub's authorize page.
#[utoipa::path(get, path = "/passport/github", tag = "account", security(()),
    responses(
        (status = 303, description = "to GitHub, with `state` and a PKCE challenge kept in the \
         `IM_GITHUB_OAUTH` cookie", headers(("Location" = String, description = "GitHub's authorize page"))),
        (status = 200, description = "`未配置 GitHub 登录`", body = Refusal)))]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// Where GitHub sends the browser back: logs the linked user in and redirects to `/`.
#[utoipa::path(get, path = "/passport/github/callback", tag = "account", security(()),
    params(CallbackQuery),
    responses(
        (status = 303, description = "logged in: sets the session cookie, redirects to `/`",
         headers(("Location" = String, description = "`/`"))),
        (status = 200, description = "`未配置 GitHub 登录`, `GitHub 登录校验失败，请重新登录`, \
         `GitHub 授权失败`, `不具备登录权限`", body = Refusal),
        Reads))]
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
