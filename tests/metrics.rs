//! `GET /metrics` (docs/operations.md): real traffic (log-ins that pass and fail, REST calls,
//! unknown paths, Socket.IO clients on WebSocket and long-polling with an upgrade, messages,
//! refused events), then a scrape in Prometheus' text format whose counters must have moved by
//! exactly what was done. Also `IM_METRICS_BIND` and the build-info series of the binary.
//!
//! The metrics recorder is one per process, so the in-process servers of this file take turns
//! (`SERIAL`): another test's traffic would move the same counters.

mod common;

use std::time::Duration;

use common::scrape::{Scrape, scrape, scrape_until, scrape_url};
use common::{Backend, TestServer};
use futures_util::SinkExt;
use im_server::app::Startup;
use im_server::domain::limits::parse_rate;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a frame, an ack or a gauge may take to show.
const WAIT: Duration = Duration::from_secs(15);
/// Messages the WebSocket client sends; the socket's rate limit allows exactly these.
const MESSAGES: usize = 5;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Socket.IO client over WebSocket (Engine.IO 4), connected to namespace `/`.
async fn websocket(server: &TestServer, token: &str) -> Ws {
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&token={token}",
        server.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket");
    common::next_starting_with(&mut ws, "0", WAIT).await;
    ws.send(WsMessage::text("40")).await.expect("CONNECT");
    common::next_starting_with(&mut ws, "40{", WAIT).await;
    ws
}

/// Emits `event` with ack `id` and returns the ack's payload.
async fn emit(ws: &mut Ws, id: u32, event: &str, payload: Value) -> Value {
    let packet = format!("42{id}{}", json!([event, payload]));
    ws.send(WsMessage::text(packet)).await.expect("emit");
    let ack = common::next_starting_with(ws, &format!("43{id}["), WAIT).await;
    let body: Value = serde_json::from_str(&ack[format!("43{id}").len()..]).expect("ack is JSON");
    body[0].clone()
}

/// A Socket.IO client on Engine.IO 4 long-polling, connected to `/`; returns its polling URL and
/// its `sid`.
async fn polling(server: &TestServer, token: &str) -> (String, String) {
    let http = reqwest::Client::new();
    let base = server.url(&format!(
        "/socket.io/?EIO=4&transport=polling&token={token}"
    ));
    let open = http.get(&base).send().await.expect("handshake");
    let open = open.text().await.expect("handshake body");
    let handshake: Value =
        serde_json::from_str(open.strip_prefix('0').expect("open packet")).expect("JSON");
    let sid = handshake["sid"].as_str().expect("sid").to_owned();
    let url = format!("{base}&sid={sid}");
    let posted = http.post(&url).body("40").send().await.expect("CONNECT");
    assert!(posted.status().is_success());
    // The CONNECT answer, maybe after a ping (answered).
    for _ in 0..5 {
        let payload = http.get(&url).send().await.expect("poll");
        let payload = payload.text().await.expect("poll body");
        if payload
            .split('\u{1e}')
            .any(|packet| packet.starts_with("40{"))
        {
            return (url, sid);
        }
        if payload.split('\u{1e}').any(|packet| packet == "2") {
            http.post(&url).body("3").send().await.expect("pong");
        }
    }
    panic!("no CONNECT answer on long-polling")
}

/// An Engine.IO 3 long-polling socket (connected to `/` by its handshake); returns its polling
/// URL.
async fn v3_polling(server: &TestServer, token: &str) -> String {
    let base = server.url(&format!(
        "/socket.io/?EIO=3&transport=polling&token={token}"
    ));
    let open = reqwest::get(&base).await.expect("handshake");
    let open = open.text().await.expect("handshake body");
    // `<length>:0{...}`, maybe followed by the namespace's `40`.
    let start = open.find("0{").expect("open packet") + 1;
    let end = start + open[start..].find('}').expect("end of handshake") + 1;
    let handshake: Value = serde_json::from_str(&open[start..end]).expect("handshake JSON");
    format!("{base}&sid={}", handshake["sid"].as_str().expect("sid"))
}

/// Upgrades the long-polling socket `sid` to WebSocket (Engine.IO 4's probe).
async fn upgrade(server: &TestServer, token: &str, sid: &str) -> Ws {
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&token={token}&sid={sid}",
        server.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket");
    ws.send(WsMessage::text("2probe")).await.expect("probe");
    common::next_starting_with(&mut ws, "3probe", WAIT).await;
    ws.send(WsMessage::text("5")).await.expect("upgrade");
    ws
}

fn sockets_open(page: &Scrape, engineio: &str, transport: &str) -> f64 {
    page.get(
        "im_sockets_open",
        &[("engineio", engineio), ("transport", transport)],
    )
}

