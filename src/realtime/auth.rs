//! Connection auth: the session of a Socket.IO handshake, from the `IM_SESS` cookie, the `token`
//! query or (protocol v5) `auth.token`, checked once at connect and again on every event.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Query;
use serde::Deserialize;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use crate::app::App;
use crate::domain::{Actor, DomainError, rbac};

/// The `auth` object of a v5 handshake.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HandshakeAuth {
    token: Option<String>,
}

/// Who a socket acts for, kept on the socket for its whole life.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: i32,
    pub session_id: String,
}

/// Why a connection is refused; sent to the client as its `connect_error`.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("请登录")]
    NotLoggedIn,
    #[error("userId 与登录用户不符")]
    WrongUser,
    #[error("服务暂时不可用，请稍后再试")]
    Unavailable,
}

/// Lets the socket in when its handshake carries a live session whose user may log in; the
/// socket then joins its user's room and its session's. The `userId` query is only checked against the session.
pub async fn authenticate<A: Adapter>(
    app: &Arc<App>,
    socket: &SocketRef<A>,
    auth: Option<HandshakeAuth>,
) -> Result<Identity, Refusal> {
    let parts = socket.req_parts();
    let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
        .map(|Query(query)| query)
        .unwrap_or_default();
    let session_id = cookie(app, parts)
        .or_else(|| query.get("token").cloned())
        .or_else(|| auth.and_then(|auth| auth.token))
        .ok_or(Refusal::NotLoggedIn)?;
    let actor = match rbac::authenticate(app, session_id.trim()).await {
        Ok(actor) => actor,
        Err(DomainError::NotLoggedIn) => return Err(Refusal::NotLoggedIn),
        Err(error) => {
            tracing::warn!(%error, "socket authentication failed");
            return Err(Refusal::Unavailable);
        }
    };
    if let Some(claimed) = query.get("userId").map(|id| id.trim())
        && let Ok(claimed) = claimed.parse::<i32>()
        && claimed != actor.user_id
    {
        return Err(Refusal::WrongUser);
    }
    let identity = Identity {
        user_id: actor.user_id,
        session_id: actor.session_id,
    };
    socket.extensions.insert(identity.clone());
    socket.join([
        super::user_room(actor.user_id),
        super::session_room(&identity.session_id),
    ]);
    Ok(identity)
}

fn cookie(app: &App, parts: &axum::http::request::Parts) -> Option<String> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(tower_cookies::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == app.config.cookie_name)
        .map(|cookie| cookie.value().to_owned())
}

/// The socket's user as of now: their session must still live and they must still hold `login`;
/// their rights are read fresh, so a role change acts on the next event.
pub async fn current_actor<A: Adapter>(
    app: &App,
    socket: &SocketRef<A>,
) -> Result<Actor, DomainError> {
    let identity = socket
        .extensions
        .get::<Identity>()
        .ok_or(DomainError::NotLoggedIn)?;
    rbac::authenticate(app, &identity.session_id).await
}
