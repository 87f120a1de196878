//! The connection enum over both backends, its pools, transactions, and where SQLite's calls run.
//!
//! diesel-async has no async `MultiConnection`, so a pooled connection is an enum and the
//! [`db_run!`](crate::db_run) macro expands one query body once per backend (vaultwarden's
//! pattern, made async). Everything outside `store/` sees only [`Db`], [`DbConn`] and
//! [`on_one_thread`].

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use diesel::SqliteConnection;
use diesel::connection::AnsiTransactionManager as SyncAnsiTransactionManager;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool,
};
use diesel_async::sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection, TransactionManager};

use super::StoreError;

/// SQLite behind diesel-async's wrapper of a synchronous connection, its calls run where
/// [`BlockingCalls`] says.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, BlockingCalls>;
pub type PgConn = AsyncPgConnection;

thread_local! {
    /// Set while [`on_one_thread`] runs work on this (blocking) thread.
    static IN_PLACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Where a SQLite connection's calls run: each on a thread of Tokio's blocking pool, as
/// diesel-async does by default, except within [`on_one_thread`], where they run in place.
pub struct BlockingCalls;

/// A call's outcome as diesel-async expects it.
type CallFuture<'a, R> =
    Pin<Box<dyn Future<Output = Result<R, Box<dyn Error + Send + Sync + 'static>>> + Send + 'a>>;

impl SpawnBlocking for BlockingCalls {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> CallFuture<'a, R>
    where
        R: Send + 'static,
    {
        if IN_PLACE.get() {
            let result = task();
            return Box::pin(std::future::ready(Ok(result)));
        }
        let mut call = Call(tokio::task::spawn_blocking(task));
        Box::pin(async move { (&mut call.0).await.map_err(Box::from) })
    }

    fn get_runtime() -> Self {
        BlockingCalls
    }
}

/// A call running on a blocking thread. Dropped before it ends (its request was cancelled), it
/// waits for it: the connection must not be handed to someone else with a query still running
/// on it, possibly inside a transaction.
struct Call<R>(tokio::task::JoinHandle<R>);

impl<R> Drop for Call<R> {
    fn drop(&mut self) {
        if !self.0.is_finished() {
            let runtime = tokio::runtime::Handle::current();
            tokio::task::block_in_place(|| {
                let _ = runtime.block_on(&mut self.0);
            });
        }
    }
}

/// Runs `work` on one thread of the blocking pool, with every SQLite call it makes run right
/// there. A SQLite call is otherwise a hand-off to a blocking thread and back to a Tokio worker;
/// work of many queries (a batch of messages: eight) pays that many, and under load each hand-off
/// waits for a core. For PostgreSQL it changes nothing but the thread.
pub async fn on_one_thread<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    /// Clears the mark however `work` ends, since the pool's threads are reused.
    struct InPlace;
    impl Drop for InPlace {
        fn drop(&mut self) {
            IN_PLACE.set(false);
        }
    }
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        IN_PLACE.set(true);
        let _in_place = InPlace;
        runtime.block_on(work)
    })
    .await
}

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Chooses the backend from the URL's scheme; anything else is a configuration error.
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Config(
                "DATABASE_URL must start with sqlite:// or postgres://".into(),
            ))
        }
    }
}

/// The file path of a `sqlite://path` URL (`sqlite://data/im.db` is relative, `sqlite:///abs` absolute).
pub fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

/// Per-connection settings: WAL so readers never wait for the writer, a busy timeout so writers
/// queue instead of failing (up to the call limit: then "database is locked", which is
/// unavailable), and foreign keys, which SQLite leaves off by default.
fn sqlite_pragmas(busy: Duration) -> String {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON;",
        busy.as_millis()
    )
}

/// Per-connection settings of PostgreSQL under a call limit: the server itself cancels a
/// statement that runs, or waits for a lock, longer than that, so that nothing of it keeps
/// running (and holding locks) after the caller was told the database is unavailable.
fn pg_limits(limit: Duration) -> String {
    let ms = limit.as_millis();
    format!("SET statement_timeout = {ms}; SET lock_timeout = {ms};")
}

/// Readies the process and the file system for opening the SQLite database at `path`: the
/// library configured, the file's directory created. Only the last directory is created (the
/// default `data/`): a mistyped path fails instead of growing a tree of directories elsewhere.
pub(super) fn prepare_sqlite(path: &str) -> Result<(), StoreError> {
    configure_sqlite_library();
    let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
    else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    let parent_exists = dir
        .parent()
        .is_none_or(|parent| parent.as_os_str().is_empty() || parent.is_dir());
    if !parent_exists {
        return Err(StoreError::Config(format!(
            "the database's directory {} does not exist, nor does its parent: create it, or correct DATABASE_URL",
            dir.display()
        )));
    }
    std::fs::create_dir(dir)
        .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))
}

