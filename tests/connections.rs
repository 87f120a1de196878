//! Connections an attacker can open: silent ones closed within the head time limit, a flood from
//! one address refused without starving anyone else, slow bodies cut off, a response sent before
//! its body was read delivered rather than reset, and memory given back after connections close.
//! The server runs as its own process (the binary), so that its descriptors and its resident
//! memory are its own, not this test's.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The server binary on a loopback port with the demo data and `env` on top of the defaults.
struct Server {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_im-server"))
            .args(["serve", "--demo"])
            .env("IM_BIND", addr.to_string())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("im.db").display()),
            )
            .env("IM_PUBLIC_DIR", dir.path().join("public"))
            .env("IM_ADMIN_PASSWORD", "admin-password")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // Log-ins are the load here, not what is tested: an address may have only so many
            // in progress at once under the failed log-in limit (tests/rate_limits.rs).
            .env("IM_LIMIT_LOGIN_ADDRESS", "off")
            .env("IM_LIMIT_LOGIN_ACCOUNT", "off")
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("im-server starts");
        let server = Server {
            addr,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        rss_kib(
            &Path::new("/proc")
                .join(self.child.id().to_string())
                .join("status"),
        )
    }

    /// A round trip on a new connection: every connection opened before it has been accepted.
    async fn sync(&self) {
        let reply = reqwest::Client::new()
            .get(self.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        assert!(reply.status().is_success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(status: &Path) -> u64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .expect("VmRSS in /proc/<pid>/status")
}

/// A connection from `source` (any 127.0.0.0/8 address is this machine's).
async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// Waits for the server to close `stream` (EOF or reset), for at most `limit`; how long it took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

/// Log-in over a connection of its own from 127.0.0.1; how long the answer took.
async fn timed_login(server: &Server) -> Duration {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 1]))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let started = Instant::now();
    let reply: Value = client
        .post(server.url("/api/v1/login"))
        .json(&json!({"username": "user", "password": "123456"}))
        .send()
        .await
        .unwrap_or_else(|error| panic!("log-in not answered: {error:?}; {}", server.log()))
        .json()
        .await
        .expect("JSON");
    let took = started.elapsed();
    assert_eq!(reply["statusCode"], "0", "{reply}");
    took
}

