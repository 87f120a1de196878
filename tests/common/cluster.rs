//! A scaled-out deployment on one machine: several `im-server` processes on one PostgreSQL
//! database and one Redis, with nginx (the repository's nginx.conf, ports substituted) in front;
//! private Redis and PostgreSQL servers that a fault test may stop and start; and the runner of
//! the Node clients of `tests/compat/cluster.js`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{Client, SKIP_HINT, new_pg_database, unique_prefix};

pub struct Cluster {
    /// nginx's address: what clients use.
    pub base: String,
    /// Each process's own address.
    pub processes: Vec<Process>,
    pub database_url: String,
    pg_server: String,
    pub redis_url: String,
    pub redis_prefix: String,
    nginx: Child,
    pub dir: tempfile::TempDir,
}

pub struct Process {
    pub base: String,
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    /// Settings every process of the cluster gets on top of the defaults (e.g. `IM_PRESENCE_TTL`).
    env: Vec<(String, String)>,
}

/// Every rate limit's setting (src/config.rs `LimitConfig`).
pub const LIMITS: [&str; 6] = [
    "IM_LIMIT_LOGIN_ADDRESS",
    "IM_LIMIT_LOGIN_ACCOUNT",
    "IM_LIMIT_SIGNUP_ADDRESS",
    "IM_LIMIT_MESSAGE_SOCKET",
    "IM_LIMIT_MESSAGE_USER",
    "IM_LIMIT_UPLOAD_USER",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

impl Cluster {
    /// Starts `count` processes with the demo data and nginx in front; waits until all are ready.
    pub async fn start(pg_server: &str, redis_url: &str, count: usize) -> Cluster {
        Self::start_with(pg_server, redis_url, count, &[]).await
    }

    /// As [`Cluster::start`], with `env` added to every process's environment.
    pub async fn start_with(
        pg_server: &str,
        redis_url: &str,
        count: usize,
        env: &[(&str, &str)],
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database_url = new_pg_database(pg_server).await;
        let redis_prefix = unique_prefix();
        let mut processes = Vec::new();
        for n in 0..count {
            let port = free_port();
            let log = dir.path().join(format!("im-server-{n}.log"));
            let mut process = Process {
                base: format!("http://127.0.0.1:{port}"),
                port,
                child: None,
                log,
                env: env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            };
            process.spawn(&database_url, redis_url, &redis_prefix, dir.path());
            processes.push(process);
        }
        for process in &processes {
            process.wait_ready().await;
        }
        let nginx_port = free_port();
        let nginx = start_nginx(dir.path(), nginx_port, &processes);
        let base = format!("http://127.0.0.1:{nginx_port}");
        assert!(
            wait_for(&format!("{base}/healthz")).await,
            "nginx did not start"
        );
        Cluster {
            base,
            processes,
            database_url,
            pg_server: pg_server.to_owned(),
            redis_url: redis_url.to_owned(),
            redis_prefix,
            nginx,
            dir,
        }
    }

    /// A browser-like client that talks to nginx.
    pub fn client(&self) -> Client {
        client_for(&self.base)
    }

    /// A client that talks to one process directly.
    pub fn direct(&self, n: usize) -> Client {
        client_for(&self.processes[n].base)
    }
}

fn client_for(base: &str) -> Client {
    Client {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("http client"),
        base: base.to_owned(),
    }
}

impl Process {
    fn spawn(
        &mut self,
        database_url: &str,
        redis_url: &str,
        redis_prefix: &str,
        dir: &std::path::Path,
    ) {
        let log = std::fs::File::create(&self.log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_im-server"))
            .arg("serve")
            .arg("--demo")
            .env("IM_BIND", format!("127.0.0.1:{}", self.port))
            .env("DATABASE_URL", database_url)
            .env("REDIS_URL", redis_url)
            .env("IM_REDIS_PREFIX", redis_prefix)
            .env("IM_PUBLIC_DIR", dir.join("public"))
            .env("IM_ADMIN_PASSWORD", "admin-password")
            // Several clusters may share the test machine's PostgreSQL and its 100 connections.
            .env("IM_DB_POOL", "6")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            // The suites log in from one address far more often than a client may; the tests
            // of the limits set them back.
            .envs(LIMITS.iter().map(|name| (name, "off")))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // The server logs to stdout; panics go to stderr.
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("im-server starts");
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        if !wait_for(&format!("{}/readyz", self.base)).await {
            panic!(
                "{} did not become ready; its log:\n{}",
                self.base,
                self.log()
            );
        }
    }

    /// SIGKILL: the process dies mid-work, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running: neither killed by the test nor exited by itself.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// What the process logged, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: what the processes and nginx said is usually why.
            for (n, process) in self.processes.iter().enumerate() {
                let log = process.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- process {n} ({}), last lines of its log:", process.base);
                tail.iter().rev().for_each(|line| eprintln!("{line}"));
            }
            let nginx = std::fs::read_to_string(self.dir.path().join("nginx/error.log"));
            eprintln!("--- nginx error log:\n{}", nginx.unwrap_or_default());
        }
        stop_nginx(&mut self.nginx);
        for process in &mut self.processes {
            process.kill();
        }
        super::drop_pg_database(&self.pg_server, &self.database_url);
    }
}

