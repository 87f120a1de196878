//! Embedded migrations, one folder per backend, applied at `serve` and by `im-server migrate`.

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{Backend, Db, DbConn, PgConn, StoreError, sqlite_path};
use crate::db_run;

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Any fixed number will do, as long as no other tool on the same database uses it: it makes
/// processes that start together apply the migrations one after the other.
const PG_MIGRATION_LOCK: i64 = 0x494d_5345_5256;

/// Applies every pending migration and returns how many ran.
///
/// diesel's migration harness is synchronous, so it runs on a blocking thread: SQLite with a
/// plain connection, PostgreSQL through diesel-async's `AsyncConnectionWrapper` (no libpq).
pub async fn run(url: &str) -> Result<usize, StoreError> {
    let backend = Backend::of_url(url)?;
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || match backend {
        Backend::Sqlite => {
            let path = sqlite_path(&url);
            super::conn::prepare_sqlite(path)?;
            let mut conn = diesel::SqliteConnection::establish(path)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")?;
            apply(&mut conn, SQLITE)
        }
        Backend::Postgres => {
            let mut conn = AsyncConnectionWrapper::<PgConn>::establish(&url)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            conn.batch_execute(&format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))?;
            let applied = apply(&mut conn, POSTGRES);
            conn.batch_execute(&format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))?;
            applied
        }
    })
    .await
    .map_err(|e| StoreError::Query(format!("migration task failed: {e}")))?
}

fn apply<DB: diesel::backend::Backend>(
    conn: &mut impl MigrationHarness<DB>,
    migrations: EmbeddedMigrations,
) -> Result<usize, StoreError> {
    conn.run_pending_migrations(migrations)
        .map(|versions| versions.len())
        .map_err(|e| StoreError::Query(format!("migration failed: {e}")))
}

/// Held while a process writes its start-up data, so processes that start together don't both
/// find "no roles yet" or "no users yet" and insert twice. On PostgreSQL a session advisory lock
/// (freed by the database if the process dies); SQLite's immediate transactions already serialize.
///
/// The lock's connection waits without the pool's statement limit (another process's start-up
/// may take longer than one call), so it never goes back to the pool: it is closed on release,
/// or when the lock is dropped on an error path, which frees the lock too.
pub struct StartupLock {
    conn: Option<DbConn>,
}

const PG_STARTUP_LOCK: i64 = PG_MIGRATION_LOCK + 1;

impl StartupLock {
    pub async fn acquire(db: &Db) -> Result<Self, StoreError> {
        if db.backend() != Backend::Postgres {
            return Ok(Self { conn: None });
        }
        use diesel_async::SimpleAsyncConnection;
        let mut conn = db.get().await?;
        let lock = &mut conn;
        let locked = async {
            db_run!(lock: {
                lock.batch_execute(&format!(
                    "SET statement_timeout = 0; SET lock_timeout = 0; \
                     SELECT pg_advisory_lock({PG_STARTUP_LOCK})"
                ))
                .await?;
            });
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(error) = locked {
            conn.close();
            return Err(error);
        }
        Ok(Self { conn: Some(conn) })
    }

    pub async fn release(mut self) -> Result<(), StoreError> {
        use diesel_async::SimpleAsyncConnection;
        if let Some(mut conn) = self.conn.take() {
            let lock = &mut conn;
            let unlocked = async {
                db_run!(lock: { lock.batch_execute(&format!("SELECT pg_advisory_unlock({PG_STARTUP_LOCK})")).await?; });
                Ok::<_, StoreError>(())
            }
            .await;
            conn.close();
            unlocked?;
        }
        Ok(())
    }
}

impl Drop for StartupLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close();
        }
    }
}
