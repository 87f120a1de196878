//! `im-server import`: the original's MariaDB database moved into ours (SQLite and PostgreSQL)
//! by the real binary, then used through HTTP and Socket.IO as the original's clients would.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use common::original::{OriginalDb, at};
use common::{Backend, TestServer};
use diesel::QueryableByName;
use diesel::sql_types::{Integer, Text};
use diesel_async::RunQueryDsl;
use futures_util::SinkExt;
use im_server::app::Startup;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

on_both_backends!(services:
    demo_import_keeps_logins_lists_and_histories,
    odd_rows_are_mended_or_skipped_and_named,
    a_target_with_data_is_refused,
    a_dry_run_writes_nothing,
    a_failure_part_way_leaves_the_target_as_it_was,
);

/// Runs `im-server import` into `database_url` with `args`.
fn import(database_url: &str, from: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_im-server"))
        .arg("import")
        .args(["--from", from])
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("RUST_LOG")
        .output()
        .expect("im-server runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "import failed: {}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// A target database of `backend` that im-server has started once (built-in roles, `admin`),
/// stopped again; answers its URL and the directory that holds it.
async fn started_once(backend: &Backend) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = common::new_database(backend, &dir).await;
    TestServer::start_at(
        backend.clone(),
        url.clone(),
        tempfile::tempdir().expect("dir"),
        Startup { demo: false },
        |_| {},
    )
    .await
    .stop_keeping_database();
    (url, dir)
}

#[derive(QueryableByName, Debug, PartialEq, Eq, Clone)]
struct Id {
    #[diesel(sql_type = Integer)]
    id: i32,
}

#[derive(QueryableByName, Debug)]
struct SourceMessage {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = Integer)]
    from_id: i32,
    #[diesel(sql_type = Integer)]
    to_id: i32,
    #[diesel(sql_type = Text)]
    created_at: String,
}

async fn source_ids(db: &OriginalDb, sql: &str) -> Vec<i32> {
    let mut conn = db.conn().await;
    let rows: Vec<Id> = diesel::sql_query(sql).load(&mut conn).await.expect(sql);
    rows.into_iter().map(|r| r.id).collect()
}

/// A Socket.IO connection (Engine.IO 4 over WebSocket) with the session of `token`.
async fn socket(
    server: &TestServer,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&scene=im&token={token}",
        server.base.replace("http://", "ws://")
    );
    let request = url.as_str().into_client_request().expect("request");
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket");
    common::next_starting_with(&mut ws, "0", Duration::from_secs(5)).await;
    ws.send(WsMessage::text("40")).await.expect("connect");
    common::next_starting_with(&mut ws, "40", Duration::from_secs(5)).await;
    ws
}

/// The whole history of `conversation`, newest first, as `/v1/im/get-messages` acks it.
async fn history<S>(ws: &mut S, ack: u32, conversation: i32) -> Value
where
    S: futures_util::Sink<WsMessage>
        + futures_util::StreamExt<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
    <S as futures_util::Sink<WsMessage>>::Error: std::fmt::Debug,
{
    let packet = format!(
        r#"42{ack}["/v1/im/get-messages",{{"conversationId":{conversation},"pageSize":100,"pageNumber":1}}]"#
    );
    ws.send(WsMessage::text(packet)).await.expect("emit");
    let reply = common::next_starting_with(ws, &format!("43{ack}"), Duration::from_secs(5)).await;
    let payload: Value =
        serde_json::from_str(&reply[format!("43{ack}").len()..]).expect("ack JSON");
    payload[0].clone()
}

