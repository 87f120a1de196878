//! REST: log-ins per second, then GETs per second (by default `/api/v1/conversations` of the first
//! benchmark user, who has 30 conversations), each at a fixed offered rate. Latency counts from
//! each request's intended start, including any wait for a free slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::COOKIE;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use crate::stats::{self, Stats};
use crate::target::{self, Target};
use crate::{Global, RestArgs, Table};

/// Runs both phases and renders the table.
pub async fn run(global: &Global, args: &RestArgs) -> anyhow::Result<Table> {
    let target = Target::parse(&global.url)?;
    let http = target::http_client()?;
    let duration = Duration::from_secs(args.duration);
    let mut table = Table::new(
        format!(
            "REST: {} s per request kind, at most {} in flight",
            args.duration, args.max_in_flight
        ),
        &[
            "request",
            "offered/s",
            "sent",
            "ok",
            "errors",
            "ok/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
        ],
    );

    let logins = {
        let (http, target, global) = (http.clone(), target.clone(), global.clone());
        let users = args.users;
        phase(args.login_rate, duration, args.max_in_flight, move |n| {
            let (http, target, global) = (http.clone(), target.clone(), global.clone());
            async move {
                let username = format!("{}{}", global.user_prefix, n % users as u64 + 1);
                target::login(
                    &http,
                    &target,
                    &global.cookie_name,
                    &username,
                    &global.password,
                )
                .await
                .map(|_| ())
            }
        })
        .await?
    };
    add_row(
        &mut table,
        "POST /api/v1/login",
        args.login_rate,
        &logins.0,
        logins.1,
    );

    let first = format!("{}1", global.user_prefix);
    let session = target::login(
        &http,
        &target,
        &global.cookie_name,
        &first,
        &global.password,
    )
    .await?;
    let listed = Arc::new(AtomicU64::new(u64::MAX));
    let gets = {
        let url = target.http_url(&args.path);
        let cookie = session.cookie.clone();
        let listed = listed.clone();
        phase(args.rate, duration, args.max_in_flight, move |_| {
            let (http, url, cookie, listed) =
                (http.clone(), url.clone(), cookie.clone(), listed.clone());
            async move {
                let response = http.get(&url).header(COOKIE, &cookie).send().await?;
                anyhow::ensure!(response.status().is_success(), "HTTP {}", response.status());
                let body: Value = response.json().await?;
                anyhow::ensure!(
                    body["statusCode"] == "0",
                    "refused: {}",
                    body["errorMessage"]
                );
                if let Some(list) = body["data"].as_array() {
                    listed.store(list.len() as u64, Ordering::Relaxed);
                }
                Ok(())
            }
        })
        .await?
    };
    add_row(
        &mut table,
        &format!("GET {}", args.path),
        args.rate,
        &gets.0,
        gets.1,
    );
    let listed = listed.load(Ordering::Relaxed);
    if listed != u64::MAX {
        table.note(format!(
            "GET {} answered a list of {listed} item(s) for {first}",
            args.path
        ));
    }
    Ok(table)
}

fn add_row(table: &mut Table, name: &str, rate: f64, stats: &Stats, elapsed: Duration) {
    let histogram = stats.histogram("latency");
    let ok = stats.get("ok");
    table.row(vec![
        name.to_owned(),
        format!("{rate}"),
        stats.get("sent").to_string(),
        ok.to_string(),
        stats.get("errors").to_string(),
        format!("{:.0}", ok as f64 / elapsed.as_secs_f64().max(1e-3)),
        stats::ms(histogram, 0.50),
        stats::ms(histogram, 0.99),
        stats::ms(histogram, 0.999),
        stats::max_ms(histogram),
    ]);
}

/// Starts request `n` at `start + n / rate` for `duration`; returns what was measured and the
/// time from the start until the last answer.
async fn phase<F, Fut>(
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    request: F,
) -> anyhow::Result<(Stats, Duration)>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let latency = Arc::new(Mutex::new(stats::histogram()));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let period = 1.0 / rate;
    let mut tasks = Vec::new();
    let mut n: u64 = 0;
    loop {
        let due = start + Duration::from_secs_f64(n as f64 * period);
        if due >= start + duration {
            break;
        }
        tokio::time::sleep_until(due).await;
        let (slots, latency, errors) = (slots.clone(), latency.clone(), errors.clone());
        let future = request(n);
        tasks.push(tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let result = future.await;
            let took = due.elapsed();
            match result {
                Ok(()) => stats::record(&mut *latency.lock().await, took.as_micros() as u64),
                Err(error) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("request failed: {error:#}");
                    }
                }
            }
        }));
        n += 1;
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed();
    let mut stats = Stats::default();
    let errors = errors.load(Ordering::Relaxed);
    stats.add("sent", n);
    stats.add("errors", errors);
    stats.add("ok", n.saturating_sub(errors));
    stats.add_histogram("latency", &*latency.lock().await)?;
    Ok((stats, elapsed))
}
