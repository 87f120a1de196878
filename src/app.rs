//! The application: its state (config, database, sessions), its start-up steps, its router, and
//! serving with graceful shutdown.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::from_fn_with_state;
use redis::aio::ConnectionManager;
use tokio::net::TcpListener;
use tower_cookies::CookieManagerLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::{Config, redact_url};
use crate::domain::limits::{LimitStore, Limits};
use crate::domain::message_writer::MessageWriter;
use crate::domain::presence::{MemoryPresence, PresenceRegister};
use crate::domain::{DomainError, accounts, events, names, profiles, rbac, seed};
use crate::http::origin::{OriginPolicy, check_origin};
use crate::session::SessionStore;
use crate::session::limits::RedisLimits;
use crate::session::memory::MemorySessions;
use crate::session::presence::RedisPresence;
use crate::session::redis::RedisSessions;
use crate::store::{self, Db};

/// Everything a request handler may use; built once in `main`, shared by every handler.
pub struct App {
    pub config: Config,
    pub db: Db,
    pub sessions: Arc<dyn SessionStore>,
    /// The shared Redis when several processes run (`REDIS_URL`); `None` on one process.
    pub redis: Option<ConnectionManager>,
    /// Changes the transports must act on (a ban drops the user's sockets).
    pub events: events::Events,
    /// Which users have a connected socket: in memory, or in Redis for every process.
    pub presence: Arc<dyn PresenceRegister>,
    /// Stores posted messages, many per transaction.
    pub messages: MessageWriter,
    /// Users' rights, kept briefly: every request and event needs them.
    pub rights: rbac::RightsCache,
    /// How often clients, accounts, users and sockets may act: in memory, or in Redis for every
    /// process.
    pub limits: Arc<Limits>,
    /// What start-up did, logged when serving begins.
    pub startup: StartupReport,
    /// The metrics of `GET /metrics`.
    pub telemetry: crate::telemetry::Telemetry,
}

/// What to do to the database before serving.
#[derive(Debug, Clone, Copy, Default)]
pub struct Startup {
    /// Add the demo data of docs/protocol.md §6.3 to an empty database.
    pub demo: bool,
}

/// What start-up did, told to the operator in one place when serving begins.
#[derive(Debug)]
pub struct StartupReport {
    pub backend: store::Backend,
    pub migrations_applied: usize,
    /// `None` when no demo data was asked for.
    pub demo: Option<DemoReport>,
    pub admin: AdminReport,
}

/// What became of the demo data that was asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum DemoReport {
    Created {
        users: usize,
    },
    /// Demo data goes only into an empty database; this one had `users` users.
    Skipped {
        users: i64,
    },
}

/// What became of the bootstrap `admin`.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminReport {
    /// Someone already holds the admin right.
    Present,
    /// Created with `IM_ADMIN_PASSWORD`.
    CreatedFromSetting,
    /// Created with a generated password, shown once: on the terminal, or in this file.
    CreatedWithGeneratedPassword { file: Option<PathBuf> },
}

/// A database that is migrated and holds the built-in roles and rights.
pub struct Database {
    pub db: Db,
    pub migrations_applied: usize,
}

impl Database {
    /// Migrates the database at `url`, connects to it and writes the built-in roles and rights:
    /// what every command needs before it touches accounts. `call_limit` bounds each database
    /// call afterwards (see [`Db::connect`]); migrations run without it.
    pub async fn open(
        url: &str,
        pool_size: usize,
        call_limit: Option<std::time::Duration>,
    ) -> anyhow::Result<Database> {
        let migrations_applied = store::migrate::run(url)
            .await
            .with_context(|| format!("migrating {}", redact_url(url)))?;
        let db = Db::connect(url, pool_size, call_limit)?;
        let lock = store::migrate::StartupLock::acquire(&db)
            .await
            .context("connecting to the database")?;
        let mut conn = db.get().await.context("connecting to the database")?;
        rbac::ensure_builtin(&mut conn)
            .await
            .map_err(for_operator)?;
        drop(conn);
        lock.release().await?;
        Ok(Database {
            db,
            migrations_applied,
        })
    }
}

