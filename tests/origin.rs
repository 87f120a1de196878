//! The Origin check: a page on another site, riding on a visitor's session cookie, can neither
//! change state over REST nor open a socket (Engine.IO 3 and 4, long-polling and WebSocket);
//! pages of the server's own host, and clients that send no Origin, work as before.

mod common;

use std::time::Duration;

use common::{Backend, TestServer, next_starting_with};
use futures_util::SinkExt;
use im_server::app::Startup;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const EVIL: &str = "https://evil.example";
/// Every wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

/// The `IM_SESS=...` pair of a fresh log-in of demo user `username`.
async fn session_cookie(server: &TestServer, username: &str) -> String {
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/login"))
        .json(&json!({"username": username, "password": "123456"}))
        .send()
        .await
        .expect("login");
    response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned()
}

/// The server's own origin, as a page it served would send it.
fn own_origin(server: &TestServer) -> String {
    server.base.clone()
}

/// A REST request with the cookie and, if given, an Origin: (HTTP status, JSON answer).
async fn rest(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, server.url(path))
        .header("cookie", cookie)
        .json(body)
        .timeout(WAIT);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

async fn my_profile(server: &TestServer, cookie: &str) -> Value {
    let (status, reply) = rest(
        server,
        reqwest::Method::GET,
        "/api/v1/currentUser",
        cookie,
        Some(EVIL),
        &Value::Null,
    )
    .await;
    // A safe method is not guarded: reading needs no Origin check (the browser's same-origin
    // policy keeps the answer from the foreign page).
    assert_eq!(status, 200, "{reply}");
    reply["data"]["userInfo"].clone()
}

async fn rest_from_a_foreign_origin_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cookie = session_cookie(&server, "user").await;
    let before = my_profile(&server, &cookie).await;
    let info_id = before["id"].as_i64().expect("userInfo id");
    let path = format!("/api/v1/userinfo/{info_id}");
    let change = json!({"nickname": "pwned", "photo": before["photo"], "sign": "pwned"});

    let (status, reply) = rest(
        &server,
        reqwest::Method::PUT,
        &path,
        &cookie,
        Some(EVIL),
        &change,
    )
    .await;
    assert_eq!(status, 403);
    common::assert_refused(&reply, "1", "请求来源不被允许");
    // `null` is what sandboxed frames and file: pages send: no page of ours either.
    let (status, _) = rest(
        &server,
        reqwest::Method::PUT,
        &path,
        &cookie,
        Some("null"),
        &change,
    )
    .await;
    assert_eq!(status, 403);
    // Another port of the same host is another origin.
    let other_port = format!("{}1", own_origin(&server));
    let (status, _) = rest(
        &server,
        reqwest::Method::POST,
        "/api/v1/applies",
        &cookie,
        Some(&other_port),
        &json!({"type": "user", "toId": 1}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, reply) = rest(
        &server,
        reqwest::Method::POST,
        "/api/v1/applies",
        &cookie,
        Some(EVIL),
        &json!({"type": "group", "toId": 2}),
    )
    .await;
    assert_eq!(status, 403, "{reply}");
    assert_eq!(
        my_profile(&server, &cookie).await,
        before,
        "profile unchanged"
    );
    let admin = server.logged_in("admin").await;
    let applies = admin.get("/api/v1/applies").await;
    assert_eq!(
        common::data(&applies)["count"],
        0,
        "no apply was made: {applies}"
    );

    // The server's own pages, and clients without Origin, change state as before.
    let (status, reply) = rest(
        &server,
        reqwest::Method::PUT,
        &path,
        &cookie,
        Some(&own_origin(&server)),
        &change,
    )
    .await;
    assert_eq!(
        (status, &reply["statusCode"]),
        (200, &json!("0")),
        "{reply}"
    );
    assert_eq!(my_profile(&server, &cookie).await["nickname"], "pwned");
    let (status, reply) = rest(
        &server,
        reqwest::Method::POST,
        "/api/v1/applies",
        &cookie,
        None,
        &json!({"type": "user", "toId": 1}),
    )
    .await;
    assert_eq!(
        (status, &reply["statusCode"]),
        (200, &json!("0")),
        "{reply}"
    );
}

