//! Socket.IO spoken by hand: raw Engine.IO packets over long-polling and WebSocket, for what no
//! well-behaved client library sends (malformed packets and payloads, oversized bodies, deep
//! JSON, binary attachments, events without the ack they need). The process must stay up, the
//! connection must answer with a clear error where the packet was understood, and memory must
//! stay bounded.

mod common;

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use common::{Backend, TestServer};
use futures_util::{SinkExt, StreamExt};
use im_server::app::Startup;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Engine.IO v4 separates the packets of one polling payload with this byte.
const SEPARATOR: char = '\u{1e}';

/// A session cookie and token for a demo user.
async fn session(server: &TestServer, username: &str) -> (String, String) {
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/login"))
        .json(&json!({"username": username, "password": "123456"}))
        .send()
        .await
        .expect("login");
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();
    let reply: Value = response.json().await.expect("JSON");
    let token = reply["data"]["token"].as_str().expect("token").to_owned();
    (cookie, token)
}

/// One Engine.IO v4 long-polling connection.
struct Polling {
    http: reqwest::Client,
    url: String,
    /// Packets received but not asked for yet.
    pending: std::sync::Mutex<std::collections::VecDeque<String>>,
}

impl Polling {
    /// Handshakes and connects to namespace `/`; returns the handshake too.
    async fn open(server: &TestServer, cookie: &str) -> (Polling, Value) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let base = server.url("/socket.io/?EIO=4&transport=polling");
        let text = http
            .get(&base)
            .header("cookie", cookie)
            .send()
            .await
            .expect("handshake")
            .text()
            .await
            .expect("handshake body");
        let handshake: Value =
            serde_json::from_str(text.strip_prefix('0').expect("open packet")).expect("JSON");
        let sid = handshake["sid"].as_str().expect("sid");
        let polling = Polling {
            url: format!("{base}&sid={sid}"),
            http,
            pending: Default::default(),
        };
        assert!(polling.post(cookie, "40").await, "CONNECT accepted");
        polling.expect(cookie, "40{\"sid\":").await;
        (polling, handshake)
    }

    /// Sends a payload; false when the server refused it (HTTP error) or the connection is gone.
    async fn post(&self, cookie: &str, payload: impl Into<reqwest::Body>) -> bool {
        match self
            .http
            .post(&self.url)
            .header("cookie", cookie)
            .body(payload)
            .send()
            .await
        {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }

    /// The next payload's packets joined by the separator, or None when the connection is closed.
    async fn get(&self, cookie: &str) -> Option<String> {
        let response = self
            .http
            .get(&self.url)
            .header("cookie", cookie)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    /// Waits for the packet that starts with `prefix`, answering pings on the way.
    /// Packets that do not match stay pending for a later call.
    async fn expect(&self, cookie: &str, prefix: &str) -> String {
        for _ in 0..10 {
            {
                let mut pending = self.pending.lock().expect("pending packets");
                if let Some(index) = pending.iter().position(|p| p.starts_with(prefix)) {
                    return pending.remove(index).expect("packet at index");
                }
            }
            let payload = self.get(cookie).await.expect("connection open");
            for packet in payload.split(SEPARATOR) {
                if packet == "2" {
                    self.post(cookie, "3").await;
                } else {
                    let mut pending = self.pending.lock().expect("pending packets");
                    pending.push_back(packet.to_owned());
                }
            }
        }
        panic!("no packet starting with {prefix}");
    }
}

/// The ack of `431[...]`-style answers, parsed.
fn ack_payload(packet: &str, id: u32) -> Value {
    let prefix = format!("43{id}");
    let body = packet.strip_prefix(&prefix).expect("ack packet");
    let array: Value = serde_json::from_str(body).expect("ack JSON");
    array[0].clone()
}

/// Checks that the server still serves Socket.IO: a fresh connection gets an ack.
async fn still_serving(server: &TestServer, cookie: &str) {
    let (polling, _) = Polling::open(server, cookie).await;
    assert!(
        polling
            .post(
                cookie,
                r#"4299["/v1/im/get-messages",{"conversationId":3}]"#
            )
            .await
    );
    let ack = polling.expect(cookie, "4399").await;
    assert_eq!(ack_payload(&ack, 99)["conversationId"], 3, "{ack}");
}

/// The handshake announces the limits we set, not the library's defaults.
async fn limits_are_announced(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (cookie, _) = session(&server, "user").await;
    let (_, handshake) = Polling::open(&server, &cookie).await;
    assert_eq!(handshake["maxPayload"], 128 * 1024);
    assert_eq!(handshake["pingInterval"], 25_000);
    assert_eq!(handshake["pingTimeout"], 20_000);
    assert_eq!(handshake["upgrades"], json!(["websocket"]));
}

/// Well-framed events with bad payloads get an error on the same connection, which stays up.
async fn bad_payloads_get_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (cookie, _) = session(&server, "user").await;
    let (polling, _) = Polling::open(&server, &cookie).await;
    let cases = [
        (r#"421["/v1/im/new-message"]"#, "参数必须是 JSON 对象"),
        (r#"422["/v1/im/new-message",42]"#, "参数必须是 JSON 对象"),
        (
            r#"423["/v1/im/new-message",{"conversationId":3,"body":{"type":["x"]}}]"#,
            "body 必须是带字符串 type 的 JSON 对象",
        ),
        (
            r#"424["/v1/im/new-message",{"conversationId":99999999999,"body":{"type":"text"}}]"#,
            "conversationId 必须是会话编号",
        ),
        (
            r#"425["/v1/im/get-messages",{"conversationId":3,"pageSize":{"a":1}}]"#,
            "pageSize、pageNumber 和 since 必须是数字",
        ),
        (
            r#"426["/v1/im/join",{"conversationId":null}]"#,
            "conversationId 必须是会话编号",
        ),
        (r#"427["/v1/im/join","3"]"#, "参数必须是 JSON 对象"),
        // A NUL in clientMsgId failed the batch on PostgreSQL (HTTP 500's equivalent).
        (
            r#"428["/v1/im/new-message",{"conversationId":3,"body":{"type":"text"},"clientMsgId":"a\u0000b"}]"#,
            "clientMsgId 必须是 1 到 64 个字符的字符串",
        ),
    ];
    for (index, (packet, message)) in cases.iter().enumerate() {
        let id = index as u32 + 1;
        assert!(polling.post(&cookie, *packet).await, "{packet} accepted");
        let ack = polling.expect(&cookie, &format!("43{id}")).await;
        assert_eq!(
            ack_payload(&ack, id)["errorMessage"],
            *message,
            "{packet}: {ack}"
        );
        assert_eq!(ack_payload(&ack, id)["statusCode"], "1");
    }
    // Without an ack id the refusal is an event.
    assert!(
        polling
            .post(&cookie, r#"42["/v1/im/new-message",[]]"#)
            .await
    );
    let error = polling.expect(&cookie, r#"42["/v1/im/error""#).await;
    let event: Value = serde_json::from_str(&error[2..]).expect("event JSON");
    assert_eq!(
        event[1],
        json!({"event": "/v1/im/new-message", "statusCode": "1",
               "errorMessage": "参数必须是 JSON 对象", "data": null})
    );
    // Unknown events and a get-messages nobody waits for are ignored; the connection goes on.
    assert!(
        polling
            .post(&cookie, r#"42["/v1/im/nonsense",{"a":1}]"#)
            .await
    );
    assert!(
        polling
            .post(&cookie, r#"42["/v1/im/get-messages",{"conversationId":3}]"#)
            .await
    );
    assert!(
        polling
            .post(
                &cookie,
                r#"4250["/v1/im/get-messages",{"conversationId":"3"}]"#
            )
            .await
    );
    let ack = polling.expect(&cookie, "4350").await;
    assert_eq!(ack_payload(&ack, 50)["count"], 0);
}

/// Garbage, binary attachments, oversized and deeply nested payloads: the connection may be
/// dropped, the process must not be, and nothing is stored.
async fn malformed_packets_keep_the_server_up(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (cookie, _) = session(&server, "user").await;
    let deep = format!(
        r#"42["/v1/im/new-message",{{"conversationId":3,"body":{{"type":"text","msg":{}1{}}}}}]"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let huge = format!(
        r#"42["/v1/im/new-message",{{"conversationId":3,"body":{{"type":"text","msg":"{}"}}}}]"#,
        "x".repeat(1024 * 1024)
    );
    let garbage: Vec<String> = vec![
        "42[".into(),
        "42not json".into(),
        "4".into(),
        "9".into(),
        "".into(),
        "42[\"/v1/im/new-message\"".into(),
        // A binary event announcing attachments that we never accept.
        r#"451-["/v1/im/new-message",{"_placeholder":true,"num":0}]"#.into(),
        r#"4510000-["/v1/im/new-message",{"_placeholder":true,"num":0}]"#.into(),
        "\u{0}\u{1}\u{2}".into(),
        deep,
        huge,
    ];
    for packet in garbage {
        let (polling, _) = Polling::open(&server, &cookie).await;
        let _ = polling.post(&cookie, packet).await;
        still_serving(&server, &cookie).await;
    }
    let mut conn = server.app.db.get().await.expect("connection");
    let stored = im_server::store::messages::count_in_conversation(&mut conn, 3)
        .await
        .expect("count");
    assert_eq!(stored, 0, "nothing stored from malformed packets");
}

/// Over WebSocket: an oversized message closes that socket only; deep JSON leaves the server
/// serving. (Memory under many such messages: tests/realtime_memory.rs, alone in its process.)
async fn websocket_limits(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, token) = session(&server, "user").await;
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&token={token}",
        server.base.replace("http://", "ws://")
    );
    let open = || async {
        let request = url.as_str().into_client_request().expect("request");
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket");
        let open = ws.next().await.expect("open").expect("open packet");
        assert!(open.to_text().expect("text").starts_with('0'));
        ws.send(WsMessage::text("40")).await.expect("connect");
        loop {
            let packet = ws.next().await.expect("connected").expect("packet");
            let text = packet.to_text().expect("text");
            if text.starts_with("40") {
                break;
            }
            assert_eq!(text, "2", "only a ping may come before CONNECT's answer");
        }
        ws
    };
    let closed_by_server = |mut ws: tokio_tungstenite::WebSocketStream<_>| async move {
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(message)) = ws.next().await {
                if message.is_close() {
                    break;
                }
            }
        })
        .await;
        assert!(end.is_ok(), "the server closes the socket");
    };

    // A message over the limit: the socket is closed, nothing more.
    let mut ws = open().await;
    let big = format!(r#"42["/v1/im/new-message","{}"]"#, "x".repeat(200 * 1024));
    let _ = ws.send(WsMessage::text(big)).await;
    closed_by_server(ws).await;

    for _ in 0..5 {
        let mut ws = open().await;
        let deep = format!(
            r#"42["/v1/im/new-message",{}]"#,
            "[".repeat(60_000) + &"]".repeat(60_000)
        );
        let _ = ws.send(WsMessage::text(deep)).await;
        let _ = ws.close(None).await;
    }
    let mut ws = open().await;
    let mut answer = async |packet: String, id: u32| {
        ws.send(WsMessage::text(packet)).await.expect("send");
        let prefix = format!("43{id}");
        loop {
            let packet = ws.next().await.expect("answer").expect("packet");
            let text = packet.to_text().expect("text").to_owned();
            if text.starts_with(&prefix) {
                break ack_payload(&text, id);
            }
        }
    };
    let history = answer(
        r#"421["/v1/im/get-messages",{"conversationId":3}]"#.into(),
        1,
    )
    .await;
    assert_eq!(history["count"], 0);

    // A message near the body limit, many times the socket's read buffer, arrives whole.
    let msg = "长".repeat(20_000);
    let ack = answer(
        format!(
            r#"422["/v1/im/new-message",{{"conversationId":3,"body":{{"type":"text","msg":"{msg}"}}}}]"#
        ),
        2,
    )
    .await;
    assert_eq!(ack["body"]["msg"], msg.as_str(), "{:.200}", ack.to_string());
    let history = answer(
        r#"423["/v1/im/get-messages",{"conversationId":3}]"#.into(),
        3,
    )
    .await;
    assert_eq!(history["count"], 1);
}

/// What the fake backend was asked: the access token it got, and the request body.
type Asked = (Option<String>, Value);

/// A send is stored under the conversation's next sequence number, in the transaction that
/// also marks the conversation active; the ack is the stored message.
async fn sending_stores_and_activates_the_conversation(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (cookie, _) = session(&server, "user").await;
    let (polling, _) = Polling::open(&server, &cookie).await;
    let mut conn = server.app.db.get().await.expect("connection");
    let before = conversation(&mut conn).await;
    assert_eq!(before.last_seq, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    for (id, msg) in [(1, "one"), (2, "two")] {
        let packet = format!(
            r#"42{id}["/v1/im/new-message",{{"type":"chat","conversationId":"3","fromId":7,"toId":1,"body":{{"type":"text","msg":"{msg}"}}}}]"#
        );
        assert!(polling.post(&cookie, packet).await);
        let ack = ack_payload(&polling.expect(&cookie, &format!("43{id}")).await, id);
        assert_eq!(
            common::mask_times(&ack),
            json!({"id": id, "seq": id, "body": {"type": "text", "msg": msg}, "fromId": 2,
                   "toId": 7, "conversationId": 3, "createdAt": "<time>"})
        );
    }
    let after = conversation(&mut conn).await;
    assert_eq!(after.last_seq, 2);
    assert!(after.active_time > before.active_time);
    assert!(after.updated_at > before.updated_at);
    let stored = im_server::store::messages::page_newest_first(&mut conn, 3, 10, 0)
        .await
        .expect("messages");
    assert_eq!(
        stored
            .iter()
            .map(|m| (m.seq, m.from_id, m.to_id))
            .collect::<Vec<_>>(),
        [(2, 2, 7), (1, 2, 7)]
    );
}

/// `domain::presence::online_users`, and with it the friend list's `online`, follows the user's
/// sockets.
async fn online_users_follow_sockets(backend: Backend) {
    use im_server::domain::presence::online_users;
    let server = TestServer::start(backend).await;
    let (cookie, _) = session(&server, "user").await;
    let online = || async { online_users(&server.app, &[2, 7]).await.expect("presence") };
    // member3 (id 7) is a friend of `user` (id 2) and sees them in the friend list.
    let member3 = server.logged_in("member3").await;
    let listed_online = || async {
        let friends = member3.get("/api/v1/friend").await;
        let user = friends["data"]
            .as_array()
            .and_then(|friends| friends.iter().find(|f| f["id"] == 2))
            .cloned()
            .unwrap_or_else(|| panic!("user among member3's friends: {friends}"));
        user["online"].as_bool().expect("online is a boolean")
    };
    assert!(online().await.is_empty());
    assert!(!listed_online().await);
    let (first, _) = Polling::open(&server, &cookie).await;
    let (second, _) = Polling::open(&server, &cookie).await;
    // Presence is recorded just after the connection is accepted.
    for _ in 0..50 {
        if !online().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(online().await, [2].into());
    assert!(listed_online().await);
    // Engine.IO CLOSE: one device leaves, the user stays online; then the other.
    assert!(first.post(&cookie, "1").await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(online().await, [2].into());
    assert!(second.post(&cookie, "1").await);
    for _ in 0..50 {
        if online().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(online().await.is_empty());
    assert!(!listed_online().await);
}

/// Whether the polling socket is told it is disconnected within a few polls: a Socket.IO
/// DISCONNECT for `/`, an Engine.IO CLOSE, or the server no longer knowing the Engine.IO session.
/// A poll that only times out says nothing either way.
async fn is_disconnected(polling: &Polling, cookie: &str) -> bool {
    let is_close = |p: &str| p == "41" || p == "1";
    if polling
        .pending
        .lock()
        .expect("pending")
        .iter()
        .any(|p| is_close(p))
    {
        return true;
    }
    for _ in 0..3 {
        let Ok(response) = polling
            .http
            .get(&polling.url)
            .header("cookie", cookie)
            .send()
            .await
        else {
            continue;
        };
        if response.status().is_client_error() {
            return true;
        }
        if let Ok(payload) = response.text().await
            && payload.split(SEPARATOR).any(is_close)
        {
            return true;
        }
    }
    false
}

/// A socket whose session ended where no event says so (it expired, or was revoked by another
/// process) is told to log in on its next event and is disconnected.
async fn a_socket_goes_with_its_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (cookie, token) = session(&server, "user").await;
    let (polling, _) = Polling::open(&server, &cookie).await;
    server
        .app
        .sessions
        .revoke(&token)
        .await
        .expect("session revoked");
    assert!(
        polling
            .post(&cookie, r#"421["/v1/im/join",{"conversationId":3}]"#)
            .await
    );
    let ack = ack_payload(&polling.expect(&cookie, "431").await, 1);
    assert_eq!(
        ack,
        json!({"event": "/v1/im/join", "statusCode": "1", "errorMessage": "请登录", "data": null})
    );
    assert!(
        is_disconnected(&polling, &cookie).await,
        "the socket is disconnected"
    );
}

/// Logging out disconnects the sockets of that session at once, without waiting for their next
/// event; the same user's other device (another session) stays connected.
async fn logout_disconnects_the_sessions_sockets_at_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (cookie, _) = session(&server, "user").await;
    let (other_cookie, _) = session(&server, "user").await;
    let (polling, _) = Polling::open(&server, &cookie).await;
    let (other, _) = Polling::open(&server, &other_cookie).await;
    let reply: Value = reqwest::Client::new()
        .post(server.url("/api/v1/logout"))
        .header("cookie", &cookie)
        .json(&json!({}))
        .send()
        .await
        .expect("logout")
        .json()
        .await
        .expect("JSON");
    assert_eq!(reply["statusCode"], "0", "{reply}");
    assert!(
        is_disconnected(&polling, &cookie).await,
        "the logged-out socket is disconnected"
    );
    // The other device still works: its join is acknowledged.
    assert!(
        other
            .post(&other_cookie, r#"421["/v1/im/join",{"conversationId":3}]"#)
            .await
    );
    let ack = ack_payload(&other.expect(&other_cookie, "431").await, 1);
    assert_eq!(ack, json!({"conversationId": 3}));
}

/// Engine.IO v3 (socket.io-client 2) frames polling payloads as `<length>:<packet>`: malformed
/// lengths, truncated and multibyte packets must not take the server down.
async fn engine_io_v3_framing_errors_keep_the_server_up(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (cookie, _) = session(&server, "user").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = server.url("/socket.io/?EIO=3&transport=polling");
    let open = || async {
        let text = http
            .get(&base)
            .header("cookie", &cookie)
            .send()
            .await
            .expect("handshake")
            .text()
            .await
            .expect("body");
        let start = text.find("0{").expect("open packet") + 1;
        let end = start + text[start..].find('}').expect("end of handshake") + 1;
        let handshake: Value = serde_json::from_str(&text[start..end]).expect("handshake JSON");
        format!("{base}&sid={}", handshake["sid"].as_str().expect("sid"))
    };
    let garbage = [
        "5:42[".to_owned(),
        "999:42[\"/v1/im/join\",{}]".to_owned(),
        "3:4é".to_owned(),
        "2:é".to_owned(),
        ":::".to_owned(),
        "abc".to_owned(),
        "-1:4".to_owned(),
        "18446744073709551616:4".to_owned(),
        format!("{}:42", "9".repeat(400)),
        "0:".to_owned(),
        "1:".to_owned(),
    ];
    for payload in garbage {
        let url = open().await;
        let _ = http
            .post(&url)
            .header("cookie", &cookie)
            .body(payload)
            .send()
            .await;
        still_serving(&server, &cookie).await;
    }
    // And a well-framed v3 event still works after all that: it is answered, v3-framed.
    let url = open().await;
    let event = r#"421["/v1/im/join",{"conversationId":3}]"#;
    let framed = format!("{}:{event}", event.chars().count());
    let sent = http
        .post(&url)
        .header("cookie", &cookie)
        .body(framed)
        .send()
        .await
        .expect("post");
    assert!(sent.status().is_success());
    let mut seen = Vec::new();
    for _ in 0..5 {
        let payload = http
            .get(&url)
            .header("cookie", &cookie)
            .send()
            .await
            .expect("poll")
            .text()
            .await
            .expect("payload");
        seen.extend(v3_packets(&payload));
        if let Some(ack) = seen.iter().find(|p| p.starts_with("431")) {
            assert_eq!(ack_payload(ack, 1), json!({"conversationId": 3}), "{ack}");
            return;
        }
    }
    panic!("no answer to a well-framed v3 join; packets: {seen:?}");
}

/// The packets of an Engine.IO v3 polling payload, `<length>:<packet>` each, the length in
/// characters; fails on a payload that is not framed so.
fn v3_packets(payload: &str) -> Vec<String> {
    let mut packets = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let (length, tail) = rest.split_once(':').expect("v3 length prefix");
        let length: usize = length.parse().expect("v3 length");
        let end = tail
            .char_indices()
            .nth(length)
            .map_or(tail.len(), |(index, _)| index);
        packets.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    packets
}

/// Through the admin routes: a mute refuses the user's next send, a ban drops their sockets at
/// once and keeps them out.
async fn admin_bans_and_mutes_act_on_sockets_at_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let (cookie, _) = session(&server, "member3").await;
    let (polling, _) = Polling::open(&server, &cookie).await;
    let send = r#"["/v1/im/new-message",{"conversationId":3,"body":{"type":"text","msg":"hi"}}]"#;
    assert!(polling.post(&cookie, format!("421{send}")).await);
    assert_eq!(
        ack_payload(&polling.expect(&cookie, "431").await, 1)["seq"],
        1
    );

    let muted = admin
        .put("/api/v1/admin/users/mute", &json!({"id": 7, "mute": true}))
        .await;
    common::data(&muted);
    assert!(polling.post(&cookie, format!("422{send}")).await);
    assert_eq!(
        ack_payload(&polling.expect(&cookie, "432").await, 2)["errorMessage"],
        "您已被禁言"
    );

    let banned = admin
        .put(
            "/api/v1/admin/users/disabled",
            &json!({"id": 7, "disabled": true}),
        )
        .await;
    common::data(&banned);
    // A poll that times out is no answer: only a close packet or an unknown session counts.
    let banned_at = std::time::Instant::now();
    assert!(
        is_disconnected(&polling, &cookie).await,
        "the banned user's socket is disconnected"
    );
    assert!(
        banned_at.elapsed() < Duration::from_secs(5),
        "the ban dropped the socket after {:?}, not at once",
        banned_at.elapsed()
    );
    let url = server.url("/socket.io/?EIO=4&transport=polling");
    let handshake = reqwest::Client::new()
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("handshake")
        .text()
        .await
        .expect("body");
    let sid: Value = serde_json::from_str(&handshake[1..]).expect("open packet");
    let again = Polling {
        http: reqwest::Client::new(),
        url: format!("{url}&sid={}", sid["sid"].as_str().expect("sid")),
        pending: Default::default(),
    };
    assert!(again.post(&cookie, "40").await);
    let refused = again.expect(&cookie, "44").await;
    assert_eq!(refused, r#"44{"message":"请登录"}"#);
}

/// Conversation 3 (user and member3) as stored.
async fn conversation(
    conn: &mut im_server::store::DbConn,
) -> im_server::store::models::Conversation {
    im_server::store::conversations::find_for_member(conn, 3, 2)
        .await
        .expect("lookup")
        .expect("user's conversation")
        .0
}

/// A stand-in for Baidu UNIT: answers, answers too late, or fails, as the test says.
#[derive(Clone, Default)]
struct FakeUnit {
    mode: Arc<AtomicU8>,
    seen: Arc<std::sync::Mutex<Vec<Asked>>>,
}

const ANSWER: u8 = 0;
const SLOW: u8 = 1;
const BROKEN: u8 = 2;

async fn fake_unit() -> (String, FakeUnit) {
    use axum::extract::{Query, State};
    use axum::routing::post;
    let fake = FakeUnit::default();
    let router = axum::Router::new()
        .route(
            "/oauth/2.0/token",
            post(|| async {
                axum::Json(json!({"access_token": "fake-token", "expires_in": 2_592_000}))
            }),
        )
        .route(
            "/rpc/2.0/unit/service/chat",
            post(
                |State(fake): State<FakeUnit>,
                 Query(query): Query<std::collections::HashMap<String, String>>,
                 axum::Json(body): axum::Json<Value>| async move {
                    fake.seen
                        .lock()
                        .expect("seen")
                        .push((query.get("access_token").cloned(), body));
                    match fake.mode.load(Ordering::SeqCst) {
                        SLOW => tokio::time::sleep(Duration::from_secs(5)).await,
                        BROKEN => {
                            return axum::Json(
                                json!({"error_code": 282000, "error_msg": "internal"}),
                            );
                        }
                        _ => {}
                    }
                    axum::Json(json!({"error_code": 0, "result": {"response_list": [
                        {"action_list": [{"say": "来自 UNIT 的回答"}]}
                    ]}}))
                },
            ),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, fake)
}

/// The robot asks the configured backend (with its access token), and answers by itself when
/// the backend is slow or failing, without holding up the socket's other events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_asks_its_backend_and_falls_back() {
    let (unit, fake) = fake_unit().await;
    let server = TestServer::start_with(Backend::Sqlite, Startup { demo: true }, |config| {
        config.robot.url = Some(format!("{unit}/rpc/2.0/unit/service/chat"));
        config.robot.token_url = format!("{unit}/oauth/2.0/token");
        config.robot.api_key = Some("key".into());
        config.robot.secret_key = Some("secret".into());
        config.robot.service_id = "S1".into();
        config.robot.timeout_ms = 600;
    })
    .await;
    let (cookie, _) = session(&server, "user").await;
    let (polling, _) = Polling::open(&server, &cookie).await;
    let question = json!({"type": "robot", "conversationId": "robot", "fromId": 2, "toId": "robot",
                          "body": {"type": "text", "msg": "你好"}});
    let ask = |id: u32| format!(r#"42{id}["/v1/im/new-message",{question}]"#);
    let answer_of = |packet: String| -> Value {
        let event: Value = serde_json::from_str(&packet[2..]).expect("event JSON");
        event[1].clone()
    };

    fake.mode.store(ANSWER, Ordering::SeqCst);
    assert!(polling.post(&cookie, ask(1)).await);
    assert_eq!(
        ack_payload(&polling.expect(&cookie, "431").await, 1),
        question
    );
    let echo = answer_of(polling.expect(&cookie, r#"42["/v1/im/new-message""#).await);
    assert_eq!(echo, question);
    let answer = answer_of(polling.expect(&cookie, r#"42["/v1/im/new-message""#).await);
    assert_eq!(
        answer,
        json!({"type": "robot", "conversationId": "robot", "fromId": "robot", "toId": 2,
               "body": {"type": "text", "msg": "来自 UNIT 的回答"}})
    );
    {
        let seen = fake.seen.lock().expect("seen");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0.as_deref(), Some("fake-token"));
        assert_eq!(seen[0].1["request"]["query"], "你好");
        assert_eq!(seen[0].1["request"]["user_id"], "2");
        assert_eq!(seen[0].1["service_id"], "S1");
    }

    for mode in [SLOW, BROKEN] {
        fake.mode.store(mode, Ordering::SeqCst);
        let started = std::time::Instant::now();
        assert!(polling.post(&cookie, ask(2)).await);
        // The socket's next event is answered while the robot still waits for its backend.
        assert!(
            polling
                .post(
                    &cookie,
                    r#"423["/v1/im/get-messages",{"conversationId":3}]"#
                )
                .await
        );
        polling.expect(&cookie, "433").await;
        polling.expect(&cookie, "432").await;
        let echo = answer_of(polling.expect(&cookie, r#"42["/v1/im/new-message""#).await);
        assert_eq!(echo, question);
        let answer = answer_of(polling.expect(&cookie, r#"42["/v1/im/new-message""#).await);
        let said = answer["body"]["msg"].as_str().expect("an answer");
        assert_eq!(
            said,
            im_server::domain::robot::local_answer("你好"),
            "mode {mode}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "mode {mode}: {:?}",
            started.elapsed()
        );
    }
}

on_both_backends!(
    limits_are_announced,
    bad_payloads_get_errors,
    malformed_packets_keep_the_server_up,
    websocket_limits,
    sending_stores_and_activates_the_conversation,
    online_users_follow_sockets,
    a_socket_goes_with_its_session,
    logout_disconnects_the_sessions_sockets_at_once,
    engine_io_v3_framing_errors_keep_the_server_up,
    admin_bans_and_mutes_act_on_sockets_at_once,
);
