//! Every setting of the server: its flag, its environment variable and its default. Defaults work
//! on a bare machine; secrets are redacted from `Debug`, so the config can be logged whole.
//!
//! Conventions, so that every setting reads the same way: a boolean is
//! `#[arg(long, env = "...", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
//! default_value = "false", default_missing_value = "true", value_parser = boolean)]`
//! (it then takes `1/0/true/false/yes/no` in any case, as `--flag`, `--flag=false` or a variable);
//! an enum is `value_enum, ignore_case = true`; a secret, or a URL that may hold one, has
//! `hide_env_values = true` so that `--help` does not print it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::FixedOffset;
use clap::{ArgAction, Parser, ValueEnum};
use ipnet::IpNet;

use crate::domain::limits::{Rate, Rates, parse_rate};

#[derive(Clone, Parser)]
#[command(name = "im-server", no_binary_name = false)]
pub struct Config {
    /// Address the HTTP, REST and Socket.IO port listens on.
    #[arg(long, env = "IM_BIND", default_value = "127.0.0.1:7001", global = true)]
    pub bind: SocketAddr,

    /// Address of a second port that serves only `GET /metrics` (Prometheus), which the main
    /// port then no longer serves. Unset: `/metrics` is on the main port.
    #[arg(long, env = "IM_METRICS_BIND", global = true)]
    pub metrics_bind: Option<SocketAddr>,

