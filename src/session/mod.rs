//! Sessions and tokens: one server-side record per login, named by a random id that the client
//! holds either as the `IM_SESS` cookie or as a token. The store is a trait with an in-memory
//! implementation (one process) and, with `REDIS_URL`, a shared one; `presence` is the shared
//! register of connected sockets, and `limits` the shared rate-limit counts, beside it in Redis.

pub mod limits;
pub mod memory;
pub mod password;
pub mod presence;
pub mod redis;

use async_trait::async_trait;
use rand::Rng;

/// A live login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The secret that names the session: cookie value and token alike.
    pub id: String,
    pub user_id: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Opens a new session for `user_id`.
    async fn create(&self, user_id: i32) -> Result<Session, SessionError>;
    /// The live session named `id`, its life extended (sessions expire only when unused).
    async fn resolve(&self, id: &str) -> Result<Option<Session>, SessionError>;
    /// Ends one session.
    async fn revoke(&self, id: &str) -> Result<(), SessionError>;
    /// Ends every session of a user, for a ban or a deletion; returns how many ended.
    async fn revoke_user(&self, user_id: i32) -> Result<usize, SessionError>;
}

/// The text of a failed Redis command. One that ran out of its time (IM_REDIS_TIMEOUT) says so
/// and is counted in `im_timeouts_total{what="redis"}`.
pub(crate) fn redis_failure(error: &::redis::RedisError) -> String {
    if error.is_timeout() {
        crate::timeouts::count(crate::timeouts::Limited::Redis);
        return format!("Redis command timed out: {error}");
    }
    error.to_string()
}

/// 256 random bits from the thread-local CSPRNG, hex-encoded.
pub fn new_session_id() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

/// Whether `text` could be a session id; anything else is rejected before any lookup.
pub fn looks_like_session_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}
