//! The four scenarios. Socket scenarios run in two phases, so that several processes can start
//! their schedules together: `prepare` (log in, connect, join), then `execute` from a shared
//! instant. The REST scenario runs in this process only.

pub mod chat;
pub mod fanout;
pub mod idle;
pub mod rest;

use std::time::Duration;

use tokio::time::Instant;

use crate::stats::Stats;
use crate::{Cli, Scenario, Table, procs, target};

/// A share of a socket scenario, set up and waiting for its start.
pub enum Prepared {
    Idle(idle::Prepared),
    Rooms(crate::rooms::Prepared),
}

/// Sets up share `index` of `count`.
pub async fn prepare(cli: &Cli, share: (usize, usize)) -> anyhow::Result<Prepared> {
    match &cli.scenario {
        Scenario::Idle(args) => Ok(Prepared::Idle(
            idle::prepare(&cli.global, args, share).await?,
        )),
        Scenario::Fanout(args) => Ok(Prepared::Rooms(
            fanout::prepare(&cli.global, args, share).await?,
        )),
        Scenario::Chat(args) => Ok(Prepared::Rooms(
            chat::prepare(&cli.global, args, share).await?,
        )),
        Scenario::Rest(_) => anyhow::bail!("the REST scenario has no socket phase"),
    }
}

/// Runs a prepared share from `epoch`.
pub async fn execute(cli: &Cli, prepared: Prepared, epoch: Instant) -> anyhow::Result<Stats> {
    match (&cli.scenario, prepared) {
        (Scenario::Idle(args), Prepared::Idle(prepared)) => {
            idle::execute(args, prepared, epoch).await
        }
        (Scenario::Fanout(args), Prepared::Rooms(prepared)) => {
            crate::rooms::execute(prepared, epoch, &fanout::schedule(args)).await
        }
        (Scenario::Chat(args), Prepared::Rooms(prepared)) => {
            crate::rooms::execute(prepared, epoch, &chat::schedule(args)).await
        }
        _ => anyhow::bail!("scenario and prepared share do not match"),
    }
}

/// How far ahead of now a schedule starts, so every process is waiting when it does.
pub const START_LEAD: Duration = Duration::from_millis(300);

/// The server's resident memory before set-up and once every socket is up, when asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub before_kib: Option<u64>,
    pub connected_kib: Option<u64>,
}

pub fn server_rss(cli: &Cli) -> Option<u64> {
    let pid = cli.global.server_pid?;
    match target::rss_kib(pid) {
        Ok(kib) => Some(kib),
        Err(error) => {
            eprintln!("server memory not read: {error:#}");
            None
        }
    }
}

/// Runs the scenario of `cli` and renders its table.
pub async fn run(cli: Cli) -> anyhow::Result<Table> {
    match &cli.scenario {
        Scenario::Rest(args) => rest::run(&cli.global, args).await,
        Scenario::Idle(args) => {
            let (stats, memory) = run_sockets(&cli).await?;
            Ok(idle::table(&cli, args, &stats, memory))
        }
        Scenario::Fanout(args) => {
            let (stats, _) = run_sockets(&cli).await?;
            Ok(fanout::table(&cli, args, &stats))
        }
        Scenario::Chat(args) => {
            let (stats, _) = run_sockets(&cli).await?;
            Ok(chat::table(&cli, args, &stats))
        }
    }
}

/// Runs a socket scenario here or over `--procs` children; measures the server's memory around
/// the set-up.
async fn run_sockets(cli: &Cli) -> anyhow::Result<(Stats, Memory)> {
    let mut memory = Memory {
        before_kib: server_rss(cli),
        ..Memory::default()
    };
    let stats = if cli.global.procs <= 1 {
        let prepared = prepare(cli, (0, 1)).await?;
        memory.connected_kib = server_rss(cli);
        execute(cli, prepared, Instant::now() + START_LEAD).await?
    } else {
        procs::run_parent(cli, &mut memory).await?
    };
    Ok((stats, memory))
}

/// A step table shared by fan-out and chat: one row per offered rate.
pub fn steps_table(title: String, rates: &[f64], duration: Duration, stats: &Stats) -> Table {
    let mut table = Table::new(
        title,
        &[
            "offered msg/s",
            "sent",
            "expected",
            "delivered",
            "delivered/s",
            "lost",
            "short receivers",
            "errors",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
        ],
    );
    for (step, rate) in rates.iter().enumerate() {
        let key = |name: &str| format!("s{step}.{name}");
        let histogram = stats.histogram(&key("latency"));
        let delivered = stats.get(&key("delivered"));
        table.row(vec![
            format!("{rate}"),
            stats.get(&key("sent")).to_string(),
            stats.get(&key("expected")).to_string(),
            delivered.to_string(),
            format!("{:.0}", delivered as f64 / duration.as_secs_f64()),
            stats.get(&key("lost")).to_string(),
            stats.get(&key("short_receivers")).to_string(),
            stats.get(&key("errors")).to_string(),
            crate::stats::ms(histogram, 0.50),
            crate::stats::ms(histogram, 0.99),
            crate::stats::ms(histogram, 0.999),
            crate::stats::max_ms(histogram),
        ]);
    }
    table.note(format!(
        "sockets: {}, dropped during the run: {}",
        stats.get("sockets"),
        stats.get("sockets_dropped")
    ));
    table
}
