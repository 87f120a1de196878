//! The application: its state (config, database, sessions), its start-up steps, its router, and
//! serving with graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::map_request;
use redis::aio::ConnectionManager;
use tokio::net::TcpListener;
use tower_cookies::CookieManagerLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::config::{Config, redact_url};
use crate::domain::message_writer::MessageWriter;
use crate::domain::presence::{MemoryPresence, PresenceRegister};
use crate::domain::{events, rbac, seed};
use crate::session::SessionStore;
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
}

/// What to do to the database before serving.
#[derive(Debug, Clone, Copy, Default)]
pub struct Startup {
    /// Add the demo data of API.md §6 to an empty database.
    pub demo: bool,
}

impl App {
    /// Connects, migrates and seeds: after this the server can serve.
    pub async fn start(config: Config, startup: Startup) -> anyhow::Result<Arc<App>> {
        config.validate().map_err(anyhow::Error::msg)?;
        crate::time::set_display_offset(config.timezone);
        let applied = store::migrate::run(&config.database_url)
            .await
            .with_context(|| format!("migrating {}", redact_url(&config.database_url)))?;
        tracing::info!(applied, backend = ?store::Backend::of_url(&config.database_url)?, "database schema up to date");
        let db = Db::connect(&config.database_url, config.db_pool)?;
        let lock = store::migrate::StartupLock::acquire(&db)
            .await
            .context("connecting to the database")?;
        let mut conn = db.get().await.context("connecting to the database")?;
        rbac::ensure_builtin(&mut conn).await?;
        if startup.demo {
            match seed::demo(&mut conn).await? {
                seed::DemoOutcome::Created { users } => tracing::info!(users, "demo data created"),
                seed::DemoOutcome::SkippedNotEmpty => {
                    tracing::info!("demo data skipped: the database already has users")
                }
            }
        }
        if let Some(password) =
            seed::bootstrap_admin(&mut conn, config.admin_password.as_deref()).await?
        {
            // Printed, never logged: logs are shipped and kept, a terminal is not.
            eprintln!(
                "created user `admin` with password: {password}  (shown once; change it with `im-server user passwd admin`)"
            );
        }
        drop(conn);
        lock.release().await?;
        let (redis, sessions, presence): (_, Arc<dyn SessionStore>, Arc<dyn PresenceRegister>) =
            match &config.redis_url {
                Some(url) => {
                    // Lazy: the server starts, and reports itself unready, while Redis is down.
                    let redis = crate::session::redis::connect(url)
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
        let router = Router::new()
            .nest("/api/v1", crate::http::api_router())
            .merge(crate::http::health::router())
            .merge(crate::http::files::router(self))
            .fallback(|| async { crate::http::envelope::not_found() })
            .layer(CookieManagerLayer::new())
            // The original's (egg-security) headers.
            .layer(header("x-frame-options", "SAMEORIGIN"))
            .layer(header("x-content-type-options", "nosniff"))
            .layer(header("x-xss-protection", "1; mode=block"))
            .layer(header("x-download-options", "noopen"))
            .layer(TraceLayer::new_for_http());
        let router = crate::realtime::attach(router, self).context("starting Socket.IO")?;
        Ok(router.with_state(self.clone()))
    }

    /// Serves on `listener` until `shutdown` resolves, then lets requests in flight finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = self.router()?;
        tracing::info!(addr = %listener.local_addr()?, "serving");
        // Each connection can be cut from outside: how a socket that cannot keep up is closed.
        let listener = crate::realtime::transport::Listener(listener);
        let router = router.layer(map_request(crate::realtime::transport::split_peer));
        let service =
            router.into_make_service_with_connect_info::<crate::realtime::transport::Peer>();
        axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")
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
    tracing::info!("shutting down");
}