/// Sets SQLite's process-wide options, once, before its first connection opens (SQLite refuses
/// them afterwards). Its defaults suit a connection shared between threads: every connection
/// takes a mutex of its own on each call, and every allocation takes one global mutex to keep
/// memory statistics. Here a pooled connection is used by one thread at a time (diesel-async
/// holds it under its own lock) and nothing reads the statistics, so both are pure cost: under
/// load the global one was the most contended lock of the process.
fn configure_sqlite_library() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        use libsqlite3_sys::{SQLITE_CONFIG_MEMSTATUS, SQLITE_CONFIG_MULTITHREAD, SQLITE_OK};
        // SAFETY: sqlite3_config is meant to be called before the library initialises, as here,
        // from one thread (the `Once`); later it only answers SQLITE_MISUSE and changes nothing.
        let codes = unsafe {
            [
                libsqlite3_sys::sqlite3_config(SQLITE_CONFIG_MULTITHREAD),
                libsqlite3_sys::sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int),
            ]
        };
        if codes.iter().any(|&code| code != SQLITE_OK) {
            tracing::warn!(
                ?codes,
                "SQLite was initialised before it could be configured"
            );
        }
    });
}

/// A pool of connections to one database.
#[derive(Clone)]
pub enum Db {
    Sqlite(deadpool::Pool<SqliteConn>),
    Postgres(deadpool::Pool<PgConn>),
}

/// One pooled connection, returned to the pool on drop.
#[expect(
    clippy::large_enum_variant,
    reason = "one lives per request on its stack; boxing would cost an allocation per checkout"
)]
pub enum DbConn {
    Sqlite(deadpool::Object<SqliteConn>),
    Postgres(deadpool::Object<PgConn>),
}

/// How long a request waits for a free connection before it is told the database is busy,
/// without a call limit (the commands of the CLI); the server uses IM_DB_TIMEOUT.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// SQLite's busy timeout without a call limit.
const BUSY_WAIT: Duration = Duration::from_secs(5);
/// How long opening a new connection may take before the database counts as down.
const CONNECT_WAIT: Duration = Duration::from_secs(3);
/// How long the check of an idle connection (`SELECT 1` on checkout) may take. Without a limit,
/// a database that hangs rather than refuses (stalled, or frozen with SIGSTOP) hung every
/// request that took an idle connection, for good.
const CHECK_WAIT: Duration = Duration::from_secs(2);