    /// `sqlite://path/to/file.db` (embedded, created on first start) or `postgres://...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = DEFAULT_DATABASE_URL,
        global = true
    )]
    pub database_url: String,

    /// Most database connections this process holds.
    #[arg(long, env = "IM_DB_POOL", default_value_t = 16, global = true)]
    pub db_pool: usize,

    /// Seconds one database call may take: the wait for a pooled connection, for a lock (SQLite's
    /// busy timeout, PostgreSQL's lock_timeout) or for a statement (PostgreSQL's
    /// statement_timeout cancels it). Past it the request is answered `服务暂时不可用`.
    #[arg(long, env = "IM_DB_TIMEOUT", default_value_t = 5, global = true)]
    pub db_timeout_secs: u64,

    /// `redis://...`: sessions, presence and the Socket.IO adapter in Redis, for several processes.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key this server writes, so several deployments can share a Redis.
    #[arg(long, env = "IM_REDIS_PREFIX", default_value = "im:", global = true)]
    pub redis_prefix: String,

    /// Seconds one Redis command (or opening a connection to Redis) may take before the request
    /// that needs it is answered `服务暂时不可用`. Only with `REDIS_URL`.
    #[arg(long, env = "IM_REDIS_TIMEOUT", default_value_t = 2, global = true)]
    pub redis_timeout_secs: u64,

    /// Seconds after which a process that stopped beating (it crashed, or lost Redis) no longer
    /// counts its users online; it beats every third of this. Only with `REDIS_URL`.
    #[arg(long, env = "IM_PRESENCE_TTL", default_value_t = 30, global = true)]
    pub presence_ttl_secs: u64,

    /// Folder of uploaded files (under `upload/`), served at `/public/`.
    #[arg(
        long,
        env = "IM_PUBLIC_DIR",
        default_value = "data/public",
        global = true
    )]
    pub public_dir: PathBuf,

    /// Folder of a built web client (the H5 client's `dist`), served at `/`: its files, and its
    /// `index.html` for any other GET outside `/api`, `/public`, `/socket.io`, `/metrics` and the
    /// probes, where its router takes over. Unset: `static/web` when it holds an `index.html`;
    /// `off`: none, and `/` shows the built-in page.
    #[arg(long, env = "IM_WEB_DIR", value_name = "DIR|off", value_parser = folder_or_off,
          global = true)]
    pub web_dir: Option<PathBuf>,

    /// Folder of the built admin, served at `/admin/` the same way (build it for that base path).
    /// Unset: `static/admin` when it holds an `index.html`; `off`: none.
    #[arg(long, env = "IM_ADMIN_DIR", value_name = "DIR|off", value_parser = folder_or_off,
          global = true)]
    pub admin_dir: Option<PathBuf>,

    /// Largest uploaded file, in bytes.
    #[arg(long, env = "IM_UPLOAD_MAX", default_value_t = 3 * 1024 * 1024, global = true)]
    pub upload_max: usize,

    /// UTC offset at which dates are shown, like the original's +08:00.
    #[arg(long, env = "IM_TIMEZONE", default_value = crate::time::DEFAULT_OFFSET,
          value_parser = crate::time::parse_offset, global = true)]
    pub timezone: FixedOffset,

    /// Name of the session cookie.
    #[arg(long, env = "IM_COOKIE_NAME", default_value = "IM_SESS", global = true)]
    pub cookie_name: String,

    /// Mark the session cookie `Secure` (set it when clients reach the server over HTTPS).
    #[arg(long, env = "IM_COOKIE_SECURE", global = true, value_name = "BOOL",
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = boolean)]
    pub cookie_secure: bool,

    /// Origins whose web pages may change state and open sockets, comma-separated
    /// (`https://chat.example.com,https://admin.example.com`). Unset: a page of the host the
    /// request is addressed to (its `Host` header). Requests without `Origin` (apps) always pass.
    #[arg(long, env = "IM_ALLOWED_ORIGINS", value_delimiter = ',', global = true)]
    pub allowed_origins: Vec<String>,

    /// Seconds a session lives after its last use.
    #[arg(long, env = "IM_SESSION_TTL", default_value_t = 24 * 3600, global = true)]
    pub session_ttl_secs: u64,

    /// Password of the `admin` created at start-up when no user holds the admin right (6 to 128
    /// characters). Unset: one is generated and shown once (see --generated-password-file).
    #[arg(long, env = "IM_ADMIN_PASSWORD", hide_env_values = true, global = true)]
    pub admin_password: Option<String>,

    /// Where a generated admin password is written (mode 0600) when standard output is not a
    /// terminal; on a terminal it is printed there instead. Never logged either way.
    #[arg(
        long,
        env = "IM_GENERATED_PASSWORD_FILE",
        default_value = "data/admin-password.txt",
        global = true
    )]
    pub generated_password_file: PathBuf,

    /// HMAC key of the original server's password hashes, accepted until rehashed at login.
    #[arg(
        long,
        env = "IM_LEGACY_SECRET",
        hide_env_values = true,
        default_value = "im-server",
        global = true
    )]
    pub legacy_secret: String,

    /// Client id of the GitHub OAuth app; GitHub log-in is off while it or the secret is unset.
    #[arg(long, env = "IM_GITHUB_CLIENT_ID", global = true)]
    pub github_client_id: Option<String>,

    /// Client secret of the GitHub OAuth app.
    #[arg(
        long,
        env = "IM_GITHUB_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub github_client_secret: Option<String>,

    /// Where GitHub sends the browser back: `https://<host>/api/v1/passport/github/callback`
    /// (unset: the callback URL registered with the OAuth app).
    #[arg(long, env = "IM_GITHUB_CALLBACK_URL", global = true)]
    pub github_callback_url: Option<String>,

    /// Where a failed GitHub log-in sends the browser, with `error` (a short code) and `message`
    /// added to its query: the web client's log-in page. A path (`/login`, `/#/login`) or an
    /// http(s) URL.
    #[arg(
        long,
        env = "IM_GITHUB_FAILURE_URL",
        default_value = "/login",
        global = true
    )]
    pub github_failure_url: String,

    /// GitHub's authorize endpoint (change it only to test against a stand-in).
    #[arg(
        long,
        env = "IM_GITHUB_AUTHORIZE_URL",
        default_value = "https://github.com/login/oauth/authorize",
        global = true
    )]
    pub github_authorize_url: String,

    /// GitHub's token endpoint.
    #[arg(
        long,
        env = "IM_GITHUB_TOKEN_URL",
        default_value = "https://github.com/login/oauth/access_token",
        global = true
    )]
    pub github_token_url: String,

    /// GitHub's REST API root (the user is read from `{api}/user`).
    #[arg(
        long,
        env = "IM_GITHUB_API_URL",
        default_value = "https://api.github.com",
        global = true
    )]
    pub github_api_url: String,

    /// Seconds a new connection, or one between requests that has begun its next, has to send a
    /// whole request head; past it the connection is closed.
    #[arg(long, env = "IM_HEAD_TIMEOUT", default_value_t = 10, global = true)]
    pub head_timeout_secs: u64,

    /// Seconds a request body has to arrive in full once its head has (an upload included).
    #[arg(long, env = "IM_BODY_TIMEOUT", default_value_t = 60, global = true)]
    pub body_timeout_secs: u64,

    /// Seconds a Socket.IO event's handler may take, all its database and Redis calls together
    /// (a send includes its wait for the message writer). Past it the client is answered
    /// `服务暂时不可用`; a send may still be stored, and a retry with the same `clientMsgId`
    /// then answers the stored message. Set it above IM_DB_TIMEOUT.
    #[arg(long, env = "IM_EVENT_TIMEOUT", default_value_t = 10, global = true)]
    pub event_timeout_secs: u64,

    /// Seconds a REST call under `/api/v1` may take, its database, Redis and other calls
    /// together; the time it waits for the client's body does not count (IM_BODY_TIMEOUT bounds
    /// that). Past it the call is answered 503 `服务暂时不可用`, and what it had begun goes on to
    /// its end. Set it above IM_DB_TIMEOUT.
    #[arg(long, env = "IM_REQUEST_TIMEOUT", default_value_t = 10, global = true)]
    pub request_timeout_secs: u64,

    /// Seconds a kept-alive connection may wait, idle, for its next request. Above nginx's
    /// upstream `keepalive_timeout` (60 s), so that nginx, not us, closes a pooled connection.
    #[arg(
        long,
        env = "IM_KEEPALIVE_TIMEOUT",
        default_value_t = 75,
        global = true
    )]
    pub keepalive_timeout_secs: u64,

    /// Most connections open at once (WebSockets included); 0: the open-files limit less a
    /// reserve for the database, Redis and files. Never more than that.
    #[arg(long, env = "IM_MAX_CONNECTIONS", default_value_t = 0, global = true)]
    pub max_connections: usize,

    /// Most connections open at once from one client address (an IPv6 /64 counts as one);
    /// a trusted proxy has no such cap.
    #[arg(
        long,
        env = "IM_MAX_CONNECTIONS_PER_IP",
        default_value_t = 256,
        global = true
    )]
    pub max_connections_per_ip: usize,

    /// Addresses or CIDR blocks of the proxies (nginx) whose `X-Forwarded-For` names the client,
    /// comma-separated; from anyone else the header is ignored. By default this machine's own
    /// (nginx beside the server): without it every client behind nginx would share nginx's
    /// per-address connection cap.
    #[arg(long, env = "IM_TRUSTED_PROXIES", value_delimiter = ',',
          default_value = "127.0.0.0/8,::1", value_parser = parse_trusted_proxy, global = true)]
    pub trusted_proxies: Vec<IpNet>,

    /// Log format: `human` (colours only on a terminal) or `json` (one object a line).
    #[arg(
        long,
        env = "IM_LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value = "human",
        global = true
    )]
    pub log_format: LogFormat,

    /// The chat robot's optional outside backend.
    #[command(flatten)]
    pub robot: RobotConfig,

    /// Rate limits, counted in Redis for every process when `REDIS_URL` is set.
    #[command(flatten)]
    pub limits: LimitConfig,
}

