//! Presence in Redis, shared by every process: who has a socket connected, on any process.
//!
//! Each process is a node with a random id, alive while `{prefix}presence:alive:{node}` exists;
//! it renews that key every third of its TTL. `{prefix}presence:user:{uid}` holds the user's
//! sockets as `node|socket`, and `{prefix}presence:node:{node}` the users a node has sockets of.
//! A socket counts only while its node is alive, so a process that dies takes its users offline
//! after the TTL at the latest; the next heartbeat of any process then removes its sockets and
//! returns the users left with none, for their friends to be told. Each operation is one Lua
//! script: one round trip, atomic against the other processes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use redis::aio::ConnectionManager;

use crate::domain::DomainError;
use crate::domain::presence::{Heartbeat, PresenceRegister};

pub struct RedisPresence {
    redis: ConnectionManager,
    prefix: String,
    node: String,
    ttl_secs: u64,
    connected: redis::Script,
    disconnected: redis::Script,
    online_among: redis::Script,
    heartbeat: redis::Script,
    resync: redis::Script,
    /// A change could not be written (Redis unreachable): the next heartbeat asks for a resync,
    /// or a socket that left during an outage would keep its user online.
    stale: AtomicBool,
}

/// `live(members, alive_prefix)`: whether any `node|socket` member belongs to a live node.
const LIVE: &str = r"
local function live(members, alive_prefix)
  for _, member in ipairs(members) do
    local node = string.match(member, '^([^|]+)|')
    if node and redis.call('EXISTS', alive_prefix .. node) == 1 then return true end
  end
  return false
end
";

/// KEYS: user's sockets, node's users. ARGV: member, user id, alive prefix.
/// Returns 1 when the user had no live socket before.
const CONNECTED: &str = r"
local was_online = live(redis.call('SMEMBERS', KEYS[1]), ARGV[3])
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
if was_online then return 0 end
return 1";

