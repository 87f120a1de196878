//! Sign-up, log-in, log-out and the current user (`app/router/v1/login.js` of the original).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use serde::Deserialize;
use tower_cookies::cookie::SameSite;
use tower_cookies::{Cookie, Cookies};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{ApiResult, ok};
use super::extract::{Body, ClientIp};
use super::openapi::{Answer, LimitedWrites, Null, Reads, Writes};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::accounts::{self, Identity};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default()
        .routes(routes!(create_signup))
        .routes(routes!(create_login))
        .routes(routes!(create_logout))
        .routes(routes!(show_current_user))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Credentials {
    username: String,
    password: String,
}

/// What sign-up reads: [`Credentials`], under the rules of docs/protocol.md §4.1.
#[derive(Deserialize, utoipa::ToSchema)]
struct NewAccount {
    /// 4 to 64 characters once NFKC-normalised and trimmed; no control, invisible or bidi
    /// characters; Latin, Greek and Cyrillic letters not mixed.
    #[schema(min_length = 4, max_length = 64)]
    username: String,
    #[schema(min_length = 6, max_length = 128)]
    password: String,
}

/// The session cookie: only the random id, HttpOnly, SameSite=Lax, `Secure` when configured.
pub fn session_cookie(app: &App, session_id: String) -> Cookie<'static> {
    let max_age = Duration::from_secs(app.config.session_ttl_secs);
    Cookie::build((app.config.cookie_name.clone(), session_id))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(app.config.cookie_secure)
        .max_age(
            max_age
                .try_into()
                .unwrap_or(tower_cookies::cookie::time::Duration::DAY),
        )
        .build()
}

/// Sets the new session's cookie, after ending the session the browser's cookie named before.
pub(super) async fn start_session(app: &App, cookies: &Cookies, identity: &Identity) {
    if let Some(previous) = cookies.get(&app.config.cookie_name) {
        accounts::end_previous_session(app, previous.value(), identity.token.as_deref()).await;
    }
    if let Some(token) = &identity.token {
        cookies.add(session_cookie(app, token.clone()));
    }
}

/// Sign up: a new local user with role `user`, logged in at once.
///
/// Sets the session cookie, and ends the session the browser's cookie named before.
#[utoipa::path(post, path = "/signup", tag = "account", security(()),
    request_body = NewAccount,
    responses(
        (status = 200, description = "the identity, with `token`; or `参数校验失败`, `用户名重复`",
         body = Answer<Identity>),
        LimitedWrites))]
async fn create_signup(
    State(app): State<Arc<App>>,
    ClientIp(client): ClientIp,
    cookies: Cookies,
    Body(body): Body<NewAccount>,
) -> ApiResult<Identity> {
    let identity = accounts::signup(&app, &body.username, &body.password, client).await?;
    start_session(&app, &cookies, &identity).await;
    ok(identity)
}

/// Log in.
///
/// Sets the session cookie, and ends the session the browser's cookie named before.
#[utoipa::path(post, path = "/login", tag = "account", security(()),
    request_body = Credentials,
    responses(
        (status = 200, description = "the identity, with `token`; or `用户名错误`, `密码错误`, \
         `不具备登录权限`", body = Answer<Identity>),
        LimitedWrites))]
async fn create_login(
    State(app): State<Arc<App>>,
    ClientIp(client): ClientIp,
    cookies: Cookies,
    Body(body): Body<Credentials>,
) -> ApiResult<Identity> {
    let identity = accounts::login(&app, &body.username, &body.password, client).await?;
    start_session(&app, &cookies, &identity).await;
    ok(identity)
}

/// Log out: ends the session and its sockets, removes the cookie.
#[utoipa::path(post, path = "/logout", tag = "account",
    responses((status = 200, description = "`data` null", body = Answer<Null>), Writes))]
async fn create_logout(
    State(app): State<Arc<App>>,
    cookies: Cookies,
    actor: Actor,
) -> ApiResult<()> {
    accounts::logout(&app, &actor).await?;
    cookies.remove(
        Cookie::build((app.config.cookie_name.clone(), ""))
            .path("/")
            .build(),
    );
    ok(())
}

/// The session's user: profile, rights and roles (no `token`).
#[utoipa::path(get, path = "/currentUser", tag = "account",
    responses((status = 200, description = "the identity", body = Answer<Identity>), Reads))]
async fn show_current_user(State(app): State<Arc<App>>, actor: Actor) -> ApiResult<Identity> {
    ok(accounts::current_user(&app, &actor).await?)
}
