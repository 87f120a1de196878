//! Fan-out: groups `bench-group-1..G` of M members, one socket per member; each step offers a
//! total message rate spread over the groups, and every member must receive every message.

use std::time::Duration;

use crate::rooms::{Locate, Prepared, RoomSpec, Schedule};
use crate::stats::Stats;
use crate::{Cli, FanoutArgs, Global, Table};

pub fn schedule(args: &FanoutArgs) -> Schedule {
    Schedule {
        rates: args.rates.clone(),
        duration: Duration::from_secs(args.duration),
        drain: Duration::from_secs(args.drain),
        total_rooms: args.groups,
    }
}

/// The groups of this share: group K goes to share (K - 1) mod count.
pub async fn prepare(
    global: &Global,
    args: &FanoutArgs,
    share: (usize, usize),
) -> anyhow::Result<Prepared> {
    let specs = (1..=args.groups)
        .filter(|k| (k - 1) % share.1 == share.0)
        .map(|k| RoomSpec {
            members: ((k - 1) * args.group_size + 1..=k * args.group_size)
                .map(|n| format!("{}{n}", global.user_prefix))
                .collect(),
            locate: Locate::Group(format!("{}-group-{k}", global.user_prefix)),
        })
        .collect();
    crate::rooms::prepare(global, specs, args.rates.len()).await
}

pub fn table(cli: &Cli, args: &FanoutArgs, stats: &Stats) -> Table {
    let mut table = super::steps_table(
        format!(
            "fan-out: {} group(s) of {} members, EIO={}, {} s per step",
            args.groups,
            args.group_size,
            crate::rooms::eio_number(cli.global.eio),
            args.duration
        ),
        &args.rates,
        Duration::from_secs(args.duration),
        stats,
    );
    let sustained = args
        .rates
        .iter()
        .enumerate()
        .filter(|(step, _)| {
            let key = |name: &str| format!("s{step}.{name}");
            let p99_ms = stats
                .histogram(&key("latency"))
                .filter(|h| !h.is_empty())
                .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0);
            stats.get(&key("sent")) > 0
                && stats.get(&key("lost")) == 0
                && stats.get(&key("errors")) == 0
                && p99_ms.is_some_and(|p99| p99 < args.p99_budget_ms)
        })
        .map(|(_, rate)| *rate)
        .fold(None, |best: Option<f64>, rate| {
            Some(best.map_or(rate, |b| b.max(rate)))
        });
    table.note(match sustained {
        Some(rate) => format!(
            "highest offered rate with p99 under {} ms and no loss: {rate} msg/s",
            args.p99_budget_ms
        ),
        None => format!(
            "no step kept p99 under {} ms without loss",
            args.p99_budget_ms
        ),
    });
    table
}