impl Db {
    /// Builds the pool. Connections are opened lazily; call [`Db::ping`] to check reachability.
    ///
    /// `call_limit` bounds every database call (IM_DB_TIMEOUT): the wait for a connection, for
    /// opening or checking one, for a lock, and on PostgreSQL each statement, which the server
    /// cancels past it. `None` (the CLI's one-off commands, which may bulk-load) keeps the
    /// default waits and lets statements run as long as they take.
    pub fn connect(
        url: &str,
        pool_size: usize,
        call_limit: Option<Duration>,
    ) -> Result<Self, StoreError> {
        let build_err = |e: deadpool::BuildError| StoreError::Config(e.to_string());
        let pool_wait = call_limit.unwrap_or(POOL_WAIT);
        let connect_wait = call_limit.map_or(CONNECT_WAIT, |limit| limit.min(CONNECT_WAIT));
        let check_wait = call_limit.map_or(CHECK_WAIT, |limit| limit.min(CHECK_WAIT));
        Ok(match Backend::of_url(url)? {
            Backend::Sqlite => {
                let path = sqlite_path(url).to_owned();
                prepare_sqlite(&path)?;
                let mut config = ManagerConfig::<SqliteConn>::default();
                // No `SELECT 1` on every checkout: an embedded database cannot have gone away
                // under an idle connection, and the check was a thread hand-off of its own.
                config.recycling_method = RecyclingMethod::Fast;
                let pragmas = sqlite_pragmas(call_limit.unwrap_or(BUSY_WAIT));
                config.custom_setup = Box::new(move |path| {
                    let path = path.to_owned();
                    let pragmas = pragmas.clone();
                    Box::pin(async move {
                        let mut conn = SqliteConn::establish(&path).await?;
                        conn.batch_execute(&pragmas)
                            .await
                            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    })
                });
                let manager = AsyncDieselConnectionManager::new_with_config(path, config);
                Db::Sqlite(
                    deadpool::Pool::builder(manager)
                        .max_size(pool_size)
                        .wait_timeout(Some(pool_wait))
                        .create_timeout(Some(connect_wait))
                        .recycle_timeout(Some(check_wait))
                        .runtime(::deadpool::Runtime::Tokio1)
                        .build()
                        .map_err(build_err)?,
                )
            }
            Backend::Postgres => {
                let mut config = ManagerConfig::<PgConn>::default();
                if let Some(limit) = call_limit {
                    let limits = pg_limits(limit);
                    config.custom_setup = Box::new(move |url| {
                        let url = url.to_owned();
                        let limits = limits.clone();
                        Box::pin(async move {
                            let mut conn = PgConn::establish(&url).await?;
                            conn.batch_execute(&limits)
                                .await
                                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                            Ok(conn)
                        })
                    });
                }
                let manager = AsyncDieselConnectionManager::new_with_config(url, config);
                Db::Postgres(
                    deadpool::Pool::builder(manager)
                        .max_size(pool_size)
                        .wait_timeout(Some(pool_wait))
                        .create_timeout(Some(connect_wait))
                        .recycle_timeout(Some(check_wait))
                        .runtime(::deadpool::Runtime::Tokio1)
                        .build()
                        .map_err(build_err)?,
                )
            }
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The pool's connections now (for `/metrics`: read from the pool, not counted by hand).
    pub fn pool_status(&self) -> ::deadpool::Status {
        match self {
            Db::Sqlite(pool) => pool.status(),
            Db::Postgres(pool) => pool.status(),
        }
    }

    /// Takes a connection from the pool.
    pub async fn get(&self) -> Result<DbConn, StoreError> {
        Ok(match self {
            Db::Sqlite(pool) => DbConn::Sqlite(pool.get().await?),
            Db::Postgres(pool) => DbConn::Postgres(pool.get().await?),
        })
    }

    /// Round-trips a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let conn = &mut self.get().await?;
        crate::db_run!(conn: { conn.batch_execute("SELECT 1").await?; });
        Ok(())
    }

    /// Commits a one-row write: the readiness check. A database that still answers reads but
    /// cannot write (full disk, read-only, locked) fails it, as every send would.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let conn = &mut self.get().await?;
        crate::db_run!(conn: {
            conn.batch_execute("UPDATE readiness SET checks = checks + 1 WHERE id = 1").await?;
        });
        Ok(())
    }
}

/// Expands `$body` once per backend with `$conn` bound to the concrete connection, so the same
/// diesel query is type-checked and run for SQLite and for PostgreSQL.
#[macro_export]
macro_rules! db_run {
    ($conn:ident: $body:block) => {
        match $conn {
            $crate::store::DbConn::Sqlite($conn) => {
                let $conn: &mut $crate::store::SqliteConn = &mut *$conn;
                $body
            }
            $crate::store::DbConn::Postgres($conn) => {
                let $conn: &mut $crate::store::PgConn = &mut *$conn;
                $body
            }
        }
    };
}

/// The future a transaction body returns.
pub type TxFuture<'c, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>;

impl DbConn {
    /// Closes the connection instead of returning it to its pool: for one whose session settings
    /// no longer are the pool's.
    pub(super) fn close(self) {
        match self {
            DbConn::Sqlite(conn) => drop(deadpool::Object::take(conn)),
            DbConn::Postgres(conn) => drop(deadpool::Object::take(conn)),
        }
    }

    /// Runs `body` in one transaction: committed if it returns `Ok`, rolled back otherwise.
    ///
    /// On SQLite the transaction is `BEGIN IMMEDIATE`: it takes the write lock up front, so two
    /// read-then-write transactions queue on the busy timeout instead of failing on upgrade.
    /// If the future is dropped half-way, diesel's transaction status marks the connection as
    /// still in a transaction and the pool discards it rather than reuse it.
    pub async fn transaction<T, E, F>(&mut self, body: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut DbConn) -> TxFuture<'c, T, E> + Send,
        E: From<StoreError> + Send,
        T: Send,
    {
        self.begin().await.map_err(StoreError::from)?;
        match body(self).await {
            Ok(value) => {
                self.commit().await.map_err(StoreError::from)?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = self.rollback().await {
                    tracing::warn!(%rollback, "rollback failed");
                }
                Err(error)
            }
        }
    }

    async fn begin(&mut self) -> diesel::QueryResult<()> {
        match self {
            DbConn::Sqlite(conn) => {
                conn.spawn_blocking(|inner| {
                    SyncAnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")
                })
                .await
            }
            DbConn::Postgres(conn) => {
                <PgConn as AsyncConnection>::TransactionManager::begin_transaction(&mut **conn)
                    .await
            }
        }
    }

    async fn commit(&mut self) -> diesel::QueryResult<()> {
        let conn = self;
        db_run!(conn: { commit(conn).await })
    }

    async fn rollback(&mut self) -> diesel::QueryResult<()> {
        let conn = self;
        db_run!(conn: { rollback(conn).await })
    }
}

async fn commit<C: AsyncConnection>(conn: &mut C) -> diesel::QueryResult<()> {
    C::TransactionManager::commit_transaction(conn).await
}

async fn rollback<C: AsyncConnection>(conn: &mut C) -> diesel::QueryResult<()> {
    C::TransactionManager::rollback_transaction(conn).await
}
