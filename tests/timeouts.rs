//! Time limits, through the real transports: with IM_DB_TIMEOUT or IM_REDIS_TIMEOUT at 1 s, a
//! locked database (SQLite: another connection's `BEGIN EXCLUSIVE`; PostgreSQL: a table locked
//! `ACCESS EXCLUSIVE`) or a frozen Redis turns a REST call and a Socket.IO send into a prompt
//! `服务暂时不可用`, and everything works again once the stall ends. A send whose event ran out of
//! time (IM_EVENT_TIMEOUT) while its batch waited is stored all the same, delivered to the room
//! once, and its retry with the same `clientMsgId` answers that message: one row.
//!
//! A PostgreSQL frozen (SIGSTOP) while a REST call's statement runs on it acts on none of its
//! own timeouts: the call is answered at IM_REQUEST_TIMEOUT, which does not count the time a
//! slow client takes to send its body.
//!
//! Each case moves `im_timeouts_total{what}` of its own kind (database, redis, event, request)
//! by exactly the calls that ran out, and no other kind. The metrics recorder is one per test
//! process, so the tests that count take turns (`SERIAL`).
//!
//! "Prompt" is [`PROMPT`]: the 1 s limit plus room for a loaded machine, well under what the
//! same stalls cost without the limits (SQLite's 5 s busy timeout; PostgreSQL and Redis: until
//! the stall ends).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{PrivatePostgres, PrivateRedis};
use common::scrape::{Scrape, scrape};
use common::{Backend, Client, TestServer, next_starting_with, unique_prefix};
use diesel::connection::SimpleConnection;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::SinkExt;
use im_server::app::Startup;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const UNAVAILABLE: &str = "服务暂时不可用，请稍后再试";
const NEW_MESSAGE: &str = "/v1/im/new-message";
const JOIN: &str = "/v1/im/join";
const GET_MESSAGES: &str = "/v1/im/get-messages";
/// Demo conversation 3: the chat of `user` and `member3`, without messages.
const CHAT: i32 = 3;
/// How soon a call that ran out of a 1 s limit must be answered.
const PROMPT: Duration = Duration::from_secs(3);
/// Every other wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(20);

/// Held by each test that counts `im_timeouts_total`, so that no other test of this file moves
/// it meanwhile.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every `what` of `im_timeouts_total`.
const LIMITED: [&str; 4] = ["database", "redis", "event", "request"];

