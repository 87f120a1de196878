//! What the fan-out and chat scenarios share: rooms (a group, or a friend pair) whose members
//! each hold one socket joined to the room's conversation, messages sent into them on a fixed-rate
//! schedule, and every delivery checked against the intended send time and counted per receiver.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::socket::{OnEvent, Socket, Stamp};
use crate::stats::{self, Stats};
use crate::target::{self, Session, Target};
use crate::{Eio, Global};

pub const NEW_MESSAGE: &str = "/v1/im/new-message";
pub const ERROR: &str = "/v1/im/error";

/// How a room's conversation is found among its first member's conversations.
#[derive(Debug, Clone)]
pub enum Locate {
    /// The groupchat of the group with this name.
    Group(String),
    /// The chat with the room's second member.
    Friend,
}

/// A room to set up: its members' usernames and how to find its conversation.
#[derive(Debug, Clone)]
pub struct RoomSpec {
    pub members: Vec<String>,
    pub locate: Locate,
}

/// One step's measurements, filled in by the sockets' callbacks.
struct StepRecord {
    latency: Mutex<Histogram<u64>>,
    errors: AtomicU64,
}

/// Shared by every socket of this process.
pub struct Recorder {
    /// The instant the schedule counts from; deliveries before it is set are not counted.
    epoch: OnceLock<Instant>,
    steps: Vec<StepRecord>,
    current: AtomicUsize,
}

impl Recorder {
    pub fn new(steps: usize) -> Arc<Recorder> {
        Arc::new(Recorder {
            epoch: OnceLock::new(),
            steps: (0..steps.max(1))
                .map(|_| StepRecord {
                    latency: Mutex::new(stats::histogram()),
                    errors: AtomicU64::new(0),
                })
                .collect(),
            current: AtomicUsize::new(0),
        })
    }

    /// An error event from the server, counted against the running step.
    pub fn error(&self) {
        let step = self
            .current
            .load(Ordering::Relaxed)
            .min(self.steps.len() - 1);
        self.steps[step].errors.fetch_add(1, Ordering::Relaxed);
    }
}

struct Member {
    user_id: i64,
    socket: Socket,
    /// Deliveries per step to this socket.
    received: Arc<Vec<AtomicU64>>,
}

struct Room {
    conversation_id: i64,
    to_id: i64,
    kind: String,
    members: Vec<Member>,
}

/// Rooms set up and waiting for the start of the schedule.
pub struct Prepared {
    rooms: Vec<Room>,
    recorder: Arc<Recorder>,
    stop: watch::Sender<bool>,
}

/// The schedule: total offered rates, one per step, shared by `total_rooms` rooms over all
/// processes.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub rates: Vec<f64>,
    pub duration: Duration,
    pub drain: Duration,
    pub total_rooms: usize,
}

/// Logs every member in, finds each room's conversation and connects one socket per member,
/// joined to it. Any failure is fatal: a half-built room would report losses that are not.
pub async fn prepare(
    global: &Global,
    specs: Vec<RoomSpec>,
    steps: usize,
) -> anyhow::Result<Prepared> {
    let target = Target::parse(&global.url)?;
    let http = target::http_client()?;
    let recorder = Recorder::new(steps);
    let (stop, stop_rx) = watch::channel(false);
    let concurrency = global.setup_concurrency;

    let usernames: Vec<String> = specs.iter().flat_map(|s| s.members.clone()).collect();
    let sessions: Vec<Session> = stream::iter(usernames.into_iter().map(|username| {
        let (http, target) = (http.clone(), target.clone());
        async move {
            target::login(
                &http,
                &target,
                &global.cookie_name,
                &username,
                &global.password,
            )
            .await
        }
    }))
    .buffered(concurrency)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<_>>()?;

    let mut sessions = sessions.into_iter();
    let mut rooms = Vec::with_capacity(specs.len());
    for spec in specs {
        let members: Vec<Session> = sessions.by_ref().take(spec.members.len()).collect();
        let first = members.first().context("a room without members")?;
        let conversations = target::conversations(&http, &target, first).await?;
        let found = match &spec.locate {
            Locate::Group(name) => conversations
                .iter()
                .find(|c| c.kind == "groupchat" && c.target_name.as_deref() == Some(name)),
            Locate::Friend => {
                let friend = members.get(1).context("a chat room needs two members")?;
                conversations
                    .iter()
                    .find(|c| c.kind == "chat" && c.target_id == friend.user_id)
            }
        }
        .with_context(|| {
            format!(
                "{} has no conversation for {:?}: was the database seeded with `im-server seed --bench-users`?",
                first.username, spec.locate
            )
        })?;
        let (conversation_id, to_id, kind) = (found.id, found.target_id, found.kind.clone());
        let connected: Vec<Member> = stream::iter(members.into_iter().map(|session| {
            let (recorder, stop_rx, target) = (recorder.clone(), stop_rx.clone(), target.clone());
            async move {
                connect_member(
                    &target,
                    global.eio,
                    session,
                    conversation_id,
                    recorder,
                    stop_rx,
                )
                .await
            }
        }))
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
        rooms.push(Room {
            conversation_id,
            to_id,
            kind,
            members: connected,
        });
    }
    Ok(Prepared {
        rooms,
        recorder,
        stop,
    })
}

