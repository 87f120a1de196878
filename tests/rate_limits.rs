//! Rate limits through the real transports, on the defaults a deployment keeps: failed log-ins
//! per address and per account (HTTP 429, the envelope, `Retry-After`), sign-ups per address,
//! messages per socket and per user (an error ack, or `/v1/im/error`), upload bytes per user;
//! in one process's memory, and in Redis shared by several processes. (The timing of log-ins to
//! unknown names is tests/login_timing.rs.)
//!
//! Clients come from different loopback addresses (127.0.0.x) to be different clients.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use clap::Parser;
use common::cluster::{Cluster, LIMITS};
use common::{Backend, Client, TestServer, data, redis_url};
use futures_util::{SinkExt, StreamExt};
use im_server::app::Startup;
use im_server::config::Config;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SLOW_DOWN: &str = "操作过于频繁，请稍后再试";
/// Defaults of src/config.rs, which these tests keep.
const LOGIN_PER_ADDRESS: usize = 20;
const LOGIN_PER_ACCOUNT: usize = 10;
const SIGNUPS_PER_ADDRESS: usize = 10;
const MESSAGES_PER_SOCKET: usize = 30;
/// Messages per socket regained per second (30 per 10 s).
const SOCKET_REFILL_PER_SEC: f64 = 3.0;
const MESSAGES_PER_USER: usize = 60;
/// 60 per 30 s.
const USER_REFILL_PER_SEC: f64 = 2.0;
const UPLOAD_MAX: usize = 3 * 1024 * 1024;
const UPLOAD_QUOTA: usize = 64 * 1024 * 1024;
/// `user`'s chat with their first friend (demo data).
const CONVERSATION: i32 = 1;

/// A client of `base` whose connections come from 127.0.0.`n`.
fn client_from(base: &str, n: u8) -> Client {
    Client {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client"),
        base: base.to_owned(),
    }
}

/// An answer's status, `Retry-After` and envelope.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ASCII").parse().expect("whole seconds"));
        let body = response.json().await.expect("JSON answer");
        Answer {
            status,
            retry_after,
            body,
        }
    }

    /// Asserts the refusal of a limit: 429, the envelope, and a wait within `at_most` seconds.
    #[track_caller]
    fn assert_limited(&self, at_most: u64) {
        assert_eq!(self.status, 429, "{}", self.body);
        assert_eq!(
            self.body,
            json!({"statusCode": "1", "errorMessage": SLOW_DOWN, "data": null})
        );
        let wait = self.retry_after.expect("Retry-After");
        assert!((1..=at_most).contains(&wait), "Retry-After {wait}");
    }

    #[track_caller]
    fn assert_refused(&self, message: &str) {
        assert_eq!(self.status, 200, "{}", self.body);
        assert_eq!(
            self.body,
            json!({"statusCode": "1", "errorMessage": message, "data": null})
        );
        assert_eq!(self.retry_after, None);
    }
}

async fn post(client: &Client, path: &str, body: Value) -> Answer {
    let response = client
        .http
        .post(format!("{}{path}", client.base))
        .json(&body)
        .send()
        .await
        .expect("request");
    Answer::of(response).await
}