/// Asserts that from `before` to a scrape now, `im_timeouts_total{what}` moved by the number
/// `expected` gives for `what`, and every other kind not at all.
#[track_caller]
fn assert_timed_out(before: &Scrape, after: &Scrape, expected: &[(&str, f64)]) {
    for what in LIMITED {
        let moved = after.delta(before, "im_timeouts_total", &[("what", what)]);
        let wanted = expected
            .iter()
            .find(|(kind, _)| *kind == what)
            .map_or(0.0, |(_, count)| *count);
        assert_eq!(
            moved, wanted,
            "im_timeouts_total{{what=\"{what}\"}} moved by {moved}, not {wanted}:\n{}",
            after.text
        );
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Socket.IO client over WebSocket, spoken by hand, that asks for an ack with every event.
struct Socket {
    ws: Ws,
    next_ack: u64,
}

impl Socket {
    /// Connects with `token`, retrying while the namespace is not registered yet (with Redis it
    /// is registered once the adapter's channels are subscribed).
    async fn open(server: &TestServer, token: &str) -> Socket {
        let url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            server.base.replace("http://", "ws://")
        );
        let deadline = Instant::now() + WAIT;
        loop {
            let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
                .await
                .expect("handshake in time")
                .expect("websocket");
            next_starting_with(&mut ws, "0", WAIT).await;
            ws.send(WsMessage::text(format!("40{}", json!({ "token": token }))))
                .await
                .expect("connect");
            let answer = next_starting_with(&mut ws, "4", WAIT).await;
            if answer.starts_with("40") {
                return Socket { ws, next_ack: 1 };
            }
            assert!(Instant::now() < deadline, "socket refused: {answer}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Emits `event` with `payload` and returns the first argument of its ack.
    async fn ask(&mut self, event: &str, payload: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        let packet = format!("42{id}{}", json!([event, payload]));
        self.ws
            .send(WsMessage::text(packet))
            .await
            .expect("event sent");
        let prefix = format!("43{id}");
        let ack = next_starting_with(&mut self.ws, &format!("{prefix}["), WAIT).await;
        let args: Value = serde_json::from_str(&ack[prefix.len()..]).expect("ack is JSON");
        args[0].clone()
    }

    /// The next message delivered to this socket by `/v1/im/new-message`.
    async fn delivered(&mut self) -> Value {
        let prefix = format!("42[\"{NEW_MESSAGE}\"");
        let packet = next_starting_with(&mut self.ws, &prefix, WAIT).await;
        let args: Value = serde_json::from_str(&packet[2..]).expect("event is JSON");
        args[1].clone()
    }
}

/// A REST call and how long its answer took: its status and envelope.
async fn timed(request: reqwest::RequestBuilder) -> (Duration, u16, Value) {
    let started = Instant::now();
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("an answer in time")
        .expect("an answer");
    let status = response.status().as_u16();
    let reply: Value = response.json().await.expect("JSON answer");
    (started.elapsed(), status, reply)
}

/// `PUT /conversations/active` of the chat: a read and a write of `conversations`.
async fn touch_chat(client: &Client) -> (Duration, u16, Value) {
    let url = format!("{}/api/v1/conversations/active", client.base);
    timed(client.http.put(url).json(&json!({ "id": CHAT }))).await
}

/// A send of `text` to the chat and how long its ack took.
async fn send(socket: &mut Socket, text: &str, client_msg_id: Option<&str>) -> (Duration, Value) {
    let mut payload = json!({"conversationId": CHAT, "body": {"type": "text", "msg": text}});
    if let Some(id) = client_msg_id {
        payload["clientMsgId"] = json!(id);
    }
    let started = Instant::now();
    let ack = socket.ask(NEW_MESSAGE, payload).await;
    (started.elapsed(), ack)
}

#[track_caller]
fn assert_prompt(took: Duration, what: &str) {
    eprintln!("{what}: answered after {took:?}");
    assert!(took < PROMPT, "{what} answered after {took:?}");
}

/// The Socket.IO answer of an event that found a service unavailable.
fn unavailable(event: &str) -> Value {
    json!({"event": event, "statusCode": "1", "errorMessage": UNAVAILABLE, "data": null})
}

/// Another client of the test's database holding a lock: SQLite's write lock (`BEGIN
/// EXCLUSIVE`; readers go on, as WAL lets them), or on PostgreSQL `table` locked against any
/// use.
enum Lock {
    Sqlite(diesel::SqliteConnection),
    Postgres(Box<AsyncPgConnection>),
}

impl Lock {
    async fn take(server: &TestServer, table: &str) -> Lock {
        match &server.backend {
            Backend::Sqlite => {
                let path = im_server::store::sqlite_path(&server.database_url);
                let mut conn = <diesel::SqliteConnection as diesel::Connection>::establish(path)
                    .expect("SQLite file opens");
                conn.batch_execute("BEGIN EXCLUSIVE")
                    .expect("write lock taken");
                Lock::Sqlite(conn)
            }
            Backend::Postgres(_) => {
                let mut conn = AsyncPgConnection::establish(&server.database_url)
                    .await
                    .expect("database reachable");
                conn.batch_execute(&format!(
                    "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
                ))
                .await
                .expect("table locked");
                Lock::Postgres(Box::new(conn))
            }
        }
    }

    async fn release(self) {
        match self {
            Lock::Sqlite(mut conn) => conn.batch_execute("ROLLBACK").expect("lock released"),
            Lock::Postgres(mut conn) => {
                conn.batch_execute("ROLLBACK").await.expect("lock released")
            }
        }
    }
}

async fn a_locked_database_is_unavailable_at_once_then_recovers(backend: Backend) {
    let _serial = SERIAL.lock().await;
    let sqlite = matches!(backend, Backend::Sqlite);
    let server = TestServer::start_with(backend, Startup { demo: true }, |config| {
        config.db_timeout_secs = 1;
    })
    .await;
    let (client, token) = server.session("user").await;
    let mut socket = Socket::open(&server, &token).await;
    let (_, status, reply) = touch_chat(&client).await;
    assert_eq!(
        (status, &reply["statusCode"]),
        (200, &json!("0")),
        "{reply}"
    );

    let before = scrape(&server).await;
    let logged_before = warnings().len();
    let lock = Lock::take(&server, "conversations").await;
    let (took, status, reply) = touch_chat(&client).await;
    assert_eq!(status, 503, "{reply}");
    common::assert_refused(&reply, "1", UNAVAILABLE);
    assert_prompt(took, "a REST call");
    let (took, ack) = send(&mut socket, "while locked", None).await;
    assert_eq!(ack, unavailable(NEW_MESSAGE));
    assert_prompt(took, "a send");
    // One warning for the failed send, its event's refusal with the cause; the message writer,
    // whose batch failed with it, does not say it again.
    let logged = warnings()[logged_before..].to_owned();
    assert_eq!(
        logged
            .lines()
            .filter(|line| line.contains(NEW_MESSAGE))
            .count(),
        1,
        "{logged}"
    );
    assert!(!logged.contains("batch of messages"), "{logged}");
    if sqlite {
        // Readiness writes a row: a locked SQLite is unready within the same limit.
        let (took, status, reply) = timed(client.http.get(server.url("/readyz"))).await;
        assert_eq!(status, 503, "{reply}");
        assert_eq!(reply["database"], "unavailable", "{reply}");
        assert_prompt(took, "/readyz");
    }
    // The REST call, the send and (SQLite) the readiness write: one database call each.
    let calls = if sqlite { 3.0 } else { 2.0 };
    assert_timed_out(&before, &scrape(&server).await, &[("database", calls)]);

    lock.release().await;
    let (_, status, reply) = touch_chat(&client).await;
    assert_eq!(
        (status, &reply["statusCode"]),
        (200, &json!("0")),
        "{reply}"
    );
    let (_, ack) = send(&mut socket, "after the lock", None).await;
    assert_eq!(ack["body"]["msg"], "after the lock", "{ack}");
    assert_eq!(ack["seq"], 1, "the failed send took no number: {ack}");
    let (_, status, reply) = timed(client.http.get(server.url("/readyz"))).await;
    assert_eq!(status, 200, "{reply}");
}

async fn a_send_that_ran_out_of_time_is_stored_once(backend: Backend) {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start_with(backend, Startup { demo: true }, |config| {
        // The event gives up long before the database does: the batch goes on, and commits
        // once the lock is gone.
        config.event_timeout_secs = 1;
        config.db_timeout_secs = 15;
    })
    .await;
    let (_, token) = server.session("user").await;
    let mut sender = Socket::open(&server, &token).await;
    let (_, token) = server.session("member3").await;
    let mut recipient = Socket::open(&server, &token).await;
    let joined = recipient.ask(JOIN, json!({ "conversationId": CHAT })).await;
    assert_eq!(joined, json!({ "conversationId": CHAT }));

    let before = scrape(&server).await;
    let lock = Lock::take(&server, "messages").await;
    let (took, ack) = send(&mut sender, "sent once", Some("retry-me")).await;
    assert_eq!(ack, unavailable(NEW_MESSAGE));
    assert_prompt(took, "a send past IM_EVENT_TIMEOUT");
    lock.release().await;

    // The client could not know, but the message was stored: the room gets it.
    let delivered = recipient.delivered().await;
    assert_eq!(delivered["body"]["msg"], "sent once", "{delivered}");
    assert_eq!(delivered["seq"], 1, "{delivered}");
    // The retry answers the stored message, not a second one.
    let (_, retried) = send(&mut sender, "sent once", Some("retry-me")).await;
    assert_eq!(retried, delivered);
    let history = sender
        .ask(GET_MESSAGES, json!({ "conversationId": CHAT }))
        .await;
    assert_eq!(history["count"], 1, "stored once: {history}");
    assert_eq!(history["messages"][0]["id"], delivered["id"], "{history}");
    // The event ran out, not the database call, which waited for the lock and then went on.
    assert_timed_out(&before, &scrape(&server).await, &[("event", 1.0)]);
}

on_both_backends!(
    a_locked_database_is_unavailable_at_once_then_recovers,
    a_send_that_ran_out_of_time_is_stored_once,
);

/// A frozen Redis (SIGSTOP: connections stay open, nothing answers) holds the sessions: a REST
/// call and a send are refused within IM_REDIS_TIMEOUT, readiness says so, and both work again
/// once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    im_skip_services,
    ignore = "needs redis-server: IM_TEST_SKIP_SERVICES is set"
)]
async fn a_frozen_redis_is_unavailable_at_once_then_recovers() {
    let _serial = SERIAL.lock().await;
    let redis = PrivateRedis::start();
    let server = TestServer::start_with(Backend::Sqlite, Startup { demo: true }, |config| {
        config.redis_url = Some(redis.url());
        config.redis_prefix = unique_prefix();
        config.redis_timeout_secs = 1;
        // No presence heartbeat (one a minute) falls into the freeze and counts too.
        config.presence_ttl_secs = 180;
    })
    .await;
    let (client, token) = server.session("user").await;
    let mut socket = Socket::open(&server, &token).await;
    let list = || timed(client.http.get(server.url("/api/v1/conversations")));
    let (_, status, reply) = list().await;
    assert_eq!(
        (status, &reply["statusCode"]),
        (200, &json!("0")),
        "{reply}"
    );

    let before = scrape(&server).await;
    let frozen = redis.freeze();
    let (took, status, reply) = list().await;
    assert_eq!(status, 503, "{reply}");
    common::assert_refused(&reply, "1", UNAVAILABLE);
    assert_prompt(took, "a REST call");
    let (took, ack) = send(&mut socket, "while frozen", None).await;
    assert_eq!(ack, unavailable(NEW_MESSAGE));
    assert_prompt(took, "a send");
    let (_, status, reply) = timed(client.http.get(server.url("/readyz"))).await;
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["redis"], "unavailable", "{reply}");
    // The REST call's and the send's session look-ups; the readiness probe is not counted.
    assert_timed_out(&before, &scrape(&server).await, &[("redis", 2.0)]);

    drop(frozen);
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, status, reply) = list().await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, ack) = send(&mut socket, "after the thaw", None).await;
    assert_eq!(ack["body"]["msg"], "after the thaw", "{ack}");
}

