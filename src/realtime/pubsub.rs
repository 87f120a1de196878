//! The Redis pub/sub connection under socketioxide-redis, for several processes.
//!
//! socketioxide-redis's own driver sits on a `MultiplexedConnection`, which stays broken after
//! Redis restarts: no broadcast would reach this process again until it restarted too. This one
//! is the same small `Driver` over redis' `ConnectionManager`, which reconnects by itself and
//! re-subscribes to the adapter's channels when it does.
//!
//! Broadcasts of other processes are not handed to the adapter but to `overflow::Guarded`, which
//! delivers them itself so that a socket whose queue is full is known and dropped.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use socketioxide_core::Uid;
use socketioxide_core::adapter::BroadcastOptions;
use socketioxide_core::adapter::remote_packet::{RequestIn, RequestTypeIn};
use socketioxide_core::packet::Packet;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

/// Where the messages of each subscribed channel go.
type Subscribers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// Delivers a broadcast of another process to this process's sockets.
pub type Deliver = Box<dyn Fn(Packet, BroadcastOptions) + Send + Sync>;

/// Who takes the broadcasts published on a request channel, instead of the adapter.
struct BroadcastTaker {
    /// socketioxide-redis' request channel of the namespace; the one of this process alone
    /// starts with it too.
    channel: String,
    /// This process: its own broadcasts come back to it, and are not delivered twice.
    uid: Uid,
    deliver: Deliver,
}

type Takers = Arc<RwLock<Vec<BroadcastTaker>>>;

/// How often the connection is checked. A reconnection only starts when a command fails, so a
/// quiet process would otherwise stay unsubscribed after a Redis restart until it next broadcast.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct PubSub {
    conn: ConnectionManager,
    subscribers: Subscribers,
    takers: Takers,
}

impl PubSub {
    /// Connects lazily (the process starts while Redis is down, and reports itself unready) over
    /// RESP3, which carries published messages on the same connection as commands.
    /// `limit` (IM_REDIS_TIMEOUT) bounds each command and each attempt to connect: a broadcast
    /// while Redis is down or stalled fails after it.
    pub fn connect(url: &str, limit: Duration) -> redis::RedisResult<PubSub> {
        let info = url.into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let subscribers = Subscribers::default();
        let takers = Takers::default();
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(limit))
            .set_connection_timeout(Some(limit))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500))
            .set_automatic_resubscription()
            .set_push_sender({
                let subscribers = subscribers.clone();
                let takers = takers.clone();
                move |push: PushInfo| {
                    deliver(&subscribers, &takers, push);
                    Ok::<(), std::convert::Infallible>(())
                }
            });
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(PubSub {
            conn,
            subscribers,
            takers,
        })
    }

    /// Hands the broadcasts that other processes publish on `channel` (and on this process's
    /// own channel under it) to `deliver` rather than to the adapter. A later call for the same
    /// channel replaces the earlier one (the namespace is registered again after a failure).
    pub fn deliver_broadcasts(&self, channel: String, uid: Uid, deliver: Deliver) {
        let mut takers = self
            .takers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        takers.retain(|taker| taker.channel != channel);
        takers.push(BroadcastTaker {
            channel,
            uid,
            deliver,
        });
    }

    /// Pings Redis every second for as long as the runtime lives, so that a lost connection is
    /// re-established, and its subscriptions renewed, as soon as Redis is back.
    pub fn watch(&self) {
        let mut conn = self.conn.clone();
        tokio::spawn(async move {
            let mut down = false;
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                let ping: redis::RedisResult<()> = redis::cmd("PING").query_async(&mut conn).await;
                match (ping, down) {
                    (Err(error), false) => {
                        tracing::warn!(%error, "Redis pub/sub lost: broadcasts between processes stop until it is back");
                        down = true;
                    }
                    (Ok(()), true) => {
                        tracing::info!("Redis pub/sub back: broadcasts between processes resume");
                        down = false;
                    }
                    _ => {}
                }
            }
        });
    }
}

/// Hands a published message to the stream of its channel, or a broadcast to its taker.
fn deliver(subscribers: &Subscribers, takers: &Takers, push: PushInfo) {
    if !matches!(push.kind, PushKind::Message) || push.data.len() < 2 {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(channel), Ok(payload)) = (
        String::from_redis_value(channel),
        Vec::<u8>::from_redis_value(payload),
    ) else {
        tracing::warn!("unreadable message from Redis pub/sub");
        return;
    };
    if take_broadcast(takers, &channel, &payload) {
        return;
    }
    let subscribers = subscribers
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(sender) = subscribers.get(&channel)
        && let Err(error) = sender.try_send((channel, payload))
    {
        // The adapter is not keeping up: this message is lost to this process. Logged, since
        // the sockets here miss a broadcast (their clients recover it with `since`).
        tracing::warn!(%error, "Redis pub/sub message dropped");
    }
}

/// Delivers `payload` if it is a broadcast request on a taken channel; false if it is something
/// else, for the adapter.
fn take_broadcast(takers: &Takers, channel: &str, payload: &[u8]) -> bool {
    let takers = takers
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(taker) = takers.iter().find(|t| channel.starts_with(&t.channel)) else {
        return false;
    };
    // Only requests of type 0 (a broadcast without acks) are taken; what cannot be read is left
    // to the adapter, which logs it.
    let Ok(request) = rmp_serde::from_slice::<RequestIn>(payload) else {
        return false;
    };
    if request.node_id == taker.uid {
        // Our own broadcast, delivered here when it was sent.
        return matches!(request.r#type, RequestTypeIn::Broadcast(_));
    }
    match (request.r#type, request.opts) {
        (RequestTypeIn::Broadcast(packet), Some(opts)) => {
            (taker.deliver)(packet, opts);
            true
        }
        _ => false,
    }
}

impl Driver for PubSub {
    type Error = redis::RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        let published = redis::cmd("PUBLISH")
            .arg(chan)
            .arg(val)
            .query_async::<()>(&mut self.conn.clone())
            .await;
        if let Err(error) = &published {
            metrics::counter!(crate::telemetry::REDIS_PUBLISH_ERRORS).increment(1);
            if error.is_timeout() {
                crate::timeouts::count(crate::timeouts::Limited::Redis);
            }
        }
        published
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        // The stream first, so that nothing published right after the subscription is missed.
        let (sender, receiver) = mpsc::channel(size);
        self.subscribers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(chan.clone(), sender);
        self.conn.clone().subscribe(&chan).await?;
        Ok(MessageStream::new(receiver))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.subscribers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&chan);
        self.conn.clone().unsubscribe(&chan).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(count)
    }
}
