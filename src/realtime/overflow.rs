//! Sockets that cannot keep up: a socket whose outgoing queue is full is dropped, never left open
//! losing packets, so that its client reconnects and fetches what it missed with `since`.
//!
//! socketioxide reports a full queue only to the caller of a send, and a broadcast's error does
//! not say which socket it was (a broadcast from another process only logs it). So broadcasts go
//! through `Guarded`, which sends the packet to one socket after the other and knows which one
//! failed (its data is serialized once; its frame, a copy of it, is built per socket: the cost
//! of knowing); direct sends go through `send_to`. A socket found full is at once
//! taken out of every room and marked, so that nothing sent after the packet it lost can reach
//! it (what its client received is a prefix of what was sent, without a gap); then its
//! connection is cut, and one line is logged.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use socketioxide::adapter::{Adapter, Emitter};
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketIo};
use socketioxide_core::Sid;
use socketioxide_core::adapter::errors::{AdapterError, BroadcastError, SocketError};
use socketioxide_core::adapter::remote_packet::{RequestOut, RequestTypeOut};
use socketioxide_core::adapter::{
    BroadcastFlags, BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter, Room,
    RoomParam,
};
use socketioxide_core::packet::Packet;
use socketioxide_redis::drivers::Driver;
use tokio::sync::mpsc;

use super::auth::Identity;
use super::pubsub::PubSub;
use super::transport::{Connection, Switch};

/// After its connection is cut, how long a dropped socket has to be gone before it is told to
/// disconnect at the Socket.IO level (a long-polling socket has no connection of its own).
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Then how often it is told again while its queue is still full, and how many times: past
/// the heartbeat's 45 s a client that never reads is gone anyway.
const CLOSE_RETRY: Duration = Duration::from_secs(1);
const CLOSE_TRIES: usize = 60;

/// The sockets being dropped, and the connections of WebSocket upgrades (a socket opened by
/// long-polling keeps the handshake's request, not the upgrade's).
pub struct Overflow {
    /// Sockets found full and not gone yet: nothing more is sent to them.
    dropped: Mutex<HashSet<Sid>>,
    /// How many `dropped` holds, read without the lock on every delivery.
    dropping: AtomicUsize,
    /// Where found sockets go to be cut and logged (the task holds the `SocketIo`).
    found: mpsc::UnboundedSender<Sid>,
    to_close: Mutex<Option<mpsc::UnboundedReceiver<Sid>>>,
    upgrades: Mutex<Upgrades>,
    /// The packets a socket may have queued, for the log line.
    limit: usize,
}

#[derive(Default)]
struct Upgrades {
    connections: HashMap<Sid, Weak<Switch>>,
    /// When `connections` reaches this size, entries of closed connections are swept.
    sweep_at: usize,
}

const UPGRADES_SWEEP_MIN: usize = 1024;

impl Overflow {
    pub fn new(limit: usize) -> Arc<Overflow> {
        let (found, to_close) = mpsc::unbounded_channel();
        Arc::new(Overflow {
            dropped: Mutex::default(),
            dropping: AtomicUsize::new(0),
            found,
            to_close: Mutex::new(Some(to_close)),
            upgrades: Mutex::new(Upgrades {
                connections: HashMap::new(),
                sweep_at: UPGRADES_SWEEP_MIN,
            }),
            limit,
        })
    }

