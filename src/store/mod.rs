//! The store: the only layer that speaks diesel. It owns the schema, the migrations, the
//! connection enum over SQLite and PostgreSQL, and the queries, which return plain records.

mod conn;
pub mod migrate;
pub mod models;
pub mod schema;

pub mod accounts;
pub mod applies;
pub mod conversations;
pub mod friends;
pub mod groups;
pub mod messages;
pub mod presence;
pub mod rbac;
pub mod stats;

pub use conn::{Backend, Db, DbConn, PgConn, SqliteConn, TxFuture, sqlite_path};

use diesel::result::{DatabaseErrorKind, Error as DieselError};

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
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            other => StoreError::Query(other.to_string()),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for StoreError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}
