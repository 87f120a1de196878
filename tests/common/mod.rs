//! The test harness: a real server on a loopback port, with its own database per test (a temporary
//! SQLite file, or a new PostgreSQL database), and HTTP clients with cookie jars.
#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod cluster;
pub mod original;
pub mod scrape;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use clap::Parser;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use im_server::app::{App, Startup};
use im_server::config::{Config, LimitConfig};
use serde_json::Value;
use tokio::sync::oneshot;

/// Where a test's database lives.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// The server URL of a PostgreSQL cluster, without a database name.
    Postgres(String),
}

/// The PostgreSQL of the tests when `IM_TEST_POSTGRES_URL` is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";
/// The Redis of the tests when `IM_TEST_REDIS_URL` is unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// What a test that found a service missing says besides what to start: how to skip on purpose.
pub const SKIP_HINT: &str = "or set IM_TEST_SKIP_SERVICES=1 to mark the tests that need \
     services as ignored (cargo rebuilds the tests when it changes)";

impl Backend {
    /// The PostgreSQL of the tests: `IM_TEST_POSTGRES_URL`, or the default local server. Whether
    /// it answers shows when a test creates its database (see [`new_pg_database`]): a test that
    /// cannot reach it fails, for a skip has to be asked for (`IM_TEST_SKIP_SERVICES`).
    pub fn postgres() -> Backend {
        Backend::Postgres(service_url("IM_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    }
}

/// `variable`, or `default` when it is unset or empty.
fn service_url(variable: &str, default: &str) -> String {
    match std::env::var(variable) {
        Ok(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_owned(),
        _ => default.to_owned(),
    }
}

/// Runs each named `async fn(Backend)` as two tests: `sqlite::name` and `postgres::name`. The
/// PostgreSQL variants are ignored when `IM_TEST_SKIP_SERVICES` is set (see build.rs); with
/// `services:` first, the SQLite variants too, for tests that need another service (Redis, Node).
#[macro_export]
macro_rules! on_both_backends {
    (services: $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(im_skip_services, ignore = "needs services: IM_TEST_SKIP_SERVICES is set")]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        $crate::on_both_backends!(@postgres $($name),*);
    };
    (@postgres $($name:ident),*) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(im_skip_services, ignore = "needs PostgreSQL: IM_TEST_SKIP_SERVICES is set")]
                async fn $name() {
                    super::$name($crate::common::Backend::postgres()).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        $crate::on_both_backends!(@postgres $($name),*);
    };
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A running server and what it runs on.
pub struct TestServer {
    pub base: String,
    pub app: Arc<App>,
    pub backend: Backend,
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    /// Set by [`TestServer::stop_keeping_database`]: the database outlives the server.
    keep_database: bool,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with the demo data of docs/protocol.md §6.3.
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, Startup { demo: true }, |_| {}).await
    }

    /// A server with `startup`, whose configuration `tweak` may change. Its rate limits are off:
    /// the suites log in and sign up from 127.0.0.1 far more often than any one client may.
    pub async fn start_with(
        backend: Backend,
        startup: Startup,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        Self::start_limited(backend, startup, |config| {
            config.limits = LimitConfig::off();
            tweak(config);
        })
        .await
    }

    /// As [`TestServer::start_with`], with the rate limits of a real deployment (the defaults)
    /// unless `tweak` changes them: for the tests of the limits themselves.
    pub async fn start_limited(
        backend: Backend,
        startup: Startup,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database_url = new_database(&backend, &dir).await;
        Self::start_at(backend, database_url, dir, startup, tweak).await
    }

    /// A server on `database_url` (made by [`new_database`] in `dir`), which it then owns: a
    /// PostgreSQL database is dropped with the server. Rate limits stay as `tweak` leaves them.
    pub async fn start_at(
        backend: Backend,
        database_url: String,
        dir: tempfile::TempDir,
        startup: Startup,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let public = dir.path().join("public");
        let mut config = Config::try_parse_from([
            "im-server",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &database_url,
            "--public-dir",
            public.to_str().expect("utf-8 temp path"),
            "--db-pool",
            "8",
            "--admin-password",
            "admin-password",
        ])
        .expect("test configuration parses");
        tweak(&mut config);
        let app = App::start(config, startup).await.expect("server starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            base,
            app,
            backend,
            database_url,
            shutdown: Some(tx),
            keep_database: false,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A client with its own cookie jar, like one browser.
    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .expect("http client"),
            base: self.base.clone(),
        }
    }

    /// A client logged in as `username` (demo password `123456`).
    pub async fn logged_in(&self, username: &str) -> Client {
        self.session(username).await.0
    }

    /// A client logged in as `username` (demo password `123456`), and its session's token, for
    /// a socket.
    pub async fn session(&self, username: &str) -> (Client, String) {
        let client = self.client();
        let reply = client.login(username, "123456").await;
        assert_eq!(reply["statusCode"], "0", "login of {username}: {reply}");
        let token = reply["data"]["token"].as_str().expect("token").to_owned();
        (client, token)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Backend::Postgres(server) = &self.backend
            && !self.keep_database
        {
            drop_pg_database(server, &self.database_url);
        }
    }
}

impl TestServer {
    /// Stops the server and leaves its database for the test to use and drop
    /// ([`drop_database`]).
    pub fn stop_keeping_database(mut self) {
        self.keep_database = true;
    }
}

/// Drops a test database made by [`new_database`] that no server owns (a SQLite file goes with
/// its directory).
pub fn drop_database(backend: &Backend, database_url: &str) {
    if let Backend::Postgres(server) = backend {
        drop_pg_database(server, database_url);
    }
}

/// Drops a test's PostgreSQL database, so runs don't pile databases up. `Drop` cannot await, so
/// this runs on a thread of its own with its own runtime; failures only leave the database for
/// .ci/run to sweep.
pub fn drop_pg_database(server: &str, database_url: &str) {
    let Some(name) = database_url
        .rsplit('/')
        .next()
        .filter(|n| n.starts_with("im_test_"))
    else {
        return;
    };
    let (admin_url, statement) = (
        format!("{server}/postgres"),
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    let dropped = on_own_runtime(move || async move {
        let mut admin = AsyncPgConnection::establish(&admin_url).await.ok()?;
        admin.batch_execute(&statement).await.ok()
    });
    if dropped.is_none() {
        eprintln!("test database {name} left behind");
    }
}

/// Runs `work` on a runtime of its own, on a thread of its own: clean-up in `Drop`, which may run
/// inside a runtime (where blocking on another is refused) or outside one.
pub fn on_own_runtime<F, Fut, T>(work: F) -> Option<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<T>>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(work())
    })
    .join()
    .ok()
    .flatten()
}