async fn demo_import_keeps_logins_lists_and_histories(backend: Backend) {
    let source = OriginalDb::create().await;
    source.write_demo().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = common::new_database(&backend, &dir).await;
    let output = import(&url, &source.url(), &[]);
    let report = succeeded(&output);
    assert!(report.contains("every row imported as it was"), "{report}");
    // Not a terminal: plain progress lines on standard error, no bar.
    let progress = text(&output.stderr);
    assert!(
        progress.contains("import: messages: 20 rows to read"),
        "{progress}"
    );
    assert!(
        progress.contains("import: messages: 20 rows read in"),
        "{progress}"
    );
    assert!(
        report.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["messages", "20", "20", "0", "0"]),
        "{report}"
    );

    let server = TestServer::start_at(backend, url, dir, Startup { demo: false }, |_| {}).await;
    // The old password, hashed the original's way, logs in.
    let client = server.client();
    let login = client.login("user", "123456").await;
    let me = common::data(&login);
    assert_eq!(me["id"], 2);
    assert_eq!(me["userInfo"]["nickname"], "user");
    assert_eq!(me["userInfo"]["sign"], "念念不忘，必有回响~");
    let wrong = client.login("member5", "654321").await;
    assert_eq!(wrong["statusCode"], "1", "{wrong}");

    // The same friends, groups and conversations, in the same order as the original's
    // (newest updatedAt first).
    let friends = client.get("/api/v1/friend").await;
    let friend_ids: BTreeSet<i64> = common::data(&friends)
        .as_array()
        .expect("friends")
        .iter()
        .map(|f| f["id"].as_i64().expect("id"))
        .collect();
    let source_friends: BTreeSet<i64> = source_ids(
        &source,
        "SELECT CASE WHEN user_id = 2 THEN friend_id ELSE user_id END AS id FROM friends \
         WHERE user_id = 2 OR friend_id = 2",
    )
    .await
    .into_iter()
    .map(i64::from)
    .collect();
    assert_eq!(friend_ids, source_friends);
    assert_eq!(friend_ids.len(), 26);

    let groups = client.get("/api/v1/groups").await;
    let group_ids: Vec<i64> = common::data(&groups)
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(group_ids, [1, 2]);

    let listed = client.get("/api/v1/conversations").await;
    let listed: Vec<i32> = common::data(&listed)
        .as_array()
        .expect("conversations")
        .iter()
        .map(|c| c["id"].as_i64().expect("id") as i32)
        .collect();
    let expected = source_ids(
        &source,
        "SELECT c.id FROM conversations c WHERE c.active AND (c.id IN (SELECT conversation_id \
         FROM friends WHERE user_id = 2 OR friend_id = 2) OR c.id IN (SELECT g.conversation_id \
         FROM `groups` g JOIN user_group ug ON ug.group_id = g.id WHERE ug.user_id = 2 AND NOT g.disabled)) \
         ORDER BY c.updated_at DESC, c.id DESC",
    )
    .await;
    assert_eq!(listed, expected);
    assert_eq!(&listed[..3], [27, 3, 1]);

    // Histories over Socket.IO: the same messages, newest first, times shown as the original
    // showed them (its wall clock, +08:00 being also our default display zone).
    let token = me["token"].as_str().expect("token").to_owned();
    let mut ws = socket(&server, &token).await;
    for (n, conversation) in [3, 27, 1].into_iter().enumerate() {
        let got = history(&mut ws, n as u32, conversation).await;
        let mut conn = source.conn().await;
        let rows: Vec<SourceMessage> = diesel::sql_query(format!(
            "SELECT id, CAST(body AS CHAR) AS body, from_id, to_id, \
             DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s') AS created_at FROM messages \
             WHERE conversation_id = {conversation} ORDER BY created_at DESC, id DESC"
        ))
        .load(&mut conn)
        .await
        .expect("source messages");
        assert_eq!(got["count"], rows.len(), "{got}");
        let messages = got["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), rows.len());
        for (m, row) in messages.iter().zip(&rows) {
            assert_eq!(m["id"], row.id);
            assert_eq!(m["fromId"], row.from_id);
            assert_eq!(m["toId"], row.to_id);
            assert_eq!(m["conversationId"], conversation);
            assert_eq!(m["createdAt"], row.created_at.as_str());
            assert_eq!(
                m["body"],
                serde_json::from_str::<Value>(&row.body).expect("JSON")
            );
        }
    }
    // Sending goes on after the imported history: the next seq, a new id.
    ws.send(WsMessage::text(
        r#"429["/v1/im/new-message",{"type":"chat","conversationId":3,"fromId":2,"toId":7,"body":{"type":"text","msg":"after the move"}}]"#,
    ))
    .await
    .expect("send");
    let ack = common::next_starting_with(&mut ws, "439", Duration::from_secs(5)).await;
    let ack: Value = serde_json::from_str(&ack[3..]).expect("ack");
    assert_eq!(ack[0]["seq"], 13, "{ack}");
    assert_eq!(ack[0]["id"], 21, "{ack}");

    // The others log in too, and the admin is the original's.
    for name in ["admin", "member30", "muteuser"] {
        server.logged_in(name).await;
    }
    let banned = server.client().login("disabled", "123456").await;
    assert_eq!(banned["errorMessage"], "不具备登录权限", "{banned}");
    let applies = client.get("/api/v1/applies").await;
    assert_eq!(common::data(&applies)["count"], 3);
    // A new user gets the next id.
    let signup = server
        .client()
        .post(
            "/api/v1/signup",
            &json!({"username": "newcomer", "password": "123456"}),
        )
        .await;
    assert_eq!(common::data(&signup)["id"], 35, "{signup}");
}

