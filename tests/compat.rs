//! The compatibility suite: the real npm client packages of the original IM clients
//! (socket.io-client 2.3.0 of the H5 client, socket.io-client 4, and weapp.socket.io of the
//! mini-programs over a `wx` shim) run the scenarios of `tests/compat/suite.js` against a server
//! started here, over WebSocket, long-polling and polling upgraded to WebSocket.
//!
//! Needs Node.js; `tests/compat/node_modules` is installed with `npm ci` when missing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Backend, TestServer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Every scenario of suite.js; `ban` and `muted` change the demo data for good, so they run last.
const ALL: &[&str] = &[
    "chat", "group", "auth", "foreign", "spoof", "invalid", "retry", "since", "devices", "robot",
    "muted", "ban",
];

/// Runs `scenarios` with one client over one transport against `server`, answering the
/// suite's hooks, and fails with the suite's output unless it exits 0.
async fn run_suite(server: &TestServer, client: &str, transport: &str, scenarios: &[&str]) {
    common::ensure_node_modules();
    let mut child = tokio::process::Command::new("node")
        .arg("suite.js")
        .arg(&server.base)
        .arg(client)
        .arg(transport)
        .args(scenarios)
        .current_dir(common::compat_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let mut output = String::new();
    let drive = async {
        while let Some(line) = stdout.next_line().await.expect("suite output") {
            if let Some(hook) = line.strip_prefix("@@hook ") {
                let (name, args) = hook.split_once(' ').unwrap_or((hook, "{}"));
                let args: Value = serde_json::from_str(args).expect("hook arguments");
                answer_hook(server, name, &args).await;
                stdin.write_all(b"done\n").await.expect("answer the hook");
                stdin.flush().await.expect("answer the hook");
            }
            output.push_str(&line);
            output.push('\n');
        }
        child.wait().await.expect("suite exits")
    };
    let status = tokio::time::timeout(Duration::from_secs(120), drive)
        .await
        .expect("the compatibility suite finishes within 2 minutes");
    let mut errors = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut errors)
        .await
        .expect("suite errors");
    assert!(
        status.success(),
        "{client}/{transport} failed:\n{output}\n{errors}"
    );
    for scenario in scenarios {
        assert!(
            output.contains(&format!("ok {client}/{transport}/{scenario} ")),
            "{scenario} did not run:\n{output}"
        );
    }
}

/// Changes the suite asks for behind the clients' backs, made through the admin routes as an
/// administrator would make them, so that what the clients see is what the routes do.
async fn answer_hook(server: &TestServer, name: &str, args: &Value) {
    let id = |key: &str| args[key].as_i64().expect("an id");
    let (route, body) = match name {
        "ban" => (
            "/api/v1/admin/users/disabled",
            json!({"id": id("userId"), "disabled": true}),
        ),
        "mute-user" => (
            "/api/v1/admin/users/mute",
            json!({"id": id("userId"), "mute": true}),
        ),
        "mute-group" => (
            "/api/v1/admin/groups/mute",
            json!({"id": id("groupId"), "mute": true}),
        ),
        "disable-group" => (
            "/api/v1/admin/groups/disabled",
            json!({"id": id("groupId"), "disabled": true}),
        ),
        other => panic!("unknown hook {other}"),
    };
    let admin = server.logged_in("admin").await;
    let reply = admin.put(route, &body).await;
    assert_eq!(reply["statusCode"], "0", "{name} through {route}: {reply}");
}

async fn sio2_websocket(backend: Backend) {
    let server = TestServer::start(backend).await;
    run_suite(&server, "sio2", "websocket", ALL).await;
}

async fn sio2_polling(backend: Backend) {
    let server = TestServer::start(backend).await;
    run_suite(
        &server,
        "sio2",
        "polling",
        &["chat", "group", "auth", "foreign", "since", "muted", "ban"],
    )
    .await;
}

async fn sio2_upgrade(backend: Backend) {
    let server = TestServer::start(backend).await;
    run_suite(&server, "sio2", "upgrade", &["chat", "devices", "retry"]).await;
}

async fn sio4_websocket(backend: Backend) {
    let server = TestServer::start(backend).await;
    run_suite(&server, "sio4", "websocket", ALL).await;
}

async fn sio4_polling(backend: Backend) {
    let server = TestServer::start(backend).await;
    run_suite(
        &server,
        "sio4",
        "polling",
        &["chat", "group", "auth", "spoof", "retry", "invalid", "ban"],
    )
    .await;
}

async fn sio4_upgrade(backend: Backend) {
    let server = TestServer::start(backend).await;
    run_suite(&server, "sio4", "upgrade", &["chat", "since", "robot"]).await;
}

async fn weapp_websocket(backend: Backend) {
    let server = TestServer::start(backend).await;
    run_suite(
        &server,
        "weapp",
        "websocket",
        &[
            "chat", "group", "auth", "foreign", "spoof", "retry", "since", "robot", "muted", "ban",
        ],
    )
    .await;
}

on_both_backends!(
    services:
    sio2_websocket,
    sio2_polling,
    sio2_upgrade,
    sio4_websocket,
    sio4_polling,
    sio4_upgrade,
    weapp_websocket,
);
