//! What an operator sets and does, through the real binary or a real server: the session
//! cookie's `Secure` attribute (`IM_COOKIE_SECURE`), session expiry (`IM_SESSION_TTL`, in memory
//! and in Redis), dates at a non-default `IM_TIMEZONE`, a graceful stop on SIGTERM, and the
//! per-socket packet queue that keeps a client that never reads from piling up memory. And, for
//! whoever runs the tests: a service that is not there fails a test, saying what to start.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Backend, TestServer, assert_refused, data, redis_url, unique_prefix};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// `im-server serve --demo` as a child process on its own SQLite database, its log read line by
/// line so that a test can wait for what it says.
struct ServerProcess {
    base: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the binary with `env` on top of the test defaults; returns once it is ready.
    async fn start(env: &[(&str, &str)]) -> ServerProcess {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free loopback port");
        let mut child = Command::new(env!("CARGO_BIN_EXE_im-server"))
            .args(["serve", "--demo"])
            .env("IM_BIND", format!("127.0.0.1:{port}"))
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("im.db").display()),
            )
            .env("IM_PUBLIC_DIR", dir.path().join("public"))
            .env("IM_ADMIN_PASSWORD", "admin-password")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("im-server starts");
        let (tx, lines) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        let mut server = ServerProcess {
            base: format!("http://127.0.0.1:{port}"),
            child,
            lines,
            log: Vec::new(),
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = http.get(server.url("/readyz")).send().await
                && response.status().is_success()
            {
                return server;
            }
            if Instant::now() > deadline || !matches!(server.child.try_wait(), Ok(None)) {
                server.drain();
                panic!(
                    "im-server did not become ready; its log:\n{}",
                    server.log.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Keeps what the server logged so far, for failure messages.
    fn drain(&mut self) {
        self.log.extend(self.lines.try_iter());
    }

    /// Waits for a log line containing `text`, for at most `limit`.
    fn wait_for_line(&mut self, text: &str, limit: Duration) {
        if self.log.iter().any(|line| line.contains(text)) {
            return;
        }
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {text:?} within {limit:?}; log:\n{}",
            self.log.join("\n")
        );
    }

    /// Sends `signal` (`TERM`, `INT`) to the process.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }

    /// The exit status once the process ended, for at most `limit`.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                self.drain();
                panic!(
                    "still running {limit:?} later; log:\n{}",
                    self.log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client with a cookie jar for a server process.
fn client(server: &ServerProcess) -> common::Client {
    common::Client {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("http client"),
        base: server.base.clone(),
    }
}

/// The `Set-Cookie` header of a log-in as `user`.
async fn login_cookie(base: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": "user", "password": "123456"}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .expect("a session cookie")
        .to_owned()
}

fn has_attribute(cookie: &str, attribute: &str) -> bool {
    cookie
        .split(';')
        .any(|part| part.trim().eq_ignore_ascii_case(attribute))
}

/// `IM_COOKIE_SECURE=true` marks the session cookie `Secure`; by default it is not, so that a
/// server reached over plain HTTP (as in development) keeps its sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_secure_marks_the_session_cookie() {
    let secure = ServerProcess::start(&[("IM_COOKIE_SECURE", "true")]).await;
    let cookie = login_cookie(&secure.base).await;
    assert!(has_attribute(&cookie, "Secure"), "{cookie}");
    assert!(has_attribute(&cookie, "HttpOnly"), "{cookie}");

    let plain = TestServer::start(Backend::Sqlite).await;
    let cookie = login_cookie(&plain.base).await;
    assert!(!has_attribute(&cookie, "Secure"), "{cookie}");
    assert!(has_attribute(&cookie, "HttpOnly"), "{cookie}");
}

/// The shortest session lifetime the server accepts, in seconds.
const SHORT_TTL: u64 = 60;

/// A session lives `IM_SESSION_TTL` seconds after its last use: one used every 40 s outlives
/// the lifetime, one left unused for a lifetime is gone (the client is asked to log in).
async fn sessions_live_a_ttl_after_their_last_use(server: &ServerProcess) {
    let (used, unused) = (client(server), client(server));
    data(&used.login("user", "123456").await);
    data(&unused.login("member1", "123456").await);
    let logged_in = Instant::now();
    assert_eq!(data(&unused.get("/api/v1/currentUser").await)["id"], 5);
    let unused_since = Instant::now();
    let use_every = Duration::from_secs(SHORT_TTL * 2 / 3);
    for round in 1..=2 {
        tokio::time::sleep_until((logged_in + use_every * round).into()).await;
        assert_eq!(
            data(&used.get("/api/v1/currentUser").await)["id"],
            2,
            "a session in use, {:?} after its log-in",
            logged_in.elapsed()
        );
    }
    // The second use came a lifetime and a third after the log-in: the uses kept it alive.
    assert!(logged_in.elapsed() > Duration::from_secs(SHORT_TTL));
    assert!(unused_since.elapsed() > Duration::from_secs(SHORT_TTL + 2));
    assert_refused(&unused.get("/api/v1/currentUser").await, "1", "请登录");
}

/// Sessions in memory expire `IM_SESSION_TTL` seconds after their last use (takes 80 s: a
/// minute is the shortest lifetime the server accepts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_in_memory_expire_after_the_ttl() {
    let server = ServerProcess::start(&[("IM_SESSION_TTL", &SHORT_TTL.to_string())]).await;
    sessions_live_a_ttl_after_their_last_use(&server).await;
}

/// Sessions in Redis expire the same way, Redis keeping the lifetime on the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(im_skip_services, ignore = "needs Redis: IM_TEST_SKIP_SERVICES is set")]
async fn sessions_in_redis_expire_after_the_ttl() {
    let redis = redis_url();
    let prefix = unique_prefix();
    let server = ServerProcess::start(&[
        ("IM_SESSION_TTL", &SHORT_TTL.to_string()),
        ("REDIS_URL", &redis),
        ("IM_REDIS_PREFIX", &prefix),
    ])
    .await;
    sessions_live_a_ttl_after_their_last_use(&server).await;
}

/// `IM_TIMEZONE` sets the offset at which dates are shown: a demo friend, created at start-up,
/// shows its creation time as now at -05:30, not at the default +08:00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_are_shown_at_the_configured_offset() {
    let server = ServerProcess::start(&[("IM_TIMEZONE", "-05:30")]).await;
    let browser = client(&server);
    data(&browser.login("user", "123456").await);
    let friends = data(&browser.get("/api/v1/friend").await).clone();
    let created = friends[0]["createdAt"].as_str().expect("createdAt");
    let shown = chrono::NaiveDateTime::parse_from_str(created, "%Y-%m-%d %H:%M:%S")
        .expect("YYYY-MM-DD HH:mm:ss");
    let expected = chrono::Utc::now().naive_utc() - chrono::Duration::minutes(5 * 60 + 30);
    let off_by = (shown - expected).num_seconds().abs();
    // Created within the last minutes; +08:00 would be 13.5 hours off.
    assert!(
        off_by < 600,
        "createdAt {created} is {off_by} s from now at -05:30 ({expected})"
    );
}

