//! The accept loop: connections beyond a per-process and a per-address cap refused at once,
//! silent, slow and idle connections closed, request bodies given a deadline, the client's
//! address found (from `X-Forwarded-For` behind a trusted proxy only), a connection closed after
//! its response without resetting a client still sending, and memory handed back after closures.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Sleep;
use tower::ServiceExt;

use crate::config::Config;
use crate::domain::limits::client_network;
use crate::http::extract::ClientIp;
use crate::realtime::transport::cuttable;

/// Descriptors kept for everything but client connections: the database pool, Redis, uploads
/// and static files being read, logs. Half the limit when the limit is small.
const RESERVED_DESCRIPTORS: u64 = 512;
/// After a failed accept (out of descriptors after all), a pause before the next try: short, so
/// that clients are served again as soon as a descriptor is free.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);
/// How long the accept thread waits for a connection before looking whether to stop.
const ACCEPT_POLL_MS: libc::c_int = 200;
/// At most one warning per this about refused connections or failed accepts, with a count.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// After the response of a connection that will not be reused, what the client may still send
/// (a request body nobody read) is read and dropped for this long and up to this much, so
/// that the close is a FIN after the response, not a reset that the client sees instead of it.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 32 * 1024 * 1024;
/// The allocator is asked to give memory back once this many connections closed since it last
/// was (or all are closed), looked at this often.
const TRIM_AFTER_CLOSES: u64 = 64;
const TRIM_CHECK: Duration = Duration::from_secs(5);

/// The limits of the accept loop, from the configuration and the process's descriptor limit.
#[derive(Debug, Clone)]
pub struct Limits {
    pub head_timeout: Duration,
    pub body_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
    pub max_per_address: usize,
    pub trusted_proxies: Vec<IpNet>,
}

