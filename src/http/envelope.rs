//! The REST envelope `{statusCode, errorMessage, data}` of docs/protocol.md §2, and the one place
//! where a domain error becomes an HTTP answer.

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::DomainError;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    /// A string, as the original sent it: "0" success, "1" failure, "2" not permitted.
    status_code: &'static str,
    error_message: Option<String>,
    data: Option<T>,
}

/// What a handler returns.
pub type ApiResult<T> = Result<Json<Envelope<T>>, ApiError>;

/// A success envelope; `ok(())` sends `data: null`.
pub fn ok<T: Serialize>(data: T) -> ApiResult<T> {
    Ok(Json(Envelope {
        status_code: "0",
        error_message: None,
        data: Some(data),
    }))
}

/// A domain error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub DomainError);

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (http, code) = match &self.0 {
            DomainError::NotLoggedIn | DomainError::Rejected(_) | DomainError::Invalid(_) => {
                (StatusCode::OK, "1")
            }
            DomainError::NotPermitted => (StatusCode::OK, "2"),
            DomainError::Forbidden => (StatusCode::FORBIDDEN, "1"),
            // A bend of the original's contract, which answered everything with 200: a client
            // told to wait must be told how long, and HTTP says that with 429 + Retry-After.
            DomainError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "1"),
            DomainError::Unavailable(cause) => {
                if super::time_limit::answered_already() {
                    // The client had its 503 and the operator its warning at the time limit.
                    tracing::debug!(%cause, "a call that ran out of time failed late");
                } else {
                    tracing::warn!(%cause, "request refused: a service it needs is unavailable");
                }
                (StatusCode::SERVICE_UNAVAILABLE, "1")
            }
            DomainError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "1")
            }
        };
        let body = Envelope::<()> {
            status_code: code,
            error_message: Some(self.0.to_string()),
            data: None,
        };
        let mut response = (http, Json(body)).into_response();
        if let DomainError::TooManyRequests(wait) = &self.0 {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(*wait)));
        }
        response
    }
}

/// Whole seconds to wait, rounded up: `Retry-After: 0` would invite an immediate retry.
pub fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// A refusal decided before any handler runs (a middleware's): the envelope with `message`.
pub fn refused(http: StatusCode, message: &str) -> Response {
    let body = Envelope::<()> {
        status_code: "1",
        error_message: Some(message.to_owned()),
        data: None,
    };
    (http, Json(body)).into_response()
}

/// The original framework's answer to a route it does not know.
pub fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "message": "Not Found" })),
    )
        .into_response()
}