/// The warnings the servers of this test binary logged, kept from the first call on.
fn warnings() -> String {
    use std::sync::{Arc, Mutex, OnceLock};

    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static KEPT: OnceLock<Kept> = OnceLock::new();
    let kept = KEPT.get_or_init(|| {
        let kept = Kept::default();
        let writer = kept.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber of this test binary");
        kept
    });
    String::from_utf8_lossy(&kept.0.lock().expect("log buffer")).into_owned()
}

/// A PostgreSQL frozen (SIGSTOP, as by a hung disk) while a REST call's statement runs on it:
/// the statement waits on a table lock, so it is surely running when the server stops, and the
/// frozen server cancels nothing (its statement_timeout is its own). The call is answered at
/// IM_REQUEST_TIMEOUT, and so is one made while frozen; a warning names the route; once the
/// server runs again, everything is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    im_skip_services,
    ignore = "needs PostgreSQL's server binaries: IM_TEST_SKIP_SERVICES is set"
)]
async fn a_postgres_frozen_mid_statement_is_answered_at_the_request_limit() {
    let _serial = SERIAL.lock().await;
    warnings();
    let pg = PrivatePostgres::start();
    let server = TestServer::start_with(
        Backend::Postgres(pg.url()),
        Startup { demo: true },
        |config| {
            config.request_timeout_secs = 1;
        },
    )
    .await;
    let client = server.logged_in("user").await;
    let (_, status, reply) = touch_chat(&client).await;
    assert_eq!(
        (status, &reply["statusCode"]),
        (200, &json!("0")),
        "{reply}"
    );

    let before = scrape(&server).await;
    let lock = Lock::take(&server, "conversations").await;
    let running = tokio::spawn({
        let client = client.clone();
        async move { touch_chat(&client).await }
    });
    waiting_on_a_lock(&server).await;
    let frozen = pg.freeze();
    let (took, status, reply) = running.await.expect("the call's task");
    assert_eq!(status, 503, "{reply}");
    common::assert_refused(&reply, "1", UNAVAILABLE);
    assert_prompt(took, "a REST call whose statement was running");
    let (took, status, reply) = timed(client.http.get(server.url("/api/v1/conversations"))).await;
    assert_eq!(status, 503, "{reply}");
    common::assert_refused(&reply, "1", UNAVAILABLE);
    assert_prompt(took, "a REST call made while frozen");
    let logged = warnings();
    assert!(
        logged.contains("PUT /api/v1/conversations/active timed out")
            && logged.contains("IM_REQUEST_TIMEOUT (1 s)"),
        "no warning naming the route: {logged}"
    );
    // Both calls at the request's limit. Their handlers go on and may still run out of a
    // database limit once the server runs again, which is not looked at here.
    let after = scrape(&server).await;
    assert_eq!(
        after.delta(&before, "im_timeouts_total", &[("what", "request")]),
        2.0,
        "{}",
        after.text
    );

    drop(frozen);
    lock.release().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, status, reply) = touch_chat(&client).await;
        if status == 200 {
            assert_eq!(reply["statusCode"], "0", "{reply}");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, status, reply) = timed(client.http.get(server.url("/api/v1/conversations"))).await;
    assert_eq!(
        (status, &reply["statusCode"]),
        (200, &json!("0")),
        "{reply}"
    );
}

