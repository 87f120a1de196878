//! Idle: N logged-in sockets held open, doing nothing but the heartbeat; the server's resident
//! memory before and after gives its cost per connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::rooms::{ERROR, eio_number};
use crate::socket::{OnEvent, Socket};
use crate::stats::{self, Stats};
use crate::target::{self, Session, Target};
use crate::{Cli, Global, IdleArgs, Table};

pub struct Prepared {
    sockets: Vec<Socket>,
    stats: Stats,
    /// `/v1/im/error` events received.
    errors: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

/// Socket i (0-based, over all processes) belongs to share i mod count and logs in as user
/// (i mod users) + 1.
pub async fn prepare(
    global: &Global,
    args: &IdleArgs,
    share: (usize, usize),
) -> anyhow::Result<Prepared> {
    let target = Target::parse(&global.url)?;
    let http = target::http_client()?;
    let users = args.users.unwrap_or(args.connections).max(1);
    let mine: Vec<usize> = (0..args.connections)
        .filter(|i| i % share.1 == share.0)
        .collect();
    let mut needed: Vec<usize> = mine.iter().map(|i| i % users + 1).collect();
    needed.sort_unstable();
    needed.dedup();
    let logins = stream::iter(needed.into_iter().map(|n| {
        let (http, target) = (http.clone(), target.clone());
        let username = format!("{}{n}", global.user_prefix);
        async move {
            let session = target::login(
                &http,
                &target,
                &global.cookie_name,
                &username,
                &global.password,
            )
            .await;
            (n, session)
        }
    }))
    .buffer_unordered(global.setup_concurrency)
    .collect::<Vec<_>>()
    .await;
    let mut sessions: BTreeMap<usize, Session> = BTreeMap::new();
    for (n, session) in logins {
        sessions.insert(n, session?);
    }

    let (stop, stop_rx) = watch::channel(false);
    let errors = Arc::new(AtomicU64::new(0));
    let eio = global.eio;
    let attempts = stream::iter(mine.into_iter().filter_map(|i| {
        let session = sessions.get(&(i % users + 1))?.clone();
        let (target, stop_rx, errors) = (target.clone(), stop_rx.clone(), errors.clone());
        Some(async move {
            let on_event: OnEvent = Arc::new(move |name: &str, _| {
                if name == ERROR {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            });
            let started = Instant::now();
            let url = target.socket_url(eio_number(eio), session.user_id);
            let socket = Socket::connect(&url, eio, &session.cookie, &[], on_event, stop_rx).await;
            (socket, started.elapsed())
        })
    }))
    .buffer_unordered(global.setup_concurrency)
    .collect::<Vec<_>>()
    .await;

    let mut stats = Stats::default();
    let mut connect = stats::histogram();
    let mut sockets = Vec::with_capacity(attempts.len());
    for (socket, took) in attempts {
        match socket {
            Ok(socket) => {
                stats::record(&mut connect, took.as_micros() as u64);
                sockets.push(socket);
            }
            Err(error) => {
                if stats.get("failed") < 5 {
                    eprintln!("connection failed: {error:#}");
                }
                stats.add("failed", 1);
            }
        }
    }
    stats.add("connected", sockets.len() as u64);
    stats.add_histogram("connect", &connect)?;
    Ok(Prepared {
        sockets,
        stats,
        errors,
        stop,
    })
}

/// Holds the sockets from `epoch` for the duration, then counts those the server dropped.
pub async fn execute(args: &IdleArgs, prepared: Prepared, epoch: Instant) -> anyhow::Result<Stats> {
    let Prepared {
        sockets,
        mut stats,
        errors,
        stop,
    } = prepared;
    tokio::time::sleep_until(epoch + Duration::from_secs(args.duration)).await;
    let dropped = sockets.iter().filter(|s| !s.is_alive()).count();
    stats.add("dropped", dropped as u64);
    let _ = stop.send(true);
    for socket in sockets {
        if let Some(reason) = socket.finish().await
            && stats.get("reported") < 5
        {
            stats.add("reported", 1);
            eprintln!("socket ended early: {reason}");
        }
    }
    stats.counters.remove("reported");
    stats.add("errors", errors.load(Ordering::Relaxed));
    Ok(stats)
}

pub fn table(cli: &Cli, args: &IdleArgs, stats: &Stats, memory: super::Memory) -> Table {
    let mut table = Table::new(
        format!(
            "idle: {} socket(s), EIO={}, held {} s, {} process(es)",
            args.connections,
            eio_number(cli.global.eio),
            args.duration,
            cli.global.procs
        ),
        &[
            "connections",
            "connected",
            "failed",
            "dropped",
            "errors",
            "connect p50 ms",
            "connect p99 ms",
            "server RSS before MiB",
            "server RSS connected MiB",
            "RSS per connection KiB",
        ],
    );
    let connected = stats.get("connected");
    let mib =
        |kib: Option<u64>| kib.map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
    let per_connection = match (memory.before_kib, memory.connected_kib) {
        (Some(before), Some(after)) if connected > 0 => {
            format!(
                "{:.1}",
                after.saturating_sub(before) as f64 / connected as f64
            )
        }
        _ => "-".to_owned(),
    };
    let histogram = stats.histogram("connect");
    table.row(vec![
        args.connections.to_string(),
        connected.to_string(),
        stats.get("failed").to_string(),
        stats.get("dropped").to_string(),
        stats.get("errors").to_string(),
        stats::ms(histogram, 0.50),
        stats::ms(histogram, 0.99),
        mib(memory.before_kib),
        mib(memory.connected_kib),
        per_connection,
    ]);
    if cli.global.server_pid.is_none() {
        table.note("server memory not measured: pass --server-pid");
    }
    table
}