async fn odd_rows_are_mended_or_skipped_and_named(backend: Backend) {
    let source = OriginalDb::create().await;
    source.write_demo().await;
    // Rows a long-running original can hold: written with the checks off, as deletions
    // without cascades, MyISAM tables or hand edits leave them.
    source
        .run_sql(&format!(
            "SET SESSION foreign_key_checks = 0; SET SESSION check_constraint_checks = 0;
             INSERT INTO conversations (id, type, active, created_at, updated_at) VALUES
               (29, 'chat', 1, '{t}', '{t}'), (30, NULL, 1, '{t}', '{t}');
             -- a duplicate friendship (user-disabled again, reversed) with its own conversation
             INSERT INTO friends (id, user_id, friend_id, created_at, updated_at, conversation_id)
               VALUES (27, 3, 2, '{t}', '{t}', 29),
             -- a friendship whose conversation was deleted, one reversed, one of a deleted user
                      (28, 31, 5, '{t}', '{t}', NULL), (29, 999, 5, '{t}', '{t}', 30);
             INSERT INTO messages (id, body, from_id, to_id, created_at, updated_at, conversation_id) VALUES
               (101, '{{\"type\":\"text\",\"msg\":\"lost\"}}', 2, 3, '{t}', '{t}', NULL),
               (102, '{{\"type\":\"text\",\"msg\":\"nowhere\"}}', 2, 3, '{t}', '{t}', 777),
               (103, '{{\"type\":\"text\",\"msg\":\"ghost\"}}', 999, 2, '{t}', '{t}', 1),
               (104, 'plain words', 2, 3, '{late}', '{late}', 1),
               (105, '{{\"type\":\"text\",\"msg\":\"in the duplicate\"}}', 3, 2, '{late2}', '{late2}', 29),
               (106, '{{\"type\":\"text\",\"msg\":\"early\"}}', 3, 2, '{early}', '{early}', 1);
             INSERT INTO user_group (created_at, updated_at, group_id, user_id) VALUES
               ('{t}', '{t}', 1, 999), ('{t}', '{t}', 9, 2);
             INSERT INTO user_infos (id, nickname, photo, created_at, updated_at, user_id) VALUES
               (50, 'orphan', NULL, '{t}', '{t}', NULL);
             INSERT INTO applies (id, type, from_id, to_id, has_handled, created_at, updated_at, user_id) VALUES
               (4, 'user', 5, 2, 0, '{t}', '{t}', 2);",
            t = at(500),
            late = at(600),
            late2 = at(601),
            early = at(0),
        ))
        .await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = common::new_database(&backend, &dir).await;
    let report = succeeded(&import(&url, &source.url(), &[]));
    for expected in [
        "messages: 1 skipped — no conversation (deleted in the original) (e.g. 101)",
        "messages: 1 skipped — conversation does not exist (e.g. 102)",
        "messages: 1 skipped — sender no longer exists (e.g. 103)",
        "messages: 1 mended — body not JSON: kept as a text message (e.g. 104)",
        "user_group: 1 skipped — member no longer exists (e.g. 1)",
        "user_group: 1 skipped — group not imported (e.g. 9)",
        "friends: 1 skipped — duplicate friendship: its messages join the first one's (e.g. 27)",
        "friends: 1 skipped — a user of it no longer exists (e.g. 29)",
        "friends: 1 mended — ids in reverse order: smaller one first (e.g. 28)",
        "friends: 1 mended — no conversation (deleted): a new, empty one (e.g. 28)",
        "conversations: 1 mended — no or unknown type: chat (e.g. 30)",
        "user_infos: 1 skipped — profile of no (imported) user (e.g. 50)",
        "applies: 1 mended — a second open apply for the same target: marked handled (e.g. 4)",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in\n{report}"
        );
    }
    let row = |table: &str| {
        report
            .lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .map(|n| n.parse::<u64>().expect("number"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|| panic!("no row for {table} in\n{report}"))
    };
    // read, written, mended, skipped
    assert_eq!(row("messages"), [26, 23, 1, 3]);
    assert_eq!(row("friends"), [29, 27, 2, 2]);
    assert_eq!(row("user_group"), [28, 26, 0, 2]);

    // Conversation 1 holds its history, the duplicate's message, and the mended one, numbered
    // in time order: the early one first.
    let server = TestServer::start_at(backend, url, dir, Startup { demo: false }, |_| {}).await;
    let login = server.client().login("user", "123456").await;
    let token = common::data(&login)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut ws = socket(&server, &token).await;
    let got = history(&mut ws, 1, 1).await;
    let listed: Vec<(i64, Value)> = got["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["id"].as_i64().expect("id"), m["body"]["msg"].clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (105, json!("in the duplicate")),
            (104, json!("plain words")),
            (3, json!("c1 m2 你好")),
            (2, json!("c1 m1 你好")),
            (1, json!("c1 m0 你好")),
            (106, json!("early")),
        ]
    );
    let mut conn = server.app.db.get().await.expect("connection");
    let seqs = im_server::store::messages::page_newest_first(&mut conn, 1, 10, 0)
        .await
        .expect("messages");
    assert_eq!(
        seqs.iter().map(|m| (m.id, m.seq)).collect::<Vec<_>>(),
        [(105, 6), (104, 5), (3, 4), (2, 3), (1, 2), (106, 1)]
    );
    // member1 (5) and 31's friendship was mended: it has a conversation of its own.
    let member1 = server.logged_in("member1").await;
    let friends = member1.get("/api/v1/friend").await;
    let friends = common::data(&friends).as_array().expect("friends").clone();
    assert_eq!(friends.len(), 1, "{friends:?}");
    assert_eq!(friends[0]["id"], 31);
    assert!(friends[0]["conversation"]["id"].as_i64().expect("id") > 30);
}