/// Rate limits, each `COUNT/WINDOW` (`20/10m`; counts of bytes may say `K`, `M`, `G`) or `off`.
/// A limit allows its whole count at once, then one more each `WINDOW / COUNT`.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitConfig {
    /// Failed log-ins from one client address (an IPv6 client: its /64), whatever the account;
    /// then HTTP 429 with `Retry-After`.
    #[arg(long = "limit-login-address", env = "IM_LIMIT_LOGIN_ADDRESS", default_value = "20/10m",
          value_parser = parse_rate, global = true)]
    pub login_address: Rate,

    /// Failed log-ins to one account from addresses it has not logged in from in the last 30
    /// days (the owner's usual addresses are limited only by the per-address limit).
    #[arg(long = "limit-login-account", env = "IM_LIMIT_LOGIN_ACCOUNT", default_value = "10/10m",
          value_parser = parse_rate, global = true)]
    pub login_account: Rate,

    /// Sign-ups from one client address.
    #[arg(long = "limit-signup-address", env = "IM_LIMIT_SIGNUP_ADDRESS", default_value = "10/1h",
          value_parser = parse_rate, global = true)]
    pub signup_address: Rate,

    /// Messages sent on one socket.
    #[arg(long = "limit-message-socket", env = "IM_LIMIT_MESSAGE_SOCKET", default_value = "30/10s",
          value_parser = parse_rate, global = true)]
    pub message_socket: Rate,

    /// Messages sent by one user, all their sockets together.
    #[arg(long = "limit-message-user", env = "IM_LIMIT_MESSAGE_USER", default_value = "60/30s",
          value_parser = parse_rate, global = true)]
    pub message_user: Rate,

    /// Bytes uploaded by one user (at least `IM_UPLOAD_MAX` per window).
    #[arg(long = "limit-upload-user", env = "IM_LIMIT_UPLOAD_USER", default_value = "64M/1h",
          value_parser = parse_rate, global = true)]
    pub upload_user: Rate,
}

