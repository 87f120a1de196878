//! Logs hold no credential at any level: the real binary at the most verbose level, a socket
//! that authenticates with `auth.token` and sends a message; its whole output is then searched
//! for the token and the message.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use common::next_starting_with;

/// Every wait of this test is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

/// The server binary, its output collected line by line.
struct Server {
    child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `im-server serve --demo` with `RUST_LOG=rust_log` on a free loopback port.
    async fn start(rust_log: &str) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut child = Command::new(env!("CARGO_BIN_EXE_im-server"))
            .arg("serve")
            .arg("--demo")
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .env("IM_BIND", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("im.db").display()),
            )
            .env("IM_PUBLIC_DIR", dir.path().join("public"))
            .env("IM_ADMIN_PASSWORD", "admin-password")
            .env_remove("REDIS_URL")
            .env_remove("IM_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("im-server starts");
        let output = Arc::new(Mutex::new(String::new()));
        let (addr_tx, mut addr_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let mut readers = Vec::new();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let streams: [Box<dyn tokio::io::AsyncRead + Unpin + Send>; 2] =
            [Box::new(stdout), Box::new(stderr)];
        for stream in streams {
            let (output, addr_tx) = (output.clone(), addr_tx.clone());
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("im-server serving")
                        && let Some(addr) = line.split("url=http://").nth(1)
                    {
                        let addr = addr.split_whitespace().next().unwrap_or("");
                        let _ = addr_tx.send(addr.trim_end_matches('/').into());
                    }
                    let mut output = output.lock().expect("output");
                    output.push_str(&line);
                    output.push('\n');
                }
            }));
        }
        let addr = tokio::time::timeout(WAIT, addr_rx.recv())
            .await
            .expect("the server says where it serves in time")
            .expect("a `serving` line");
        Server {
            child,
            output,
            readers,
            base: format!("http://{addr}"),
            _dir: dir,
        }
    }

    /// Stops the server and returns everything it wrote.
    async fn stop(mut self) -> String {
        self.child.kill().await.expect("server stopped");
        for reader in self.readers.drain(..) {
            tokio::time::timeout(WAIT, reader)
                .await
                .expect("output read to its end in time")
                .expect("reader");
        }
        self.output.lock().expect("output").clone()
    }
}

/// Logs in as demo `user`, connects a WebSocket with `auth.token`, sends `text` to group
/// conversation 3 and waits for its ack. Returns the token.
async fn chat(server: &Server, text: &str) -> String {
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/login", server.base))
        .json(&json!({"username": "user", "password": "123456"}))
        .timeout(WAIT)
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("JSON");
    let token = reply["data"]["token"].as_str().expect("token").to_owned();
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        server.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("websocket");
    let open = next_starting_with(&mut ws, "0", WAIT).await;
    assert!(open.contains("sid"), "open packet: {open}");
    let connect = format!("40{}", json!({"token": token}));
    ws.send(WsMessage::text(connect)).await.expect("connect");
    let connected = next_starting_with(&mut ws, "40", WAIT).await;
    assert!(connected.contains("sid"), "connected: {connected}");
    let send = format!(
        r#"421["/v1/im/new-message",{}]"#,
        json!({"conversationId": 3, "body": {"type": "text", "msg": text}})
    );
    ws.send(WsMessage::text(send)).await.expect("send");
    let ack = next_starting_with(&mut ws, "431", WAIT).await;
    assert!(ack.contains(text), "the message was stored: {ack}");
    let _ = ws.close(None).await;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_verbose_log_holds_neither_token_nor_message() {
    let server = Server::start("trace").await;
    let text = "a-secret-message-body-7d1f";
    let token = chat(&server, text).await;
    let log = server.stop().await;
    eprintln!(
        "RUST_LOG=trace: {} lines, {} bytes of log",
        log.lines().count(),
        log.len()
    );
    // The level took: our own debug lines are there (nothing on this path logs at trace once
    // the packet-level libraries are held back).
    assert!(log.contains("DEBUG"), "debug lines logged");
    assert!(
        log.contains("batch of messages"),
        "the send was logged: {log:.2000}"
    );
    assert!(!log.contains(&token), "the session token was logged");
    assert!(!log.contains(text), "the message body was logged");
    assert!(
        !log.contains("socketioxide") && !log.contains("engineioxide"),
        "packet-level lines are off unless asked for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_asked_for_still_hide_the_handshake_token() {
    let server = Server::start("trace,socketioxide=trace,engineioxide=trace").await;
    let text = "an-asked-for-message-body-91c3";
    let token = chat(&server, text).await;
    let log = server.stop().await;
    eprintln!(
        "packets asked for: {} lines, {} bytes of log, {} redactions",
        log.lines().count(),
        log.len(),
        log.matches("[redacted]").count()
    );
    assert!(log.contains("auth:"), "the handshake's auth line is there");
    assert!(
        log.contains(text),
        "packets were asked for, and logged with their bodies"
    );
    assert!(!log.contains(&token), "the session token was logged");
    assert!(log.contains("[redacted]"), "it was redacted");
}