impl Limits {
    /// The configured limits, the connection cap brought below `descriptors` (the open-files
    /// limit) so that the process always has descriptors left to serve those it accepted.
    pub fn new(config: &Config, descriptors: u64) -> Limits {
        let room = usize::try_from(
            descriptors
                .saturating_sub(RESERVED_DESCRIPTORS)
                .max(descriptors / 2),
        )
        .unwrap_or(usize::MAX)
        .max(1);
        let max_connections = match config.max_connections {
            0 => room,
            asked if asked > room => {
                tracing::warn!(
                    asked,
                    allowed = room,
                    descriptors,
                    "IM_MAX_CONNECTIONS above what the open-files limit allows; lowered"
                );
                room
            }
            asked => asked,
        };
        Limits {
            head_timeout: config.head_timeout(),
            body_timeout: config.body_timeout(),
            keepalive_timeout: config.keepalive_timeout(),
            max_connections,
            max_per_address: config.max_connections_per_ip,
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came in from `peer`: `peer` itself, unless it is a trusted
    /// proxy; then the nearest address of `X-Forwarded-For` that is not one (read from the right,
    /// as each proxy appends the address it got the request from; what is left of that is
    /// whatever the client claimed).
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.is_trusted(client) {
            return client;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Ok(address) = hop.trim().parse::<IpAddr>() else {
                // A name, a port or garbage: nothing left of it can be believed.
                break;
            };
            client = address.to_canonical();
            if !self.is_trusted(client) {
                break;
            }
        }
        client
    }
}

/// Raises the soft open-files limit to the hard one and returns the limit in force.
pub fn raise_descriptor_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "open-files limit unknown; assuming 1024");
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            } else {
                tracing::warn!(error = %io::Error::last_os_error(), "open-files limit not raised");
            }
        }
        // RLIM_INFINITY is u64::MAX: far more than any cap needs.
        limit.rlim_cur
    }
    #[cfg(not(unix))]
    {
        1024
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting and waits for requests in flight (WebSockets, already handed over, are not waited).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = listener.into_std()?;
    let limits = Arc::new(limits);
    let gate = Arc::new(Gate::new(&limits));
    tokio::spawn(give_memory_back(Arc::downgrade(&gate)));
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our watchdog times heads and idle waits (hyper's timer would count idle time as head time).
    http.header_read_timeout(None);
    let stopping = Arc::new(AtomicBool::new(false));
    let accepting = Acceptor {
        listener,
        gate,
        limits,
        router,
        http,
        runtime: tokio::runtime::Handle::current(),
        stop: stop_rx,
        done: done_rx,
        stopping: stopping.clone(),
    };
    let (exited_tx, exited_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("accept".into())
        .spawn(move || {
            accepting.run();
            let _ = exited_tx.send(());
        })?;
    shutdown.await;
    stopping.store(true, Ordering::Relaxed);
    let _ = exited_rx.await;
    // Said once the listening socket is closed, so that what follows the line is refused.
    tracing::info!("shutting down: no new connections; finishing the requests in flight");
    stop_tx.send_replace(());
    // Every connection task holds a receiver: all dropped, all connections are done.
    done_tx.closed().await;
    Ok(())
}

/// The accept loop, on a thread of its own: under a flood of connections it must take each one
/// off the backlog as fast as the flood comes, or the kernel drops everyone's connection
/// attempts (a client retries after a second); as a task among thousands on the runtime's two
/// threads it could not (in a test, 4,700 attempts dropped and log-ins taking 2.2 s).
struct Acceptor {
    listener: std::net::TcpListener,
    gate: Arc<Gate>,
    limits: Arc<Limits>,
    router: Router,
    http: hyper::server::conn::http1::Builder,
    runtime: tokio::runtime::Handle,
    stop: watch::Receiver<()>,
    done: watch::Receiver<()>,
    stopping: Arc<AtomicBool>,
}

impl Acceptor {
    fn run(self) {
        if let Err(error) = self.listener.set_nonblocking(true) {
            tracing::error!(%error, "listening socket not made non-blocking; not serving");
            return;
        }
        let mut refusals = Warnings::default();
        let mut accept_errors = Warnings::default();
        while !self.stopping.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, &mut refusals),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.wait(),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Out of descriptors, or a connection that died in the backlog.
                    accept_errors.note(|count| tracing::warn!(%error, count, "accept failed"));
                    std::thread::sleep(ACCEPT_ERROR_PAUSE);
                }
            }
        }
    }

    /// Blocks until a connection waits in the backlog, or for a moment (to notice shutdown).
    fn wait(&self) {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let mut ready = libc::pollfd {
                fd: self.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call.
            unsafe { libc::poll(&mut ready, 1, ACCEPT_POLL_MS) };
        }
        #[cfg(not(unix))]
        std::thread::sleep(Duration::from_millis(5));
    }

    fn admit(&self, stream: std::net::TcpStream, peer: SocketAddr, refusals: &mut Warnings) {
        let Some(admission) = self.gate.admit(peer.ip(), &self.limits) else {
            refusals.note(|count| {
                tracing::warn!(
                    count,
                    last = %peer.ip(),
                    open = self.gate.open(),
                    max = self.limits.max_connections,
                    per_address = self.limits.max_per_address,
                    "connections refused: too many open"
                )
            });
            // Closed at once: a refusal costs one accept and one close.
            drop(stream);
            return;
        };
        // Chat is small writes that must leave at once: with Nagle's algorithm a message waits
        // for the peer to acknowledge the previous one, up to its delayed-ACK timer (40 ms).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        if let Err(error) = stream.set_nonblocking(true) {
            tracing::warn!(%error, "accepted socket not made non-blocking; closed");
            return;
        }
        let connection = Connection {
            peer,
            limits: self.limits.clone(),
            router: self.router.clone(),
            http: self.http.clone(),
            stop: self.stop.clone(),
            _done: self.done.clone(),
        };
        self.runtime.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => connection.run(stream, admission).await,
                Err(error) => tracing::warn!(%error, "accepted socket not registered; closed"),
            }
        });
    }
}

