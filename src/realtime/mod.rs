//! Socket.IO on the HTTP port: the layer with its limits, the namespace with its connection
//! check, and the mapping of domain errors to acks and `/v1/im/error` (docs/protocol.md §5.6).
//!
//! Handlers are thin: they parse the event, call one domain function and render its answer.

mod auth;
mod events;
mod overflow;
mod presence;
mod pubsub;
mod robot;
mod telemetry;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::middleware::map_request;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use socketioxide::adapter::{Adapter, Emitter, LocalAdapter};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts};
use socketioxide::socket::Socket;
use socketioxide::{ParserConfig, SocketIo, SocketIoBuilder};
use socketioxide_core::adapter::DefinedAdapter;
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

use crate::app::App;
use crate::domain::DomainError;
use crate::domain::robot::Robot;
use overflow::{Guarded, GuardedState, Overflow, Remote};
pub use telemetry::Outcome;

/// Largest Engine.IO packet (a WebSocket message, or a long-polling POST), in bytes. A message
/// body is at most 64 KiB of JSON (docs/protocol.md §3.3); twice that leaves room for the event's
/// envelope and for escaping, and nothing legitimate is larger. socketioxide's defaults (100 kB
/// payload, 64 MiB WebSocket messages) would let one client make the server buffer far more.
pub const MAX_PACKET_BYTES: usize = 128 * 1024;
/// Packets queued for one socket before it counts as stuck and is dropped (`overflow`): a slow
/// reader cannot pile up memory, nor stay connected while it misses messages.
const MAX_BUFFERED_PACKETS: usize = 256;
/// What a WebSocket reads into at a time, allocated for the socket's whole life: 1 KiB holds a
/// chat message whole, and 4 KiB (the default) made up a sixth of an idle socket.
const WS_READ_BUFFER: usize = 1024;
/// No client of ours sends binary attachments; refusing them closes the door of advisory
/// GHSA-55mf-67qm-4wpg (attachments buffered without bound) whatever the parser's defaults.
const MAX_BINARY_ATTACHMENTS: usize = 0;
/// Bytes of binary data buffered for a packet in progress (none are accepted, see above).
const MAX_BINARY_BUFFER: usize = 1024;
/// A half-received packet is dropped after this long.
const PACKET_COMPLETION: Duration = Duration::from_secs(5);
/// Heartbeat: Socket.IO 4's defaults; every client takes them from the handshake, and the
/// proxy timeouts of nginx.conf are set above their sum.
const PING_INTERVAL: Duration = Duration::from_secs(25);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// A client has this long to send its CONNECT packet, or to finish an upgrade to WebSocket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where Socket.IO is served.
pub const SOCKET_IO_PATH: &str = "/socket.io";

pub const NEW_MESSAGE: &str = "/v1/im/new-message";
pub const JOIN: &str = "/v1/im/join";
pub const GET_MESSAGES: &str = "/v1/im/get-messages";
pub const ERROR: &str = "/v1/im/error";
pub const ONLINE: &str = "/v1/im/online";

/// The adapter of several processes: rooms, broadcasts and disconnects carried over Redis.
type RedisAdapter = Guarded<CustomRedisAdapter<Emitter, pubsub::PubSub>>;
/// The adapter of one process.
type SingleAdapter = Guarded<LocalAdapter>;

