//! im-bench: a load generator for im-server that talks to it as its clients do (REST log-in with
//! the session cookie, then Engine.IO v4 or v3 over WebSocket), offers load on a fixed-rate
//! schedule and measures latency from each message's *intended* send time, so a stalled server
//! shows up in the figures instead of slowing the generator down (no coordinated omission).
//!
//! Every scenario is bounded in time and connections and only ever targets a loopback address.

pub mod procs;
pub mod rooms;
pub mod scenario;
pub mod socket;
pub mod stats;
pub mod table;
pub mod target;

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use table::Table;

/// Most sockets one process holds: the machine allows 20,000 open files per process, and the
/// process needs a few for itself.
pub const MAX_SOCKETS_PER_PROCESS: usize = 19_000;
/// Longest step or hold any scenario accepts.
pub const MAX_DURATION_SECS: u64 = 3_600;

#[derive(Debug, Clone, Parser)]
#[command(version, about = "Load generator for im-server (loopback only)")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The server's base URL; only loopback addresses are accepted.
    #[arg(long, global = true, default_value = "http://127.0.0.1:7001")]
    pub url: String,
    /// Engine.IO protocol: 4 (socket.io-client 3/4) or 3 (socket.io-client 2, weapp.socket.io).
    #[arg(long, global = true, value_enum, default_value = "4")]
    pub eio: Eio,
    /// Name of the session cookie the server sets at log-in.
    #[arg(long, global = true, default_value = "IM_SESS")]
    pub cookie_name: String,
    /// Prefix of the seeded benchmark users (`im-server seed --bench-users N`).
    #[arg(long, global = true, default_value = "bench")]
    pub user_prefix: String,
    #[arg(long, global = true, default_value = "123456")]
    pub password: String,
    /// Spread the sockets over this many child processes of im-bench (each at most 19,000).
    #[arg(long, global = true, default_value_t = 1)]
    pub procs: usize,
    /// Log-ins and WebSocket handshakes in flight at once while setting up.
    #[arg(long, global = true, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// The whole run is abandoned after this many seconds, whatever it is doing.
    #[arg(long, global = true, default_value_t = 900)]
    pub deadline: u64,
    /// The server's process id, to report its resident memory (from /proc/<pid>/status).
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Internal: run share INDEX/COUNT as a child process.
    #[arg(long, global = true, hide = true, value_parser = parse_share)]
    pub share: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Eio {
    #[value(name = "4")]
    V4,
    #[value(name = "3")]
    V3,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// Hold N logged-in sockets open and idle; report the server's memory per connection.
    Idle(IdleArgs),
    /// Groups of M members, one socket each; step the total message rate up.
    Fanout(FanoutArgs),
    /// One-to-one chat between friend pairs (each message stored, then delivered to both).
    Chat(ChatArgs),
    /// REST: log-ins per second, and a GET (default /api/v1/conversations) of one user.
    Rest(RestArgs),
}

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Sockets to open, over all processes.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Distinct users the sockets log in as (sockets share sessions beyond that, like several
    /// devices of one user); default: one user per socket.
    #[arg(long)]
    pub users: Option<usize>,
    /// Seconds to hold the sockets open once all are connected.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Members per group: the seed's --group-size.
    #[arg(long, default_value_t = 10)]
    pub group_size: usize,
    /// Groups to use (bench-group-1..G); every member has one socket.
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Total messages per second offered at each step, over all groups.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100,200")]
    pub rates: Vec<f64>,
    /// Seconds each step sends for.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Seconds after each step to wait for messages still in flight.
    #[arg(long, default_value_t = 2)]
    pub drain: u64,
    /// The 99th percentile a step must stay under, with no loss, to count as sustained.
    #[arg(long, default_value_t = 50.0)]
    pub p99_budget_ms: f64,
}

#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Friend pairs (bench1–bench2, bench3–bench4, …); each user has one socket.
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    /// Total messages per second offered at each step, over all pairs.
    #[arg(long, value_delimiter = ',', default_value = "50")]
    pub rates: Vec<f64>,
    /// Seconds each step sends for.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds after each step to wait for messages still in flight.
    #[arg(long, default_value_t = 2)]
    pub drain: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RestArgs {
    /// Log-ins per second offered (users bench1..benchU in turn).
    #[arg(long, default_value_t = 20.0)]
    pub login_rate: f64,
    /// Distinct users the log-ins rotate over.
    #[arg(long, default_value_t = 10)]
    pub users: usize,
    /// GET requests per second offered, as the first benchmark user.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// The path requested.
    #[arg(long, default_value = "/api/v1/conversations")]
    pub path: String,
    /// Seconds each of the two phases (log-in, GET) lasts.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Requests in flight at most; beyond it requests wait, and their wait counts as latency.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
}