/// At most one log line per [`WARNING_INTERVAL`] for a repeated event, with how many there were.
#[derive(Default)]
struct Warnings {
    since: Option<Instant>,
    count: u64,
}

impl Warnings {
    fn note(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self
            .since
            .is_none_or(|since| since.elapsed() >= WARNING_INTERVAL)
        {
            log(self.count);
            self.since = Some(Instant::now());
            self.count = 0;
        }
    }
}

/// Who gets in: a permit per open connection, and a count per client address.
struct Gate {
    permits: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// Connections closed since the start, for the memory trimmer.
    closed: AtomicU64,
    max: usize,
}

impl Gate {
    fn new(limits: &Limits) -> Gate {
        Gate {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: Mutex::new(HashMap::new()),
            closed: AtomicU64::new(0),
            max: limits.max_connections,
        }
    }

    fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    fn admit(self: &Arc<Self>, peer: IpAddr, limits: &Limits) -> Option<Admission> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        // Behind a proxy every client shares its address: only the process-wide cap applies.
        let address = (!limits.is_trusted(peer)).then(|| client_network(peer));
        if let Some(address) = address {
            let mut counts = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
            let count = counts.entry(address).or_insert(0);
            if *count >= limits.max_per_address {
                return None;
            }
            *count += 1;
        }
        Some(Admission {
            gate: self.clone(),
            address,
            _permit: permit,
        })
    }
}

/// A connection's place inside the caps, given back when the connection's socket closes
/// (after a WebSocket's last frame, or its lingering close).
struct Admission {
    gate: Arc<Gate>,
    address: Option<IpAddr>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(address) = self.address {
            let mut counts = self
                .gate
                .per_address
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(count) = counts.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&address);
                }
            }
        }
        self.gate.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Milliseconds since the process's first connection: a clock that fits an atomic.