impl App {
    /// Connects, migrates and seeds: after this the server can serve.
    pub async fn start(config: Config, startup: Startup) -> anyhow::Result<Arc<App>> {
        config.validate().map_err(anyhow::Error::msg)?;
        crate::time::set_display_offset(config.timezone);
        let Database {
            db,
            migrations_applied,
        } = Database::open(
            &config.database_url,
            config.db_pool,
            Some(config.db_timeout()),
        )
        .await?;
        let lock = store::migrate::StartupLock::acquire(&db)
            .await
            .context("connecting to the database")?;
        let mut conn = db.get().await.context("connecting to the database")?;
        // Accounts made before usernames had keys get theirs; a failure leaves them to the next
        // start (they still log in by their exact name) and must not keep the server down.
        match names::backfill_username_keys(&mut conn).await {
            Ok((0, _)) => {}
            Ok((set, left)) => tracing::info!(set, left, "username keys filled in"),
            Err(error) => tracing::warn!(%error, "username keys not filled in"),
        }
        let demo = if startup.demo {
            Some(match seed::demo(&mut conn).await.map_err(for_operator)? {
                seed::DemoOutcome::Created { users } => DemoReport::Created { users },
                seed::DemoOutcome::SkippedNotEmpty => DemoReport::Skipped {
                    users: store::accounts::count_users(&mut conn).await?,
                },
            })
        } else {
            None
        };
        // After the demo data, which brings its own admin.
        let admin = bootstrap_admin(&mut conn, &config).await?;
        drop(conn);
        lock.release().await?;
        let report = StartupReport {
            backend: db.backend(),
            migrations_applied,
            demo,
            admin,
        };
        let (redis, sessions, presence): (_, Arc<dyn SessionStore>, Arc<dyn PresenceRegister>) =
            match &config.redis_url {
                Some(url) => {
                    // Lazy: the server starts, and reports itself unready, while Redis is down.
                    let redis = crate::session::redis::connect(url, config.redis_timeout())
                        .with_context(|| format!("Redis URL {}", redact_url(url)))?;
                    let sessions = RedisSessions::new(
                        redis.clone(),
                        &config.redis_prefix,
                        config.session_ttl(),
                    );
                    let presence = RedisPresence::new(
                        redis.clone(),
                        &config.redis_prefix,
                        config.presence_ttl(),
                    );
                    (Some(redis), Arc::new(sessions), Arc::new(presence))
                }
                None => (
                    None,
                    MemorySessions::new(config.session_ttl()),
                    Arc::new(MemoryPresence::default()),
                ),
            };
        let limit_store = redis.as_ref().map(|redis| {
            Arc::new(RedisLimits::new(redis.clone(), &config.redis_prefix)) as Arc<dyn LimitStore>
        });
        let limits = Arc::new(Limits::new(config.limits.rates(), limit_store));
        accounts::prepare_dummy_hash().await?;
        let messages = MessageWriter::start(db.clone());
        let events = events::channel();
        Ok(Arc::new(App {
            config,
            messages,
            rights: rbac::RightsCache::new(&events),
            db,
            sessions,
            redis,
            events,
            presence,
            limits,
            startup: report,
            telemetry: crate::telemetry::Telemetry::new(),
        }))
    }