impl LimitConfig {
    pub fn rates(&self) -> Rates {
        Rates {
            login_address: self.login_address,
            login_account: self.login_account,
            signup_address: self.signup_address,
            message_socket: self.message_socket,
            message_user: self.message_user,
            upload_user: self.upload_user,
        }
    }

    /// Every limit off: for tests and benchmarks that are not about limits.
    pub fn off() -> LimitConfig {
        LimitConfig {
            login_address: Rate::Off,
            login_account: Rate::Off,
            signup_address: Rate::Off,
            message_socket: Rate::Off,
            message_user: Rate::Off,
            upload_user: Rate::Off,
        }
    }
}

/// A boolean setting: `1/0`, `true/false` or `yes/no`, in any case.
pub fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err("expected 1/0, true/false or yes/no".to_owned()),
    }
}

/// The web client served at `/` when `IM_WEB_DIR` is unset and this folder holds one.
pub const DEFAULT_WEB_DIR: &str = "static/web";
/// The admin served at `/admin/` when `IM_ADMIN_DIR` is unset and this folder holds one.
pub const DEFAULT_ADMIN_DIR: &str = "static/admin";

/// The folder of a web client: the one set (`off`: none), or else `default` when it holds an
/// `index.html`.
fn client_dir(setting: Option<&Path>, default: &str) -> Option<PathBuf> {
    match setting {
        Some(dir) if dir == Path::new("off") => None,
        Some(dir) => Some(dir.to_path_buf()),
        None => Path::new(default)
            .join("index.html")
            .is_file()
            .then(|| PathBuf::from(default)),
    }
}

/// A web client's folder, or `off`; never empty (an empty variable is a mistake, not "unset").
fn folder_or_off(text: &str) -> Result<PathBuf, String> {
    if text.trim().is_empty() {
        return Err("expected a folder holding index.html, or off".to_owned());
    }
    Ok(PathBuf::from(text))
}

/// A folder set for a web client must hold its `index.html`: a mistyped path fails the start
/// instead of serving 404s.
fn check_client_dir(variable: &str, setting: Option<&Path>) -> Result<(), String> {
    match setting {
        Some(dir) if dir != Path::new("off") && !dir.join("index.html").is_file() => Err(format!(
            "{variable}: {} holds no index.html (build the client into it, or set {variable}=off)",
            dir.display()
        )),
        _ => Ok(()),
    }
}

/// Where the database is when nothing says otherwise: a file beside the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/im.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

