//! The message writer: one task per process that stores posted messages by group commit. Posts
//! queue while a batch commits; the next batch takes all of them (up to [`MAX_BATCH`]) into one
//! transaction ([`messaging::store_batch`]). A post is answered only after its batch committed,
//! so a message is acked and broadcast only once stored; when a batch fails, every post of it
//! fails.
//!
//! One transaction per message spent most of its time on round trips and on the commit's flush;
//! a batch pays those once for all its messages, and a queue that grows under load makes the
//! batches larger rather than the wait longer.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::DomainError;
use super::messaging::{self, NewPost, Posted};
use crate::store::{Backend, Db, on_one_thread};
use crate::telemetry;

/// Most posts in one transaction: large enough to amortize a commit at any rate this process
/// takes, small enough to stay well under either backend's bind-parameter limit.
pub const MAX_BATCH: usize = 512;
/// Posts waiting for the writer; beyond it senders wait for room, which slows them instead of
/// letting the queue grow without bound.
const QUEUE: usize = 8192;

pub const WRITER_STOPPED: &str = "message writer stopped";

/// A post and where its answer goes.
struct Pending {
    post: NewPost,
    answer: oneshot::Sender<Result<Posted, DomainError>>,
}

/// The handle to the process's writer; the task ends when the last handle is dropped.
#[derive(Clone)]
pub struct MessageWriter {
    queue: mpsc::Sender<Pending>,
}

impl MessageWriter {
    /// Starts the writer on `db`. Call it from within the Tokio runtime.
    pub fn start(db: Db) -> Self {
        let (queue, posts) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, posts));
        MessageWriter { queue }
    }

    /// Stores one post with whatever else is queued, and answers once its batch committed.
    pub async fn store(&self, post: NewPost) -> Result<Posted, DomainError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending { post, answer })
            .await
            .map_err(|_| DomainError::Internal(WRITER_STOPPED.into()))?;
        // A dropped answer means the batch's task panicked: nothing was committed for it.
        answered
            .await
            .unwrap_or_else(|_| Err(DomainError::Internal(WRITER_STOPPED.into())))
    }
}

async fn run(db: Db, mut queue: mpsc::Receiver<Pending>) {
    // On PostgreSQL the next batch starts while this one commits (the commit's flush is most of
    // a batch's time): it starts only once this one wrote everything and holds its
    // conversations' rows, so its own updates of them wait for this commit and number their
    // messages after this batch's. At most two batches are in flight. SQLite has one writer at
    // a time anyway, and a second BEGIN IMMEDIATE would only sleep in its busy handler.
    let overlap = db.backend() == Backend::Postgres;
    let mut previous: Option<JoinHandle<()>> = None;
    let mut pending = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut pending, MAX_BATCH).await > 0 {
        let batch = std::mem::replace(&mut pending, Vec::with_capacity(MAX_BATCH));
        let written = Arc::new(Notify::new());
        // A task per batch, so that a panic fails that batch's posts, not the writer.
        let mut current = tokio::spawn(commit(db.clone(), batch, overlap.then(|| written.clone())));
        let running = if overlap {
            tokio::select! {
                () = written.notified() => Some(current),
                joined = &mut current => {
                    report(joined);
                    None
                }
            }
        } else {
            report(current.await);
            None
        };
        if let Some(before) = previous.take() {
            report(before.await);
        }
        previous = running;
    }
    if let Some(before) = previous {
        report(before.await);
    }
}

fn report(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        tracing::error!(%error, "a batch of messages failed");
    }
}

/// Stores one batch and answers each of its posts.
async fn commit(db: Db, batch: Vec<Pending>, written: Option<Arc<Notify>>) {
    let (posts, answers): (Vec<NewPost>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.post, pending.answer))
        .unzip();
    let size = posts.len();
    let started = std::time::Instant::now();
    let posts = Arc::new(posts);
    let stored = match db.backend() {
        // The batch's queries one after another on one thread, not each a hand-off.
        Backend::Sqlite => {
            on_one_thread(async move { messaging::store_batch(&db, posts, written).await })
                .await
                .unwrap_or_else(|error| {
                    Err(DomainError::Internal(format!("{WRITER_STOPPED}: {error}")))
                })
        }
        Backend::Postgres => messaging::store_batch(&db, posts, written).await,
    };
    let elapsed = started.elapsed();
    tracing::debug!(size, ?elapsed, ok = stored.is_ok(), "batch of messages");
    metrics::histogram!(telemetry::BATCH_SIZE).record(size as f64);
    metrics::histogram!(telemetry::BATCH_COMMIT).record(elapsed.as_secs_f64());
    match stored {
        Ok(results) => {
            // Retries of a message already stored are answered, not stored again.
            let fresh = results
                .iter()
                .filter(|result| result.as_ref().is_ok_and(|posted| posted.fresh))
                .count();
            metrics::counter!(telemetry::MESSAGES_STORED).increment(fresh as u64);
            for (answer, result) in answers.into_iter().zip(results) {
                // The sender may have gone (socket closed): its message is stored all the same.
                let _ = answer.send(result);
            }
        }
        Err(error) => {
            metrics::counter!(telemetry::BATCH_FAILURES).increment(1);
            // Each sender still waiting reports the failure itself (the refusal of its event
            // logs the cause): one line per failed send. Only sends nobody waits for any more
            // (their socket closed) are reported here.
            let unheard = answers
                .into_iter()
                .map(|answer| answer.send(Err(error.clone())))
                .filter(Result::is_err)
                .count();
            if unheard > 0 {
                tracing::warn!(%error, size, unheard, "a batch of messages was not stored");
            } else {
                tracing::debug!(%error, size, "a batch of messages was not stored");
            }
        }
    }
}