/// nginx on `port` with the repository's nginx.conf, its upstream list replaced by `processes`.
fn start_nginx(dir: &std::path::Path, port: u16, processes: &[Process]) -> Child {
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nginx.conf"))
        .expect("nginx.conf at the repository root");
    let servers: String = processes
        .iter()
        .map(|p| {
            format!(
                "        server 127.0.0.1:{} max_fails=1 fail_timeout=2s;\n",
                p.port
            )
        })
        .collect();
    let mut config = String::new();
    let mut upstream_written = false;
    for line in template.lines() {
        if line.trim_start().starts_with("server 127.0.0.1:") {
            if !upstream_written {
                config.push_str(&servers);
                upstream_written = true;
            }
            continue;
        }
        if line.trim() == "listen 8080;" {
            config.push_str(&format!("        listen 127.0.0.1:{port};\n"));
            continue;
        }
        config.push_str(line);
        config.push('\n');
    }
    assert!(
        upstream_written,
        "nginx.conf has an upstream list of 127.0.0.1 servers"
    );
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix).expect("nginx prefix");
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, config).expect("nginx config");
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|candidate| Command::new(candidate).arg("-v").output().is_ok())
        .unwrap_or_else(|| {
            panic!("nginx does not run: install it (Debian package nginx-light; .ci/run does), {SKIP_HINT}")
        });
    Command::new(nginx)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(&prefix)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(prefix.join("error.log")).expect("nginx log"))
        .spawn()
        .expect("nginx starts")
}

/// Stops nginx with SIGTERM, which its master passes on to its workers. SIGKILL (only if it
/// hangs) would leave the workers running, orphaned, for good.
fn stop_nginx(nginx: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &nginx.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !matches!(nginx.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nginx.kill();
    let _ = nginx.wait();
}

/// Polls `url` until it answers 200 (true), for at most 60 s (false).
async fn wait_for(url: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    let http = reqwest::Client::new();
    while Instant::now() < deadline {
        if let Ok(response) = http.get(url).send().await
            && response.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A Redis server of one test, on a free port, keeping nothing on disk: a fault test stops it
/// and starts it again without touching the machine's shared Redis.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port; returns once it answers PING.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "private Redis already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "redis-server does not run ({e}): install it (Debian package redis-server), \
                     {SKIP_HINT}"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < deadline, "private Redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL): every connection to it breaks at once, and its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP) until the guard is dropped: connections stay open and the
    /// kernel still accepts data, but no command is answered, as with a Redis stalled on a slow
    /// disk or a long script.
    pub fn freeze(&self) -> FrozenRedis {
        let pid = self.child.as_ref().expect("private Redis running").id();
        let stopped = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(stopped, "private Redis frozen");
        FrozenRedis(pid)
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

/// A frozen private Redis, let go (SIGCONT) when dropped, even by a failing test.
pub struct FrozenRedis(u32);

impl Drop for FrozenRedis {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster of one test (initdb into a temporary directory, a free port, its socket
/// in that directory), which a fault test stops and starts again. Run as the `postgres` user
/// when the tests run as root, since PostgreSQL refuses to run as root.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    as_root: bool,
    /// Where initdb and pg_ctl are, found before anything is started, so that dropping a
    /// half-started server never has to look (a panic in a destructor aborts the test binary).
    bin: PathBuf,
}

/// The server binaries of the newest PostgreSQL installed the Debian way
/// (`/usr/lib/postgresql/<version>/bin`), or what to install.
fn pg_bin() -> Result<PathBuf, String> {
    let missing = || {
        format!(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not under \
             /usr/lib/postgresql/<version>/bin: install them (Debian package postgresql), \
             {SKIP_HINT}"
        )
    };
    let entries = std::fs::read_dir("/usr/lib/postgresql").map_err(|_| missing())?;
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(missing)
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().expect("temporary directory");
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        let bin = pg_bin().unwrap_or_else(|message| panic!("{message}"));
        let pg = PrivatePostgres {
            port: free_port(),
            dir,
            as_root,
            bin,
        };
        if as_root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the PostgreSQL directory");
        }
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.resume();
        pg
    }

    /// The server URL, without a database name (what `new_pg_database` takes).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Starts the server; returns once it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once (`immediate`: no checkpoint, every connection cut, as in a
    /// crash; the next start recovers from the WAL).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Freezes the server and its backends (SIGSTOP) until the guard is dropped: connections
    /// stay open and the kernel still accepts data, but nothing answers, as with a server
    /// stalled on its disk.
    pub fn freeze(&self) -> Frozen<'_> {
        assert!(self.signal("STOP"), "PostgreSQL frozen");
        Frozen(self)
    }

    /// Sends `signal` to the postmaster and every process it started: only this cluster's.
    fn signal(&self, signal: &str) -> bool {
        let Ok(pid_file) = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
        else {
            return false;
        };
        let Some(postmaster) = pid_file.lines().next().map(str::trim) else {
            return false;
        };
        let flag = format!("-{signal}");
        let sent = |command: &mut Command| command.status().is_ok_and(|s| s.success());
        // pkill fails when no child matched, which cannot be for a running server.
        sent(Command::new("kill").args([&flag, postmaster]))
            && sent(Command::new("pkill").args([&flag, "-P", postmaster]))
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program).display().to_string();
        let output = if self.as_root {
            Command::new("runuser")
                .args(["-u", "postgres", "--", &path])
                .args(args)
                .output()
        } else {
            Command::new(&path).args(args).output()
        }
        .unwrap_or_else(|e| panic!("{path} runs: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bin.join("pg_ctl").display().to_string();
        let mut command = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &path]);
            c
        } else {
            Command::new(&path)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A frozen PostgreSQL, let go (SIGCONT) when dropped, even by a failing test: databases
/// cannot be dropped, nor the server stopped, while it is frozen.
pub struct Frozen<'a>(&'a PrivatePostgres);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

