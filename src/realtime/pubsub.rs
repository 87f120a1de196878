//! The Redis pub/sub connection under socketioxide-redis, for several processes.
//!
//! socketioxide-redis's own driver sits on a `MultiplexedConnection`, which stays broken after
//! Redis restarts: no broadcast would reach this process again until it restarted too. This one
//! is the same small `Driver` over redis' `ConnectionManager`, which reconnects by itself and
//! re-subscribes to the adapter's channels when it does.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

/// Where the messages of each subscribed channel go.
type Subscribers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// How long one Redis command may take: a broadcast while Redis is down fails after this.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the connection is checked. A reconnection only starts when a command fails, so a
/// quiet process would otherwise stay unsubscribed after a Redis restart until it next broadcast.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct PubSub {
    conn: ConnectionManager,
    subscribers: Subscribers,
}

impl PubSub {
    /// Connects lazily (the process starts while Redis is down, and reports itself unready) over
    /// RESP3, which carries published messages on the same connection as commands.
    pub fn connect(url: &str) -> redis::RedisResult<PubSub> {
        let info = url.into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let subscribers = Subscribers::default();
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500))
            .set_automatic_resubscription()
            .set_push_sender({
                let subscribers = subscribers.clone();
                move |push: PushInfo| {
                    deliver(&subscribers, push);
                    Ok::<(), std::convert::Infallible>(())
                }
            });
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(PubSub { conn, subscribers })
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

/// Hands a published message to the stream of its channel.
fn deliver(subscribers: &Subscribers, push: PushInfo) {
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

impl Driver for PubSub {
    type Error = redis::RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        redis::cmd("PUBLISH")
            .arg(chan)
            .arg(val)
            .query_async::<()>(&mut self.conn.clone())
            .await
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
