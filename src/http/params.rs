//! Path parameters whose errors are envelopes: a non-numeric `:id` is "参数校验失败", never the
//! framework's plain-text 400.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::envelope::ApiError;
use crate::domain::DomainError;

/// The numeric `{id}` of a resource path.
pub struct PathId(pub i32);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| DomainError::invalid("参数校验失败"))?;
        raw.trim()
            .parse::<i32>()
            .map(PathId)
            .map_err(|_| DomainError::invalid("参数校验失败").into())
    }
}
