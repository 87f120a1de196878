//! `/passport/github`: log-in with GitHub. The start redirects to GitHub with `state` and a PKCE
//! challenge, remembered in a short-lived HttpOnly cookie; the callback checks them, logs the
//! linked user in (the session cookie of `auth.rs`) and redirects to `/`. Both are pages a browser
//! navigates to, so a failure too is a redirect: to the web client's log-in page
//! (`IM_GITHUB_FAILURE_URL`) with the reason in its query, never a JSON body on a blank page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use oauth2::url::form_urlencoded;
use serde::Deserialize;
use tower_cookies::cookie::SameSite;
use tower_cookies::{Cookie, Cookies};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::ApiError;
use super::extract::Params;
use super::openapi::Reads;
use crate::app::App;
use crate::domain::DomainError;
use crate::domain::accounts::NO_LOGIN_RIGHT;
use crate::domain::github::{self, Callback, PENDING_TTL, Pending};

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
         `IM_GITHUB_OAUTH` cookie; when GitHub log-in is not configured, to the log-in page \
         (`IM_GITHUB_FAILURE_URL`) with `error=not_configured` and `message` in its query",
         headers(("Location" = String, description = "GitHub's authorize page, or the log-in page")))))]
async fn show_github_authorize(State(app): State<Arc<App>>, cookies: Cookies) -> Response {
    let authorization = match github::authorize(&app) {
        Ok(authorization) => authorization,
        Err(error) => return to_login_page(&app, error),
    };
    cookies.add(pending_cookie(
        &app,
        authorization.pending.encode(),
        PENDING_TTL,
    ));
    Redirect::to(&authorization.url).into_response()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    /// GitHub's reason when it did not authorize (`access_denied`: the user said no).
    error: Option<String>,
}

/// Where GitHub sends the browser back: logs the linked user in and redirects to `/`, or to the
/// log-in page with the reason.
#[utoipa::path(get, path = "/passport/github/callback", tag = "account", security(()),
    params(CallbackQuery),
    responses(
        (status = 303, description = "logged in: sets the session cookie, redirects to `/`; \
         refused: redirects to the log-in page (`IM_GITHUB_FAILURE_URL`) with `error` \
         (`not_configured`, `bad_state`, `access_denied`, `github_refused`, `not_permitted`, \
         `unavailable`, `failed`) and `message` in its query",
         headers(("Location" = String, description = "`/`, or the log-in page"))),
        Reads))]
async fn show_github_callback(
    State(app): State<Arc<App>>,
    cookies: Cookies,
    query: Result<Params<CallbackQuery>, ApiError>,
) -> Response {
    let pending = cookies
        .get(PENDING_COOKIE)
        .and_then(|cookie| Pending::decode(cookie.value()));
    // One use only, whatever the outcome.
    cookies.remove(pending_cookie(
        &app,
        String::new(),
        std::time::Duration::ZERO,
    ));
    // A query that cannot be read is a failed log-in like any other: back to the log-in page.
    let query = match query {
        Ok(Params(query)) => query,
        Err(ApiError(error)) => return to_login_page(&app, error),
    };
    let callback = Callback {
        code: query.code.as_deref(),
        state: query.state.as_deref(),
        error: query.error.as_deref(),
    };
    // GitHub's two calls may take up to 10 s each, longer than the request's own limit, whose
    // 503 envelope would leave the browser on a blank page: GitHub gets most of that limit, the
    // rest is left for the session to be opened, and a GitHub too slow for it is `unavailable`.
    let limit = app.config.request_timeout();
    let github_share = limit - limit / 5;
    let completed = tokio::time::timeout(github_share, github::complete(&app, callback, pending))
        .await
        .unwrap_or_else(|_| {
            Err(DomainError::Unavailable(format!(
                "GitHub did not answer within {} ms, 4/5 of IM_REQUEST_TIMEOUT ({} s)",
                github_share.as_millis(),
                limit.as_secs()
            )))
        });
    match completed {
        Ok(identity) => {
            super::auth::start_session(&app, &cookies, &identity).await;
            Redirect::to("/").into_response()
        }
        Err(error) => to_login_page(&app, error),
    }
}

/// The short code of a failed log-in, for a client to act on; the message beside it is the
/// domain's, which never holds a cause.
fn reason(error: &DomainError) -> &'static str {
    match error {
        DomainError::Rejected(message) => match message.as_ref() {
            github::NOT_CONFIGURED => "not_configured",
            github::BAD_STATE => "bad_state",
            github::CANCELLED => "access_denied",
            github::DENIED => "github_refused",
            NO_LOGIN_RIGHT => "not_permitted",
            _ => "failed",
        },
        DomainError::Unavailable(_) => "unavailable",
        _ => "failed",
    }
}

/// A 303 to the log-in page with `error` and `message` in its query; the cause of a fault is
/// logged here, as the envelope would have.
fn to_login_page(app: &App, error: DomainError) -> Response {
    let reason = reason(&error);
    match &error {
        DomainError::Unavailable(cause) => {
            tracing::warn!(%cause, "GitHub log-in failed: a service it needs is unavailable");
        }
        DomainError::Internal(cause) => tracing::error!(%cause, "GitHub log-in failed"),
        _ => tracing::info!(reason, "GitHub log-in refused"),
    }
    let message = error.to_string();
    let location = failure_location(&app.config.github_failure_url, reason, &message);
    match HeaderValue::try_from(location) {
        Ok(location) => (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response(),
        // Config::validate keeps the URL to visible ASCII, and the query is percent-encoded.
        Err(_) => ApiError(error).into_response(),
    }
}

/// `page` with `error=<reason>&message=<message>` added to its query; in its fragment when it has
/// one (`/#/login`), where a hash-mode router reads its query.
fn failure_location(page: &str, reason: &str, message: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("error", reason)
        .append_pair("message", message)
        .finish();
    let add = |url: &str| match url.split_once('?') {
        None => format!("{url}?{query}"),
        Some((_, "")) => format!("{url}{query}"),
        Some(_) if url.ends_with('&') => format!("{url}{query}"),
        Some(_) => format!("{url}&{query}"),
    };
    match page.split_once('#') {
        Some((before, fragment)) => format!("{before}#{}", add(fragment)),
        None => add(page),
    }
}

#[cfg(test)]
mod tests {
    use super::failure_location;

    #[test]
    fn the_reason_goes_where_the_router_reads_it() {
        let message = "GitHub 授权失败";
        let encoded = "message=GitHub+%E6%8E%88%E6%9D%83%E5%A4%B1%E8%B4%A5";
        assert_eq!(
            failure_location("/login", "github_refused", message),
            format!("/login?error=github_refused&{encoded}")
        );
        assert_eq!(
            failure_location(
                "https://chat.example/login?from=github",
                "bad_state",
                message
            ),
            format!("https://chat.example/login?from=github&error=bad_state&{encoded}")
        );
        assert_eq!(
            failure_location("/#/login", "failed", message),
            format!("/#/login?error=failed&{encoded}")
        );
        assert_eq!(
            failure_location("/login?", "failed", "a&b=c"),
            "/login?error=failed&message=a%26b%3Dc"
        );
    }
}