/// A source that is not a MySQL URL, or cannot be reached, is one clear line, and the target is
/// left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_unreachable_source_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("im.db").display());
    let output = import(&url, "postgres://127.0.0.1/im", &[]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("--from must be a mysql:// URL"),
        "{}",
        text(&output.stderr)
    );
    assert!(!dir.path().join("im.db").exists(), "nothing was created");

    // Nothing listens on port 1.
    let output = import(&url, "mysql://root:secret@127.0.0.1:1/im", &[]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("cannot connect to the original's database"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the password stays out of the message: {stderr}"
    );
    assert!(
        !dir.path().join("im.db").exists(),
        "the target was not touched"
    );
}

/// Row counts of the target's tables, to see that nothing changed.
async fn census(url: &str) -> Vec<(String, i64)> {
    let db = im_server::store::Db::connect(url, 1, None).expect("database");
    let mut conn = db.get().await.expect("connection");
    let mut counts = Vec::new();
    for table in [
        "users",
        "user_infos",
        "user_roles",
        "roles",
        "rights",
        "role_rights",
        "conversations",
        "friends",
        "groups",
        "messages",
        "applies",
    ] {
        counts.push((
            table.to_owned(),
            im_server::store::import::count_rows(&mut conn, table)
                .await
                .expect("count"),
        ));
    }
    counts
}