/// What `tests/compat/cluster.js` reported: its `@@figures` object and its whole output.
pub struct ClientRun {
    pub figures: Option<Value>,
    pub output: String,
}

/// Runs `node cluster.js <scenario> <config>` against a cluster, answering each `@@hook` with
/// `hook(name, args)` then a line on the script's stdin; fails with the script's output unless
/// it exits 0 within `limit`.
pub async fn run_clients(
    scenario: &str,
    config: &Value,
    limit: Duration,
    mut hook: impl AsyncFnMut(&str, &Value),
) -> ClientRun {
    super::ensure_node_modules();
    let mut child = tokio::process::Command::new("node")
        .arg("cluster.js")
        .arg(scenario)
        .arg(config.to_string())
        .current_dir(super::compat_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let mut run = ClientRun {
        figures: None,
        output: String::new(),
    };
    let drive = async {
        while let Some(line) = stdout.next_line().await.expect("client output") {
            if let Some(hook_line) = line.strip_prefix("@@hook ") {
                let (name, args) = hook_line.split_once(' ').unwrap_or((hook_line, "{}"));
                let args: Value = serde_json::from_str(args).expect("hook arguments");
                hook(name, &args).await;
                stdin.write_all(b"done\n").await.expect("answer the hook");
                stdin.flush().await.expect("answer the hook");
            } else if let Some(figures) = line.strip_prefix("@@figures ") {
                run.figures = Some(serde_json::from_str(figures).expect("figures are JSON"));
                continue;
            }
            run.output.push_str(&line);
            run.output.push('\n');
        }
        child.wait().await.expect("clients exit")
    };
    let status = tokio::time::timeout(limit, drive).await;
    let mut errors = String::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut errors),
    )
    .await;
    match status {
        Ok(status) => assert!(
            status.success(),
            "cluster.js {scenario} failed:\n{}\n{errors}",
            run.output
        ),
        Err(_) => panic!(
            "cluster.js {scenario} did not finish within {limit:?}:\n{}\n{errors}",
            run.output
        ),
    }
    run
}

/// Where the clients of cluster.js connect: nginx and each process.
pub fn client_config(cluster: &Cluster) -> Value {
    serde_json::json!({
        "nginx": cluster.base,
        "processes": cluster.processes.iter().map(|p| p.base.clone()).collect::<Vec<_>>(),
    })
}