/// A REST call that ran out of IM_REQUEST_TIMEOUT (1 s) while its database call waited for a
/// lock (IM_DB_TIMEOUT, 2 s here): the client has its 503 at the request's limit, and the
/// handler, going on, fails at the database's. One warning tells the operator, the time-out's;
/// the late failure is not warned of again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_failing_after_its_limit_is_warned_of_once() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start_with(Backend::Sqlite, Startup { demo: true }, |config| {
        config.request_timeout_secs = 1;
        config.db_timeout_secs = 2;
    })
    .await;
    let client = server.logged_in("user").await;
    let before = scrape(&server).await;
    let logged_before = warnings().len();
    let lock = Lock::take(&server, "conversations").await;
    let (took, status, reply) = touch_chat(&client).await;
    assert_eq!(status, 503, "{reply}");
    common::assert_refused(&reply, "1", UNAVAILABLE);
    assert_prompt(took, "a REST call");
    let database = [("what", "database")];
    let after = common::scrape::scrape_until(&server, "the late database time-out", |page| {
        page.delta(&before, "im_timeouts_total", &database) > 0.0
    })
    .await;
    assert_timed_out(&before, &after, &[("request", 1.0), ("database", 1.0)]);
    // The failure is logged right after it is counted; leave it that moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.release().await;
    let logged = warnings()[logged_before..].to_owned();
    let warned: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains(" WARN "))
        .collect();
    assert_eq!(warned.len(), 1, "{logged}");
    assert!(
        warned[0].contains("PUT /api/v1/conversations/active timed out"),
        "{logged}"
    );
}

