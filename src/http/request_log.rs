//! The request log: one debug line per request with its method, route template, status and time,
//! switched on with `RUST_LOG=info,im_server::http=debug`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Logs the request once answered. The route is the template (`/api/v1/group/{id}`), never the
/// path: templates group alike requests, and hold nothing a client typed (the query, which may
/// carry a token, is never logged).
pub async fn log_request(request: Request, next: Next) -> Response {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    // Scraped every few seconds: a line each would drown the requests worth reading.
    if route.as_deref() == Some(super::prometheus::METRICS_PATH) {
        return next.run(request).await;
    }
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        route = %route.as_deref().unwrap_or("(no route)"),
        status = response.status().as_u16(),
        ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
    response
}