async fn login(client: &Client, username: &str, password: &str) -> Answer {
    post(
        client,
        "/api/v1/login",
        json!({"username": username, "password": password}),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Log-ins

/// `LOGIN_PER_ADDRESS` failed log-ins from `n`, spread over `clients` (one per process), to
/// names that do not exist (so that no account's own limit is reached): all answered; the next
/// one, even with the right password, is refused for at most one interval (30 s).
async fn failed_logins_from_one_address(bases: &[String], n: u8) {
    let clients: Vec<Client> = bases.iter().map(|base| client_from(base, n)).collect();
    for attempt in 0..LOGIN_PER_ADDRESS {
        let client = &clients[attempt % clients.len()];
        login(client, &format!("nobody-{attempt}"), "123456")
            .await
            .assert_refused("用户名错误");
    }
    for client in &clients {
        login(client, "nobody-else", "123456")
            .await
            .assert_limited(30);
        login(client, "user", "123456").await.assert_limited(30);
    }
    // Another address is another client.
    let other = client_from(&bases[0], n + 1);
    data(&login(&other, "user", "123456").await.body);
}

/// A stranger (from `stranger`) exhausts `user`'s account limit with wrong passwords: another
/// new address is refused even with the right password, while the owner's usual address
/// (`owner`, where they logged in before) still logs in, and is told its typos plainly.
async fn a_stranger_cannot_lock_the_owner_out(bases: &[String], owner: u8, stranger: u8) {
    let owner_client = client_from(&bases[0], owner);
    data(&login(&owner_client, "user", "123456").await.body);
    let strangers: Vec<Client> = bases.iter().map(|b| client_from(b, stranger)).collect();
    for attempt in 0..LOGIN_PER_ACCOUNT {
        let client = &strangers[attempt % strangers.len()];
        login(client, "user", "wrong-password")
            .await
            .assert_refused("密码错误");
    }
    // Per account, not per address: a third address is refused too, right password or not.
    let third = client_from(bases.last().expect("a server"), stranger + 1);
    login(&third, "user", "wrong-password")
        .await
        .assert_limited(60);
    login(&third, "User", "123456").await.assert_limited(60);
    // The owner, from their usual address, on any process.
    for base in bases {
        let owner_client = client_from(base, owner);
        login(&owner_client, "user", "mistyped")
            .await
            .assert_refused("密码错误");
        data(&login(&owner_client, "user", "123456").await.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_per_address() {
    let server = TestServer::start_limited(Backend::Sqlite, Startup { demo: true }, |_| {}).await;
    failed_logins_from_one_address(std::slice::from_ref(&server.base), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_per_account_but_not_from_the_owners_address() {
    let server = TestServer::start_limited(Backend::Sqlite, Startup { demo: true }, |_| {}).await;
    a_stranger_cannot_lock_the_owner_out(std::slice::from_ref(&server.base), 5, 6).await;
}

// ---------------------------------------------------------------------------------------------
// Sign-ups

async fn signups_from_one_address(bases: &[String], n: u8, tag: &str) {
    let clients: Vec<Client> = bases.iter().map(|base| client_from(base, n)).collect();
    let signup = |client: &Client, name: String| {
        let client = client.clone();
        async move {
            post(
                &client,
                "/api/v1/signup",
                json!({"username": name, "password": "123456"}),
            )
            .await
        }
    };
    for k in 0..SIGNUPS_PER_ADDRESS {
        let answer = signup(&clients[k % clients.len()], format!("{tag}{k}")).await;
        data(&answer.body);
    }
    for (k, client) in clients.iter().enumerate() {
        // One sign-up per 6 minutes after the first ten.
        signup(client, format!("{tag}late{k}"))
            .await
            .assert_limited(360);
    }
    data(
        &signup(&client_from(&bases[0], n + 1), format!("{tag}other"))
            .await
            .body,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signups_are_limited_per_address() {
    let server = TestServer::start_limited(Backend::Sqlite, Startup { demo: true }, |_| {}).await;
    signups_from_one_address(std::slice::from_ref(&server.base), 8, "newbie").await;
}

// ---------------------------------------------------------------------------------------------
// Messages

/// One Socket.IO (EIO 4) WebSocket, spoken by hand.
struct Socket {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

const WAIT: Duration = Duration::from_secs(30);

impl Socket {
    async fn open(base: &str, cookie: &str) -> Socket {
        let url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            base.replacen("http", "ws", 1)
        );
        let mut request = url.into_client_request().expect("WebSocket request");
        request
            .headers_mut()
            .insert("cookie", cookie.parse().expect("cookie header"));
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket handshake");
        let mut socket = Socket { ws };
        assert!(socket.next().await.starts_with('0'), "Engine.IO open");
        socket.send("40").await;
        let connected = socket.next().await;
        assert!(connected.starts_with("40{"), "{connected}");
        socket
    }

    async fn send(&mut self, packet: &str) {
        self.ws
            .send(WsMessage::text(packet.to_owned()))
            .await
            .expect("send");
    }

    /// The next packet that is not a ping (pings are answered).
    async fn next(&mut self) -> String {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a packet in time")
                .expect("socket open")
                .expect("WebSocket message");
            if let WsMessage::Text(text) = message {
                if text.as_str() == "2" {
                    self.send("3").await;
                } else {
                    return text.as_str().to_owned();
                }
            }
        }
    }

    /// Emits `count` messages without waiting (acks `first..first+count`), then reads their
    /// acks: how many were stored, how many refused by a limit.
    async fn flood(&mut self, first: usize, count: usize) -> (usize, usize) {
        for id in first..first + count {
            let packet = format!(
                r#"42{id}["/v1/im/new-message",{{"conversationId":{CONVERSATION},"body":{{"type":"text","content":"m{id}"}}}}]"#
            );
            self.send(&packet).await;
        }
        let (mut stored, mut refused) = (0, 0);
        while stored + refused < count {
            let packet = self.next().await;
            let Some(rest) = packet.strip_prefix("43") else {
                continue; // broadcasts of the stored messages
            };
            let start = rest.find('[').expect("ack array");
            let ack: Value = serde_json::from_str(&rest[start..]).expect("ack JSON");
            let ack = &ack[0];
            if ack["id"].is_i64() {
                stored += 1;
            } else {
                assert_eq!(
                    ack,
                    &json!({"event": "/v1/im/new-message", "statusCode": "1",
                            "errorMessage": SLOW_DOWN, "data": null})
                );
                refused += 1;
            }
        }
        (stored, refused)
    }

    /// Emits one message without asking for an ack: a refusal comes as `/v1/im/error`.
    async fn refused_without_ack(&mut self) {
        self.send(&format!(
            r#"42["/v1/im/new-message",{{"conversationId":{CONVERSATION},"body":{{"type":"text","content":"x"}}}}]"#
        ))
        .await;
        loop {
            let packet = self.next().await;
            if let Some(event) = packet.strip_prefix("42[\"/v1/im/error\",") {
                let payload: Value =
                    serde_json::from_str(event.trim_end_matches(']')).expect("error JSON");
                assert_eq!(payload["event"], "/v1/im/new-message");
                assert_eq!(payload["errorMessage"], SLOW_DOWN);
                return;
            }
        }
    }
}

/// `user`'s session cookie, logged in through `base`.
async fn session_cookie(base: &str, n: u8) -> String {
    let response = client_from(base, n)
        .http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": "user", "password": "123456"}))
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
    data(&response.json::<Value>().await.expect("JSON"));
    cookie
}

/// What `refill` per second over `elapsed` may have added to an allowance, plus one.
fn regained(refill: f64, elapsed: Duration) -> usize {
    (refill * elapsed.as_secs_f64()).ceil() as usize + 1
}

/// One socket floods: its first `MESSAGES_PER_SOCKET` are stored, then it is refused (acks,
/// and `/v1/im/error` without an ack).
async fn one_socket_floods(base: &str) {
    let cookie = session_cookie(base, 1).await;
    let mut socket = Socket::open(base, &cookie).await;
    let started = Instant::now();
    let (stored, refused) = socket.flood(0, 2 * MESSAGES_PER_SOCKET).await;
    let elapsed = started.elapsed();
    eprintln!("one socket: {stored} stored, {refused} refused in {elapsed:?}");
    assert!(stored >= MESSAGES_PER_SOCKET, "{stored} stored");
    assert!(
        stored <= MESSAGES_PER_SOCKET + regained(SOCKET_REFILL_PER_SEC, elapsed),
        "{stored} stored in {elapsed:?}"
    );
    socket.refused_without_ack().await;
}

/// Three sockets of one user (on `bases` in turn) each stay under the socket limit, and
/// together reach the user's.
async fn one_user_floods_from_several_sockets(bases: &[String]) {
    let mut sockets = Vec::new();
    for k in 0..3 {
        let base = &bases[k % bases.len()];
        let cookie = session_cookie(base, 1).await;
        sockets.push(Socket::open(base, &cookie).await);
    }
    let per_socket = MESSAGES_PER_SOCKET - 2;
    let started = Instant::now();
    let floods = sockets
        .iter_mut()
        .enumerate()
        .map(|(k, socket)| socket.flood(k * 1000, per_socket));
    let results = futures_util::future::join_all(floods).await;
    let elapsed = started.elapsed();
    let stored: usize = results.iter().map(|(s, _)| s).sum();
    eprintln!("one user, 3 sockets: {results:?} (stored, refused) in {elapsed:?}");
    assert!(stored >= MESSAGES_PER_USER, "{stored} stored");
    assert!(
        stored <= MESSAGES_PER_USER + regained(USER_REFILL_PER_SEC, elapsed),
        "{stored} stored in {elapsed:?}: the user's limit is not shared by the sockets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_limited_per_socket() {
    let server = TestServer::start_limited(Backend::Sqlite, Startup { demo: true }, |_| {}).await;
    one_socket_floods(&server.base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_limited_per_user() {
    let server = TestServer::start_limited(Backend::Sqlite, Startup { demo: true }, |_| {}).await;
    one_user_floods_from_several_sockets(std::slice::from_ref(&server.base)).await;
}

/// Human speed is nowhere near the limits: a message every 350 ms for 14 s on one socket (faster
/// than anyone types, for longer) is all stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_at_human_speed_is_never_refused() {
    let server = TestServer::start_limited(Backend::Sqlite, Startup { demo: true }, |_| {}).await;
    let cookie = session_cookie(&server.base, 1).await;
    let mut socket = Socket::open(&server.base, &cookie).await;
    let mut tick = tokio::time::interval(Duration::from_millis(350));
    for id in 0..40 {
        tick.tick().await;
        assert_eq!(socket.flood(id, 1).await, (1, 0), "message {id}");
    }
}

// ---------------------------------------------------------------------------------------------
// Uploads

/// A PNG of exactly `UPLOAD_MAX` bytes.
fn picture() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.resize(UPLOAD_MAX, 0);
    bytes
}

async fn upload(client: &Client, files: usize) -> Answer {
    let picture = picture();
    let mut form = reqwest::multipart::Form::new();
    for k in 0..files {
        let part = reqwest::multipart::Part::bytes(picture.clone()).file_name(format!("{k}.png"));
        form = form.part(format!("file{k}"), part);
    }
    let response = client
        .http
        .post(format!("{}/api/v1/upload", client.base))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    Answer::of(response).await
}

/// `user` uploads 9 pictures of 3 MiB at a time, through `bases` in turn: the first 21 (63 MiB)
/// fit the 64 MiB per hour, the request that would pass it is refused with 429 and keeps
/// nothing. Returns the files stored.
async fn uploads_until_refused(bases: &[String]) -> usize {
    let mut stored = 0;
    for k in 0.. {
        let client = client_from(&bases[k % bases.len()], 1);
        data(&login(&client, "user", "123456").await.body);
        let answer = upload(&client, 9).await;
        if answer.status == 429 {
            // Waiting for the next quarter MiB at 64 MiB per hour: about 15 s.
            answer.assert_limited(3600);
            break;
        }
        stored += data(&answer.body).as_array().expect("urls").len();
        assert!(stored * UPLOAD_MAX <= UPLOAD_QUOTA, "{stored} files stored");
    }
    assert_eq!(stored, 18, "two requests of 9 fit, the third does not");
    stored
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_limited_per_user() {
    let server = TestServer::start_limited(Backend::Sqlite, Startup { demo: true }, |_| {}).await;
    let stored = uploads_until_refused(std::slice::from_ref(&server.base)).await;
    let public = &server.app.config.public_dir;
    assert_eq!(files_in(&public.join("upload")), stored);
    assert_eq!(files_in(&public.join("upload-tmp")), 0);
    // Another user has their own allowance.
    let other = client_from(&server.base, 20);
    let signed_up = post(
        &other,
        "/api/v1/signup",
        json!({"username": "uploader", "password": "123456"}),
    )
    .await;
    data(&signed_up.body);
    assert_eq!(
        data(&upload(&other, 1).await.body).as_array().map(Vec::len),
        Some(1)
    );
}

// ---------------------------------------------------------------------------------------------
// Several processes, one Redis

/// Three processes on one PostgreSQL and one Redis, with the default limits: each limit is
/// reached by requests spread over the processes, as if one process saw them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    im_skip_services,
    ignore = "needs PostgreSQL and Redis: IM_TEST_SKIP_SERVICES is set"
)]
async fn processes_share_the_limits_through_redis() {
    let Backend::Postgres(pg) = Backend::postgres() else {
        unreachable!("Backend::postgres is PostgreSQL")
    };
    let redis = redis_url();
    // The cluster turns the limits off for the suites that are not about them; back on here.
    let defaults = Config::try_parse_from(["im-server"])
        .expect("defaults")
        .limits;
    let values = [
        defaults.login_address,
        defaults.login_account,
        defaults.signup_address,
        defaults.message_socket,
        defaults.message_user,
        defaults.upload_user,
    ]
    .map(|rate| rate.to_string());
    let env: Vec<(&str, &str)> = LIMITS
        .iter()
        .copied()
        .zip(values.iter().map(String::as_str))
        .collect();
    let cluster = Cluster::start_with(&pg, &redis, 3, &env).await;
    let bases: Vec<String> = cluster.processes.iter().map(|p| p.base.clone()).collect();

    // `user` logs in from 127.0.0.1 for these two, before a stranger exhausts the account.
    one_user_floods_from_several_sockets(&bases).await;
    uploads_until_refused(&bases).await;
    failed_logins_from_one_address(&bases, 2).await;
    a_stranger_cannot_lock_the_owner_out(&bases, 5, 6).await;
    signups_from_one_address(&bases, 8, "newbie").await;
}
