//! Rate-limit counts in Redis, shared by every process: the GCRA of domain/limits.rs in one Lua
//! script per operation, atomic against every other process, on Redis's own clock so that the
//! processes' clocks need not agree.
//!
//! `{prefix}rl:{key}` holds the key's theoretical arrival time in microseconds and expires when
//! it is reached; `{prefix}rl:{key}` of a mark holds `1` for its life.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::SessionError;
use crate::domain::limits::{LimitStore, Taken};

pub struct RedisLimits {
    redis: ConnectionManager,
    prefix: String,
    take: redis::Script,
    give_back: redis::Script,
}

/// KEYS: the count. ARGV: cost, window (µs), count. Returns 0 when taken, -1 when taken and as
/// much again would not fit, else the wait in µs.
/// Lua numbers are doubles: microseconds since 1970 (~1.8e15) stay exact below 2^53.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local window = tonumber(ARGV[2])
local span = tonumber(ARGV[1]) * window / tonumber(ARGV[3])
local next = tat + span
local ahead = next - now
if ahead > window then return math.ceil(ahead - window) end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.max(1, math.ceil(ahead / 1000)))
if ahead + span > window then return -1 end
return 0";

/// KEYS: the count. ARGV: cost, window (µs), count.
const GIVE_BACK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
local next = tat - tonumber(ARGV[1]) * tonumber(ARGV[2]) / tonumber(ARGV[3])
if next <= now then redis.call('DEL', KEYS[1]) return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.max(1, math.ceil((next - now) / 1000)))
return 0";

fn unavailable(error: redis::RedisError) -> SessionError {
    SessionError::Unavailable(super::redis_failure(&error))
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl RedisLimits {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        RedisLimits {
            redis,
            prefix: prefix.to_owned(),
            take: redis::Script::new(TAKE),
            give_back: redis::Script::new(GIVE_BACK),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}rl:{key}", self.prefix)
    }
}

#[async_trait]
impl LimitStore for RedisLimits {
    async fn take(
        &self,
        key: &str,
        count: u64,
        window: Duration,
        cost: u64,
    ) -> Result<Result<Taken, Duration>, SessionError> {
        let wait: i64 = self
            .take
            .key(self.key(key))
            .arg(cost)
            .arg(micros(window))
            .arg(count)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(match u64::try_from(wait) {
            Ok(0) => Ok(Taken::Some),
            Ok(wait) => Err(Duration::from_micros(wait)),
            Err(_) => Ok(Taken::Last),
        })
    }

    async fn give_back(
        &self,
        key: &str,
        count: u64,
        window: Duration,
        cost: u64,
    ) -> Result<(), SessionError> {
        self.give_back
            .key(self.key(key))
            .arg(cost)
            .arg(micros(window))
            .arg(count)
            .invoke_async::<i64>(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn remember(&self, key: &str, ttl: Duration) -> Result<(), SessionError> {
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(1)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async::<()>(&mut self.redis.clone())
            .await
            .map_err(unavailable)
    }

    async fn recalls(&self, key: &str) -> Result<bool, SessionError> {
        redis::cmd("EXISTS")
            .arg(self.key(key))
            .query_async::<bool>(&mut self.redis.clone())
            .await
            .map_err(unavailable)
    }
}
