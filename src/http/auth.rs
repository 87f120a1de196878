//! Sign-up, log-in, log-out and the current user (`app/router/v1/login.js` of the original).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use tower_cookies::cookie::SameSite;
use tower_cookies::{Cookie, Cookies};

use super::envelope::{ApiResult, ok};
use super::extract::{Body, ClientIp};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::accounts::{self, Identity};

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/signup", post(create_signup))
        .route("/login", post(create_login))
        .route("/logout", post(create_logout))
        .route("/currentUser", get(show_current_user))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
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

async fn create_signup(
    State(app): State<Arc<App>>,
    ClientIp(client): ClientIp,
    cookies: Cookies,
    Body(body): Body<Credentials>,
) -> ApiResult<Identity> {
    let identity = accounts::signup(&app, &body.username, &body.password, client).await?;
    start_session(&app, &cookies, &identity).await;
    ok(identity)
}

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

async fn show_current_user(State(app): State<Arc<App>>, actor: Actor) -> ApiResult<Identity> {
    ok(accounts::current_user(&app, &actor).await?)
}