/// How long a request to the other processes waits for their answers.
const ADAPTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Broadcasts from other processes queued for this one before further ones are dropped (and
/// logged): room for bursts of a busy group.
const ADAPTER_STREAM_BUFFER: usize = 4096;
/// How long to wait before trying again to register the namespace when Redis is down at start.
const REGISTER_RETRY: Duration = Duration::from_secs(1);

/// Adds Socket.IO at `/socket.io/` to `router`: on this process alone, or, with `REDIS_URL`, on
/// socketioxide-redis so that rooms span every process. Starts the tasks that follow access
/// changes (bans drop sockets) and keep presence alive. Call it from within the Tokio runtime.
pub fn attach(router: Router<Arc<App>>, app: &Arc<App>) -> anyhow::Result<Router<Arc<App>>> {
    let builder = configured();
    let overflow = Overflow::new(MAX_BUFFERED_PACKETS);
    let detach = {
        let overflow = overflow.clone();
        move |request| detach_head(request, overflow.clone())
    };
    let Some(url) = &app.config.redis_url else {
        let (layer, io) = builder
            .with_adapter::<SingleAdapter>(GuardedState {
                inner: (),
                overflow: overflow.clone(),
                remote: None,
            })
            .build_layer();
        register(&io, app, &overflow);
        count_sockets(&io, app);
        start_watchers(io, app, &overflow);
        return Ok(router.layer(layer).layer(map_request(detach)));
    };
    let pubsub = pubsub::PubSub::connect(url, app.config.redis_timeout())?;
    pubsub.watch();
    let prefix = format!("{}socket.io", app.config.redis_prefix);
    let adapter = RedisAdapterCtr::new_with_driver(
        pubsub.clone(),
        RedisAdapterConfig::new()
            .with_prefix(prefix.clone())
            .with_request_timeout(ADAPTER_REQUEST_TIMEOUT)
            .with_stream_buffer(ADAPTER_STREAM_BUFFER),
    );
    let state = GuardedState {
        inner: adapter,
        overflow: overflow.clone(),
        remote: Some(Remote { pubsub, prefix }),
    };
    let (layer, io) = builder.with_adapter::<RedisAdapter>(state).build_layer();
    count_sockets(&io, app);
    // The namespace exists once its Redis channels are subscribed. Until then (Redis down at
    // start) the server serves REST, reports itself unready and refuses sockets.
    tokio::spawn({
        let app = app.clone();
        let overflow = overflow.clone();
        async move {
            loop {
                match register(&io, &app, &overflow).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, "Socket.IO namespace not registered: Redis unreachable; retrying");
                        tokio::time::sleep(REGISTER_RETRY).await;
                    }
                }
            }
            tracing::info!("Socket.IO namespace registered on the Redis adapter");
            start_watchers(io, &app, &overflow);
        }
    });
    Ok(router.layer(layer).layer(map_request(detach)))
}