const LOGIN: &[(&str, &str)] = &[
    ("route", "/api/v1/login"),
    ("method", "POST"),
    ("status", "200"),
];

/// Every kind of traffic, and the exact amount each counter moved.
async fn traffic_moves_the_counters(backend: Backend) {
    let _turn = SERIAL.lock().await;
    let server = TestServer::start_with(backend, Startup { demo: true }, |config| {
        config.limits.message_socket = parse_rate(&format!("{MESSAGES}/1h")).expect("rate");
    })
    .await;
    let before = scrape(&server).await;
    assert!(
        before.has(
            "im_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", im_server::telemetry::COMMIT)
            ]
        ),
        "{}",
        before.text
    );

    for counter in [
        "im_messages_stored_total",
        "im_message_batch_failures_total",
        "im_sockets_dropped_total",
    ] {
        assert!(before.has(counter, &[]), "{counter} from the start");
    }

    // REST: 3 log-ins (2 right, 1 wrong password: the envelope's failure is HTTP 200 too), 3
    // reads of one route with different ids, 2 unknown paths.
    let user = server.client();
    assert_eq!(user.login("user", "123456").await["statusCode"], "0");
    assert_eq!(
        user.login("user", "wrong-password").await["statusCode"],
        "1"
    );
    let user_token = server.session("user").await.1;
    for id in [1, 2, 12345] {
        user.get(&format!("/api/v1/groups/{id}")).await;
    }
    for path in ["/api/v1/no-such-thing/4242", "/no-such-page-4242"] {
        let response = user.http.get(server.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), 404, "{path}");
    }
    let member_token = server.session("member3").await.1;
    // An upload, then the file it made: its route is the folder's, not the file's name.
    let file = user.upload_png().await;
    let fetched = user.http.get(server.url(&file)).send().await.expect("GET");
    assert_eq!(fetched.status(), 200, "{file}");
    let file_name = file.rsplit('/').next().expect("file name").to_owned();

    let after_rest = scrape(&server).await;
    assert_eq!(
        after_rest.delta(&before, "im_http_requests_total", LOGIN),
        4.0
    );
    assert_eq!(
        after_rest.delta(
            &before,
            "im_http_requests_total",
            &[
                ("route", "/api/v1/groups/{id}"),
                ("method", "GET"),
                ("status", "200")
            ]
        ),
        3.0
    );
    assert_eq!(
        after_rest.delta(
            &before,
            "im_http_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ),
        2.0
    );
    assert_eq!(
        after_rest.delta(
            &before,
            "im_http_request_duration_seconds_count",
            &[("route", "/api/v1/login"), ("method", "POST")]
        ),
        4.0
    );
    for (route, method) in [("/api/v1/upload", "POST"), ("/public/upload/{file}", "GET")] {
        assert_eq!(
            after_rest.delta(
                &before,
                "im_http_requests_total",
                &[("route", route), ("method", method), ("status", "200")]
            ),
            1.0,
            "{route}"
        );
    }
    assert!(!after_rest.text.contains(&file_name), "{}", after_rest.text);
    // Paths and ids are never labels; scrapes are not counted.
    assert!(!after_rest.text.contains("4242"), "{}", after_rest.text);
    assert!(!after_rest.text.contains("12345"), "{}", after_rest.text);
    assert!(!after_rest.text.contains("/metrics"), "{}", after_rest.text);

    // Socket.IO: two WebSockets of one session, one long-polling socket of another user.
    let mut first = websocket(&server, &user_token).await;
    let mut second = websocket(&server, &user_token).await;
    let (_, sid) = polling(&server, &member_token).await;
    let connected = scrape(&server).await;
    assert_eq!(sockets_open(&connected, "4", "websocket"), 2.0);
    assert_eq!(sockets_open(&connected, "4", "polling"), 1.0);
    assert_eq!(sockets_open(&connected, "3", "websocket"), 0.0);
    assert_eq!(sockets_open(&connected, "3", "polling"), 0.0);
    assert_eq!(connected.get("im_online_users", &[]), 2.0);
    assert_eq!(connected.get("im_online_sessions", &[]), 2.0);
    let opens = |engineio, transport| {
        connected.delta(
            &before,
            "im_socket_opens_total",
            &[("engineio", engineio), ("transport", transport)],
        )
    };
    assert_eq!(opens("4", "websocket"), 2.0);
    assert_eq!(opens("4", "polling"), 1.0);

    // The long-polling socket upgrades to WebSocket.
    let mut upgraded = upgrade(&server, &member_token, &sid).await;
    let after_upgrade = scrape_until(&server, "the upgrade", |page| {
        sockets_open(page, "4", "websocket") == 3.0
    })
    .await;
    assert_eq!(sockets_open(&after_upgrade, "4", "polling"), 0.0);
    assert_eq!(
        after_upgrade.delta(&before, "im_socket_upgrades_total", &[("engineio", "4")]),
        1.0
    );

    // An Engine.IO 3 client (socket.io-client 2) on long-polling: its handshake connects it to
    // `/` by itself; its close packet (`1`, framed `1:1`) ends it.
    let v3_token = server.session("member4").await.1;
    let v3 = v3_polling(&server, &v3_token).await;
    let v3_open = scrape_until(&server, "the Engine.IO 3 socket", |page| {
        sockets_open(page, "3", "polling") == 1.0
    })
    .await;
    let v3_labels = [("engineio", "3"), ("transport", "polling")];
    assert_eq!(
        v3_open.delta(&before, "im_socket_opens_total", &v3_labels),
        1.0
    );
    let closing = reqwest::Client::new().post(&v3).body("1:1").send().await;
    assert!(closing.expect("close packet").status().is_success());
    scrape_until(&server, "the Engine.IO 3 socket closing", |page| {
        sockets_open(page, "3", "polling") == 0.0
            && page.delta(&before, "im_socket_closes_total", &v3_labels) == 1.0
    })
    .await;

    // Events: a join that passes and one that is refused, MESSAGES messages, one more refused by
    // the socket's rate limit, one history read.
    let joined = emit(&mut first, 1, "/v1/im/join", json!({"conversationId": 27})).await;
    assert_eq!(joined, json!({"conversationId": 27}));
    let refused = emit(
        &mut first,
        2,
        "/v1/im/join",
        json!({"conversationId": 999_999}),
    )
    .await;
    assert_eq!(refused["statusCode"], "1", "{refused}");
    for n in 0..MESSAGES {
        let ack = emit(
            &mut first,
            10 + n as u32,
            "/v1/im/new-message",
            json!({
                "type": "groupchat", "toId": 1, "conversationId": 27,
                "body": {"type": "text", "msg": format!("metrics {n}")}
            }),
        )
        .await;
        assert!(ack["id"].is_number(), "message {n}: {ack}");
    }
    let limited = emit(
        &mut first,
        99,
        "/v1/im/new-message",
        json!({
            "type": "groupchat", "toId": 1, "conversationId": 27,
            "body": {"type": "text", "msg": "one too many"}
        }),
    )
    .await;
    assert_eq!(
        limited["errorMessage"], "操作过于频繁，请稍后再试",
        "{limited}"
    );
    let history = emit(
        &mut second,
        1,
        "/v1/im/get-messages",
        json!({"conversationId": 27, "pageSize": 1}),
    )
    .await;
    assert_eq!(history["conversationId"], 27, "{history}");

    let events = scrape(&server).await;
    let event = |name, outcome| {
        events.delta(
            &before,
            "im_socketio_events_total",
            &[("event", name), ("outcome", outcome)],
        )
    };
    assert_eq!(event("/v1/im/join", "ok"), 1.0);
    assert_eq!(event("/v1/im/join", "refused"), 1.0);
    assert_eq!(event("/v1/im/new-message", "ok"), MESSAGES as f64);
    assert_eq!(event("/v1/im/new-message", "refused"), 1.0);
    assert_eq!(event("/v1/im/get-messages", "ok"), 1.0);
    assert_eq!(event("/v1/im/new-message", "error"), 0.0);
    assert_eq!(
        events.delta(
            &before,
            "im_socketio_event_duration_seconds_count",
            &[("event", "/v1/im/new-message")]
        ),
        MESSAGES as f64 + 1.0
    );
    assert_eq!(
        events.delta(&before, "im_messages_stored_total", &[]),
        MESSAGES as f64
    );
    // Each message is in exactly one batch.
    assert_eq!(
        events.delta(&before, "im_message_batch_size_sum", &[]),
        MESSAGES as f64
    );
    let batches = events.delta(&before, "im_message_batch_size_count", &[]);
    assert!((1.0..=MESSAGES as f64).contains(&batches), "{batches}");
    assert_eq!(
        events.delta(&before, "im_message_batch_commit_seconds_count", &[]),
        batches
    );
    assert_eq!(
        events.delta(
            &before,
            "im_rate_limit_refusals_total",
            &[("limit", "message_socket")]
        ),
        1.0
    );

    // The pool: read from the pool itself, so a connection held here shows as in use.
    let held = server.app.db.get().await.expect("a connection");
    let pool = scrape(&server).await;
    assert_eq!(pool.get("im_db_pool_max_size", &[]), 8.0);
    assert!(pool.get("im_db_pool_in_use", &[]) >= 1.0, "{}", pool.text);
    assert!(pool.get("im_db_pool_size", &[]) >= pool.get("im_db_pool_in_use", &[]));
    assert_eq!(pool.get("im_db_pool_waiting", &[]), 0.0);
    drop(held);

    // Every socket closes: the gauges go back to 0.
    for ws in [&mut first, &mut second, &mut upgraded] {
        ws.close(None).await.expect("close");
    }
    let closed = scrape_until(&server, "the sockets closing", |page| {
        sockets_open(page, "4", "websocket") == 0.0
            && page.delta(
                &before,
                "im_socket_closes_total",
                &[("engineio", "4"), ("transport", "websocket")],
            ) == 3.0
    })
    .await;
    assert_eq!(sockets_open(&closed, "4", "polling"), 0.0);
    assert_eq!(closed.get("im_online_users", &[]), 0.0);
    assert_eq!(closed.get("im_online_sessions", &[]), 0.0);
}

