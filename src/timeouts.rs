//! The time limits of the calls a request waits on (a database call, a Redis command, a whole
//! Socket.IO event) and what happens when one runs out: the caller gets the domain's
//! `Unavailable` (`服务暂时不可用`), and `im_timeouts_total{what}` counts it, so that an operator
//! sees a stalled database or Redis in the metrics as well as in the warnings the transports log.
//!
//! Each limit is enforced where the call is made (the database's own statement and busy
//! timeouts, the Redis client's response timeout, a timer around an event's handler or a REST
//! call's); this module only names them and counts what ran out.

use std::future::Future;
use std::time::Duration;

/// What ran out of time: the `what` label of `im_timeouts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// A database call: waiting for a connection, a lock, or a statement.
    Database,
    /// A Redis command.
    Redis,
    /// A Socket.IO event's handler, all its calls together.
    Event,
    /// A REST call's handler, all its calls together (not its wait for the client's body).
    Request,
}

impl Limited {
    pub fn label(self) -> &'static str {
        match self {
            Limited::Database => "database",
            Limited::Redis => "redis",
            Limited::Event => "event",
            Limited::Request => "request",
        }
    }
}

/// Counts one call that ran out of time.
pub fn count(what: Limited) {
    metrics::counter!("im_timeouts_total", "what" => what.label()).increment(1);
}

/// Runs `work` for at most `limit`: `None` (and counted) when the limit ran out first, in which
/// case `work` is dropped where it stood.
pub async fn within<T>(what: Limited, limit: Duration, work: impl Future<Output = T>) -> Option<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(done) => Some(done),
        Err(_) => {
            count(what);
            None
        }
    }
}
