//! The server under test: its loopback address, log-in over REST (the session cookie, as a
//! browser keeps it), a user's conversations, and its resident memory.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use reqwest::Url;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::Value;

/// The server's base URL, checked to be on this machine.
#[derive(Debug, Clone)]
pub struct Target {
    pub base: Url,
}

/// A logged-in user: their id and the `Cookie` header value that carries their session.
#[derive(Debug, Clone)]
pub struct Session {
    pub username: String,
    pub user_id: i64,
    pub cookie: String,
}

/// One conversation as `GET /api/v1/conversations` lists it.
#[derive(Debug, Clone)]
pub struct ConversationInfo {
    pub id: i64,
    pub kind: String,
    /// The group (groupchat) or the friend (chat).
    pub target_id: i64,
    pub target_name: Option<String>,
}

impl Target {
    /// Accepts only `http://` URLs whose host is a loopback address or `localhost`.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let base = Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
        anyhow::ensure!(base.scheme() == "http", "--url must be http://");
        let host = base.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        anyhow::ensure!(
            loopback,
            "--url must name a loopback address (127.0.0.0/8, ::1 or localhost): load is never sent elsewhere"
        );
        Ok(Target { base })
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// The Socket.IO WebSocket URL for Engine.IO `eio` (3 or 4).
    pub fn socket_url(&self, eio: u8, user_id: i64) -> String {
        let http = self.base.as_str().trim_end_matches('/');
        let ws = http.replacen("http://", "ws://", 1);
        format!("{ws}/socket.io/?EIO={eio}&transport=websocket&scene=im&userId={user_id}")
    }
}

/// One HTTP client for the whole run: no cookie jar, sessions are carried by hand per user.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .build()?)
}

/// Logs `username` in and keeps the session cookie from `Set-Cookie`.
pub async fn login(
    http: &reqwest::Client,
    target: &Target,
    cookie_name: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<Session> {
    let response = http
        .post(target.http_url("/api/v1/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .with_context(|| format!("log-in of {username}"))?;
    let prefix = format!("{cookie_name}=");
    let cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .map(str::trim)
        .find(|pair| pair.starts_with(&prefix))
        .map(str::to_owned);
    let body: Value = response.json().await.context("log-in answer is not JSON")?;
    anyhow::ensure!(
        body["statusCode"] == "0",
        "log-in of {username} refused: {}",
        body["errorMessage"]
    );
    let cookie =
        cookie.with_context(|| format!("log-in of {username} set no {cookie_name} cookie"))?;
    let user_id = body["data"]["id"]
        .as_i64()
        .with_context(|| format!("log-in of {username} returned no user id"))?;
    Ok(Session {
        username: username.to_owned(),
        user_id,
        cookie,
    })
}

/// The conversations of the session's user.
pub async fn conversations(
    http: &reqwest::Client,
    target: &Target,
    session: &Session,
) -> anyhow::Result<Vec<ConversationInfo>> {
    let body: Value = http
        .get(target.http_url("/api/v1/conversations"))
        .header(COOKIE, &session.cookie)
        .send()
        .await?
        .json()
        .await
        .context("GET /api/v1/conversations did not answer JSON")?;
    anyhow::ensure!(
        body["statusCode"] == "0",
        "GET /api/v1/conversations refused: {}",
        body["errorMessage"]
    );
    let list = body["data"]
        .as_array()
        .context("GET /api/v1/conversations: data is not a list")?;
    Ok(list
        .iter()
        .filter_map(|c| {
            Some(ConversationInfo {
                id: c["id"].as_i64()?,
                kind: c["type"].as_str()?.to_owned(),
                target_id: c["target"]["id"].as_i64()?,
                target_name: c["target"]["name"].as_str().map(str::to_owned),
            })
        })
        .collect())
}

/// Resident memory of process `pid` in KiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// This process's soft limit of open files, from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
