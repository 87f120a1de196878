//! Memory under abuse: many sockets sending oversized and deeply nested messages must not make
//! the server's memory grow with their number. Alone in its test binary, so that no other test's
//! server shares the process whose resident memory is measured.

mod common;

use std::time::Duration;

use common::{Backend, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The resident memory of this process (the server runs in it), in KiB, where /proc tells.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// What the server did with one abusive socket's message.
#[derive(Debug, Default)]
struct Outcome {
    /// Sockets closed by the server (an oversized message must close its socket).
    closed: usize,
    /// Sockets that still answered an event afterwards.
    answered: usize,
}

/// One round of abuse: sockets that each send one oversized or deeply nested message. Every
/// socket must be let in, and then either be closed by the server or still answer: nothing hangs.
async fn abuse(url: &str, sockets: usize) -> Outcome {
    let deep = format!(
        r#"42["/v1/im/new-message",{}]"#,
        "[".repeat(60_000) + &"]".repeat(60_000)
    );
    let big = format!(r#"42["/v1/im/new-message","{}"]"#, "x".repeat(200 * 1024));
    let mut outcome = Outcome::default();
    for index in 0..sockets {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        let open = next_text(&mut ws).await.expect("open packet");
        assert!(open.starts_with('0'), "open packet: {open}");
        ws.send(WsMessage::text("40")).await.expect("CONNECT sent");
        loop {
            let packet = next_text(&mut ws).await.expect("CONNECT answered");
            if packet.starts_with("40") {
                break;
            }
            assert_eq!(packet, "2", "only a ping may come before CONNECT's answer");
        }
        let oversized = index % 2 == 1;
        let packet = if oversized { &big } else { &deep };
        ws.send(WsMessage::text(packet.clone()))
            .await
            .expect("abusive message sent");
        // An event with an ack: answered if the socket survived the message, else the close.
        let _ = ws
            .send(WsMessage::text(
                r#"421["/v1/im/get-messages",{"conversationId":3}]"#,
            ))
            .await;
        let answer = loop {
            match next_text(&mut ws).await {
                Some(packet) if packet.starts_with("431") => break Some(packet),
                Some(_) => continue,
                None => break None,
            }
        };
        match answer {
            Some(packet) => {
                assert!(
                    !oversized,
                    "an oversized message left its socket open: {packet:.100}"
                );
                assert!(packet.contains(r#""conversationId":3"#), "{packet:.200}");
                outcome.answered += 1;
                ws.close(None).await.expect("close");
            }
            None => outcome.closed += 1,
        }
    }
    outcome
}

/// The next text message, or None once the server closed the socket; fails after 10 s.
async fn next_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server answers or closes within 10 s");
        match message {
            Some(Ok(WsMessage::Text(text))) => return Some(text.to_string()),
            Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "measures resident memory in /proc (Linux only)"
)]
async fn memory_stays_bounded_under_malformed_messages() {
    let before_start = resident_kib().expect("/proc/self/status tells the resident memory");
    let server = TestServer::start(Backend::Sqlite).await;
    let login: serde_json::Value = reqwest::Client::new()
        .post(server.url("/api/v1/login"))
        .json(&json!({"username": "user", "password": "123456"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("JSON");
    let token = login["data"]["token"].as_str().expect("token");
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&token={token}",
        server.base.replace("http://", "ws://")
    );
    // The first round warms allocator arenas and buffers up; later rounds must not add to them.
    let first = abuse(&url, 30).await;
    let warm = resident_kib().expect("measured at start");
    let mut total = first;
    for _ in 0..3 {
        let round = abuse(&url, 30).await;
        total.closed += round.closed;
        total.answered += round.answered;
    }
    let after = resident_kib().expect("measured at start");
    eprintln!(
        "resident memory: {before_start} KiB at start, {warm} KiB warm, {after} KiB after; \
         {total:?}"
    );
    // Half the sockets sent an oversized message, and each of those was closed.
    assert!(total.closed >= 60, "{total:?}");
    assert_eq!(total.closed + total.answered, 120, "{total:?}");
    assert!(
        after.saturating_sub(warm) < 32 * 1024,
        "memory grew from {warm} KiB to {after} KiB over 120 abusive sockets"
    );
}