/// A new, empty database for a test: a SQLite file in `dir`, or a PostgreSQL database.
pub async fn new_database(backend: &Backend, dir: &tempfile::TempDir) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("im.db").display()),
        Backend::Postgres(server) => new_pg_database(server).await,
    }
}

/// Creates an empty database named for this test process and returns its URL.
pub async fn new_pg_database(server: &str) -> String {
    let name = format!(
        "im_test_{}_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed),
        rand_suffix()
    );
    let mut admin = match AsyncPgConnection::establish(&format!("{server}/postgres")).await {
        Ok(admin) => admin,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {server} ({e}). Start it (e.g. \
             `pg_ctlcluster 15 main start`; .ci/run starts it), set IM_TEST_POSTGRES_URL to \
             one that runs, {SKIP_HINT}"
        ),
    };
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    format!("{server}/{name}")
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_007)
        .unwrap_or(0)
}

/// An HTTP client with a cookie jar, speaking the REST envelope.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub async fn login(&self, username: &str, password: &str) -> Value {
        self.post(
            "/api/v1/login",
            &serde_json::json!({"username": username, "password": password}),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        response.json().await.expect("JSON answer")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Value {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Value {
        self.send(reqwest::Method::PUT, path, body).await
    }

    pub async fn delete(&self, path: &str, body: &Value) -> Value {
        self.send(reqwest::Method::DELETE, path, body).await
    }

    /// Uploads a one-pixel PNG and returns its URL: a photo must be one's own upload.
    pub async fn upload_png(&self) -> String {
        const PNG: &[u8] =
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde";
        let part = reqwest::multipart::Part::bytes(PNG).file_name("photo.png");
        let reply: Value = self
            .http
            .post(format!("{}/api/v1/upload", self.base))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .expect("upload request")
            .json()
            .await
            .expect("JSON answer");
        assert_eq!(reply["statusCode"], "0", "upload: {reply}");
        reply["data"][0]["url"].as_str().expect("url").to_owned()
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request");
        response.json().await.expect("JSON answer")
    }
}

/// Asserts an envelope failure with `code` and `message`.
#[track_caller]
pub fn assert_refused(reply: &Value, code: &str, message: &str) {
    assert_eq!(
        reply,
        &serde_json::json!({"statusCode": code, "errorMessage": message, "data": null}),
        "expected refusal {code} {message}"
    );
}

/// Asserts success and returns `data`.
#[track_caller]
pub fn data(reply: &Value) -> &Value {
    assert_eq!(reply["statusCode"], "0", "expected success: {reply}");
    assert_eq!(reply["errorMessage"], Value::Null, "{reply}");
    &reply["data"]
}

/// Replaces every `YYYY-MM-DD HH:mm:ss` string with `"<time>"`, after checking its format, so a
/// whole response can be compared with an expected value.
pub fn mask_times(value: &Value) -> Value {
    match value {
        Value::String(s) if looks_like_time(s) => Value::String("<time>".into()),
        Value::Array(items) => Value::Array(items.iter().map(mask_times).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    if k.ends_with("At") || k == "activeTime" {
                        assert!(
                            v.as_str().is_some_and(looks_like_time),
                            "{k} is not a YYYY-MM-DD HH:mm:ss time: {v}"
                        );
                    }
                    (k.clone(), mask_times(v))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn looks_like_time(s: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok() && s.len() == 19
}

/// Fails if any object in `value` has a `password` field.
#[track_caller]
pub fn assert_no_password(value: &Value) {
    match value {
        Value::Array(items) => items.iter().for_each(assert_no_password),
        Value::Object(map) => {
            assert!(!map.contains_key("password"), "password leaked: {value}");
            map.values().for_each(assert_no_password);
        }
        _ => {}
    }
}

/// The Redis of the tests: `IM_TEST_REDIS_URL`, or the default local server. Fails, saying what
/// to start, unless it answers PING.
pub fn redis_url() -> String {
    let url = service_url("IM_TEST_REDIS_URL", DEFAULT_REDIS_URL);
    require_redis(&url);
    url
}

/// Fails, saying what to start, unless the Redis at `url` answers PING.
pub fn require_redis(url: &str) {
    if let Err(e) = ping_redis(url) {
        panic!(
            "Redis is not reachable at {url} ({e}). Start it (e.g. `redis-server --daemonize yes`; \
             .ci/run starts it), set IM_TEST_REDIS_URL to one that runs, {SKIP_HINT}"
        );
    }
}

/// PING over a plain connection, bounded in time, so a missing Redis fails the test at once
/// instead of in whatever the server does first.
fn ping_redis(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query::<String>(&mut conn)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A Redis key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("imtest:{}:{}:", std::process::id(), rand_suffix())
}

/// The Node client packages of the compatibility and scale-out suites.
pub fn compat_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

/// Installs the locked client packages of tests/compat (`npm ci`) once per test process, unless
/// they are there already.
pub fn ensure_node_modules() {
    static INSTALL: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !*installed {
        require_node();
    }
    if *installed || compat_dir().join("node_modules/sio4").exists() {
        *installed = true;
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(compat_dir())
        .status()
        .unwrap_or_else(|e| {
            panic!("npm does not run ({e}): install Node.js 20 or later with npm, {SKIP_HINT}")
        });
    assert!(status.success(), "npm ci in tests/compat failed");
    *installed = true;
}

/// Fails, saying what to install, unless `node` runs.
pub fn require_node() {
    let version = std::process::Command::new("node").arg("--version").output();
    if !version.is_ok_and(|out| out.status.success()) {
        panic!(
            "node does not run: the Socket.IO client suites need Node.js 20 or later \
             (Debian package nodejs), {SKIP_HINT}"
        );
    }
}

/// The next text frame of a WebSocket that starts with `prefix` (others are skipped), within
/// `wait`.
pub async fn next_starting_with<S>(ws: &mut S, prefix: &str, wait: std::time::Duration) -> String
where
    S: futures_util::StreamExt<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    tokio::time::timeout(wait, async {
        loop {
            let message = ws.next().await.expect("socket open").expect("packet");
            if let Ok(text) = message.to_text()
                && text.starts_with(prefix)
            {
                return text.to_owned();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no packet starting with {prefix:?} in time"))
}
