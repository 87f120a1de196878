//! The admin back office's REST routes (`app/router/v1/admin.js` of the original), all under
//! `/admin` and all behind the `admin` right through the [`Admin`](super::extract::Admin) extractor.

mod groups;
mod rights;
mod roles;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::envelope::ApiError;
use crate::app::App;
use crate::domain::DomainError;
use crate::domain::admin::PageRequest;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .merge(rights::router())
        .merge(roles::router())
        .merge(groups::router())
        .merge(users::router())
}

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

/// Paging and sorting as the admin front end sends them: all strings, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    page_size: Option<String>,
    page_number: Option<String>,
    sorter: Option<String>,
}

impl From<PageQuery> for PageRequest {
    fn from(query: PageQuery) -> Self {
        PageRequest {
            page_size: query.page_size,
            page_number: query.page_number,
            sorter: query.sorter,
        }
    }
}

/// `{id}`: the body of a DELETE of one record.
#[derive(Debug, Deserialize)]
pub struct IdBody {
    pub id: i32,
}
