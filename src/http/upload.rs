//! File upload: `POST /upload`, a multipart form of one or more files.
//!
//! axum's default body limit (2 MB) would refuse a 3 MB picture, so this route replaces it with
//! one sized from the configuration (room for `MAX_FILES` files of `upload_max` bytes and a few
//! small text fields), and checks each part while streaming it to disk. Nothing is held in
//! memory beyond a chunk.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::multipart::Field;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::envelope::{ApiResult, ok};
use super::openapi::{Answer, LimitedWrites, UploadForm};
use crate::app::App;
use crate::domain::uploads::{MAX_FILES, UploadBatch, Uploaded};
use crate::domain::{Actor, DomainError};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default().routes(routes!(create_upload).layer(DefaultBodyLimit::disable()))
}

/// Text fields (not files) a form may carry, and how large each may be: mini-programs add a few.
const MAX_TEXT_FIELDS: usize = 16;
const MAX_TEXT_FIELD: usize = 16 * 1024;
/// Room for each part's boundary and headers.
const PART_OVERHEAD: usize = 16 * 1024;

/// The largest form this route reads: anything larger is cut off and refused.
fn body_limit(upload_max: usize) -> usize {
    MAX_FILES.saturating_mul(upload_max.saturating_add(PART_OVERHEAD))
        + MAX_TEXT_FIELDS * (MAX_TEXT_FIELD + PART_OVERHEAD)
}

fn malformed() -> DomainError {
    DomainError::invalid("上传内容格式错误")
}

/// Stores pictures and videos; all or nothing.
#[utoipa::path(post, path = "/upload", tag = "upload",
    request_body(content = UploadForm, content_type = "multipart/form-data",
                 description = "one part per file, at most 9 files of at most IM_UPLOAD_MAX bytes"),
    responses((status = 200, description = "`[{url}]`, one per file in the order sent; or a \
               refusal of docs/protocol.md §4.3", body = Answer<Vec<Uploaded>>), LimitedWrites))]
async fn create_upload(
    State(app): State<Arc<App>>,
    actor: Actor,
    request: Request,
) -> ApiResult<Vec<Uploaded>> {
    let limit = body_limit(app.config.upload_max);
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    let mut multipart = Multipart::from_request(request, &app)
        .await
        .map_err(|_| malformed())?;
    let mut batch = UploadBatch::new(&app, actor.user_id);
    match receive(&mut multipart, &mut batch).await {
        Ok(()) => ok(batch.commit(&app, &actor).await?),
        Err(error) => {
            // Reading the rest (bounded) lets the client receive the answer instead of a reset
            // connection; the batch removes what it stored when it is dropped.
            drain(&mut multipart, app.config.upload_max).await;
            Err(error.into())
        }
    }
}

async fn receive(multipart: &mut Multipart, batch: &mut UploadBatch) -> Result<(), DomainError> {
    let mut text_fields = 0;
    while let Some(field) = multipart.next_field().await.map_err(|_| malformed())? {
        match field.file_name().map(str::to_owned) {
            Some(file_name) => {
                // The H5 client names each part after its file; the file name is what counts.
                let name = if file_name.is_empty() {
                    field.name().unwrap_or_default().to_owned()
                } else {
                    file_name
                };
                store_file(field, &name, batch).await?;
            }
            None => {
                text_fields += 1;
                if text_fields > MAX_TEXT_FIELDS {
                    return Err(malformed());
                }
                skip_text(field).await?;
            }
        }
    }
    Ok(())
}

async fn store_file(
    mut field: Field<'_>,
    name: &str,
    batch: &mut UploadBatch,
) -> Result<(), DomainError> {
    let mut pending = batch.begin(name).await?;
    while let Some(chunk) = field.chunk().await.map_err(|_| malformed())? {
        batch.write(&mut pending, &chunk).await?;
    }
    batch.finish(pending).await
}

async fn skip_text(mut field: Field<'_>) -> Result<(), DomainError> {
    let mut size = 0usize;
    while let Some(chunk) = field.chunk().await.map_err(|_| malformed())? {
        size += chunk.len();
        if size > MAX_TEXT_FIELD {
            return Err(malformed());
        }
    }
    Ok(())
}

/// Reads and discards what is left of a refused form, up to `budget` bytes.
async fn drain(multipart: &mut Multipart, budget: usize) {
    let mut left = budget;
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(chunk)) = field.chunk().await {
            match left.checked_sub(chunk.len()) {
                Some(rest) => left = rest,
                None => return,
            }
        }
    }
}