fn now_ms() -> u64 {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

const NONE: u64 = u64::MAX;

/// What a connection is doing, written by its socket and its requests, read by its watchdog.
struct Activity {
    /// Requests handed to the router whose response head is not out yet.
    in_flight: AtomicU32,
    /// When the head now being read began (its first byte, or the connection's opening); NONE
    /// while no head is awaited or the connection is merely idle.
    head_started: AtomicU64,
    /// The last time bytes moved either way, or a response went out.
    last_active: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        let now = now_ms();
        Activity {
            in_flight: AtomicU32::new(0),
            head_started: AtomicU64::new(now),
            last_active: AtomicU64::new(now),
        }
    }

    fn read(&self) {
        let now = now_ms();
        self.last_active.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ =
                self.head_started
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_active.store(now_ms(), Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
    }

    fn request_answered(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.last_active.store(now_ms(), Ordering::Relaxed);
    }

    /// When the connection is to be closed if nothing changes, in ms of [`now_ms`]; `None`
    /// while a request is being answered (its body has its own deadline, a long poll lasts).
    fn deadline(&self, limits: &Limits) -> Option<u64> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Some(match self.head_started.load(Ordering::Relaxed) {
            NONE => self
                .last_active
                .load(Ordering::Relaxed)
                .saturating_add(ms(limits.keepalive_timeout)),
            started => started.saturating_add(ms(limits.head_timeout)),
        })
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    peer: SocketAddr,
    limits: Arc<Limits>,
    router: Router,
    http: hyper::server::conn::http1::Builder,
    stop: watch::Receiver<()>,
    /// Dropped when the connection is done: the accept loop waits for all of them at shutdown.
    _done: watch::Receiver<()>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream, admission: Admission) {
        let activity = Arc::new(Activity::new());
        // hyper allocates its 8 KiB read buffer when it first reads: until the client sends
        // something, the connection costs only its task and socket (11 against 2 KiB a silent
        // connection, measured at 5,000).
        let head_timeout = self.limits.head_timeout;
        tokio::select! {
            first = tokio::time::timeout(head_timeout, stream.readable()) => {
                if !matches!(first, Ok(Ok(()))) {
                    tracing::debug!(peer = %self.peer, "connection closed: nothing sent within the head time limit");
                    return;
                }
            }
            _ = self.stop.changed() => return,
        }
        let io = Watched {
            stream: Some(stream),
            activity: activity.clone(),
            admission: Some(admission),
            shut_down: false,
        };
        // A socket that cannot keep up is closed by cutting its connection (realtime::overflow).
        let (io, cut) = cuttable(io);
        let service = {
            let (peer, limits, router, activity) = (
                self.peer,
                self.limits.clone(),
                self.router.clone(),
                activity.clone(),
            );
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let (router, activity) = (router.clone(), activity.clone());
                let mut request = prepare(request, peer, &limits);
                request.extensions_mut().insert(cut.clone());
                activity.request_started();
                async move {
                    let answered = Answered(activity);
                    let response = router.oneshot(request).await;
                    drop(answered);
                    response
                }
            })
        };
        let connection = self
            .http
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            // While a request is answered (a long poll lasts 25 s) nothing can expire; look
            // again within a head time limit, which bounds how late the next head is timed.
            let wake = activity.deadline(&self.limits).unwrap_or_else(|| {
                let recheck = self.limits.head_timeout.min(self.limits.keepalive_timeout);
                now_ms().saturating_add(u64::try_from(recheck.as_millis()).unwrap_or(u64::MAX))
            });
            let sleep = tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now_ms())));
            tokio::select! {
                // The connection first: after a stall of the runtime, a head that arrived in
                // the meantime is read before the time limit is looked at.
                biased;
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%error, peer = %self.peer, "connection ended with an error");
                    }
                    return;
                }
                () = sleep => {
                    if activity.deadline(&self.limits).is_some_and(|d| d <= now_ms()) {
                        // Silent, slow with its head, or idle for too long: closed, not answered.
                        tracing::debug!(
                            peer = %self.peer,
                            head_started = activity.head_started.load(Ordering::Relaxed),
                            last_active = activity.last_active.load(Ordering::Relaxed),
                            now = now_ms(),
                            "connection closed: head or idle time limit"
                        );
                        return;
                    }
                }
                // An error too means the server is going: the sender is gone.
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Marks a request answered when its response is out, or when it is abandoned.
struct Answered(Arc<Activity>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.request_answered();
    }
}

/// The request as the router sees it: its client's address and peer attached, its body on a
/// deadline.
fn prepare(
    request: Request<Incoming>,
    peer: SocketAddr,
    limits: &Limits,
) -> Request<axum::body::Body> {
    let client = ClientIp(limits.client_of(peer.ip(), request.headers()));
    let (mut head, body) = request.into_parts();
    head.extensions.insert(ConnectInfo(peer));
    head.extensions.insert(client);
    let body = if body.is_end_stream() {
        axum::body::Body::empty()
    } else {
        axum::body::Body::new(TimedBody {
            inner: body,
            deadline: Instant::now() + limits.body_timeout,
            sleep: None,
            client,
            limit: limits.body_timeout,
        })
    };
    Request::from_parts(head, body)
}

/// Why a request body stopped.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body not received within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body that fails once its deadline passes: a client announcing a large body (or a
/// huge chunk) and sending it slowly or never holds its connection no longer than that.
struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    /// Started at the first wait, so that bodies read at once cost no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    client: ClientIp,
    limit: Duration,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(BodyError::from)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        if sleep.as_mut().poll(cx).is_ready() {
            tracing::info!(client = %self.client.0, limit = ?self.limit, "request body too slow; dropped");
            return Poll::Ready(Some(Err(BodyError::TimedOut(self.limit))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket: notes its activity for the watchdog, holds its place in the caps for
/// as long as it is open (through a WebSocket's life), and closes without a reset.
struct Watched {
    /// Always `Some` until dropped.
    stream: Option<TcpStream>,
    activity: Arc<Activity>,
    admission: Option<Admission>,
    shut_down: bool,
}

impl Watched {
    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.stream
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.stream()?.poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = self.stream()?.poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.stream()?.poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = self.stream()?.poll_shutdown(cx);
        if polled.is_ready() {
            self.shut_down = true;
        }
        polled
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let (Some(stream), Some(admission)) = (self.stream.take(), self.admission.take()) else {
            return;
        };
        // Only a connection closed after its response (hyper shut our side down) lingers; one
        // dropped by the watchdog or at a refusal is closed at once.
        if !self.shut_down {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream, admission));
        }
    }
}