/// Copies a Socket.IO request's head out of the connection's read buffer.
///
/// hyper parses a request without copying: its URI, its header values and axum's `OriginalUri`
/// are slices of the 8 to 16 KB buffer the connection read it into, and keep all of it alive.
/// Socket.IO keeps the head of the request that opened a socket for the socket's whole life, so
/// an idle socket held that buffer: a third of its memory (33.4 against 25.5 KiB per socket at
/// 5,000 sockets).
///
/// It also notes which connection a session upgrading to WebSocket moves to (`overflow`).
async fn detach_head(request: Request, overflow: Arc<Overflow>) -> Request {
    if !request.uri().path().starts_with(SOCKET_IO_PATH) {
        return request;
    }
    if let Some(sid) = upgrading_session(request.uri())
        && let Some(connection) = request.extensions().get::<transport::Connection>()
    {
        overflow.upgraded(sid, connection);
    }
    let (mut head, body) = request.into_parts();
    if let Ok(uri) = Uri::try_from(head.uri.to_string()) {
        head.uri = uri;
    }
    if head.extensions.remove::<OriginalUri>().is_some() {
        head.extensions.insert(OriginalUri(head.uri.clone()));
    }
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for (name, value) in &head.headers {
        // A HeaderName is a constant or already its own copy; a value needs one.
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    head.headers = headers;
    Request::from_parts(head, body)
}

/// The session a request upgrades to WebSocket: `transport=websocket` with a `sid`.
fn upgrading_session(uri: &Uri) -> Option<socketioxide_core::Sid> {
    let query = uri.query()?;
    let mut pairs = query.split('&').filter_map(|pair| pair.split_once('='));
    let mut websocket = false;
    let mut sid = None;
    for (key, value) in &mut pairs {
        match key {
            "transport" => websocket = value == "websocket",
            "sid" => sid = value.parse().ok(),
            _ => {}
        }
    }
    sid.filter(|_| websocket)
}

/// Socket.IO with the limits above.
fn configured() -> SocketIoBuilder {
    let parser = ParserConfig::common()
        .max_incoming_binaries(MAX_BINARY_ATTACHMENTS)
        .max_incoming_binary_buf_size(MAX_BINARY_BUFFER)
        .packet_completion_timeout(PACKET_COMPLETION);
    SocketIo::builder()
        .req_path(SOCKET_IO_PATH)
        .ping_interval(PING_INTERVAL)
        .ping_timeout(PING_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .upgrade_timeout(UPGRADE_TIMEOUT)
        .max_payload(MAX_PACKET_BYTES as u64)
        .ws_max_message_size(MAX_PACKET_BYTES)
        .ws_max_frame_size(MAX_PACKET_BYTES)
        .max_buffer_size(MAX_BUFFERED_PACKETS)
        .ws_read_buffer_size(WS_READ_BUFFER)
        .with_parser(parser)
}

/// `/metrics` counts this process's sockets from socketioxide itself at each scrape.
fn count_sockets<A: Adapter>(io: &SocketIo<A>, app: &Arc<App>) {
    let io = io.clone();
    app.telemetry
        .count_sockets_with(move || telemetry::count(&io));
}

fn start_watchers<A: Adapter>(io: SocketIo<A>, app: &Arc<App>, overflow: &Arc<Overflow>) {
    overflow.start_closing(io.clone());
    presence::keep_alive(io.clone(), Arc::downgrade(app));
    presence::watch_access(io, Arc::downgrade(app));
}

/// The namespace `/`: a connection is let in only with a valid session (cookie or token).
fn register<A: Adapter + DefinedAdapter>(
    io: &SocketIo<A>,
    app: &Arc<App>,
    overflow: &Arc<Overflow>,
) -> A::InitRes {
    let robot = Arc::new(Robot::new(&app.config.robot));
    let connected = {
        let app = app.clone();
        move |socket: SocketRef<A>| {
            let app = app.clone();
            async move { events::on_connect(app, socket).await }
        }
    };
    // The listeners are set up here, before socketioxide sends the CONNECT packet: a client may
    // emit the moment it sees that packet, and the connect handler above only runs after it.
    let check = {
        let app = app.clone();
        let overflow = overflow.clone();
        move |socket: SocketRef<A>, TryData(auth): TryData<auth::HandshakeAuth>| {
            let app = app.clone();
            let robot = robot.clone();
            let overflow = overflow.clone();
            async move {
                let identity = auth::authenticate(&app, &socket, auth.ok()).await?;
                socket.extensions.insert(overflow);
                events::listen(&app, &robot, &socket, &identity);
                Ok::<(), auth::Refusal>(())
            }
        }
    };
    io.ns("/", connected.with(check))
}

/// The way back to the client for one event: its ack if it asked for one, else `/v1/im/error`
/// for a failure (and nothing for a success nobody waits for).
pub struct Reply<A: Adapter> {
    ack: AckSender<A>,
    asked: bool,
    socket: Arc<Socket<A>>,
}

impl<A: Adapter> FromMessageParts<A> for Reply<A> {
    type Error = std::convert::Infallible;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        value: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        let ack = AckSender::from_message_parts(socket, value, ack_id)?;
        Ok(Reply {
            ack,
            asked: ack_id.is_some(),
            socket: socket.clone(),
        })
    }
}

impl<A: Adapter> Reply<A> {
    pub fn asked(&self) -> bool {
        self.asked
    }

    /// Acks `data` if the client asked.
    pub fn ok<T: serde::Serialize + ?Sized>(self, data: &T) -> Outcome {
        let Reply { ack, socket, .. } = self;
        if let Err(error) = overflow::send_to(&socket, || ack.send(data)) {
            tracing::debug!(%error, "ack not sent");
        }
        Outcome::Ok
    }

    /// Tells the client why `event` failed.
    pub fn fail(self, socket: &SocketRef<A>, event: &str, error: &DomainError) -> Outcome {
        let payload = error_payload(event, error);
        let Reply { ack, asked, .. } = self;
        let sent = overflow::send_to(socket, || {
            if asked {
                ack.send(&payload)
            } else {
                socket.emit(ERROR, &payload)
            }
        });
        if let Err(error) = sent {
            tracing::debug!(%error, "error reply not sent");
        }
        if matches!(error, DomainError::NotLoggedIn) {
            // The session ended (logout, revocation): the socket goes with it.
            if let Err(error) = socket.clone().disconnect() {
                tracing::debug!(%error, "socket already gone");
            }
        }
        match error {
            DomainError::Internal(_) | DomainError::Unavailable(_) => Outcome::Error,
            _ => Outcome::Refused,
        }
    }
}

/// The one mapping of a domain error to Socket.IO: the REST envelope's fields, plus the event.
fn error_payload(event: &str, error: &DomainError) -> Value {
    match error {
        DomainError::Internal(cause) => tracing::error!(%cause, event, "event failed"),
        DomainError::Unavailable(cause) => tracing::warn!(%cause, event, "event failed"),
        _ => {}
    }
    let code = match error {
        DomainError::NotPermitted => "2",
        _ => "1",
    };
    json!({
        "event": event,
        "statusCode": code,
        "errorMessage": error.to_string(),
        "data": null,
    })
}

/// The room of every socket of one user (all their devices).
pub fn user_room(user_id: i32) -> String {
    format!("user:{user_id}")
}

/// The room of every socket opened with one session, so that logging out drops them all. Named
/// by a digest: room names travel through Redis, and a session id opens the session.
pub fn session_room(session_id: &str) -> String {
    let digest = Sha256::digest(session_id.as_bytes());
    format!("session:{}", hex::encode(&digest[..16]))
}

/// The room of a conversation, named as the original named it: the id itself.
pub fn conversation_room(conversation_id: i32) -> String {
    conversation_id.to_string()
}