impl Config {
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }

    pub fn presence_ttl(&self) -> Duration {
        Duration::from_secs(self.presence_ttl_secs)
    }

    pub fn db_timeout(&self) -> Duration {
        Duration::from_secs(self.db_timeout_secs)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_secs(self.redis_timeout_secs)
    }

    pub fn event_timeout(&self) -> Duration {
        Duration::from_secs(self.event_timeout_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn head_timeout(&self) -> Duration {
        Duration::from_secs(self.head_timeout_secs)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    pub fn keepalive_timeout(&self) -> Duration {
        Duration::from_secs(self.keepalive_timeout_secs)
    }

    /// The folder of the web client served at `/`, if any.
    pub fn web_client_dir(&self) -> Option<PathBuf> {
        client_dir(self.web_dir.as_deref(), DEFAULT_WEB_DIR)
    }

    /// The folder of the admin served at `/admin/`, if any.
    pub fn admin_client_dir(&self) -> Option<PathBuf> {
        client_dir(self.admin_dir.as_deref(), DEFAULT_ADMIN_DIR)
    }

    /// Checks what clap cannot: values that parse but make no sense together.
    pub fn validate(&self) -> Result<(), String> {
        crate::store::Backend::of_url(&self.database_url).map_err(|e| e.to_string())?;
        if self.db_pool == 0 {
            return Err("IM_DB_POOL must be at least 1".into());
        }
        if self.session_ttl_secs < 60 {
            return Err("IM_SESSION_TTL must be at least 60 seconds".into());
        }
        crate::http::origin::OriginPolicy::from_list(&self.allowed_origins)?;
        if self.presence_ttl_secs < 3 {
            return Err("IM_PRESENCE_TTL must be at least 3 seconds".into());
        }
        if !(1..=3600).contains(&self.head_timeout_secs) {
            return Err("IM_HEAD_TIMEOUT must be 1 to 3600 seconds".into());
        }
        if !(1..=86_400).contains(&self.body_timeout_secs) {
            return Err("IM_BODY_TIMEOUT must be 1 to 86400 seconds".into());
        }
        if !(1..=3600).contains(&self.keepalive_timeout_secs) {
            return Err("IM_KEEPALIVE_TIMEOUT must be 1 to 3600 seconds".into());
        }
        for (name, secs) in [
            ("IM_DB_TIMEOUT", self.db_timeout_secs),
            ("IM_REDIS_TIMEOUT", self.redis_timeout_secs),
            ("IM_EVENT_TIMEOUT", self.event_timeout_secs),
            ("IM_REQUEST_TIMEOUT", self.request_timeout_secs),
        ] {
            if !(1..=3600).contains(&secs) {
                return Err(format!("{name} must be 1 to 3600 seconds"));
            }
        }
        if self.max_connections_per_ip == 0 {
            return Err("IM_MAX_CONNECTIONS_PER_IP must be at least 1".into());
        }
        if self.cookie_name.is_empty()
            || !self
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err("IM_COOKIE_NAME must be letters, digits, '_' or '-'".into());
        }
        if let Rate::Every { count, .. } = self.limits.upload_user
            && count < self.upload_max as u64
        {
            return Err(format!(
                "IM_LIMIT_UPLOAD_USER ({}) must allow at least IM_UPLOAD_MAX ({} bytes) per window",
                self.limits.upload_user, self.upload_max
            ));
        }
        check_client_dir("IM_WEB_DIR", self.web_dir.as_deref())?;
        check_client_dir("IM_ADMIN_DIR", self.admin_dir.as_deref())?;
        let failure = &self.github_failure_url;
        // `//host` and `/\host` are other hosts to a browser, not paths.
        let path =
            failure.starts_with('/') && !failure.starts_with("//") && !failure.starts_with("/\\");
        let url = failure.starts_with("https://") || failure.starts_with("http://");
        if !(path || url) || !failure.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "IM_GITHUB_FAILURE_URL: {failure:?} is neither a path like /login nor an http(s) \
                 URL (without spaces; non-ASCII percent-encoded)"
            ));
        }
        if let Some(password) = &self.admin_password {
            crate::domain::accounts::check_password(password)
                .map_err(|rule| format!("IM_ADMIN_PASSWORD is refused: {rule}"))?;
        }
        Ok(())
    }
}

/// One entry of `IM_TRUSTED_PROXIES`: an address (`10.0.0.5`) or a block (`10.0.0.0/8`).
fn parse_trusted_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR block"))
}

/// `scheme://user:password@host/db` → `scheme://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