/// SIGTERM: the server stops taking work, lets the request in flight finish (its answer is
/// whole and right), and exits with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let mut server = ServerProcess::start(&[]).await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let body = r#"{"username":"user","password":"123456"}"#;
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    // The head with `Expect: 100-continue`: the server says "100 Continue" once the handler
    // reads the body, so the request is in flight when the signal comes.
    let head = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head sent");
    let mut continued = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut continued))
        .await
        .expect("100 Continue within 10 s")
        .expect("100 Continue");
    assert!(
        continued.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&continued)
    );

    server.signal("TERM");
    server.wait_for_line("shutting down", Duration::from_secs(10));
    // New connections are no longer served...
    let refused = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
        .get(server.url("/healthz"))
        .send()
        .await;
    assert!(refused.is_err(), "served after SIGTERM: {refused:?}");
    // ...but the request in flight is answered in full.
    stream.write_all(body.as_bytes()).await.expect("body sent");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("answered within 10 s")
        .expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = answer.split("\r\n\r\n").nth(1).expect("a body");
    let reply: Value = serde_json::from_str(json).expect("JSON");
    assert!(data(&reply)["token"].is_string(), "{reply}");

    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}

/// Messages that a socket which never reads is sent.
const FLOOD: usize = 320;
/// Sends the flooding client has unanswered at most.
const WINDOW: usize = 16;
/// Packets the server queues for one socket (src/realtime/mod.rs, MAX_BUFFERED_PACKETS).
const QUEUE_LIMIT: usize = 256;