async fn a_target_with_data_is_refused(backend: Backend) {
    let source = OriginalDb::create().await;
    source.write_demo().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = common::new_database(&backend, &dir).await;
    TestServer::start_at(
        backend.clone(),
        url.clone(),
        tempfile::tempdir().expect("dir"),
        Startup { demo: true },
        |_| {},
    )
    .await
    .stop_keeping_database();
    let before = census(&url).await;
    let output = import(&url, &source.url(), &[]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("the target database is not empty"),
        "{stderr}"
    );
    assert!(stderr.contains("26 friends"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(census(&url).await, before);
    common::drop_database(&backend, &url);
}

async fn a_dry_run_writes_nothing(backend: Backend) {
    let source = OriginalDb::create().await;
    source.write_demo().await;
    let (url, _dir) = started_once(&backend).await;
    let before = census(&url).await;
    let report = succeeded(&import(&url, &source.url(), &["--dry-run"]));
    assert!(
        report.contains("dry run: rolled back, nothing written"),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["users", "34", "34", "0", "0"]),
        "{report}"
    );
    assert_eq!(census(&url).await, before);
    // And the real run afterwards replaces the bootstrap admin.
    let report = succeeded(&import(&url, &source.url(), &[]));
    assert!(report.contains("bootstrap `admin`"), "{report}");
    common::drop_database(&backend, &url);
}

async fn a_failure_part_way_leaves_the_target_as_it_was(backend: Backend) {
    let source = OriginalDb::create().await;
    source.write_demo().await;
    // A zero date, which MariaDB keeps when its SQL mode lets it and no date type can hold:
    // reading fails at the messages, after the users, groups and friendships are written.
    source
        .run_sql(&format!(
            "SET SESSION sql_mode = ''; INSERT INTO messages (id, body, from_id, to_id, created_at, updated_at, conversation_id) \
             VALUES (500, '{{\"type\":\"text\",\"msg\":\"x\"}}', 2, 3, '0000-00-00 00:00:00', '{t}', 1)",
            t = at(0)
        ))
        .await;
    let (url, _dir) = started_once(&backend).await;
    let before = census(&url).await;
    let output = import(&url, &source.url(), &["--batch", "7"]);
    assert!(!output.status.success(), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("reading messages from the original's database failed"),
        "{stderr}"
    );
    assert_eq!(census(&url).await, before);
    // The bootstrap admin is still there and still logs in.
    let server = TestServer::start_at(backend, url, _dir, Startup { demo: false }, |_| {}).await;
    let admin = server.client().login("admin", "admin-password").await;
    assert_eq!(admin["statusCode"], "0", "{admin}");
}

/// Messages of the scale test; `IM_TEST_IMPORT_MESSAGES` may ask for another number.
const MILLION: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a million messages take minutes in a debug build: run with --release (BENCHMARKS.md)"]
async fn sqlite_a_million_messages_in_flat_memory() {
    a_million_messages_in_flat_memory(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a million messages take minutes in a debug build: run with --release (BENCHMARKS.md)"]
async fn postgres_a_million_messages_in_flat_memory() {
    a_million_messages_in_flat_memory(Backend::postgres()).await
}

/// The peak resident memory of process `pid` so far (VmHWM), in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Imports a generated history of a million messages and checks that the import process never
/// held more than 100 MB; prints how long it took (the figures of BENCHMARKS.md).
async fn a_million_messages_in_flat_memory(backend: Backend) {
    let messages = std::env::var("IM_TEST_IMPORT_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MILLION);
    let source = OriginalDb::create().await;
    let generating = std::time::Instant::now();
    source.write_large(2_000, messages).await;
    eprintln!(
        "generated {messages} messages in {:.1} s",
        generating.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = common::new_database(&backend, &dir).await;
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_im-server"))
        .args(["import", "--from", &source.url()])
        .env("DATABASE_URL", &url)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("im-server runs");
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed().as_secs_f64();
    let output = child.wait_with_output().expect("output");
    assert!(status.success(), "{}", text(&output.stderr));
    let report = text(&output.stdout);
    eprintln!("{report}");
    eprintln!(
        "{backend:?}: {messages} messages imported in {elapsed:.1} s ({:.0} messages/s), peak RSS {:.1} MB",
        messages as f64 / elapsed,
        (peak * 1024) as f64 / 1e6
    );
    assert!(
        report
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "messages",
                    &messages.to_string(),
                    &messages.to_string(),
                    "0",
                    "0"
                ]),
        "{report}"
    );
    assert!(peak > 0, "VmHWM was read");
    assert!(
        peak * 1024 < 100_000_000,
        "peak RSS {peak} KiB is over 100 MB"
    );

    // Every conversation's history is numbered 1..n without a gap.
    let db = im_server::store::Db::connect(&url, 1, None).expect("database");
    let mut conn = db.get().await.expect("connection");
    let last = im_server::store::messages::page_newest_first(&mut conn, 1, 1, 0)
        .await
        .expect("messages");
    let count = im_server::store::messages::count_in_conversation(&mut conn, 1)
        .await
        .expect("count");
    assert_eq!(last[0].seq, count);
    drop(conn);
    drop(db);
    common::drop_database(&backend, &url);
}
