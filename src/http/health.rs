//! Liveness and readiness probes for load balancers and orchestrators.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::App;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(show_health))
        .route("/readyz", get(show_readiness))
}

/// The process is up and serving.
async fn show_health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// How long a readiness probe waits for the database before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Every service a request may need answers: 200, or 503 naming what is down.
async fn show_readiness(State(app): State<Arc<App>>) -> (StatusCode, Json<Value>) {
    let database = match tokio::time::timeout(PROBE_TIMEOUT, app.db.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_owned()),
    };
    match database {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "database": "ok" })),
        ),
        Err(cause) => {
            tracing::warn!(%cause, "readiness: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "unavailable" })),
            )
        }
    }
}
