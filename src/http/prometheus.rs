//! `GET /metrics` in Prometheus' text format (on the main port, or alone on `IM_METRICS_BIND`),
//! and the middleware that counts and times every REST and file request by route template.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, OriginalUri, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::App;
use crate::telemetry::{HTTP_DURATION, HTTP_REQUESTS};

/// Where the page is served.
pub const METRICS_PATH: &str = "/metrics";
/// The route label of a request no route matched (any path: paths are not labels).
pub const UNMATCHED: &str = "unmatched";

/// The page alone; merged into the main router, or served on a port of its own.
pub fn router() -> Router<Arc<App>> {
    Router::new().route(METRICS_PATH, get(show_metrics))
}

/// Needs no session: what it shows is counts and timings, no user's data (SECURITY.md says how
/// to keep it private).
async fn show_metrics(State(app): State<Arc<App>>) -> Response {
    match app.telemetry.render(&app).await {
        Some(page) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            page,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded in this process\n",
        )
            .into_response(),
    }
}

/// Counts and times a request once answered, by route template (`/api/v1/groups/{id}`), method
/// and status; scrapes of `/metrics` are left out.
pub async fn record_request(request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) if path.as_str() == METRICS_PATH => return next.run(request).await,
        Some(path) => route_label(path.as_str()),
        // Uploaded files are served by a nested fallback, which has no template of its own.
        None if original_path(&request).starts_with(UPLOADS) => UPLOAD_FILE.to_owned(),
        None => UNMATCHED.to_owned(),
    };
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Where uploaded files are served, and their route label.
const UPLOADS: &str = "/public/upload/";
const UPLOAD_FILE: &str = "/public/upload/{file}";

/// The path the client asked for, before any nesting stripped a prefix.
fn original_path(request: &Request) -> &str {
    match request.extensions().get::<OriginalUri>() {
        Some(OriginalUri(uri)) => uri.path(),
        None => request.uri().path(),
    }
}

/// A template as a label: a nested router's fallback is no route (its template ends in a
/// catch-all of axum's), and a nested service's tail reads as `{*rest}`.
fn route_label(template: &str) -> String {
    if template.contains("{*__private__axum_fallback}") {
        return UNMATCHED.to_owned();
    }
    template.replace("{*__private__axum_nest_tail_param}", "{*rest}")
}

/// The method, or `OTHER` for one outside HTTP's own: a client may send any token there.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}
