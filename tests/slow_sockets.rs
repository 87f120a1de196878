//! A socket that stops reading while others send to its group: the server drops it (its queue
//! full) instead of keeping it open while it loses messages. What it received before the drop is
//! a prefix of what was sent, in order and without a gap; its connection ends; once reconnected
//! it fetches the rest with `since`; and the readers that kept reading lost nothing. Run on one
//! process, and on two sharing Redis with the stalled reader on the other one, so that what
//! reaches it comes through the Redis adapter.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, redis_url, unique_prefix};
use futures_util::{SinkExt, StreamExt};
use im_server::app::Startup;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Each message carries this much text, so that the stalled reader's buffers fill after a few
/// hundred messages rather than tens of thousands.
const PADDING: usize = 32 * 1024;
/// The sender gives up after this many messages if the stalled socket is still not dropped.
const MAX_MESSAGES: u32 = 4_000;
/// Bound of every wait on the server.
const WAIT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<TcpStream>;

/// A Socket.IO v4 socket over WebSocket, connected to `/`. With `receive_buffer`, the TCP
/// receive buffer is set that small, so that a reader that stops reading is stuck sooner.
/// Tried again for a while: on Redis, the namespace exists once its channels are subscribed.
async fn open(server: &TestServer, token: &str, receive_buffer: Option<u32>) -> Ws {
    for _ in 0..100 {
        if let Some(ws) = try_open(server, token, receive_buffer).await {
            return ws;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("socket not connected");
}

async fn try_open(server: &TestServer, token: &str, receive_buffer: Option<u32>) -> Option<Ws> {
    let addr = server
        .base
        .strip_prefix("http://")
        .expect("http base")
        .parse()
        .expect("socket address");
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let tcp = socket.connect(addr).await.expect("connect");
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&token={token}",
        server.base.replace("http://", "ws://")
    );
    let request = url.into_client_request().expect("request");
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("websocket");
    let open = next_text(&mut ws).await?;
    assert!(open.starts_with('0'), "{open}");
    ws.send(Message::text("40")).await.ok()?;
    let connected = next_text(&mut ws).await?;
    connected.starts_with("40").then_some(ws)
}

/// The next text packet, pings answered on the way; None when the connection ended (closed,
/// reset, or cut in the middle of a frame).
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a packet within the wait")?;
        match message {
            Ok(Message::Text(text)) if text.as_str() == "2" => {
                let _ = ws.send(Message::text("3")).await;
            }
            Ok(Message::Text(text)) => return Some(text.as_str().to_owned()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Sends `event` with `payload` and ack id `id`; returns the ack's payload. Events that come
/// meanwhile go to `seen`.
async fn call(ws: &mut Ws, id: u32, event: &str, payload: Value, seen: &mut Vec<String>) -> Value {
    ws.send(Message::text(format!("42{id}{}", json!([event, payload]))))
        .await
        .expect("send");
    let prefix = format!("43{id}");
    loop {
        let packet = next_text(ws).await.expect("connection open");
        if let Some(ack) = packet.strip_prefix(&prefix) {
            let ack: Value = serde_json::from_str(ack).expect("ack JSON");
            return ack[0].clone();
        }
        seen.push(packet);
    }
}

/// The `seq` of a `/v1/im/new-message` event of `conversation`, if `packet` is one.
fn seq_of(packet: &str, conversation: i32) -> Option<i64> {
    let event: Value = serde_json::from_str(packet.strip_prefix("42")?).ok()?;
    if event[0] != "/v1/im/new-message" || event[1]["conversationId"] != conversation {
        return None;
    }
    event[1]["seq"].as_i64()
}

/// Whether `packet` says that user `user_id` went offline.
fn went_offline(packet: &str, user_id: i64) -> bool {
    let Some(event) = packet
        .strip_prefix("42")
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
    else {
        return false;
    };
    event[0] == "/v1/im/online" && event[1]["userId"] == user_id && event[1]["online"] == false
}

/// Joins the demo group's conversation; returns the seqs of messages that came meanwhile.
async fn join(ws: &mut Ws, conversation: i32) {
    let mut seen = Vec::new();
    let ack = call(
        ws,
        1,
        "/v1/im/join",
        json!({"conversationId": conversation}),
        &mut seen,
    )
    .await;
    assert_eq!(ack["conversationId"], conversation, "{ack}");
}

/// Reads a healthy socket until it has `expected.borrow()` messages (once known), or the wait
/// ends; tells `offline` when `watched` goes offline.
async fn read_all(
    mut ws: Ws,
    conversation: i32,
    mut expected: watch::Receiver<Option<usize>>,
    watched: Option<(i64, watch::Sender<bool>)>,
) -> Vec<i64> {
    let mut seqs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(total) = *expected.borrow_and_update()
            && seqs.len() >= total
        {
            return seqs;
        }
        assert!(Instant::now() < deadline, "reader still waiting");
        let packet = tokio::select! {
            packet = next_text(&mut ws) => packet.expect("a healthy reader stays connected"),
            _ = expected.changed() => continue,
        };
        if let Some(seq) = seq_of(&packet, conversation) {
            seqs.push(seq);
        } else if let Some((user_id, offline)) = &watched
            && went_offline(&packet, *user_id)
        {
            let _ = offline.send(true);
        }
    }
}

async fn user_id(server: &TestServer, username: &str) -> i64 {
    let mut conn = server.app.db.get().await.expect("connection");
    let user = im_server::store::accounts::find_user_by_username(&mut conn, username)
        .await
        .expect("lookup")
        .expect("demo user");
    i64::from(user.id)
}

/// `stalled_at` serves the stalled reader and a healthy one; `server` the sender and another
/// healthy reader (a friend of the stalled one, told when it goes offline).
async fn stalled_reader_is_dropped(server: &TestServer, stalled_at: &TestServer) {
    let group = {
        let mut conn = server.app.db.get().await.expect("connection");
        im_server::store::groups::find_group_by_name(
            &mut conn,
            im_server::domain::seed::DEMO_GROUPS[0],
        )
        .await
        .expect("lookup")
        .expect("demo group")
    };
    let conversation = group.conversation_id;
    let stalled_id = user_id(server, "member3").await;

    let mut sender = open(server, &server.session("member1").await.1, None).await;
    join(&mut sender, conversation).await;
    let (total_tx, total) = watch::channel(None);
    let (offline_tx, mut offline) = watch::channel(false);
    let mut friend = open(server, &server.session("user").await.1, None).await;
    join(&mut friend, conversation).await;
    let mut other = open(stalled_at, &stalled_at.session("member4").await.1, None).await;
    join(&mut other, conversation).await;
    let stalled_token = stalled_at.session("member3").await.1;
    let mut stalled = open(stalled_at, &stalled_token, Some(4096)).await;
    join(&mut stalled, conversation).await;
    let friend = tokio::spawn(read_all(
        friend,
        conversation,
        total.clone(),
        Some((stalled_id, offline_tx)),
    ));
    let other = tokio::spawn(read_all(other, conversation, total.clone(), None));

    // The stalled socket reads nothing from here on, while member1 sends, one message at a
    // time (so that the server broadcasts them in order), until member3 is said to be offline.
    let padding = "x".repeat(PADDING);
    let started = Instant::now();
    let mut sent = 0;
    let mut ignored = Vec::new();
    while !*offline.borrow_and_update() {
        assert!(sent < MAX_MESSAGES, "the stalled socket was never dropped");
        sent += 1;
        let body = json!({"type": "text", "msg": format!("{sent} {padding}")});
        let payload = json!({"type": "groupchat", "conversationId": conversation, "body": body});
        let ack = call(
            &mut sender,
            sent + 1,
            "/v1/im/new-message",
            payload,
            &mut ignored,
        )
        .await;
        assert_eq!(ack["seq"], sent, "{}", ack["seq"]);
        ignored.clear();
    }
    let sent = i64::from(sent);
    eprintln!(
        "stalled socket dropped after {sent} messages of {PADDING} bytes ({:?})",
        started.elapsed()
    );
    let _ = total_tx.send(Some(sent as usize));

    // Healthy readers lost nothing, and got everything in order.
    let all: Vec<i64> = (1..=sent).collect();
    for (who, reader) in [("friend", friend), ("other", other)] {
        let seqs = reader.await.expect("reader");
        assert_eq!(seqs, all, "{who} lost or reordered messages");
    }

    // The stalled socket now reads what reached it: a prefix, then the end of its connection.
    let mut received = Vec::new();
    while let Some(packet) = next_text(&mut stalled).await {
        if let Some(seq) = seq_of(&packet, conversation) {
            received.push(seq);
        }
    }
    let last = received.last().copied().unwrap_or(0);
    eprintln!("the stalled socket had received {last} of {sent} before its connection ended");
    assert_eq!(
        received,
        (1..=last).collect::<Vec<_>>(),
        "in order and without a gap"
    );
    assert!(
        last < sent,
        "the stalled socket did lose messages: the test overloaded it"
    );

    // Reconnected, it catches up with `since`.
    let mut again = open(stalled_at, &stalled_token, None).await;
    join(&mut again, conversation).await;
    let mut caught_up = received;
    let mut seen = Vec::new();
    for id in 2.. {
        let since = caught_up.last().copied().unwrap_or(0);
        if since == sent {
            break;
        }
        assert!(id < 1000, "catching up takes too many pages");
        let history = call(
            &mut again,
            id,
            "/v1/im/get-messages",
            json!({"conversationId": conversation, "since": since, "pageSize": 100}),
            &mut seen,
        )
        .await;
        let messages = history["messages"].as_array().expect("messages");
        assert!(!messages.is_empty(), "nothing after {since}: {history}");
        caught_up.extend(messages.iter().map(|m| m["seq"].as_i64().expect("seq")));
    }
    assert_eq!(caught_up, all, "what was missed is fetched with since");
}

async fn on_one_process(backend: Backend) {
    let server = TestServer::start(backend).await;
    stalled_reader_is_dropped(&server, &server).await;
}

/// The stalled reader on a second process: what reaches it comes through Redis.
async fn through_redis(backend: Backend) {
    let redis = redis_url();
    let prefix = unique_prefix();
    let first = TestServer::start_with(backend.clone(), Startup { demo: true }, |config| {
        config.redis_url = Some(redis.clone());
        config.redis_prefix = prefix.clone();
    })
    .await;
    let url = first.database_url.clone();
    let second = TestServer::start_with(backend, Startup { demo: true }, |config| {
        config.database_url = url;
        config.redis_url = Some(redis.clone());
        config.redis_prefix = prefix.clone();
    })
    .await;
    stalled_reader_is_dropped(&first, &second).await;
}

on_both_backends!(on_one_process);

/// Apart, since they need Redis as well: skipped with the other service-backed tests.
mod redis {
    use super::*;
    on_both_backends!(services: through_redis);
}