/// Returns once a statement of the server's waits on a lock in the test's PostgreSQL database.
async fn waiting_on_a_lock(server: &TestServer) {
    let mut observer = AsyncPgConnection::establish(&server.database_url)
        .await
        .expect("database reachable");
    let deadline = Instant::now() + WAIT;
    while observer
        .batch_execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND datname = current_database()) \
             THEN RAISE EXCEPTION 'nobody waits'; END IF; END $$",
        )
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the call's statement never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A slow but honest upload (a phone on a poor link) takes longer than IM_REQUEST_TIMEOUT to
/// send its body: the time spent waiting for the body is IM_BODY_TIMEOUT's to bound, so the
/// upload is stored, not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_not_cut_by_the_request_limit() {
    const PIECES: usize = 10;
    const PAUSE: Duration = Duration::from_millis(250);
    let server = TestServer::start_with(Backend::Sqlite, Startup { demo: true }, |config| {
        config.request_timeout_secs = 1;
    })
    .await;
    let (_, token) = server.session("user").await;
    let boundary = "----im-slow-upload";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"photo.png\"; \
         filename=\"photo.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0");
    body.extend(std::iter::repeat_n(0u8, 200 * 1024));
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let head = format!(
        "POST /api/v1/upload HTTP/1.1\r\nHost: localhost\r\ntoken: {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.expect("head sent");
    for piece in body.chunks(body.len().div_ceil(PIECES)) {
        tokio::time::sleep(PAUSE).await;
        stream.write_all(piece).await.expect("body sent");
    }
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let took = started.elapsed();
    eprintln!("a slow upload: answered after {took:?}");
    assert!(took > 2 * Duration::from_secs(1), "sent too fast: {took:?}");
    let answer = String::from_utf8_lossy(&answer);
    let (status_line, rest) = answer.split_once("\r\n").expect("a status line");
    assert!(status_line.starts_with("HTTP/1.1 200"), "{answer}");
    let json = rest.split_once("\r\n\r\n").expect("a body").1;
    let reply: Value = serde_json::from_str(json).expect("JSON answer");
    assert_eq!(reply["statusCode"], "0", "{reply}");
    let url = reply["data"][0]["url"].as_str().expect("url");
    assert!(
        url.starts_with("/public/upload/") && url.ends_with(".png"),
        "{reply}"
    );
}