/// With Redis configured, the page says whether it answers.
async fn redis_is_reported(backend: Backend) {
    let _turn = SERIAL.lock().await;
    let redis = common::redis_url();
    let prefix = common::unique_prefix();
    let server = TestServer::start_with(backend, Startup { demo: true }, |config| {
        config.redis_url = Some(redis);
        config.redis_prefix = prefix;
    })
    .await;
    let page = scrape(&server).await;
    assert_eq!(page.get("im_redis_up", &[]), 1.0, "{}", page.text);
    assert_eq!(page.get("im_redis_publish_errors_total", &[]), 0.0);
}

on_both_backends!(traffic_moves_the_counters);

mod with_redis {
    use super::*;
    on_both_backends!(services: redis_is_reported);
}

/// The binary with only `env` (and `PATH`), in `dir`.
fn binary(dir: &std::path::Path, env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_im-server"));
    command.current_dir(dir).env_clear().kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(env.iter().copied());
    command
}

/// `im-server --version`: `im-server <version> (<commit>)`; returns the commit.
async fn version_commit(dir: &std::path::Path) -> String {
    let output = binary(dir, &[])
        .arg("--version")
        .output()
        .await
        .expect("im-server --version");
    assert!(output.status.success());
    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let prefix = format!("im-server {} (", env!("CARGO_PKG_VERSION"));
    line.strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("--version: {line:?}"))
        .to_owned()
}