async fn connect_member(
    target: &Target,
    eio: Eio,
    session: Session,
    conversation_id: i64,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Member> {
    let received: Arc<Vec<AtomicU64>> = Arc::new(
        (0..recorder.steps.len())
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let on_event: OnEvent = {
        let received = received.clone();
        Arc::new(
            move |name: &str, stamp: Option<Stamp>| match (name, stamp) {
                (NEW_MESSAGE, Some(stamp)) => delivered(&recorder, &received, stamp),
                (ERROR, _) => recorder.error(),
                _ => {}
            },
        )
    };
    let url = target.socket_url(eio_number(eio), session.user_id);
    let socket = Socket::connect(
        &url,
        eio,
        &session.cookie,
        &[conversation_id],
        on_event,
        stop,
    )
    .await
    .with_context(|| format!("socket of {}", session.username))?;
    Ok(Member {
        user_id: session.user_id,
        socket,
        received,
    })
}

pub fn eio_number(eio: Eio) -> u8 {
    match eio {
        Eio::V4 => 4,
        Eio::V3 => 3,
    }
}

/// A delivery: its latency from the intended send time, counted for its step and receiver.
fn delivered(recorder: &Recorder, received: &[AtomicU64], stamp: Stamp) {
    let Some(epoch) = recorder.epoch.get() else {
        return;
    };
    let (Some(record), Some(count)) = (recorder.steps.get(stamp.s), received.get(stamp.s)) else {
        return;
    };
    let now = epoch.elapsed().as_nanos() as u64;
    let micros = now.saturating_sub(stamp.t) / 1000;
    if let Ok(mut histogram) = record.latency.lock() {
        stats::record(&mut histogram, micros);
    }
    count.fetch_add(1, Ordering::Relaxed);
}

/// When step `step` starts sending.
pub fn step_start(epoch: Instant, schedule: &Schedule, step: usize) -> Instant {
    epoch + (schedule.duration + schedule.drain) * step as u32
}

/// Runs every step of `schedule` from `epoch`, then closes the sockets.
pub async fn execute(
    prepared: Prepared,
    epoch: Instant,
    schedule: &Schedule,
) -> anyhow::Result<Stats> {
    let Prepared {
        rooms,
        recorder,
        stop,
    } = prepared;
    let _ = recorder.epoch.set(epoch);
    let rooms = Arc::new(rooms);
    let mut stats = Stats::default();
    for (step, rate) in schedule.rates.iter().enumerate() {
        let start = step_start(epoch, schedule, step);
        tokio::time::sleep_until(start).await;
        recorder.current.store(step, Ordering::Relaxed);
        let per_room = rate / schedule.total_rooms.max(1) as f64;
        let senders: Vec<_> = (0..rooms.len())
            .map(|r| {
                let rooms = rooms.clone();
                let duration = schedule.duration;
                // Rooms take turns: in step, all 500 pairs of a chat run sent at the same
                // instants, and the server met 1,000 msg/s as bursts of 500 twice a second.
                let phase = r as f64 / rooms.len() as f64;
                tokio::spawn(async move {
                    send_step(&rooms[r], step, per_room, phase, epoch, start, duration).await
                })
            })
            .collect();
        let mut sent = Vec::with_capacity(rooms.len());
        for sender in senders {
            sent.push(sender.await.context("sender task failed")?);
        }
        // In-flight messages get the drain time; the next step starts on the fixed schedule.
        tokio::time::sleep_until(start + schedule.duration + schedule.drain).await;
        let key = |name: &str| format!("s{step}.{name}");
        for (room, sent) in rooms.iter().zip(sent) {
            stats.add(&key("sent"), sent);
            for member in &room.members {
                let got = member.received[step].load(Ordering::Relaxed);
                stats.add(&key("expected"), sent);
                stats.add(&key("delivered"), got);
                stats.add(&key("lost"), sent.saturating_sub(got));
                stats.add(&key("short_receivers"), u64::from(got < sent));
            }
        }
        stats.add(
            &key("errors"),
            recorder.steps[step].errors.load(Ordering::Relaxed),
        );
        let histogram = recorder.steps[step]
            .latency
            .lock()
            .map_err(|_| anyhow::anyhow!("latency histogram poisoned"))?
            .clone();
        stats.add_histogram(&key("latency"), &histogram)?;
    }
    let dropped = rooms
        .iter()
        .flat_map(|room| &room.members)
        .filter(|member| !member.socket.is_alive())
        .count();
    stats.add(
        "sockets",
        rooms.iter().map(|r| r.members.len() as u64).sum(),
    );
    stats.add("sockets_dropped", dropped as u64);
    let _ = stop.send(true);
    if let Ok(rooms) = Arc::try_unwrap(rooms) {
        for member in rooms.into_iter().flat_map(|room| room.members) {
            if let Some(reason) = member.socket.finish().await {
                eprintln!("socket ended early: {reason}");
            }
        }
    }
    Ok(stats)
}

/// Sends into one room at `rate` per second from `start` for `duration`: message `n` is due at
/// `start + (n + phase) / rate`, and carries that time, so lateness of ours or the server's is
/// measured. `phase`, in [0, 1), spreads the rooms' sends evenly over each period.
async fn send_step(
    room: &Room,
    step: usize,
    rate: f64,
    phase: f64,
    epoch: Instant,
    start: Instant,
    duration: Duration,
) -> u64 {
    if rate <= 0.0 || room.members.is_empty() {
        return 0;
    }
    let period = 1.0 / rate;
    let mut n: u64 = 0;
    loop {
        let due = start + Duration::from_secs_f64((n as f64 + phase) * period);
        if due >= start + duration {
            return n;
        }
        tokio::time::sleep_until(due).await;
        let member = &room.members[(n as usize) % room.members.len()];
        let payload = json!({
            "type": room.kind,
            "toId": room.to_id,
            "fromId": member.user_id,
            "conversationId": room.conversation_id,
            "body": {
                "type": "text",
                "msg": "bench",
                "bench": {"t": (due - epoch).as_nanos() as u64, "n": n, "s": step},
            },
        });
        member.socket.emit(NEW_MESSAGE, &payload);
        n += 1;
    }
}
