//! The one error enum of the domain boundary. Transports map it once: to the REST envelope
//! (http/envelope.rs) and to the Socket.IO ack or error event.

use std::borrow::Cow;

use crate::session::SessionError;
use crate::store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DomainError {
    /// No live session, or its user may no longer log in.
    #[error("请登录")]
    NotLoggedIn,
    /// The request is understood and refused, with the message the client shows.
    #[error("{0}")]
    Rejected(Cow<'static, str>),
    /// The input is malformed or incomplete.
    #[error("{0}")]
    Invalid(Cow<'static, str>),
    /// Acting on something addressed to someone else (the original's statusCode "2").
    #[error("无此权限")]
    NotPermitted,
    /// Lacking the right a whole area needs (the admin routes).
    #[error("无此权限")]
    Forbidden,
    /// Too many of these from this client, account or user lately: try again after the wait.
    #[error("操作过于频繁，请稍后再试")]
    TooManyRequests(std::time::Duration),
    /// A service the request needs (database, Redis) cannot be reached now.
    #[error("服务暂时不可用，请稍后再试")]
    Unavailable(String),
    /// A fault of ours; the cause is logged, never shown.
    #[error("服务器内部错误")]
    Internal(String),
}

impl DomainError {
    pub fn rejected(message: impl Into<Cow<'static, str>>) -> Self {
        DomainError::Rejected(message.into())
    }

    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        DomainError::Invalid(message.into())
    }
}

impl From<StoreError> for DomainError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => DomainError::Unavailable(cause),
            other => DomainError::Internal(other.to_string()),
        }
    }
}

impl From<SessionError> for DomainError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Unavailable(cause) => DomainError::Unavailable(cause),
        }
    }
}

impl From<tokio::task::JoinError> for DomainError {
    fn from(error: tokio::task::JoinError) -> Self {
        DomainError::Internal(format!("blocking task failed: {error}"))
    }
}