/// An Engine.IO long-polling handshake: (HTTP status, body).
async fn polling_handshake(
    server: &TestServer,
    eio: u8,
    cookie: &str,
    origin: Option<&str>,
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .get(server.url(&format!("/socket.io/?EIO={eio}&transport=polling")))
        .header("cookie", cookie)
        .timeout(WAIT);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.expect("handshake");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The `sid` of an Engine.IO open packet somewhere in `body` (EIO3 prefixes it with a length).
fn sid(body: &str) -> String {
    let start = body.find("{\"sid\"").expect("open packet");
    let open: Value = serde_json::Deserializer::from_str(&body[start..])
        .into_iter()
        .next()
        .expect("JSON")
        .expect("open packet JSON");
    open["sid"].as_str().expect("sid").to_owned()
}

async fn polling_from_a_foreign_origin_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cookie = session_cookie(&server, "user").await;
    for eio in [3, 4] {
        let (status, body) = polling_handshake(&server, eio, &cookie, Some(EVIL)).await;
        assert_eq!(status, 403, "EIO{eio}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).expect("JSON"),
            json!({"code": 4, "message": "Forbidden"}),
            "EIO{eio}: Engine.IO's own refusal"
        );
        for origin in [None, Some(own_origin(&server))] {
            let (status, body) = polling_handshake(&server, eio, &cookie, origin.as_deref()).await;
            assert_eq!(status, 200, "EIO{eio} from {origin:?}: {body}");
            assert!(body.contains("\"sid\""), "EIO{eio}: {body}");
        }
    }

    // A session opened cleanly cannot be used from a foreign page either: its polls and its
    // posts are refused.
    let (_, body) = polling_handshake(&server, 4, &cookie, None).await;
    let url = server.url(&format!(
        "/socket.io/?EIO=4&transport=polling&sid={}",
        sid(&body)
    ));
    let http = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("client");
    let post = http
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", EVIL)
        .body("40")
        .send()
        .await
        .expect("post");
    assert_eq!(post.status().as_u16(), 403);
    let poll = http
        .get(&url)
        .header("cookie", &cookie)
        .header("origin", EVIL)
        .send()
        .await
        .expect("poll");
    assert_eq!(poll.status().as_u16(), 403);
}

/// A raw WebSocket handshake with the cookie and an Origin: the socket, or the HTTP status it
/// was refused with.
async fn websocket(
    server: &TestServer,
    eio: u8,
    cookie: &str,
    origin: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let url = format!(
        "{}/socket.io/?EIO={eio}&transport=websocket",
        server.base.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().expect("request");
    let headers = request.headers_mut();
    headers.insert("cookie", cookie.parse().expect("cookie header"));
    headers.insert("origin", origin.parse().expect("origin header"));
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake answered in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(error) => panic!("WebSocket handshake failed otherwise: {error}"),
    }
}

async fn websocket_from_a_foreign_origin_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cookie = session_cookie(&server, "user").await;
    for eio in [3, 4] {
        let refused = websocket(&server, eio, &cookie, EVIL).await;
        assert_eq!(refused.err(), Some(403), "EIO{eio} from {EVIL}");

        // The same handshake from the server's own page connects and reads the group's history.
        let mut ws = websocket(&server, eio, &cookie, &own_origin(&server))
            .await
            .unwrap_or_else(|status| panic!("EIO{eio} from its own page: HTTP {status}"));
        next_starting_with(&mut ws, "0", WAIT).await;
        if eio == 4 {
            // Socket.IO 2 (EIO3) joins `/` by itself; Socket.IO 3+ asks.
            ws.send(WsMessage::text("40")).await.expect("connect");
        }
        next_starting_with(&mut ws, "40", WAIT).await;
        ws.send(WsMessage::text(
            r#"421["/v1/im/get-messages",{"conversationId":3}]"#,
        ))
        .await
        .expect("ask");
        let answer = next_starting_with(&mut ws, "431", WAIT).await;
        assert!(answer.contains("\"count\""), "EIO{eio}: {answer}");
    }
}

async fn a_listed_origin_replaces_the_host_rule(backend: Backend) {
    let server = TestServer::start_with(backend, Startup { demo: true }, |config| {
        config.allowed_origins = vec!["https://chat.example.com".into()];
    })
    .await;
    let cookie = session_cookie(&server, "user").await;
    let (status, _) =
        polling_handshake(&server, 4, &cookie, Some("https://chat.example.com")).await;
    assert_eq!(status, 200);
    let (status, _) = polling_handshake(&server, 4, &cookie, Some(&own_origin(&server))).await;
    assert_eq!(status, 403, "with a list, the host rule no longer applies");
    let ws = websocket(&server, 4, &cookie, "https://chat.example.com:443").await;
    assert!(ws.is_ok(), "the default port is the same origin");
}

on_both_backends!(
    rest_from_a_foreign_origin_changes_nothing,
    polling_from_a_foreign_origin_is_refused,
    websocket_from_a_foreign_origin_is_refused,
    a_listed_origin_replaces_the_host_rule,
);
