//! The Origin check against cross-site requests: a page on another site must not use a visitor's
//! session cookie to change anything or to open a socket (which reads their chats).
//!
//! Browsers name the page a request comes from in `Origin` on every request that can change
//! state and on every WebSocket handshake, and no page can forge it. Unsafe methods (anything
//! but GET, HEAD, OPTIONS, TRACE) and every Socket.IO request (handshake, polling, WebSocket)
//! whose Origin is outside the allow-list get HTTP 403. Requests without an Origin are not from
//! a browser's page (native apps, the WeChat mini-program, socket.io-client in Node, curl) and
//! carry no cross-site risk: they pass.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::envelope;
use crate::realtime::SOCKET_IO_PATH;

/// Who may send guarded requests.
#[derive(Debug, Clone)]
pub enum OriginPolicy {
    /// The page must come from the host the request is addressed to (its `Host`): the default,
    /// right when the web client is served by this server or by the proxy in front of it.
    SameHost,
    /// Exactly these origins (`scheme://host[:port]`, normalised), set by `IM_ALLOWED_ORIGINS`.
    Listed(Vec<String>),
}

impl OriginPolicy {
    /// The policy of `IM_ALLOWED_ORIGINS`: empty means the request's own host.
    pub fn from_list(origins: &[String]) -> Result<Self, String> {
        let listed = origins
            .iter()
            .map(|origin| origin.trim())
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                normalise(origin.trim_end_matches('/')).ok_or_else(|| {
                    format!("IM_ALLOWED_ORIGINS: {origin:?} is not an origin like https://chat.example.com")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if listed.is_empty() {
            OriginPolicy::SameHost
        } else {
            OriginPolicy::Listed(listed)
        })
    }

    /// Whether a request that names `origin` and is addressed to `host` may go on.
    fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let Some(origin) = normalise(origin) else {
            // `null` (sandboxed frames, file: pages, some redirects) or garbage: no page of ours.
            return false;
        };
        match self {
            OriginPolicy::Listed(listed) => listed.contains(&origin),
            OriginPolicy::SameHost => host.is_some_and(|host| {
                let (scheme, authority) = origin.split_once("://").unwrap_or_default();
                authority == without_default_port(scheme, &host.to_ascii_lowercase())
            }),
        }
    }
}

/// `scheme://host[:port]` in one spelling: lower case, without the scheme's default port.
/// `None` for anything that is not an http(s) origin.
fn normalise(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let valid = !authority.is_empty()
        && !authority.starts_with(':')
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    if !valid {
        return None;
    }
    Some(format!(
        "{scheme}://{}",
        without_default_port(&scheme, &authority)
    ))
}

fn without_default_port<'a>(scheme: &str, authority: &'a str) -> &'a str {
    let default = if scheme == "https" { ":443" } else { ":80" };
    authority.strip_suffix(default).unwrap_or(authority)
}

/// Whether a request can act for its session: it changes state, or it is Socket.IO (a socket
/// reads and sends chats, whatever its HTTP method).
fn guarded(request: &Request) -> bool {
    !request.method().is_safe() || request.uri().path().starts_with(SOCKET_IO_PATH)
}

/// The middleware: guarded requests from an Origin outside the policy get 403.
pub async fn check_origin(
    State(policy): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(origin) = request.headers().get(ORIGIN) else {
        return next.run(request).await;
    };
    if !guarded(&request) {
        return next.run(request).await;
    }
    let origin = origin.to_str().unwrap_or_default();
    // HTTP/2 carries the host in the URI (`:authority`), HTTP/1.1 in `Host`.
    let host = request
        .headers()
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if policy.allows(origin, host) {
        return next.run(request).await;
    }
    tracing::warn!(
        origin = ?origin,
        host = ?host.unwrap_or_default(),
        method = %request.method(),
        path = %request.uri().path(),
        "request refused: its Origin is not allowed (IM_ALLOWED_ORIGINS; by default the Host it is addressed to)"
    );
    refusal(request.uri().path().starts_with(SOCKET_IO_PATH))
}

/// HTTP 403: Engine.IO's own refusal to a Socket.IO client (code 4, "Forbidden", what the Node
/// server answers when `allowRequest` refuses), the envelope to a REST one.
fn refusal(socket_io: bool) -> Response {
    if socket_io {
        let mut response = (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({ "code": 4, "message": "Forbidden" })),
        )
            .into_response();
        response
            .headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        return response;
    }
    envelope::refused(StatusCode::FORBIDDEN, FOREIGN_ORIGIN)
}

/// What a REST client is told.
pub const FOREIGN_ORIGIN: &str = "请求来源不被允许";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_compares_scheme_default_ports_and_case() {
        let policy = OriginPolicy::SameHost;
        assert!(policy.allows("http://chat.example", Some("chat.example")));
        assert!(policy.allows("https://Chat.Example:443", Some("chat.example")));
        assert!(policy.allows("http://127.0.0.1:7001", Some("127.0.0.1:7001")));
        assert!(policy.allows("http://[::1]:7001", Some("[::1]:7001")));
        assert!(!policy.allows("http://127.0.0.1:7002", Some("127.0.0.1:7001")));
        assert!(!policy.allows("https://evil.example", Some("chat.example")));
        assert!(!policy.allows("http://chat.example.evil", Some("chat.example")));
        assert!(!policy.allows("null", Some("chat.example")));
        assert!(!policy.allows("http://chat.example", None));
    }

    #[test]
    fn a_list_replaces_the_host_rule() {
        let policy = OriginPolicy::from_list(&[
            "https://chat.example.com/".into(),
            " http://localhost:8080".into(),
        ])
        .unwrap();
        assert!(policy.allows("https://chat.example.com", Some("backend:7001")));
        assert!(policy.allows("http://localhost:8080", None));
        assert!(!policy.allows("http://backend:7001", Some("backend:7001")));
        assert!(OriginPolicy::from_list(&["chat.example.com".into()]).is_err());
        assert!(OriginPolicy::from_list(&["https://a/b".into()]).is_err());
        assert!(matches!(
            OriginPolicy::from_list(&[]).unwrap(),
            OriginPolicy::SameHost
        ));
    }
}
