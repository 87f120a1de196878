//! Prometheus metrics: the process's recorder, the numbers read from libraries at scrape time
//! (the database pool, the sockets, Redis), and the rendering of `GET /metrics`.
//!
//! Every module records through the `metrics` facade (`metrics::counter!` and the like) under
//! the names below; this module installs the one recorder that collects them, so counters of
//! any part of the server show on the page. Every series is described in docs/operations.md.
//! Label values are bounded: route templates, event names, fixed outcomes, never an id.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::app::App;

/// The commit the binary was built from (build.rs): a short hash, `-dirty` when the sources
/// differed from it, or `IM_BUILD_COMMIT`, or `unknown`.
pub const COMMIT: &str = env!("IM_SERVER_COMMIT");
/// `--version`, the page at `/` and the start-up line: the version and its commit.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("IM_SERVER_COMMIT"),
    ")"
);

pub const HTTP_REQUESTS: &str = "im_http_requests_total";
pub const HTTP_DURATION: &str = "im_http_request_duration_seconds";
pub const SOCKETS_OPEN: &str = "im_sockets_open";
pub const SOCKET_OPENS: &str = "im_socket_opens_total";
pub const SOCKET_CLOSES: &str = "im_socket_closes_total";
pub const SOCKET_UPGRADES: &str = "im_socket_upgrades_total";
pub const SOCKETS_DROPPED: &str = "im_sockets_dropped_total";
pub const EVENTS: &str = "im_socketio_events_total";
pub const EVENT_DURATION: &str = "im_socketio_event_duration_seconds";
pub const MESSAGES_STORED: &str = "im_messages_stored_total";
pub const BATCH_SIZE: &str = "im_message_batch_size";
pub const BATCH_COMMIT: &str = "im_message_batch_commit_seconds";
pub const BATCH_FAILURES: &str = "im_message_batch_failures_total";
pub const POOL_MAX: &str = "im_db_pool_max_size";
pub const POOL_SIZE: &str = "im_db_pool_size";
pub const POOL_IN_USE: &str = "im_db_pool_in_use";
pub const POOL_WAITING: &str = "im_db_pool_waiting";
pub const REDIS_UP: &str = "im_redis_up";
pub const REDIS_PUBLISH_ERRORS: &str = "im_redis_publish_errors_total";
pub const RATE_LIMIT_REFUSALS: &str = "im_rate_limit_refusals_total";
pub const ONLINE_USERS: &str = "im_online_users";
pub const ONLINE_SESSIONS: &str = "im_online_sessions";
pub const BUILD_INFO: &str = "im_build_info";

/// Latency buckets, in seconds: from a cached read (a millisecond) to the database's pool wait
/// (5 s) and beyond.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Messages per batch: powers of two up to the writer's largest batch (512).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// How often histogram samples are folded in when nobody scrapes, so that they do not pile up.
const UPKEEP: Duration = Duration::from_secs(5);
/// How long a scrape waits for Redis's PING before reporting it down.
const REDIS_PROBE: Duration = Duration::from_secs(1);

/// What sockets this process holds, counted when scraped.
#[derive(Debug, Default)]
pub struct SocketCounts {
    /// `(Engine.IO version, transport, sockets)`, every combination, zeros included.
    pub open: Vec<(&'static str, &'static str, usize)>,
    /// Distinct users with a socket here.
    pub users: usize,
    /// Distinct sessions with a socket here.
    pub sessions: usize,
}

type SocketCounter = Box<dyn Fn() -> SocketCounts + Send + Sync>;

/// The App's part of the metrics: the page's renderer, and how to count the sockets.
pub struct Telemetry {
    /// `None` when another recorder was installed in this process first.
    handle: Option<PrometheusHandle>,
    /// Set once Socket.IO is attached (`realtime::attach`).
    sockets: OnceLock<SocketCounter>,
}

impl Telemetry {
    /// The process's recorder (installed at the first call; later Apps of the same process, in
    /// tests, share it). Call it from within the Tokio runtime.
    pub fn new() -> Telemetry {
        Telemetry {
            handle: recorder(),
            sockets: OnceLock::new(),
        }
    }

    /// How to count the sockets at each scrape.
    pub fn count_sockets_with(&self, counter: impl Fn() -> SocketCounts + Send + Sync + 'static) {
        let _ = self.sockets.set(Box::new(counter));
    }