/// KEYS: user's sockets, node's users. ARGV: member, user id, alive prefix, `node|`.
/// Returns 1 when the socket was there and the user has no live socket left.
const DISCONNECTED: &str = r"
local removed = redis.call('SREM', KEYS[1], ARGV[1])
local members = redis.call('SMEMBERS', KEYS[1])
local on_node = false
for _, member in ipairs(members) do
  if string.sub(member, 1, #ARGV[4]) == ARGV[4] then on_node = true end
end
if not on_node then redis.call('SREM', KEYS[2], ARGV[2]) end
if removed == 1 and not live(members, ARGV[3]) then return 1 end
return 0";

/// ARGV: alive prefix, user prefix, user ids... Returns those with a live socket.
const ONLINE_AMONG: &str = r"
local online = {}
for i = 3, #ARGV do
  if live(redis.call('SMEMBERS', ARGV[2] .. ARGV[i]), ARGV[1]) then
    table.insert(online, tonumber(ARGV[i]))
  end
end
return online";

/// KEYS: this node's alive key, the set of nodes. ARGV: node, ttl, alive prefix, node-users
/// prefix, user prefix. Returns {1 if this node's key had gone, {users gone offline}}.
const HEARTBEAT: &str = r"
local was_alive = redis.call('SET', KEYS[1], '1', 'EX', ARGV[2], 'GET')
redis.call('SADD', KEYS[2], ARGV[1])
local offline = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[3] .. node) == 0 then
    local mark = node .. '|'
    for _, uid in ipairs(redis.call('SMEMBERS', ARGV[4] .. node)) do
      local sockets = ARGV[5] .. uid
      for _, member in ipairs(redis.call('SMEMBERS', sockets)) do
        if string.sub(member, 1, #mark) == mark then redis.call('SREM', sockets, member) end
      end
      if not live(redis.call('SMEMBERS', sockets), ARGV[3]) then
        table.insert(offline, tonumber(uid))
      end
    end
    redis.call('DEL', ARGV[4] .. node)
    redis.call('SREM', KEYS[2], node)
  end
end
if was_alive then return {0, offline} end
return {1, offline}";

/// KEYS: node's users. ARGV: `node|`, user prefix, then user id and member pairs. Replaces
/// every socket of this node with those given.
const RESYNC: &str = r"
for _, uid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local sockets = ARGV[2] .. uid
  for _, member in ipairs(redis.call('SMEMBERS', sockets)) do
    if string.sub(member, 1, #ARGV[1]) == ARGV[1] then redis.call('SREM', sockets, member) end
  end
end
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do
  redis.call('SADD', ARGV[2] .. ARGV[i], ARGV[i + 1])
  redis.call('SADD', KEYS[1], ARGV[i])
end
return 1";

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{LIVE}{body}"))
}

fn unavailable(error: redis::RedisError) -> DomainError {
    DomainError::Unavailable(format!("presence: {}", super::redis_failure(&error)))
}

impl RedisPresence {
    /// A register for this process, as a new node: sockets it records count while it beats.
    pub fn new(redis: ConnectionManager, prefix: &str, ttl: Duration) -> Self {
        Self {
            redis,
            prefix: format!("{prefix}presence:"),
            node: hex::encode(rand::rng().random::<[u8; 8]>()),
            ttl_secs: ttl.as_secs().max(1),
            connected: script(CONNECTED),
            disconnected: script(DISCONNECTED),
            online_among: script(ONLINE_AMONG),
            heartbeat: script(HEARTBEAT),
            resync: script(RESYNC),
            stale: AtomicBool::new(false),
        }
    }

    fn member(&self, socket_id: &str) -> String {
        format!("{}|{socket_id}", self.node)
    }

    fn alive_prefix(&self) -> String {
        format!("{}alive:", self.prefix)
    }

    fn user_prefix(&self) -> String {
        format!("{}user:", self.prefix)
    }

    fn node_prefix(&self) -> String {
        format!("{}node:", self.prefix)
    }

    /// Notes a failed write, for the next heartbeat to repair.
    fn written<T>(&self, result: redis::RedisResult<T>) -> Result<T, DomainError> {
        result.map_err(|error| {
            self.stale.store(true, Ordering::Relaxed);
            unavailable(error)
        })
    }
}

#[async_trait]
impl PresenceRegister for RedisPresence {
    async fn connected(&self, user_id: i32, socket_id: &str) -> Result<bool, DomainError> {
        let first: redis::RedisResult<i32> = self
            .connected
            .key(format!("{}{user_id}", self.user_prefix()))
            .key(format!("{}{}", self.node_prefix(), self.node))
            .arg(self.member(socket_id))
            .arg(user_id)
            .arg(self.alive_prefix())
            .invoke_async(&mut self.redis.clone())
            .await;
        Ok(self.written(first)? == 1)
    }

    async fn disconnected(&self, user_id: i32, socket_id: &str) -> Result<bool, DomainError> {
        let last: redis::RedisResult<i32> = self
            .disconnected
            .key(format!("{}{user_id}", self.user_prefix()))
            .key(format!("{}{}", self.node_prefix(), self.node))
            .arg(self.member(socket_id))
            .arg(user_id)
            .arg(self.alive_prefix())
            .arg(format!("{}|", self.node))
            .invoke_async(&mut self.redis.clone())
            .await;
        Ok(self.written(last)? == 1)
    }

    async fn online_among(&self, user_ids: &[i32]) -> Result<HashSet<i32>, DomainError> {
        if user_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let online: Vec<i32> = self
            .online_among
            .arg(self.alive_prefix())
            .arg(self.user_prefix())
            .arg(user_ids)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(online.into_iter().collect())
    }

    async fn heartbeat(&self) -> Result<Heartbeat, DomainError> {
        let (forgotten, went_offline): (i32, Vec<i32>) = self
            .heartbeat
            .key(format!("{}{}", self.alive_prefix(), self.node))
            .key(format!("{}nodes", self.prefix))
            .arg(&self.node)
            .arg(self.ttl_secs)
            .arg(self.alive_prefix())
            .arg(self.node_prefix())
            .arg(self.user_prefix())
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(Heartbeat {
            resync: forgotten == 1 || self.stale.swap(false, Ordering::Relaxed),
            went_offline,
        })
    }

    async fn resync(&self, sockets: &[(i32, String)]) -> Result<(), DomainError> {
        let mut invocation = self
            .resync
            .key(format!("{}{}", self.node_prefix(), self.node));
        invocation
            .arg(format!("{}|", self.node))
            .arg(self.user_prefix());
        for (user_id, socket_id) in sockets {
            invocation.arg(user_id).arg(self.member(socket_id));
        }
        let done: redis::RedisResult<i32> = invocation.invoke_async(&mut self.redis.clone()).await;
        self.written(done).map(drop)
    }
}
