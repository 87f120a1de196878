//! Extractors: the session user of a request, and JSON bodies, query strings and path ids whose
//! errors are envelopes, never the framework's plain-text 400.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tower_cookies::Cookies;

use super::envelope::ApiError;
use crate::app::App;
use crate::domain::{Actor, DomainError, rbac};

/// Where a request's session id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    Cookie,
    Token,
}

fn session_id(app: &App, parts: &Parts) -> Option<(String, Carrier)> {
    let cookies = parts.extensions.get::<Cookies>()?;
    if let Some(cookie) = cookies.get(&app.config.cookie_name) {
        return Some((cookie.value().to_owned(), Carrier::Cookie));
    }
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(token) = header("token") {
        return Some((token.trim().to_owned(), Carrier::Token));
    }
    let bearer = header(AUTHORIZATION.as_str())?.strip_prefix("Bearer ")?;
    Some((bearer.trim().to_owned(), Carrier::Token))
}

/// A logged-in user: the session named by the `IM_SESS` cookie or a token, whose user still holds
/// the `login` right.
impl FromRequestParts<Arc<App>> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let (id, carrier) = session_id(app, parts).ok_or(DomainError::NotLoggedIn)?;
        let actor = rbac::authenticate(app, &id).await?;
        if carrier == Carrier::Cookie
            && let Some(cookies) = parts.extensions.get::<Cookies>()
        {
            // The session's life was just extended; extend the cookie's with it.
            cookies.add(super::auth::session_cookie(app, id));
        }
        Ok(actor)
    }
}

/// A logged-in user holding the `admin` right; others get HTTP 403.
pub struct Admin(pub Actor);

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let actor = Actor::from_request_parts(parts, app).await?;
        rbac::require_admin(&actor)?;
        Ok(Admin(actor))
    }
}

/// A JSON body; anything malformed (not JSON, wrong types, missing fields, a NUL character in a
/// string) is an envelope error.
pub struct Body<T>(pub T);

/// Whether a JSON text holds the NUL character in a string (or a key). No field of this API may
/// hold one, and PostgreSQL cannot store or even compare text with it: the query fails, which
/// was a 500 for a NUL in a log-in name or a search. JSON can only carry it escaped, so a text
/// without `\u0000` is passed at once; one with it is parsed to tell an escaped backslash
/// (`"\\u0000"`, six plain characters) from the NUL.
fn holds_nul(json: &[u8]) -> bool {
    fn any_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(text) => text.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(any_nul),
            serde_json::Value::Object(map) => map
                .iter()
                .any(|(key, value)| key.contains('\0') || any_nul(value)),
            _ => false,
        }
    }
    json.windows(6).any(|window| window == b"\\u0000")
        && serde_json::from_slice::<serde_json::Value>(json).is_ok_and(|value| any_nul(&value))
}

impl<T, S> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let refused = || ApiError::from(DomainError::invalid("参数校验失败"));
        // Read once (within the body limit), then parsed by axum's `Json` from the bytes, which
        // are kept for the NUL check.
        let (parts, body) = req.into_parts();
        let bytes =
            axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state)
                .await
                .map_err(|_| {
                    tracing::debug!(kind = "body not read", "malformed request body");
                    refused()
                })?;
        let req = Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
        match axum::Json::<T>::from_request(req, state).await {
            Ok(_) if holds_nul(&bytes) => {
                tracing::debug!(kind = "a NUL character", "malformed request body");
                Err(refused())
            }
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => {
                let rejection: JsonRejection = rejection;
                // The kind only: serde's message quotes the body ("invalid type: integer
                // `123456`" of a password sent as a number).
                tracing::debug!(
                    kind = json_rejection_kind(&rejection),
                    "malformed request body"
                );
                Err(refused())
            }
        }
    }
}

fn json_rejection_kind(rejection: &JsonRejection) -> &'static str {
    match rejection {
        JsonRejection::JsonDataError(_) => "fields of the wrong type or missing",
        JsonRejection::JsonSyntaxError(_) => "not JSON",
        JsonRejection::MissingJsonContentType(_) => "not application/json",
        JsonRejection::BytesRejection(_) => "body not read",
        _ => "other",
    }
}

/// A query string; anything that does not decode, or holds NUL, is an envelope error, never a
/// 400 page.
pub struct Params<T>(pub T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // `%00` is the only way a query carries NUL; no parameter may hold it (see `holds_nul`).
        if parts.uri.query().is_some_and(|query| query.contains("%00")) {
            tracing::debug!("NUL character in the query string");
            return Err(DomainError::invalid("参数校验失败").into());
        }
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(rejection) => {
                // Not its text: it may quote the query, which can carry a token.
                tracing::debug!(status = %rejection.status(), "malformed query string");
                Err(DomainError::invalid("参数校验失败").into())
            }
        }
    }
}

/// The numeric `{id}` of a resource path.
pub struct PathId(pub i32);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| DomainError::invalid("参数校验失败"))?;
        raw.trim()
            .parse::<i32>()
            .map(PathId)
            .map_err(|_| DomainError::invalid("参数校验失败").into())
    }
}

/// The address of the client that sent a request: what per-address limits count by. The accept
/// loop (src/connections.rs) finds it: the TCP peer, or behind a trusted proxy the client that
/// the proxy names in `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client of a request head; also used by the Socket.IO layer on its handshake request.
    pub fn of(parts: &Parts) -> ClientIp {
        if let Some(client) = parts.extensions.get::<ClientIp>() {
            return *client;
        }
        // A router served some other way (not through our accept loop): the peer, if known.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        ClientIp(peer)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientIp::of(parts))
    }
}