const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Slack for a loaded 2-core machine: the watchdog's wake-up and the scheduler.
const SLACK: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_leaves_others_served() {
    // Only 127.0.0.1 a proxy: the attacker at 127.0.0.2 is a client like any other.
    let server = Server::start(&[
        ("IM_HEAD_TIMEOUT", "2"),
        ("IM_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    timed_login(&server).await; // warm: the first hash allocates its pool
    let mut quiet = Duration::ZERO;
    for _ in 0..5 {
        quiet = quiet.max(timed_login(&server).await);
    }
    const ATTEMPTS: usize = 20_000;
    // Descriptors of this process: at most this many attempts in flight.
    const IN_FLIGHT: usize = 6_000;
    let attacker = IpAddr::from([127, 0, 0, 2]);
    let started = Instant::now();
    // The attacker on a thread and runtime of its own: on this test's runtime its thousands of
    // tasks would delay the log-ins' own (measured: a request written 2 s after its connect).
    let (flood_tx, flood) = tokio::sync::oneshot::channel();
    let addr = server.addr;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("attacker runtime");
        let outcome = runtime.block_on(async move {
            let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut attempts = Vec::with_capacity(ATTEMPTS);
            for _ in 0..ATTEMPTS {
                let permit = in_flight.clone().acquire_owned().await.expect("semaphore");
                attempts.push(tokio::spawn(async move {
                    let _permit = permit;
                    let mut stream = match connect_from(attacker, addr).await {
                        Ok(stream) => stream,
                        // A full backlog: the attempt failed, which is the server's right.
                        Err(_) => return Some(Duration::ZERO),
                    };
                    closed_within(&mut stream, HEAD_TIMEOUT + SLACK + SLACK).await
                }));
            }
            let mut held_longest = Duration::ZERO;
            let mut never_closed = 0;
            for attempt in attempts {
                match attempt.await.expect("attempt") {
                    Some(took) => held_longest = held_longest.max(took),
                    None => never_closed += 1,
                }
            }
            (held_longest, never_closed)
        });
        let _ = flood_tx.send(outcome);
    });
    tokio::pin!(flood);
    // Log-ins by someone else while the flood goes on.
    let mut slowest = Duration::ZERO;
    let mut logins = 0;
    let (held_longest, never_closed) = loop {
        let took = timed_login(&server).await;
        eprintln!("log-in during the flood: {took:?}");
        slowest = slowest.max(took);
        logins += 1;
        tokio::select! {
            outcome = &mut flood, if logins >= 5 => break outcome.expect("flood"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    eprintln!(
        "{ATTEMPTS} attempts in {:.1} s; {logins} log-ins meanwhile, slowest {slowest:?} \
         (before the flood: {quiet:?}); longest-held attacker connection {held_longest:?}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(never_closed, 0, "silent connections left open");
    assert!(
        held_longest <= HEAD_TIMEOUT + SLACK,
        "a silent connection held {held_longest:?}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a log-in took {slowest:?} during the flood"
    );
    let log = server.log();
    assert!(
        log.contains("connections refused"),
        "refusals logged: {log}"
    );
    assert!(!log.contains("accept failed"), "out of descriptors: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed() {
    let server = Server::start(&[
        ("IM_HEAD_TIMEOUT", "2"),
        ("IM_KEEPALIVE_TIMEOUT", "3"),
        ("IM_BODY_TIMEOUT", "2"),
    ])
    .await;
    let local = IpAddr::from([127, 0, 0, 1]);
    // Half a request head, then nothing.
    let mut slow_head = connect_from(local, server.addr).await.expect("connect");
    slow_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let took = closed_within(&mut slow_head, HEAD_TIMEOUT + SLACK).await;
    assert!(took.is_some(), "half a head held the connection");
    // A body announced and never sent; a chunk announced huge and never sent.
    for head in [
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{",
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n{",
    ] {
        let mut stream = connect_from(local, server.addr).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write");
        let took = closed_within(&mut stream, Duration::from_secs(2) + SLACK).await;
        assert!(took.is_some(), "an unsent body held the connection: {head}");
    }
    // A kept-alive connection: closed once idle for the keep-alive limit, not the head limit.
    let mut kept = connect_from(local, server.addr).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 1024];
    let n = kept.read(&mut answer).await.expect("answer");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    let idle = closed_within(&mut kept, Duration::from_secs(3) + SLACK)
        .await
        .expect("idle connection closed");
    assert!(
        idle > HEAD_TIMEOUT,
        "closed after {idle:?}: the head limit, not the idle one"
    );
}

/// Node's fetch sends a multipart upload's body after its head; the server answers `请登录`
/// to an anonymous one without reading it. The close that follows must not be a reset, which
/// would reach the client before (and instead of) the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_read_is_delivered() {
    let server = Server::start(&[]).await;
    let boundary = "----im-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend(std::iter::repeat_n(b'x', 512 * 1024));
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    for _ in 0..5 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let head = format!(
            "POST /api/v1/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; \
             boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        // The body follows after the answer has been sent, as a slow network would deliver it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The old server had closed by then: this write failed with EPIPE (Node: `write EPIPE`).
        let sent = stream.write_all(&body).await;
        assert!(sent.is_ok(), "body refused: {sent:?}");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("answered within 10 s");
        let answer = String::from_utf8_lossy(&answer);
        assert!(read.is_ok(), "connection reset: {read:?}, got {answer:?}");
        assert!(answer.contains("请登录"), "{answer}");
    }
}

/// Idle connections and a burst of log-ins with their sockets: memory per connection, and
/// memory given back once they are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_comes_back_after_connections_close() {
    let server = Server::start(&[
        ("IM_HEAD_TIMEOUT", "120"),
        ("IM_MAX_CONNECTIONS_PER_IP", "10000"),
        ("IM_TRUSTED_PROXIES", "192.0.2.1"),
    ])
    .await;
    timed_login(&server).await;
    server.sync().await;
    let before = server.rss_kib();
    const IDLE: usize = 5_000;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    server.sync().await;
    let held = server.rss_kib();
    let per_connection = (held.saturating_sub(before)) * 1024 / IDLE as u64;
    drop(idle);
    let back = returns_to(&server, before, "idle connections").await;
    eprintln!(
        "{IDLE} idle connections: RSS {before} KiB before, {held} KiB open ({per_connection} \
         bytes each), {back} KiB after they closed"
    );
    assert!(
        per_connection <= 16 * 1024,
        "a silent connection costs {per_connection} bytes"
    );

    // A burst of log-ins, each on a connection of its own, then a WebSocket for each session
    // (all opened within the Engine.IO ping timeout, so none is closed for not answering).
    const LOGINS: usize = 2_000;
    let before = server.rss_kib();
    let started = Instant::now();
    // 64 at once got `服务暂时不可用` from SQLite for some (the pool waits for a connection).
    let parallel = Arc::new(Semaphore::new(24));
    let tokens = futures_util::future::join_all((0..LOGINS).map(|n| {
        let parallel = parallel.clone();
        let url = server.url("/api/v1/login");
        async move {
            let _turn = parallel.acquire().await.expect("semaphore");
            let reply: Value = reqwest::Client::new()
                .post(url)
                .json(&json!({"username": format!("member{}", n % 30 + 1), "password": "123456"}))
                .send()
                .await
                .expect("log-in")
                .json()
                .await
                .expect("JSON");
            match reply["data"]["token"].as_str() {
                Some(token) => token.to_owned(),
                None => panic!("log-in {n}: {reply}"),
            }
        }
    }))
    .await;
    let logins_took = started.elapsed();
    let ws = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let sockets = futures_util::future::join_all(tokens.iter().map(|token| {
        let (parallel, url) = (parallel.clone(), format!("{ws}&token={token}"));
        async move {
            let _turn = parallel.acquire().await.expect("semaphore");
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("websocket");
            ws.next().await.expect("open").expect("open packet");
            ws.send(WsMessage::text("40")).await.expect("connect");
            loop {
                let packet = ws.next().await.expect("connected").expect("packet");
                if packet.to_text().is_ok_and(|text| text.starts_with("40")) {
                    break;
                }
            }
            ws
        }
    }))
    .await;
    let peak = server.rss_kib();
    drop(sockets);
    let back = returns_to(&server, before, "log-ins").await;
    eprintln!(
        "{LOGINS} log-ins in {:.1} s, then a WebSocket each ({:.1} s in all): RSS {before} KiB \
         before, {peak} KiB with them open, {back} KiB after they closed",
        logins_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// Waits up to 30 s for the server's memory to come within 30 MiB of `before`; what it came to.
async fn returns_to(server: &Server, before: u64, what: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = server.rss_kib();
        if now <= before + 30 * 1024 {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "after {what}: RSS {now} KiB 30 s after closing, {before} KiB before"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