/// The commit `git` names for this checkout, if this is one and git runs.
fn git_head() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// With `IM_METRICS_BIND`, `/metrics` is served on that port alone and the main port answers
/// 404 for it; the page's build-info series names what `--version` names.
#[tokio::test]
async fn metrics_on_their_own_port_name_the_build() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let commit = version_commit(dir.path()).await;
    if let Some(head) = git_head() {
        // Built from this checkout: its HEAD, clean or not.
        assert!(
            commit == head || commit == format!("{head}-dirty"),
            "--version names {commit}, HEAD is {head}"
        );
    }
    let mut child = binary(
        dir.path(),
        &[
            ("IM_LOG_FORMAT", "json"),
            ("IM_METRICS_BIND", "127.0.0.1:0"),
            ("IM_ADMIN_PASSWORD", "admin-password"),
        ],
    )
    .args(["serve", "--bind", "127.0.0.1:0"])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::inherit())
    .spawn()
    .expect("im-server serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let summary = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("log line") {
            if line.contains("im-server serving") {
                return serde_json::from_str::<Value>(&line).expect("JSON log line");
            }
        }
        panic!("im-server ended before serving");
    })
    .await
    .expect("start-up summary in time");
    let fields = &summary["fields"];
    assert_eq!(fields["commit"], commit.as_str(), "{summary}");
    let main = fields["url"].as_str().expect("url").to_owned();
    let metrics = fields["metrics"].as_str().expect("metrics url").to_owned();
    assert!(
        !metrics.starts_with(&main),
        "metrics on another port: {metrics}"
    );

    let on_main = reqwest::get(format!("{main}metrics")).await.expect("GET");
    assert_eq!(on_main.status(), 404);
    let page = scrape_url(&metrics).await;
    assert_eq!(
        page.get(
            "im_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", commit.as_str())
            ]
        ),
        1.0,
        "{}",
        page.text
    );
    assert_eq!(page.get("im_db_pool_max_size", &[]), 16.0);
    // Only the page on that port.
    let home = metrics.replace("/metrics", "/");
    let other = reqwest::get(home).await.expect("GET");
    assert_eq!(other.status(), 404);
    // The main port still serves, and its requests are counted on the other one.
    let health = reqwest::get(format!("{main}healthz")).await.expect("GET");
    assert_eq!(health.status(), 200);
    let page = scrape_url(&metrics).await;
    assert_eq!(
        page.get(
            "im_http_requests_total",
            &[("route", "/healthz"), ("method", "GET"), ("status", "200")]
        ),
        1.0
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
}