    /// The whole HTTP surface, Socket.IO included.
    pub fn router(self: &Arc<Self>) -> anyhow::Result<Router> {
        let header = |name: &'static str, value: &'static str| {
            SetResponseHeaderLayer::if_not_present(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )
        };
        let mut router = Router::new()
            .merge(crate::http::api_router(self)?)
            .merge(crate::http::health::router())
            .merge(crate::http::files::router(self));
        // On its own port when IM_METRICS_BIND is set, and then not here.
        if self.config.metrics_bind.is_none() {
            router = router.merge(crate::http::prometheus::router());
        }
        let router = router
            // `/` and every path no route takes: the web clients, or the JSON 404.
            .merge(crate::http::web::router(&self.config))
            .layer(CookieManagerLayer::new())
            // The original's (egg-security) headers.
            .layer(header("x-frame-options", "SAMEORIGIN"))
            .layer(header("x-content-type-options", "nosniff"))
            .layer(header("x-xss-protection", "1; mode=block"))
            .layer(header("x-download-options", "noopen"))
            .layer(axum::middleware::from_fn(
                crate::http::request_log::log_request,
            ))
            .layer(axum::middleware::from_fn(
                crate::http::prometheus::record_request,
            ));
        let router = crate::realtime::attach(router, self).context("starting Socket.IO")?;
        // Outermost, so that it guards Socket.IO's layer too.
        let origins =
            OriginPolicy::from_list(&self.config.allowed_origins).map_err(anyhow::Error::msg)?;
        let router = router.layer(from_fn_with_state(Arc::new(origins), check_origin));
        Ok(router.with_state(self.clone()))
    }

    /// Serves on `listener` until `shutdown` resolves, then lets requests in flight finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = self.router()?;
        let metrics = match self.config.metrics_bind {
            Some(addr) => Some(self.serve_metrics(addr).await?),
            None => None,
        };
        let descriptors = crate::connections::raise_descriptor_limit();
        let limits = crate::connections::Limits::new(&self.config, descriptors);
        let metrics_url = match &metrics {
            Some((addr, _)) => format!("http://{addr}{}", crate::http::prometheus::METRICS_PATH),
            None => format!(
                "http://{}{}",
                listener.local_addr()?,
                crate::http::prometheus::METRICS_PATH
            ),
        };
        self.startup
            .log(listener.local_addr()?, &self.config, &limits, &metrics_url);
        let served = crate::connections::serve(listener, router, limits, shutdown)
            .await
            .context("serving HTTP");
        if let Some((_, task)) = metrics {
            task.abort();
        }
        served
    }

    /// Serves `GET /metrics` alone on `addr` (IM_METRICS_BIND) until aborted; returns the
    /// address it listens on (`:0` picks a port) and its task. Scrapers are few and trusted
    /// (the operator's network), so this port has none of the main port's connection limits.
    async fn serve_metrics(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (IM_METRICS_BIND)"))?;
        let local = listener.local_addr()?;
        let router = crate::http::prometheus::router().with_state(self.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the metrics port stopped serving");
            }
        });
        Ok((local, task))
    }
}

/// Creates `admin` when nobody can administer the server. A generated password is shown once
/// where the operator sees it and no log shipper does: printed on the terminal when standard
/// output is one (an operator is watching), otherwise written to a file only its owner can read
/// (under systemd, Docker or `> out.log`, standard output is a log that gets collected), before
/// the account exists, so that a password that could not be kept never becomes the only key.
async fn bootstrap_admin(conn: &mut store::DbConn, config: &Config) -> anyhow::Result<AdminReport> {
    if !seed::admin_needed(conn).await.map_err(for_operator)? {
        return Ok(AdminReport::Present);
    }
    if let Some(password) = &config.admin_password {
        seed::create_admin(conn, password)
            .await
            .map_err(for_operator)?;
        return Ok(AdminReport::CreatedFromSetting);
    }
    let password = seed::generate_admin_password();
    let on_terminal = std::io::stdout().is_terminal();
    let file = if on_terminal {
        None
    } else {
        let path = &config.generated_password_file;
        write_secret_file(path, &password).with_context(|| {
            format!(
                "writing the generated admin password to {} (set IM_GENERATED_PASSWORD_FILE to a \
                 writable path, or IM_ADMIN_PASSWORD)",
                path.display()
            )
        })?;
        Some(path.clone())
    };
    seed::create_admin(conn, &password)
        .await
        .map_err(for_operator)?;
    if on_terminal {
        println!(
            "\n  created user `admin` with password: {password}\n  (shown once: log in and change \
             it, or set another with `im-server user passwd admin`)\n"
        );
    }
    Ok(AdminReport::CreatedWithGeneratedPassword { file })
}