fn redact(secret: &Option<String>) -> &'static str {
    if secret.is_some() {
        "Some(***)"
    } else {
        "None"
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("metrics_bind", &self.metrics_bind)
            .field("database_url", &redact_url(&self.database_url))
            .field("db_pool", &self.db_pool)
            .field("db_timeout_secs", &self.db_timeout_secs)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("redis_timeout_secs", &self.redis_timeout_secs)
            .field("presence_ttl_secs", &self.presence_ttl_secs)
            .field("public_dir", &self.public_dir)
            .field("web_dir", &self.web_dir)
            .field("admin_dir", &self.admin_dir)
            .field("upload_max", &self.upload_max)
            .field("timezone", &self.timezone)
            .field("cookie_name", &self.cookie_name)
            .field("cookie_secure", &self.cookie_secure)
            .field("allowed_origins", &self.allowed_origins)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("admin_password", &redact(&self.admin_password))
            .field("generated_password_file", &self.generated_password_file)
            .field("legacy_secret", &"***")
            .field("github_client_id", &self.github_client_id)
            .field("github_client_secret", &redact(&self.github_client_secret))
            .field("github_callback_url", &self.github_callback_url)
            .field("github_failure_url", &self.github_failure_url)
            .field("github_authorize_url", &self.github_authorize_url)
            .field("github_token_url", &self.github_token_url)
            .field("github_api_url", &self.github_api_url)
            .field("head_timeout_secs", &self.head_timeout_secs)
            .field("body_timeout_secs", &self.body_timeout_secs)
            .field("event_timeout_secs", &self.event_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("keepalive_timeout_secs", &self.keepalive_timeout_secs)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("log_format", &self.log_format)
            .field("robot", &self.robot)
            .field("limits", &self.limits)
            .finish()
    }
}

/// The robot's optional Baidu UNIT-compatible backend. Unset: the built-in responder answers.
#[derive(Clone, clap::Args)]
pub struct RobotConfig {
    /// Chat endpoint, e.g. `https://aip.baidubce.com/rpc/2.0/unit/service/chat`.
    #[arg(long = "robot-url", env = "IM_ROBOT_URL", global = true)]
    pub url: Option<String>,

    /// OAuth endpoint that turns the API key and secret key into an access token.
    #[arg(
        long = "robot-token-url",
        env = "IM_ROBOT_TOKEN_URL",
        default_value = "https://aip.baidubce.com/oauth/2.0/token",
        global = true
    )]
    pub token_url: String,

    /// API key (client id); without it and the secret key, the endpoint is called without a token.
    #[arg(
        long = "robot-api-key",
        env = "IM_ROBOT_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub api_key: Option<String>,

    /// Secret key (client secret) that goes with the API key.
    #[arg(
        long = "robot-secret-key",
        env = "IM_ROBOT_SECRET_KEY",
        hide_env_values = true,
        global = true
    )]
    pub secret_key: Option<String>,

    /// The UNIT service (or bot) id sent with each question.
    #[arg(
        long = "robot-service-id",
        env = "IM_ROBOT_SERVICE_ID",
        default_value = "",
        global = true
    )]
    pub service_id: String,

    /// How long an answer from the backend is waited for before the built-in one is used.
    #[arg(
        long = "robot-timeout-ms",
        env = "IM_ROBOT_TIMEOUT_MS",
        default_value_t = 3000,
        global = true
    )]
    pub timeout_ms: u64,
}

