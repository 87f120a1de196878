//! The time limit of a REST call (IM_REQUEST_TIMEOUT): its handler with all the database, Redis
//! and hashing calls it makes, together. Each of those calls has a limit of its own; this one
//! catches what they cannot, above all a statement already running on a PostgreSQL that froze
//! (SIGSTOP, a hung disk), which no longer acts on its own statement_timeout. Past it the call
//! is answered `服务暂时不可用` (503), `im_timeouts_total{what="request"}` counts it, and one
//! warning names the route; should the handler fail later all the same, the envelope logs that
//! at debug level only ([`answered_already`]), for the operator was told already.
//!
//! Two choices shape it:
//! - The time the handler waits for the client's body is not counted: a phone sending a 3 MB
//!   picture slowly is bounded by IM_BODY_TIMEOUT, not cut by this. The clock stops while the
//!   handler waits for the next piece of the body and runs again once it has it, so what the
//!   handler does between pieces (checking the allowance, writing to disk) still counts.
//! - The handler runs on a task of its own, which goes on after a late call was answered. Dropped
//!   where it stood, a handler could stop between steps that belong together and that no one
//!   transaction holds (an admin's ban committed, the banned user's sessions not yet ended); on
//!   its own task it finishes, each of its calls still bounded by its own limit. Against a
//!   frozen PostgreSQL it waits, holding its connection, until the server answers again or the
//!   connection breaks.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

use super::envelope::ApiError;
use crate::domain::DomainError;
use crate::timeouts::{self, Limited};

tokio::task_local! {
    /// On a call's handler task: set once the call was answered for running out of time.
    static ANSWERED: Arc<AtomicBool>;
}

/// Whether the REST call being handled here was answered already, for running out of time:
/// a failure its handler meets afterwards was logged once as the time-out, and needs no second
/// warning.
pub fn answered_already() -> bool {
    ANSWERED
        .try_with(|answered| answered.load(Ordering::Relaxed))
        .unwrap_or(false)
}

/// Runs the rest of the request (its handler and extractors) for at most `limit` of the server's
/// own time, on a task of its own; answers 503 when the limit runs out first.
pub async fn limit_request(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let clock = Arc::new(BodyClock::default());
    let request = request.map(|body| {
        Body::new(ClockedBody {
            inner: body,
            clock: clock.clone(),
        })
    });
    let started = Instant::now();
    let answered = Arc::new(AtomicBool::new(false));
    let mut handler =
        tokio::spawn(ANSWERED.scope(answered.clone(), next.run(request).in_current_span()));
    loop {
        let (spent, waiting) = clock.spent(started, Instant::now());
        if !waiting && spent >= limit {
            break;
        }
        let pause = async {
            if waiting {
                // The clock is stopped: nothing to do before the handler reads on.
                clock.changed.notified().await;
            } else {
                tokio::time::sleep(limit - spent).await;
            }
        };
        tokio::select! {
            joined = &mut handler => {
                return match joined {
                    Ok(response) => response,
                    // As if the handler had panicked right here, where it used to run.
                    Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                    Err(error) => ApiError(DomainError::Internal(format!(
                        "{method} {route}: its task ended without an answer: {error}"
                    )))
                    .into_response(),
                };
            }
            () = pause => {}
        }
    }
    timeouts::count(Limited::Request);
    answered.store(true, Ordering::Relaxed);
    // The envelope logs the one warning, with this cause.
    ApiError(DomainError::Unavailable(format!(
        "{method} {route} timed out: it took longer than IM_REQUEST_TIMEOUT ({} s); it goes on \
         and may still complete",
        limit.as_secs()
    )))
    .into_response()
}

/// How long a request's handler has waited for its body: the time the limit does not count.
#[derive(Default)]
struct BodyClock {
    waits: Mutex<Waits>,
    /// Told when a wait begins or ends.
    changed: Notify,
}

#[derive(Default)]
struct Waits {
    /// The waits that ended.
    past: Duration,
    /// When the wait under way began.
    since: Option<Instant>,
}

impl BodyClock {
    /// The time from `started` to `now` not spent waiting for the body, and whether a wait is
    /// under way.
    fn spent(&self, started: Instant, now: Instant) -> (Duration, bool) {
        // Plain numbers: whatever a panicking holder left is still usable.
        let waits = self.waits.lock().unwrap_or_else(PoisonError::into_inner);
        let current = waits
            .since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        let spent = now
            .saturating_duration_since(started)
            .saturating_sub(waits.past + current);
        (spent, waits.since.is_some())
    }

    fn wait_begins(&self, now: Instant) {
        let mut waits = self.waits.lock().unwrap_or_else(PoisonError::into_inner);
        if waits.since.is_none() {
            waits.since = Some(now);
            // A permit if nobody listens yet: the limit's loop then looks again at once.
            self.changed.notify_one();
        }
    }

    fn wait_ends(&self, now: Instant) {
        let mut waits = self.waits.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(since) = waits.since.take() {
            waits.past += now.saturating_duration_since(since);
            self.changed.notify_one();
        }
    }
}

/// A request body that stops the clock while its reader waits for the client's next bytes.
struct ClockedBody {
    inner: Body,
    clock: Arc<BodyClock>,
}

impl HttpBody for ClockedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() {
            self.clock.wait_begins(Instant::now());
        } else {
            self.clock.wait_ends(Instant::now());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ClockedBody {
    /// A body dropped half-read (a refused upload) waits for nothing any more.
    fn drop(&mut self) {
        self.clock.wait_ends(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_body_are_not_counted() {
        let clock = BodyClock::default();
        let started = Instant::now();
        let at = |secs| started + Duration::from_secs(secs);
        clock.wait_begins(at(2));
        assert_eq!(
            clock.spent(started, at(7)),
            (Duration::from_secs(2), true),
            "a wait under way"
        );
        clock.wait_ends(at(7));
        // A reader polling again before the bytes came begins no second wait.
        clock.wait_begins(at(8));
        clock.wait_begins(at(9));
        clock.wait_ends(at(11));
        clock.wait_ends(at(12));
        assert_eq!(
            clock.spent(started, at(13)),
            (Duration::from_secs(5), false)
        );
    }
}