    fn is_dropped(&self, sid: Sid) -> bool {
        self.dropping.load(Ordering::Acquire) > 0
            && self
                .dropped
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&sid)
    }

    /// `sid`'s queue is full: `leave` takes it out of every room, and it is queued for closing.
    fn found_full(&self, sid: Sid, leave: impl FnOnce()) {
        let first = self
            .dropped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sid);
        if !first {
            return;
        }
        self.dropping.fetch_add(1, Ordering::AcqRel);
        leave();
        // Unbounded, but one entry per socket found, each at most once.
        let _ = self.found.send(sid);
    }

    /// A socket is gone: forget what was kept about it.
    pub fn forget(&self, sid: Sid) {
        if self
            .dropped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&sid)
        {
            self.dropping.fetch_sub(1, Ordering::AcqRel);
        }
        self.upgrades
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connections
            .remove(&sid);
    }

    /// Engine.IO session `sid` moves to the WebSocket of `connection`.
    pub fn upgraded(&self, sid: Sid, connection: &Connection) {
        let mut upgrades = self.upgrades.lock().unwrap_or_else(PoisonError::into_inner);
        if upgrades.connections.len() >= upgrades.sweep_at {
            upgrades
                .connections
                .retain(|_, switch| switch.strong_count() > 0);
            upgrades.sweep_at = (upgrades.connections.len() * 2).max(UPGRADES_SWEEP_MIN);
        }
        upgrades.connections.insert(sid, connection.downgrade());
    }

    /// The connection that carries `socket` now, if it has one of its own.
    fn connection_of<A: Adapter>(&self, socket: &Socket<A>) -> Option<Connection> {
        let upgraded = self
            .upgrades
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connections
            .get(&socket.id)
            .and_then(Weak::upgrade);
        match upgraded {
            Some(switch) => Some(Connection::from(switch)),
            // A socket that opened on a WebSocket keeps the request of that connection.
            None if socket.transport_type() == socketioxide::TransportType::Websocket => {
                socket.req_parts().extensions.get::<Connection>().cloned()
            }
            None => None,
        }
    }

    /// Sends `packet` to the local sockets `opts` selects, one after the other, so that a full
    /// queue is known with its socket; that socket is dropped.
    fn deliver(&self, local: &CoreLocalAdapter<Emitter>, packet: Packet, opts: BroadcastOptions) {
        if opts.has_flag(BroadcastFlags::Volatile) {
            // Volatile packets may be lost by definition: nothing to drop a socket for.
            let _ = local.broadcast(packet, opts);
            return;
        }
        for sid in local.sockets(opts) {
            if self.is_dropped(sid) {
                continue;
            }
            let Err(errors) = local.broadcast(packet.clone(), BroadcastOptions::new(sid)) else {
                continue;
            };
            if errors
                .iter()
                .any(|error| matches!(error, SocketError::InternalChannelFull))
            {
                self.found_full(sid, || local.del_all(sid));
            }
        }
    }

    /// Cuts and logs the sockets found full, for as long as `io` lives.
    pub fn start_closing<A: Adapter>(self: &Arc<Self>, io: SocketIo<A>) {
        let taken = self
            .to_close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut found) = taken else { return };
        let overflow = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(sid) = found.recv().await {
                let Some(this) = overflow.upgrade() else {
                    return;
                };
                this.close(&io, sid);
            }
        });
    }

    fn close<A: Adapter>(&self, io: &SocketIo<A>, sid: Sid) {
        let Some(socket) = io.get_socket(sid) else {
            self.forget(sid);
            return;
        };
        let user_id = socket.extensions.get::<Identity>().map(|i| i.user_id);
        let connection = self.connection_of(&socket);
        let cut = connection.is_some();
        if let Some(connection) = connection {
            connection.cut();
        }
        metrics::counter!(crate::telemetry::SOCKETS_DROPPED).increment(1);
        tracing::warn!(
            socket = %sid,
            user_id,
            transport = ?socket.transport_type(),
            queued = self.limit,
            cut,
            "socket dropped: its client does not read what is sent to it fast enough and its \
             queue is full; the client reconnects and fetches what it missed"
        );
        // Most often the cut connection has closed it already. A long-polling socket, or one
        // whose connection is not known, is told to disconnect once its queue has room: when
        // its client polls again (or, if it never does, the heartbeat ends it first).
        tokio::spawn(async move {
            tokio::time::sleep(CLOSE_GRACE).await;
            for _ in 0..CLOSE_TRIES {
                if !socket.connected() {
                    return;
                }
                match socket.clone().disconnect() {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::debug!(%error, socket = %sid, "dropped socket not disconnected yet");
                    }
                }
                tokio::time::sleep(CLOSE_RETRY).await;
            }
        });
    }
}

/// Sends one packet to `socket` with `send`, unless the socket is being dropped; a full queue
/// drops it. Every send to one socket goes through here.
pub fn send_to<A: Adapter>(
    socket: &Socket<A>,
    send: impl FnOnce() -> Result<(), SendError>,
) -> Result<(), SendError> {
    let overflow = socket.extensions.get::<Arc<Overflow>>();
    if let Some(overflow) = &overflow
        && overflow.is_dropped(socket.id)
    {
        return Err(SendError::Socket(SocketError::Closed));
    }
    let sent = send();
    if let (Err(SendError::Socket(SocketError::InternalChannelFull)), Some(overflow)) =
        (&sent, &overflow)
    {
        overflow.found_full(socket.id, || socket.leave_all());
    }
    sent
}

/// Publishes broadcasts to the other processes, in socketioxide-redis' own format and channels,
/// so that `Guarded` does the local part itself.
#[derive(Clone)]
pub struct Remote {
    pub pubsub: PubSub,
    /// socketioxide-redis' prefix, as configured for it.
    pub prefix: String,
}

/// What `Guarded` is built from: the adapter's own state, and ours.
pub struct GuardedState<S> {
    pub inner: S,
    pub overflow: Arc<Overflow>,
    pub remote: Option<Remote>,
}

