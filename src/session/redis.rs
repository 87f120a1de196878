//! Sessions in Redis, shared by every process of a scaled-out deployment.
//!
//! Keys hold a SHA-256 of the session id, never the id itself, so a leaked Redis dump opens no
//! session. `{prefix}sess:{hash}` → user id, expiring `ttl` after last use; `{prefix}user-sess:{uid}`
//! → the set of that user's session hashes, so a ban can end them all. Each operation is one Lua
//! script: one round trip, atomic against a concurrent log-in or ban.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use super::{Session, SessionError, SessionStore, new_session_id};

pub struct RedisSessions {
    redis: ConnectionManager,
    prefix: String,
    ttl_secs: u64,
    create: redis::Script,
    resolve: redis::Script,
    revoke: redis::Script,
    revoke_user: redis::Script,
}

/// Opens a Redis connection manager that connects lazily and reconnects by itself. `limit`
/// (IM_REDIS_TIMEOUT) bounds each command and each attempt to connect, so that a Redis outage
/// or stall fails requests fast instead of hanging them.
pub fn connect(url: &str, limit: Duration) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(limit))
        .set_connection_timeout(Some(limit))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
}

fn unavailable(error: redis::RedisError) -> SessionError {
    SessionError::Unavailable(super::redis_failure(&error))
}

fn hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// KEYS: session, user set. ARGV: user id, ttl, session hash.
const CREATE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1";

/// KEYS: session. ARGV: ttl, user-set key prefix. Returns the user id or nil.
const RESOLVE: &str = r"
local uid = redis.call('GETEX', KEYS[1], 'EX', ARGV[1])
if uid then redis.call('EXPIRE', ARGV[2] .. uid, ARGV[1]) end
return uid";

/// KEYS: session. ARGV: user-set key prefix, session hash.
const REVOKE: &str = r"
local uid = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
if uid then redis.call('SREM', ARGV[1] .. uid, ARGV[2]) end
return 1";

/// KEYS: user set. ARGV: session key prefix. Returns how many live sessions ended.
const REVOKE_USER: &str = r"
local ended = 0
for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  ended = ended + redis.call('DEL', ARGV[1] .. h)
end
redis.call('DEL', KEYS[1])
return ended";

impl RedisSessions {
    pub fn new(redis: ConnectionManager, prefix: &str, ttl: Duration) -> Self {
        // Scripts are hashed once here; each call then sends only the hash (EVALSHA).
        Self {
            redis,
            prefix: prefix.to_owned(),
            ttl_secs: ttl.as_secs().max(1),
            create: redis::Script::new(CREATE),
            resolve: redis::Script::new(RESOLVE),
            revoke: redis::Script::new(REVOKE),
            revoke_user: redis::Script::new(REVOKE_USER),
        }
    }

    fn session_key(&self, hash: &str) -> String {
        format!("{}sess:{hash}", self.prefix)
    }

    fn user_prefix(&self) -> String {
        format!("{}user-sess:", self.prefix)
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn create(&self, user_id: i32) -> Result<Session, SessionError> {
        let id = new_session_id();
        let hashed = hash(&id);
        self.create
            .key(self.session_key(&hashed))
            .key(format!("{}{user_id}", self.user_prefix()))
            .arg(user_id)
            .arg(self.ttl_secs)
            .arg(&hashed)
            .invoke_async::<i32>(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(Session { id, user_id })
    }

    async fn resolve(&self, id: &str) -> Result<Option<Session>, SessionError> {
        let user_id: Option<i32> = self
            .resolve
            .key(self.session_key(&hash(id)))
            .arg(self.ttl_secs)
            .arg(self.user_prefix())
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(user_id.map(|user_id| Session {
            id: id.to_owned(),
            user_id,
        }))
    }

    async fn revoke(&self, id: &str) -> Result<(), SessionError> {
        let hashed = hash(id);
        self.revoke
            .key(self.session_key(&hashed))
            .arg(self.user_prefix())
            .arg(&hashed)
            .invoke_async::<i32>(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn revoke_user(&self, user_id: i32) -> Result<usize, SessionError> {
        let ended: usize = self
            .revoke_user
            .key(format!("{}{user_id}", self.user_prefix()))
            .arg(format!("{}sess:", self.prefix))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(ended)
    }
}
