//! A scaled-out deployment on one machine: several `im-server` processes on one PostgreSQL
//! database and one Redis, with nginx (the repository's nginx.conf, ports substituted) in front.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Client, new_pg_database, unique_prefix};

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
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

impl Cluster {
    /// Starts `count` processes with the demo data and nginx in front; waits until all are ready.
    pub async fn start(pg_server: &str, redis_url: &str, count: usize) -> Cluster {
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
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
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
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
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
        .expect("nginx installed (Debian package nginx; .ci/run installs it)");
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