/// Writes `secret` to a new file at `path` that only this user can read (mode 0600 from its
/// creation, so it is never readable by others even for a moment). A file left by an earlier
/// start is replaced.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(
        file,
        "{secret}\n\nThe password of `admin`, generated at the first start of im-server. Log in, \
         change it (or run `im-server user passwd admin`), then delete this file."
    )?;
    file.sync_all()
}

impl StartupReport {
    /// The start-up summary: one log event that says where the server serves, on what, and what
    /// start-up did, with the demo log-ins when there are some.
    fn log(
        &self,
        addr: SocketAddr,
        config: &Config,
        connections: &crate::connections::Limits,
        metrics: &str,
    ) {
        let demo = match &self.demo {
            None => "not asked for (--demo or IM_DEMO=1 adds it to an empty database)".to_owned(),
            Some(DemoReport::Created { users }) => {
                format!("created ({users} users); log in as {}", seed::DEMO_LOGINS)
            }
            Some(DemoReport::Skipped { users }) => format!(
                "skipped: the database already has {users} users, and demo data only goes into an \
                 empty one (the demo log-ins exist only if an earlier --demo start wrote them; use \
                 another DATABASE_URL for a demo)"
            ),
        };
        let admin = match &self.admin {
            AdminReport::Present => "an admin exists".to_owned(),
            AdminReport::CreatedFromSetting => {
                "created `admin` with the password of IM_ADMIN_PASSWORD".to_owned()
            }
            AdminReport::CreatedWithGeneratedPassword { file: None } => {
                "created `admin` with a generated password, printed above on the terminal"
                    .to_owned()
            }
            AdminReport::CreatedWithGeneratedPassword { file: Some(file) } => format!(
                "created `admin` with a generated password, written to {} (readable by this user \
                 only): read it, log in, change it, delete the file",
                file.display()
            ),
        };
        let sessions = match &config.redis_url {
            Some(url) => format!("redis at {}", redact_url(url)),
            None => "memory (one process)".to_owned(),
        };
        let web_client = match config.web_client_dir() {
            Some(dir) => format!("{} at /", dir.display()),
            None => "none (IM_WEB_DIR): / shows the built-in page".to_owned(),
        };
        let admin_client = match config.admin_client_dir() {
            Some(dir) => format!("{} at /admin/", dir.display()),
            None => "none (IM_ADMIN_DIR)".to_owned(),
        };
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            commit = crate::telemetry::COMMIT,
            url = %format!("http://{addr}/"),
            metrics,
            database = %redact_url(&config.database_url),
            backend = ?self.backend,
            migrations_applied = self.migrations_applied,
            sessions,
            demo,
            admin,
            web_client,
            admin_client,
            max_connections = connections.max_connections,
            max_connections_per_ip = connections.max_per_address,
            request_log = "RUST_LOG=info,im_server::http=debug",
            "im-server serving"
        );
    }
}

/// The one mapping of a domain error for an operator (start-up, the commands), in English. The
/// domain's messages are for chat clients, in their language, and hide a fault's cause; an
/// operator needs the cause.
pub fn for_operator(error: DomainError) -> anyhow::Error {
    match error {
        DomainError::Rejected(message) if message == accounts::DUPLICATE_USERNAME => {
            anyhow::anyhow!("that username is taken")
        }
        DomainError::Rejected(message) if message == profiles::NO_SUCH_USER => {
            anyhow::anyhow!("no such user")
        }
        DomainError::Rejected(message) | DomainError::Invalid(message) => {
            anyhow::anyhow!("refused: {message}")
        }
        DomainError::Unavailable(cause) => anyhow::anyhow!("the database is unavailable: {cause}"),
        DomainError::Internal(cause) => anyhow::anyhow!("{cause}"),
        DomainError::NotLoggedIn | DomainError::NotPermitted | DomainError::Forbidden => {
            anyhow::anyhow!("not permitted")
        }
        DomainError::TooManyRequests(wait) => {
            anyhow::anyhow!("rate limited: try again in {} s", wait.as_secs().max(1))
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
