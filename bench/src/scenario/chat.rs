//! One-to-one chat: friend pairs bench1–bench2, bench3–bench4, …, one socket per user, both
//! joined to the pair's conversation; each message is stored by the server, then delivered to
//! both. Run it once against a SQLite server and once against a PostgreSQL one.

use std::time::Duration;

use crate::rooms::{Locate, Prepared, RoomSpec, Schedule};
use crate::stats::Stats;
use crate::{ChatArgs, Cli, Global, Table};

pub fn schedule(args: &ChatArgs) -> Schedule {
    Schedule {
        rates: args.rates.clone(),
        duration: Duration::from_secs(args.duration),
        drain: Duration::from_secs(args.drain),
        total_rooms: args.pairs,
    }
}

/// The pairs of this share: pair K goes to share (K - 1) mod count.
pub async fn prepare(
    global: &Global,
    args: &ChatArgs,
    share: (usize, usize),
) -> anyhow::Result<Prepared> {
    let specs = (1..=args.pairs)
        .filter(|k| (k - 1) % share.1 == share.0)
        .map(|k| RoomSpec {
            members: vec![
                format!("{}{}", global.user_prefix, 2 * k - 1),
                format!("{}{}", global.user_prefix, 2 * k),
            ],
            locate: Locate::Friend,
        })
        .collect();
    crate::rooms::prepare(global, specs, args.rates.len()).await
}

pub fn table(cli: &Cli, args: &ChatArgs, stats: &Stats) -> Table {
    let mut table = super::steps_table(
        format!(
            "chat: {} pair(s), EIO={}, {} s per step",
            args.pairs,
            crate::rooms::eio_number(cli.global.eio),
            args.duration
        ),
        &args.rates,
        Duration::from_secs(args.duration),
        stats,
    );
    for (step, rate) in args.rates.iter().enumerate() {
        // The server delivers a message only once stored, and to both sockets of its pair.
        let stored = stats.get(&format!("s{step}.delivered")) / 2;
        table.note(format!(
            "offered {rate} msg/s: about {:.0} stored messages/s",
            stored as f64 / args.duration as f64
        ));
    }
    table
}
