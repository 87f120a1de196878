//! The store: the only layer that speaks diesel. It owns the schema, the migrations, the
//! connection enum over SQLite and PostgreSQL, and the queries, which return plain records.

mod conn;
pub mod migrate;
pub mod models;
pub mod schema;

pub mod accounts;
pub mod admin;
pub mod applies;
pub mod bulk;
pub mod conversations;
pub mod friends;
pub mod github;
pub mod groups;
pub mod import;
pub mod messages;
pub mod original;
pub mod presence;
pub mod rbac;
pub mod stats;
pub mod uploads;

pub use conn::{Backend, Db, DbConn, PgConn, SqliteConn, TxFuture, on_one_thread, sqlite_path};

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::timeouts::Limited;

/// What can go wrong below the domain, already sorted into the cases callers act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("record not found")]
    NotFound,
    /// A unique constraint refused the write; the text names the constraint.
    #[error("unique violation: {0}")]
    UniqueViolation(String),
    /// A foreign key or check constraint refused the write.
    #[error("constraint violation: {0}")]
    ConstraintViolation(String),
    /// No connection could be had in time: the database is down, unreachable or saturated.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Query(String),
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::NotFound => StoreError::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::UniqueViolation(
                    info.constraint_name().unwrap_or(info.message()).to_owned(),
                )
            }
            DieselError::DatabaseError(
                DatabaseErrorKind::ForeignKeyViolation | DatabaseErrorKind::CheckViolation,
                info,
            ) => StoreError::ConstraintViolation(info.message().to_owned()),
            // A connection the server closed under a query (it stopped or restarted) is the
            // database being unavailable, not a fault of the query.
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => StoreError::Unavailable(info.message().to_owned()),
            // A database that cannot write (read-only, full disk, locked past the busy
            // timeout) is unavailable too: the client may try again, the operator must act.
            DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, info) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(_, info) if timed_out(info.message()) => {
                crate::timeouts::count(Limited::Database);
                StoreError::Unavailable(format!("database call timed out: {}", info.message()))
            }
            DieselError::DatabaseError(_, info) if cannot_write(info.message()) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            other => StoreError::Query(other.to_string()),
        }
    }
}

/// Whether a database error says the call ran out of time (IM_DB_TIMEOUT): SQLite's busy timeout
/// passed with the database still locked (SQLITE_BUSY, which diesel maps to `Unknown`), or
/// PostgreSQL cancelled the statement for its statement_timeout or lock_timeout (diesel has no
/// kind for SQLSTATE 57014 or 55P03 either).
fn timed_out(message: &str) -> bool {
    [
        "database is locked",
        "canceling statement due to statement timeout",
        "canceling statement due to lock timeout",
    ]
    .iter()
    .any(|sign| message.contains(sign))
}

/// Whether a database error says that nothing can be written now. SQLite reports these only
/// by message (diesel maps SQLITE_FULL, SQLITE_READONLY and SQLITE_IOERR to `Unknown`);
/// PostgreSQL's disk-full errors carry the system's message.
fn cannot_write(message: &str) -> bool {
    [
        "database or disk is full",
        "readonly database",
        "disk I/O error",
        "No space left on device",
        "read-only transaction",
    ]
    .iter()
    .any(|sign| message.contains(sign))
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for StoreError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        // No connection free, or none opened or checked, within the call limit.
        if matches!(error, ::deadpool::managed::PoolError::Timeout(_)) {
            crate::timeouts::count(Limited::Database);
            return StoreError::Unavailable(format!("database call timed out: {error}"));
        }
        StoreError::Unavailable(error.to_string())
    }
}

diesel::define_sql_function! {
    /// SQL `lower()`, which both backends have: searches compare lower-cased text, since
    /// PostgreSQL's LIKE is case-sensitive where SQLite's (and the original's MySQL) is not.
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// A LIKE pattern matching text that contains `value` literally: `\`, `%` and `_` are escaped with
/// `\`, which every query using it names as its ESCAPE character (SQLite has no default one).
/// The pattern is lower-cased, to be matched against [`lower`] of a column.
pub fn contains_pattern(value: &str) -> String {
    let mut pattern = String::with_capacity(value.len() + 2);
    pattern.push('%');
    for c in value.to_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}