fn parse_share(text: &str) -> Result<(usize, usize), String> {
    let (index, count) = text
        .split_once('/')
        .ok_or_else(|| "expected INDEX/COUNT".to_owned())?;
    let index: usize = index.parse().map_err(|_| "bad share index".to_owned())?;
    let count: usize = count.parse().map_err(|_| "bad share count".to_owned())?;
    if count == 0 || index >= count {
        return Err("share index out of range".into());
    }
    Ok((index, count))
}

/// Runs the scenario (over `--procs` child processes if asked) and returns its table.
pub async fn run(cli: Cli) -> anyhow::Result<Table> {
    validate(&cli)?;
    let deadline = Duration::from_secs(cli.global.deadline);
    match tokio::time::timeout(deadline, scenario::run(cli)).await {
        Ok(result) => result,
        Err(_) => anyhow::bail!(
            "deadline of {} s reached: run abandoned",
            deadline.as_secs()
        ),
    }
}

/// Refuses what would break the bounds before anything is sent.
pub fn validate(cli: &Cli) -> anyhow::Result<()> {
    target::Target::parse(&cli.global.url)?;
    let g = &cli.global;
    anyhow::ensure!(
        (1..=64).contains(&g.procs),
        "--procs must be between 1 and 64"
    );
    anyhow::ensure!(
        (1..=1024).contains(&g.setup_concurrency),
        "--setup-concurrency must be between 1 and 1024"
    );
    anyhow::ensure!(
        (1..=4 * MAX_DURATION_SECS).contains(&g.deadline),
        "--deadline must be between 1 and {} seconds",
        4 * MAX_DURATION_SECS
    );
    let duration_ok = |secs: u64| (1..=MAX_DURATION_SECS).contains(&secs);
    let rates_ok = |rates: &[f64]| {
        !rates.is_empty()
            && rates.len() <= 32
            && rates.iter().all(|r| r.is_finite() && *r > 0.0 && *r <= 1e6)
    };
    let sockets = match &cli.scenario {
        Scenario::Idle(a) => {
            anyhow::ensure!(duration_ok(a.duration), "--duration out of range");
            anyhow::ensure!(a.users != Some(0), "--users must be at least 1");
            a.connections
        }
        Scenario::Fanout(a) => {
            anyhow::ensure!(duration_ok(a.duration), "--duration out of range");
            anyhow::ensure!(a.drain <= 60, "--drain must be at most 60 seconds");
            anyhow::ensure!(
                rates_ok(&a.rates),
                "--rates must be 1 to 32 rates in (0, 1e6]"
            );
            anyhow::ensure!(
                a.group_size >= 1 && a.groups >= 1,
                "--group-size and --groups must be at least 1"
            );
            a.group_size.saturating_mul(a.groups)
        }
        Scenario::Chat(a) => {
            anyhow::ensure!(duration_ok(a.duration), "--duration out of range");
            anyhow::ensure!(a.drain <= 60, "--drain must be at most 60 seconds");
            anyhow::ensure!(
                rates_ok(&a.rates),
                "--rates must be 1 to 32 rates in (0, 1e6]"
            );
            anyhow::ensure!(a.pairs >= 1, "--pairs must be at least 1");
            a.pairs.saturating_mul(2)
        }
        Scenario::Rest(a) => {
            anyhow::ensure!(duration_ok(a.duration), "--duration out of range");
            anyhow::ensure!(
                rates_ok(&[a.rate, a.login_rate]),
                "rates must be in (0, 1e6]"
            );
            anyhow::ensure!(a.users >= 1, "--users must be at least 1");
            anyhow::ensure!(
                (1..=10_000).contains(&a.max_in_flight),
                "--max-in-flight must be between 1 and 10000"
            );
            anyhow::ensure!(a.path.starts_with('/'), "--path must start with /");
            0
        }
    };
    anyhow::ensure!(
        sockets >= 1 || matches!(cli.scenario, Scenario::Rest(_)),
        "no sockets to open"
    );
    let per_process = sockets.div_ceil(g.procs);
    anyhow::ensure!(
        per_process <= MAX_SOCKETS_PER_PROCESS,
        "{sockets} sockets over {} process(es) is {per_process} per process: at most {MAX_SOCKETS_PER_PROCESS}; raise --procs",
        g.procs
    );
    let limit = target::open_files_limit().unwrap_or(u64::MAX);
    anyhow::ensure!(
        per_process as u64 + 64 <= limit,
        "{per_process} sockets per process exceed the open-files limit {limit} (ulimit -n)"
    );
    Ok(())
}