/// A long-polling socket that never polls gets at most the queue's worth of packets kept for
/// it, its sender is not held up, and once its queue is full it is dropped rather than left open
/// losing messages: it reads what was queued for it, each message once, then its session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_reads_is_dropped_after_a_bounded_queue() {
    // The flood is far above what a person sends: message rate limits, where the server has
    // them, are off for it (a variable the server does not know is ignored).
    let server = ServerProcess::start(&[
        ("IM_LIMIT_MESSAGE_SOCKET", "off"),
        ("IM_LIMIT_MESSAGE_USER", "off"),
    ])
    .await;
    let token = |reply: &Value| data(reply)["token"].as_str().expect("token").to_owned();
    let member3 = token(&client(&server).login("member3", "123456").await);
    let user = token(&client(&server).login("user", "123456").await);

    // member3's long-polling socket: connected, then left unread.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = server.url(&format!(
        "/socket.io/?EIO=4&transport=polling&token={member3}"
    ));
    let handshake = http.get(&base).send().await.expect("handshake");
    let text = handshake.text().await.expect("handshake body");
    let open: Value =
        serde_json::from_str(text.strip_prefix('0').expect("open packet")).expect("open JSON");
    let polling = format!("{base}&sid={}", open["sid"].as_str().expect("sid"));
    let post = |payload: &'static str| {
        let request = http.post(&polling).body(payload);
        async move {
            let response = request.send().await.expect("post");
            assert!(response.status().is_success(), "{}", response.status());
        }
    };
    let poll = || {
        let request = http.get(&polling);
        async move {
            let response = request.send().await.expect("poll");
            assert!(response.status().is_success(), "{}", response.status());
            response.text().await.expect("payload")
        }
    };
    // Polls until a packet starts with `prefix`, answering pings on the way.
    let until = async |prefix: &str| {
        for _ in 0..10 {
            let payload = poll().await;
            for packet in payload.split('\u{1e}') {
                if packet == "2" {
                    post("3").await;
                } else if packet.starts_with(prefix) {
                    return;
                }
            }
        }
        panic!("no packet starting with {prefix}");
    };
    post("40").await;
    until("40{").await;
    post(r#"421["/v1/im/join",{"conversationId":3}]"#).await;
    until("431[").await;

    // user floods their conversation with member3 (3) over WebSocket; every send is answered.
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&token={user}",
        server.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    ws.send(WsMessage::text("40")).await.expect("CONNECT");
    // Events sent before CONNECT is answered find no socket, and the server closes the transport.
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("CONNECT answered")
            .expect("socket open")
            .expect("message");
        if message.to_text().is_ok_and(|text| text.starts_with("40")) {
            break;
        }
    }
    // The sender reads as it sends, at most WINDOW sends unanswered, as a client does: its own
    // socket's queue (acks and echoes) must not be what overflows. Every send is acknowledged
    // and its broadcast reaches user's own socket (it follows the send to every device of the
    // sender): by then it was offered to member3's.
    let started = Instant::now();
    let (mut sent, mut acks, mut echoes) = (0, 0, 0);
    while acks < FLOOD || echoes < FLOOD {
        if sent < FLOOD && sent - acks < WINDOW {
            let packet = format!(
                r#"42{sent}["/v1/im/new-message",{{"conversationId":3,"body":{{"type":"text","msg":"flood {sent}"}}}}]"#
            );
            ws.send(WsMessage::text(packet)).await.expect("send");
            sent += 1;
            continue;
        }
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the flood is answered")
            .expect("socket open")
            .expect("message");
        let Ok(text) = message.to_text() else {
            continue;
        };
        if text == "2" {
            ws.send(WsMessage::text("3")).await.expect("pong");
        } else if text.starts_with("43") {
            assert!(text.contains(r#""seq":"#), "refused: {text:.200}");
            acks += 1;
        } else if text.starts_with(r#"42["/v1/im/new-message""#) {
            echoes += 1;
        }
    }
    let flood_time = started.elapsed();

    // Now member3 reads what was kept for it, then the end of its session (a Socket.IO
    // DISCONNECT or an Engine.IO close, or the session unknown).
    let mut received = Vec::new();
    let mut ended = false;
    'reading: for _ in 0..20 {
        let response = http.get(&polling).send().await.expect("poll");
        if !response.status().is_success() {
            ended = true;
            break;
        }
        let payload = response.text().await.expect("payload");
        for packet in payload.split('\u{1e}') {
            if packet.starts_with(r#"42["/v1/im/new-message""#) {
                let at = packet.find("flood ").expect("a flood message") + "flood ".len();
                let n: usize = packet[at..]
                    .split('"')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("its number");
                received.push(n);
            } else if packet == "2" {
                post("3").await;
            } else if packet == "41" || packet == "1" {
                ended = true;
                break 'reading;
            }
        }
    }
    eprintln!(
        "{FLOOD} messages sent in {flood_time:?}; the socket that never read was kept {} before \
         it was dropped",
        received.len()
    );
    assert!(
        received.len() <= QUEUE_LIMIT,
        "{} packets queued for one socket, more than {QUEUE_LIMIT}",
        received.len()
    );
    // The queue is the configured one, not socketioxide's default of 128 (a ping may take a
    // place or two).
    assert!(
        received.len() >= QUEUE_LIMIT - 8,
        "only {} kept",
        received.len()
    );
    // Sent WINDOW at a time, the flood is stored in no fixed order, so what was read can only
    // be checked for being the flood's, each message once (tests/slow_sockets.rs checks order
    // and gaps with a sender that waits for each ack).
    let distinct: std::collections::BTreeSet<usize> = received.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        received.len(),
        "a message twice: {received:?}"
    );
    assert!(distinct.iter().all(|n| *n < FLOOD), "{received:?}");
    assert!(ended, "the socket whose queue filled was not dropped");
}

/// Nothing listens on port 1 of the loopback: where the harness looks for a service that is not
/// there, the test fails (it does not return early and pass), and says what to start and how
/// to skip on purpose.
#[test]
#[should_panic(expected = "Redis is not reachable at redis://127.0.0.1:1")]
fn a_missing_redis_fails_the_test() {
    common::require_redis("redis://127.0.0.1:1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "PostgreSQL is not reachable at postgres://postgres@127.0.0.1:1")]
async fn a_missing_postgres_fails_the_test() {
    common::new_pg_database("postgres://postgres@127.0.0.1:1").await;
}

#[test]
#[should_panic(expected = "IM_TEST_SKIP_SERVICES=1")]
fn the_failure_says_how_to_skip() {
    common::require_redis("redis://127.0.0.1:1");
}
