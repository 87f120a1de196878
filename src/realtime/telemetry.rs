//! What the Socket.IO layer records for `/metrics`: sockets opened, closed and upgraded by
//! Engine.IO version and transport, events by name and outcome with their time, and the count
//! of open sockets, users and sessions, read from socketioxide at scrape time.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use socketioxide::adapter::Adapter;
use socketioxide::socket::Socket;
use socketioxide::{ProtocolVersion, SocketIo, TransportType};

use super::auth::Identity;
use crate::telemetry::{
    EVENT_DURATION, EVENTS, SOCKET_CLOSES, SOCKET_OPENS, SOCKET_UPGRADES, SocketCounts,
};

/// How an event ended, for its counter: answered, refused (the client's fault or a rule:
/// bad input, no right, a rate limit), or failed on our side (a fault, a service down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

/// Handles `event` with `handler`, then counts and times it.
pub async fn timed(event: &'static str, handler: impl Future<Output = Outcome>) {
    let started = Instant::now();
    let outcome = handler.await;
    metrics::counter!(EVENTS, "event" => event, "outcome" => outcome.label()).increment(1);
    metrics::histogram!(EVENT_DURATION, "event" => event).record(started.elapsed().as_secs_f64());
}

/// A socket's own record: whether it opened on long-polling, and whether its upgrade has been
/// counted.
#[derive(Clone)]
struct Opened(Arc<OpenedState>);

struct OpenedState {
    on_polling: bool,
    upgrade_counted: AtomicBool,
}

/// The Engine.IO version a socket speaks: Socket.IO protocol 4 runs on Engine.IO 3 (the
/// socket.io-client 2 family), protocol 5 on Engine.IO 4.
fn engineio(protocol: ProtocolVersion) -> &'static str {
    match protocol {
        ProtocolVersion::V4 => "3",
        ProtocolVersion::V5 => "4",
    }
}

fn transport(transport: TransportType) -> &'static str {
    match transport {
        TransportType::Polling => "polling",
        TransportType::Websocket => "websocket",
    }
}

/// A socket was let in.
pub fn opened<A: Adapter>(socket: &Socket<A>) {
    let on = socket.transport_type();
    metrics::counter!(
        SOCKET_OPENS,
        "engineio" => engineio(socket.protocol()),
        "transport" => transport(on)
    )
    .increment(1);
    socket.extensions.insert(Opened(Arc::new(OpenedState {
        on_polling: on == TransportType::Polling,
        upgrade_counted: AtomicBool::new(false),
    })));
}

/// A socket closed.
pub fn closed<A: Adapter>(socket: &Socket<A>) {
    note_upgrade(socket);
    metrics::counter!(
        SOCKET_CLOSES,
        "engineio" => engineio(socket.protocol()),
        "transport" => transport(socket.transport_type())
    )
    .increment(1);
}

/// Counts the upgrade of a socket that opened on long-polling and is now on WebSocket, once.
/// socketioxide tells no one of an upgrade, so this looks at each scrape and at closing.
fn note_upgrade<A: Adapter>(socket: &Socket<A>) {
    let Some(Opened(state)) = socket.extensions.get::<Opened>() else {
        return;
    };
    if state.on_polling
        && socket.transport_type() == TransportType::Websocket
        && !state.upgrade_counted.swap(true, Ordering::Relaxed)
    {
        metrics::counter!(SOCKET_UPGRADES, "engineio" => engineio(socket.protocol())).increment(1);
    }
}

/// The sockets of this process now, by Engine.IO version and transport, with their users and
/// sessions (a scrape's view; the namespace may not be registered yet on Redis).
pub fn count<A: Adapter>(io: &SocketIo<A>) -> SocketCounts {
    let mut open = [[0usize; 2]; 2];
    let mut users = HashSet::new();
    let mut sessions = HashSet::new();
    let sockets = io.of("/").map(|ns| ns.sockets()).unwrap_or_default();
    for socket in &sockets {
        note_upgrade(socket);
        let version = usize::from(socket.protocol() == ProtocolVersion::V5);
        let on = usize::from(socket.transport_type() == TransportType::Websocket);
        open[version][on] += 1;
        if let Some(identity) = socket.extensions.get::<Identity>() {
            users.insert(identity.user_id);
            sessions.insert(identity.session_id);
        }
    }
    let mut counts = SocketCounts {
        users: users.len(),
        sessions: sessions.len(),
        ..SocketCounts::default()
    };
    for (version, protocol) in [ProtocolVersion::V4, ProtocolVersion::V5]
        .into_iter()
        .enumerate()
    {
        for (on, kind) in [TransportType::Polling, TransportType::Websocket]
            .into_iter()
            .enumerate()
        {
            counts
                .open
                .push((engineio(protocol), transport(kind), open[version][on]));
        }
    }
    counts
}
