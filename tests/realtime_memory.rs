//! Memory under abuse: many sockets sending oversized and deeply nested messages must not make
//! the server's memory grow with their number. Alone in its test binary, so that no other test's
//! server shares the process whose resident memory is measured.

mod common;

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

/// One round of abuse: sockets that each send one oversized or deeply nested message.
async fn abuse(url: &str, sockets: usize) {
    let deep = format!(
        r#"42["/v1/im/new-message",{}]"#,
        "[".repeat(60_000) + &"]".repeat(60_000)
    );
    let big = format!(r#"42["/v1/im/new-message","{}"]"#, "x".repeat(200 * 1024));
    for index in 0..sockets {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        let _ = ws.next().await;
        let _ = ws.send(WsMessage::text("40")).await;
        let packet = if index % 2 == 0 { &deep } else { &big };
        let _ = ws.send(WsMessage::text(packet.clone())).await;
        let _ = ws.close(None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_malformed_messages() {
    let Some(before_start) = resident_kib() else {
        eprintln!("no /proc/self/status: memory not measured");
        return;
    };
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
    abuse(&url, 30).await;
    let warm = resident_kib().unwrap_or(before_start);
    for _ in 0..3 {
        abuse(&url, 30).await;
    }
    let after = resident_kib().unwrap_or(warm);
    eprintln!("resident memory: {before_start} KiB at start, {warm} KiB warm, {after} KiB after");
    assert!(
        after.saturating_sub(warm) < 32 * 1024,
        "memory grew from {warm} KiB to {after} KiB over 90 abusive sockets"
    );
}