/// An adapter whose broadcasts drop the sockets they find full (local ones, and those that
/// broadcasts of other processes reach: `PubSub` hands those here); everything else is `A`'s.
pub struct Guarded<A> {
    inner: Arc<A>,
    overflow: Arc<Overflow>,
    remote: Option<Remote>,
    /// socketioxide-redis' request channel of this namespace.
    request_channel: String,
}

impl<A> DefinedAdapter for Guarded<A> {}

impl<A: CoreAdapter<Emitter>> Guarded<A> {
    async fn publish(
        &self,
        remote: &Remote,
        packet: &Packet,
        opts: &BroadcastOptions,
    ) -> Result<(), AdapterError> {
        let local = self.inner.get_local();
        let request = RequestOut::new(local.server_id(), RequestTypeOut::Broadcast(packet), opts);
        let bytes = rmp_serde::to_vec(&request).map_err(|e| AdapterError::from(boxed(e)))?;
        let channel = match opts.server_id {
            Some(server) => format!("{}{server}#", self.request_channel),
            None => self.request_channel.clone(),
        };
        remote
            .pubsub
            .publish(channel, bytes)
            .await
            .map_err(|e| AdapterError::from(boxed(e)))
    }
}

fn boxed(error: impl std::error::Error + Send + 'static) -> Box<dyn std::error::Error + Send> {
    Box::new(error)
}

impl<A: CoreAdapter<Emitter>> CoreAdapter<Emitter> for Guarded<A> {
    type Error = A::Error;
    type State = GuardedState<A::State>;
    type AckStream = A::AckStream;
    type InitRes = A::InitRes;

    fn new(state: &Self::State, local: CoreLocalAdapter<Emitter>) -> Self {
        let request_channel = state.remote.as_ref().map_or_else(String::new, |remote| {
            format!("{}-request#{}#", remote.prefix, local.path())
        });
        Guarded {
            inner: Arc::new(A::new(&state.inner, local)),
            overflow: state.overflow.clone(),
            remote: state.remote.clone(),
            request_channel,
        }
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> Self::InitRes {
        if let Some(remote) = &self.remote {
            // Broadcasts of other processes are delivered here rather than by `A`.
            let guarded = Arc::downgrade(&self);
            let uid = self.inner.get_local().server_id();
            remote.pubsub.deliver_broadcasts(
                self.request_channel.clone(),
                uid,
                Box::new(move |packet, opts| {
                    if let Some(guarded) = guarded.upgrade() {
                        guarded
                            .overflow
                            .deliver(guarded.inner.get_local(), packet, opts);
                    }
                }),
            );
        }
        self.inner.clone().init(on_success)
    }

    async fn close(&self) -> Result<(), Self::Error> {
        self.inner.close().await
    }

    async fn server_count(&self) -> Result<u16, Self::Error> {
        self.inner.server_count().await
    }

    async fn broadcast(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> Result<(), BroadcastError> {
        let local = self.inner.get_local();
        if let Some(remote) = &self.remote
            && !opts.is_local(local.server_id())
        {
            self.publish(remote, &packet, &opts).await?;
        }
        self.overflow.deliver(local, packet, opts);
        Ok(())
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<Self::AckStream, Self::Error> {
        self.inner.broadcast_with_ack(packet, opts, timeout).await
    }

    async fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Self::Error> {
        self.inner.add_sockets(opts, rooms).await
    }

    async fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Self::Error> {
        self.inner.del_sockets(opts, rooms).await
    }

    async fn disconnect_socket(&self, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        self.inner.disconnect_socket(opts).await
    }

    async fn rooms(&self, opts: BroadcastOptions) -> Result<Vec<Room>, Self::Error> {
        self.inner.rooms(opts).await
    }

    async fn fetch_sockets(
        &self,
        opts: BroadcastOptions,
    ) -> Result<Vec<socketioxide_core::adapter::RemoteSocketData>, Self::Error> {
        self.inner.fetch_sockets(opts).await
    }

    fn get_local(&self) -> &CoreLocalAdapter<Emitter> {
        self.inner.get_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However many sends find it full, a socket leaves its rooms once and is closed (and
    /// logged) once.
    #[test]
    fn a_full_socket_is_dropped_once() {
        let overflow = Overflow::new(4);
        let sid = Sid::new();
        let mut left = 0;
        for _ in 0..3 {
            overflow.found_full(sid, || left += 1);
        }
        assert_eq!(left, 1);
        assert!(overflow.is_dropped(sid));
        assert!(!overflow.is_dropped(Sid::new()));
        let mut to_close = overflow
            .to_close
            .lock()
            .expect("lock")
            .take()
            .expect("receiver");
        assert_eq!(to_close.try_recv().ok(), Some(sid));
        assert!(to_close.try_recv().is_err(), "queued for closing once");
        overflow.forget(sid);
        assert!(!overflow.is_dropped(sid));
        assert_eq!(overflow.dropping.load(Ordering::Acquire), 0);
    }
}