    /// The page: the numbers libraries keep, read now, then every series in the text format.
    /// `None` when this process records elsewhere (see [`Telemetry::new`]).
    pub async fn render(&self, app: &App) -> Option<String> {
        let handle = self.handle.as_ref()?;
        let pool = app.db.pool_status();
        gauge!(POOL_MAX).set(pool.max_size as f64);
        gauge!(POOL_SIZE).set(pool.size as f64);
        gauge!(POOL_IN_USE).set(pool.size.saturating_sub(pool.available) as f64);
        gauge!(POOL_WAITING).set(pool.waiting as f64);
        if let Some(counter) = self.sockets.get() {
            let counts = counter();
            for (engineio, transport, open) in counts.open {
                gauge!(SOCKETS_OPEN, "engineio" => engineio, "transport" => transport)
                    .set(open as f64);
            }
            gauge!(ONLINE_USERS).set(counts.users as f64);
            gauge!(ONLINE_SESSIONS).set(counts.sessions as f64);
        }
        if let Some(redis) = &app.redis {
            let mut redis = redis.clone();
            let command = redis::cmd("PING");
            let ping = command.query_async::<String>(&mut redis);
            let up = matches!(tokio::time::timeout(REDIS_PROBE, ping).await, Ok(Ok(_)));
            gauge!(REDIS_UP).set(if up { 1.0 } else { 0.0 });
        }
        Some(handle.render())
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// Installs the recorder once per process and returns its handle.
fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS)
                })
                .map_err(|error| error.to_string())
                .and_then(|builder| builder.install_recorder().map_err(|e| e.to_string()));
            let handle = match built {
                Ok(handle) => handle,
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed: /metrics answers 503");
                    return None;
                }
            };
            describe();
            // On the page from the start, at 0, so that `rate()` sees their first increase.
            for name in [
                MESSAGES_STORED,
                BATCH_FAILURES,
                SOCKETS_DROPPED,
                REDIS_PUBLISH_ERRORS,
            ] {
                metrics::counter!(name).absolute(0);
            }
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => COMMIT).set(1.0);
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(UPKEEP);
                loop {
                    every.tick().await;
                    upkeep.run_upkeep();
                }
            });
            Some(handle)
        })
        .clone()
}

/// The HELP line of every series (docs/operations.md has the same list with the labels).
fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route template and method"
    );
    describe_gauge!(
        SOCKETS_OPEN,
        "Socket.IO sockets connected to this process, by Engine.IO version and transport"
    );
    describe_counter!(
        SOCKET_OPENS,
        "Socket.IO sockets let in, by Engine.IO version and transport at connection"
    );
    describe_counter!(
        SOCKET_CLOSES,
        "Socket.IO sockets closed, by Engine.IO version and transport at closing"
    );
    describe_counter!(
        SOCKET_UPGRADES,
        "Sockets upgraded from long-polling to WebSocket, by Engine.IO version"
    );
    describe_counter!(
        SOCKETS_DROPPED,
        "Sockets dropped because their client did not read fast enough (queue full)"
    );
    describe_counter!(
        EVENTS,
        "Socket.IO events handled, by event and outcome (ok, refused, error)"
    );
    describe_histogram!(
        EVENT_DURATION,
        metrics::Unit::Seconds,
        "Time to handle a Socket.IO event, by event"
    );
    describe_counter!(
        MESSAGES_STORED,
        "Chat messages stored (retries not counted)"
    );
    describe_histogram!(BATCH_SIZE, "Messages per batch of the message writer");
    describe_histogram!(
        BATCH_COMMIT,
        metrics::Unit::Seconds,
        "Time to store one batch of messages, from its start to its commit"
    );
    describe_counter!(BATCH_FAILURES, "Batches of messages that were not stored");
    describe_gauge!(POOL_MAX, "Most database connections the pool may open");
    describe_gauge!(POOL_SIZE, "Database connections open");
    describe_gauge!(POOL_IN_USE, "Database connections in use");
    describe_gauge!(POOL_WAITING, "Requests waiting for a database connection");
    describe_gauge!(
        REDIS_UP,
        "1 when Redis answered PING at this scrape, else 0"
    );
    describe_counter!(
        REDIS_PUBLISH_ERRORS,
        "Socket.IO adapter messages that could not be published to Redis"
    );
    describe_counter!(
        RATE_LIMIT_REFUSALS,
        "Requests and events refused by a rate limit, by limit"
    );
    describe_gauge!(
        ONLINE_USERS,
        "Users with a socket connected to this process"
    );
    describe_gauge!(
        ONLINE_SESSIONS,
        "Sessions with a socket connected to this process"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels name the version and commit"
    );
}
