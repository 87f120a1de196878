//! Spreading a socket scenario over child processes of im-bench (`--procs K`): each child sets up
//! its share, says `READY`, waits for `GO <unix-ns>` on its standard input so all start their
//! schedules at the same instant, and prints `RESULT <json>` with its counters and histograms,
//! which the parent merges.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

use crate::Cli;
use crate::scenario::{self, Memory, START_LEAD};
use crate::stats::Stats;

const READY: &str = "READY";
const GO: &str = "GO ";
const RESULT: &str = "RESULT ";

/// Runs in a child: one share, reported on standard output.
pub async fn run_child(cli: Cli) -> anyhow::Result<()> {
    crate::validate(&cli)?;
    let share = cli.global.share.context("not a child")?;
    let deadline = Duration::from_secs(cli.global.deadline);
    tokio::time::timeout(deadline, async {
        let prepared = scenario::prepare(&cli, share).await?;
        println!("{READY}");
        let mut line = String::new();
        BufReader::new(tokio::io::stdin())
            .read_line(&mut line)
            .await?;
        let go: u128 = line
            .trim()
            .strip_prefix(GO.trim_end())
            .map(str::trim)
            .and_then(|ns| ns.parse().ok())
            .with_context(|| format!("expected `GO <unix-ns>`, got {line:?}"))?;
        let stats = scenario::execute(&cli, prepared, instant_of(go)).await?;
        println!("{RESULT}{}", stats.to_line()?);
        anyhow::Ok(())
    })
    .await
    .context("deadline reached")?
}

/// The local instant of a wall-clock time given in nanoseconds since the Unix epoch.
fn instant_of(unix_ns: u128) -> Instant {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let now = Instant::now();
    if unix_ns >= now_unix {
        now + Duration::from_nanos((unix_ns - now_unix) as u64)
    } else {
        now.checked_sub(Duration::from_nanos((now_unix - unix_ns) as u64))
            .unwrap_or(now)
    }
}

struct Worker {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    /// The next line starting with `prefix`; other lines are passed through to our output.
    async fn expect(&mut self, prefix: &str) -> anyhow::Result<String> {
        while let Some(line) = self.lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.to_owned());
            }
            println!("{line}");
        }
        let status = self.child.wait().await?;
        anyhow::bail!(
            "child process ended ({status}) before saying {}",
            prefix.trim()
        )
    }
}

/// Starts `--procs` children on the same command line, starts them together, merges their results.
pub async fn run_parent(cli: &Cli, memory: &mut Memory) -> anyhow::Result<Stats> {
    let count = cli.global.procs;
    let exe = std::env::current_exe().context("locating the im-bench executable")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut workers = Vec::with_capacity(count);
    for index in 0..count {
        let mut child = Command::new(&exe)
            .args(&args)
            .arg("--share")
            .arg(format!("{index}/{count}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        workers.push(Worker {
            child,
            lines: BufReader::new(stdout).lines(),
        });
    }
    for worker in &mut workers {
        worker.expect(READY).await?;
    }
    memory.connected_kib = scenario::server_rss(cli);
    let go = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() + START_LEAD.as_nanos();
    for worker in &mut workers {
        let stdin = worker.child.stdin.as_mut().context("child stdin")?;
        stdin.write_all(format!("{GO}{go}\n").as_bytes()).await?;
        stdin.flush().await?;
    }
    let mut stats = Stats::default();
    for worker in &mut workers {
        let line = worker.expect(RESULT).await?;
        stats.merge(&Stats::from_line(&line)?)?;
        worker.child.wait().await?;
    }
    Ok(stats)
}