impl fmt::Debug for RobotConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RobotConfig")
            .field("url", &self.url)
            .field("token_url", &self.token_url)
            .field("api_key", &redact(&self.api_key))
            .field("secret_key", &redact(&self.secret_key))
            .field("service_id", &self.service_id)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let config = Config::try_parse_from([
            "im-server",
            "--database-url",
            "postgres://im:hunter2@db/im",
            "--admin-password",
            "s3cret-admin",
            "--legacy-secret",
            "legacy-key",
            "--github-client-secret",
            "gh-client-secret",
        ])
        .unwrap();
        let shown = format!("{config:?}");
        assert!(shown.contains("postgres://im:***@db/im"), "{shown}");
        for secret in ["hunter2", "s3cret-admin", "legacy-key", "gh-client-secret"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }

    #[test]
    fn defaults_work_on_a_bare_machine() {
        let config = Config::try_parse_from(["im-server"]).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:7001");
        assert_eq!(config.database_url, "sqlite://data/im.db");
        assert_eq!(config.cookie_name, "IM_SESS");
        assert_eq!(config.upload_max, 3 * 1024 * 1024);
        let trusted: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(trusted, ["127.0.0.0/8", "::1/128"]);
        assert!(config.validate().is_ok());
        assert_eq!(
            config.limits.login_address,
            Rate::every(20, Duration::from_secs(600))
        );
        assert_eq!(
            config.limits.upload_user,
            Rate::every(64 << 20, Duration::from_secs(3600))
        );
    }

    #[test]
    fn limits_are_checked() {
        let parse = |args: &[&str]| {
            Config::try_parse_from(["im-server"].iter().chain(args))
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map(|()| c))
        };
        assert!(parse(&["--limit-login-address", "20/fortnight"]).is_err());
        assert!(parse(&["--limit-message-user", "0/1s"]).is_err());
        assert!(parse(&["--limit-upload-user", "1M/1h"]).is_err());
        let off = parse(&["--limit-message-user", "off"]).unwrap();
        assert_eq!(off.limits.message_user, Rate::Off);
    }

    #[test]
    fn trusted_proxies_are_addresses_or_blocks() {
        let config = Config::try_parse_from([
            "im-server",
            "--trusted-proxies",
            "10.0.0.5, 192.168.1.7/16,::1",
        ])
        .unwrap();
        let shown: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown, ["10.0.0.5/32", "192.168.0.0/16", "::1/128"]);
        assert!(Config::try_parse_from(["im-server", "--trusted-proxies", "nginx"]).is_err());
    }

    #[test]
    fn client_folders_are_off_set_or_the_default_when_built() {
        let parse = |args: &[&str]| {
            Config::try_parse_from(["im-server"].iter().chain(args)).map_err(|e| e.to_string())
        };
        let built = tempfile::tempdir().unwrap();
        std::fs::write(built.path().join("index.html"), "<!doctype html>").unwrap();
        let empty = tempfile::tempdir().unwrap();
        let config = parse(&[
            "--web-dir",
            built.path().to_str().unwrap(),
            "--admin-dir",
            "off",
        ])
        .unwrap();
        assert!(config.validate().is_ok());
        assert_eq!(config.web_client_dir().as_deref(), Some(built.path()));
        assert_eq!(config.admin_client_dir(), None);
        // A folder set without a client in it is a mistake, told at start.
        let config = parse(&["--admin-dir", empty.path().to_str().unwrap()]).unwrap();
        let refused = config.validate().unwrap_err();
        assert!(
            refused.contains("IM_ADMIN_DIR") && refused.contains("index.html"),
            "{refused}"
        );
        assert!(parse(&["--web-dir", ""]).is_err());
    }

    #[test]
    fn the_github_failure_page_is_a_path_or_a_url() {
        for good in [
            "/login",
            "/#/login",
            "/login?from=github",
            "https://chat.example/login",
        ] {
            let config =
                Config::try_parse_from(["im-server", "--github-failure-url", good]).unwrap();
            assert!(config.validate().is_ok(), "{good}");
        }
        for bad in [
            "login",
            "//evil.example/login",
            "/\\evil.example/login",
            "javascript:alert(1)",
            "/log in",
            "/登录",
        ] {
            let config =
                Config::try_parse_from(["im-server", "--github-failure-url", bad]).unwrap();
            assert!(config.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_limits_are_checked() {
        for (flag, value) in [
            ("--head-timeout-secs", "0"),
            ("--body-timeout-secs", "0"),
            ("--keepalive-timeout-secs", "0"),
            ("--db-timeout-secs", "0"),
            ("--redis-timeout-secs", "0"),
            ("--event-timeout-secs", "0"),
            ("--request-timeout-secs", "0"),
            ("--request-timeout-secs", "3601"),
            ("--max-connections-per-ip", "0"),
        ] {
            let config = Config::try_parse_from(["im-server", flag, value]).unwrap();
            assert!(config.validate().is_err(), "{flag} {value} accepted");
        }
    }
}
