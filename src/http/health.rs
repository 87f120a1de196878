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

/// How long a readiness probe waits for a service before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Every service a request may need answers: 200, or 503 naming what is down.
async fn show_readiness(State(app): State<Arc<App>>) -> (StatusCode, Json<Value>) {
    // A write, not a read: a full or read-only database still reads, while sends fail. On a
    // task of its own: a SQLite call cannot be abandoned half-way (its connection waits for it,
    // up to the busy timeout, IM_DB_TIMEOUT), and the probe must not wait with it.
    let db = app.db.clone();
    let check = tokio::spawn(async move { db.check_writable().await });
    let database = probe("database", async move {
        check
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())
    })
    .await;
    let mut report = json!({ "database": state(database) });
    let mut ready = database;
    if let Some(redis) = &app.redis {
        let mut redis = redis.clone();
        let pong = probe("redis", async move {
            redis::cmd("PING").query_async::<String>(&mut redis).await
        })
        .await;
        report["redis"] = json!(state(pong));
        ready &= pong;
    }
    report["status"] = json!(state(ready));
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}

fn state(up: bool) -> &'static str {
    if up { "ok" } else { "unavailable" }
}

/// Whether `check` succeeds within the probe timeout; a failure is logged with its cause.
async fn probe<T, E: std::fmt::Display>(
    service: &str,
    check: impl Future<Output = Result<T, E>>,
) -> bool {
    let cause = match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(_)) => return true,
        Ok(Err(error)) => error.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    tracing::warn!(service, %cause, "readiness: service unavailable");
    false
}