/// Reads and drops what the client still sends after our side is shut, until it closes, for at
/// most [`LINGER_TIME`] and [`LINGER_BYTES`]: closing a socket with unread data resets it, and a
/// client still writing its request body sees that reset instead of our response.
async fn linger(mut stream: TcpStream, admission: Admission) {
    let mut sink = [0u8; 4096];
    let mut left = LINGER_BYTES;
    // Past the time limit the socket is closed as it is: a reset, as before lingering.
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
    drop(stream);
    drop(admission);
}

/// Asks the allocator to give free memory back to the system after connections closed: glibc
/// keeps what a burst of connections freed in its heaps (1.6 GB after 20,000 connections came
/// and went), and returns it only when asked.
async fn give_memory_back(gate: std::sync::Weak<Gate>) {
    let mut trimmed_at = 0;
    let mut tick = tokio::time::interval(TRIM_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gate) = gate.upgrade() else {
            return;
        };
        let closed = gate.closed.load(Ordering::Relaxed);
        let since = closed - trimmed_at;
        if since >= TRIM_AFTER_CLOSES || (since > 0 && gate.open() == 0) {
            trimmed_at = closed;
            let started = Instant::now();
            let _ = tokio::task::spawn_blocking(trim_allocator).await;
            tracing::debug!(closed = since, took = ?started.elapsed(), "memory given back to the system");
        }
    }
}

fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free memory of the allocator's heaps.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Connections the kernel holds for us before we accept them. tokio's default (1,024) fills
/// under a flood of connections, and then everyone's attempts are dropped; the kernel caps
/// this at `net.core.somaxconn` (4,096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// The listening socket of `serve`, with the backlog above.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restart binds again while the last run's connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn limits(trusted: &[&str]) -> Limits {
        let mut args = vec!["im-server".to_owned()];
        if !trusted.is_empty() {
            args.push("--trusted-proxies".into());
            args.push(trusted.join(","));
        }
        let config = Config::try_parse_from(args).unwrap();
        Limits::new(&config, 20_000)
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let headers = forwarded("203.0.113.9");
        assert_eq!(limits(&[]).client_of(peer, &headers), peer);
        let behind = limits(&["10.0.0.0/8"]);
        assert_eq!(
            behind.client_of(peer, &headers),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // The client's own claim, left of what the trusted proxy appended, is not believed.
        let spoofed = forwarded("1.2.3.4, 198.51.100.7");
        assert_eq!(
            behind.client_of(peer, &spoofed),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Through two trusted proxies.
        let chained = forwarded("198.51.100.7, 10.1.1.1");
        assert_eq!(
            behind.client_of(peer, &chained),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Garbage stops the walk at the last address believed.
        let garbage = forwarded("198.51.100.7, nonsense, 10.1.1.1");
        assert_eq!(
            behind.client_of(peer, &garbage),
            "10.1.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(behind.client_of(peer, &HeaderMap::new()), peer);
    }

    #[test]
    fn connection_cap_stays_below_the_descriptor_limit() {
        assert_eq!(limits(&[]).max_connections, 19_488);
        let config = Config::try_parse_from(["im-server", "--max-connections", "50000"]).unwrap();
        assert_eq!(Limits::new(&config, 20_000).max_connections, 19_488);
        let config = Config::try_parse_from(["im-server", "--max-connections", "500"]).unwrap();
        assert_eq!(Limits::new(&config, 20_000).max_connections, 500);
        assert_eq!(Limits::new(&config, 256).max_connections, 128);
    }
}
