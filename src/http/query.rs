//! Query strings whose errors are envelopes, like `Body` for JSON bodies.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::envelope::ApiError;
use crate::domain::DomainError;

/// A query string; anything that does not decode is an envelope error, never a 400 page.
pub struct Params<T>(pub T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(rejection) => {
                tracing::debug!(%rejection, "malformed query string");
                Err(DomainError::invalid("参数校验失败").into())
            }
        }
    }
}
