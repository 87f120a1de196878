//! Rate limits: how often a client address, an account, a user or a socket may act, so that
//! one client cannot guess passwords, create accounts, flood a group or fill the disk at will.
//!
//! Every limit is a [`Rate`], "at most `count` in any `window`", counted with the generic cell
//! rate algorithm (GCRA): one timestamp per key, the moment its allowance will be whole again.
//! Taking `cost` moves it forward by `cost * window / count`; a take that would move it more
//! than `window` past now is refused, and the client is told how long until it would fit. A
//! taken allowance can be given back (a log-in that succeeded was no guess). Counts live in
//! memory on one process, or in Redis (session/limits.rs, the same arithmetic in one Lua
//! script) where every process shares them.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::DomainError;
use crate::session::SessionError;

/// At most `count` (actions, or bytes) in any `window`, which is also the largest burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// No limit.
    Off,
    Every {
        count: u64,
        window: Duration,
    },
}

impl Rate {
    pub const fn every(count: u64, window: Duration) -> Rate {
        Rate::Every { count, window }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Off => f.write_str("off"),
            Rate::Every { count, window } => write!(f, "{count}/{}s", window.as_secs()),
        }
    }
}

/// Parses `off` (or `0`), or `COUNT/WINDOW`: COUNT a number, optionally with `K`, `M` or `G`
/// (binary: KiB, MiB, GiB, for byte quotas); WINDOW a number of seconds, optionally with `s`,
/// `m`, `h` or `d`. `20/10m` is 20 per 10 minutes, `64M/1h` 64 MiB per hour.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") || text == "0" {
        return Ok(Rate::Off);
    }
    let bad = || format!("`{text}` is not a rate: write COUNT/WINDOW (20/10m, 64M/1h) or off");
    let (count, window) = text.split_once('/').ok_or_else(bad)?;
    let count = with_unit(
        count,
        &[
            ("KiB", 1 << 10),
            ("MiB", 1 << 20),
            ("GiB", 1 << 30),
            ("K", 1 << 10),
            ("M", 1 << 20),
            ("G", 1 << 30),
        ],
    )
    .ok_or_else(bad)?;
    let window =
        with_unit(window, &[("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]).ok_or_else(bad)?;
    if count == 0 || window == 0 {
        return Err(format!(
            "`{text}`: count and window must be above 0 (or say off)"
        ));
    }
    Ok(Rate::every(count, Duration::from_secs(window)))
}

/// `12`, or `12` followed by one of `units` (its multiplier).
fn with_unit(text: &str, units: &[(&str, u64)]) -> Option<u64> {
    let text = text.trim();
    let (digits, factor) = units
        .iter()
        .find_map(|(unit, factor)| text.strip_suffix(unit).map(|d| (d, *factor)))
        .unwrap_or((text, 1));
    digits.trim().parse::<u64>().ok()?.checked_mul(factor)
}

/// The limits of a deployment, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Failed log-ins from one client address, whatever the accounts.
    pub login_address: Rate,
    /// Failed log-ins to one account from addresses it has not logged in from lately.
    pub login_account: Rate,
    /// Accounts created from one client address.
    pub signup_address: Rate,
    /// Messages sent on one socket.
    pub message_socket: Rate,
    /// Messages sent by one user, all devices and processes together.
    pub message_user: Rate,
    /// Bytes uploaded by one user.
    pub upload_user: Rate,
}

/// How long an address a user logged in from stays "theirs": their own failed log-ins there
/// are not charged to the account, so a stranger exhausting it does not lock them out.
pub const KNOWN_ADDRESS_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where allowances are counted. Errors are the store's (Redis down), never a refusal.
#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Takes `cost` of `count` per `window` under `key`; `Ok(Err(wait))` when it does not fit
    /// before `wait`. A cost above the whole allowance never fits.
    async fn take(
        &self,
        key: &str,
        count: u64,
        window: Duration,
        cost: u64,
    ) -> Result<Result<Taken, Duration>, SessionError>;
    /// Gives back `cost` taken earlier.
    async fn give_back(
        &self,
        key: &str,
        count: u64,
        window: Duration,
        cost: u64,
    ) -> Result<(), SessionError>;
    /// Marks `key` for `ttl`.
    async fn remember(&self, key: &str, ttl: Duration) -> Result<(), SessionError>;
    /// Whether `key` is marked.
    async fn recalls(&self, key: &str) -> Result<bool, SessionError>;
}

/// What a successful take left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Room for more.
    Some,
    /// That was the last of the allowance: a take as large is refused (logged once, here).
    Last,
}

/// The span of time `cost` cells of `count` per `window` take, in nanoseconds.
fn span_ns(count: u64, window: Duration, cost: u64) -> u64 {
    let span = u128::from(cost) * window.as_nanos() / u128::from(count.max(1));
    u64::try_from(span).unwrap_or(u64::MAX)
}

/// One step of GCRA: the new theoretical arrival time of a key whose allowance is whole again
/// at `tat` (all times in nanoseconds on one clock) and whether as much again would still fit,
/// or how long until `cost` fits.
fn advance(
    tat: u64,
    now: u64,
    count: u64,
    window: Duration,
    cost: u64,
) -> Result<(u64, Taken), u64> {
    let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
    let next = tat.max(now).saturating_add(span_ns(count, window, cost));
    let ahead = next - now;
    if ahead > window_ns {
        return Err(ahead - window_ns);
    }
    let taken = if ahead.saturating_add(span_ns(count, window, cost)) > window_ns {
        Taken::Last
    } else {
        Taken::Some
    };
    Ok((next, taken))
}

/// Counts in this process's memory: the default on one process, and always for what belongs
/// to one process (a socket).
pub struct MemoryLimits {
    epoch: Instant,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    /// Key → theoretical arrival time, in nanoseconds since `epoch`.
    cells: HashMap<String, u64>,
    /// Key → when the mark ends, in nanoseconds since `epoch`.
    marks: HashMap<String, u64>,
    /// Size at which the maps are next swept of what has lapsed: every key lapses within its
    /// window, so memory follows the recent rate of distinct keys, not their history.
    sweep_at: usize,
}

/// Entries below which the maps are never swept.
const SWEEP_MIN: usize = 4096;

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            epoch: Instant::now(),
            state: Mutex::new(MemoryState {
                sweep_at: SWEEP_MIN,
                ..MemoryState::default()
            }),
        }
    }
}

impl MemoryLimits {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut MemoryState, u64) -> T) -> T {
        let now = self.now();
        // A panic while holding the lock leaves plain numbers behind: still usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let size = state.cells.len() + state.marks.len();
        if size >= state.sweep_at {
            state.cells.retain(|_, tat| *tat > now);
            state.marks.retain(|_, until| *until > now);
            state.sweep_at = (2 * (state.cells.len() + state.marks.len())).max(SWEEP_MIN);
        }
        f(&mut state, now)
    }

    /// [`LimitStore::take`] without the `async`: what the socket limit calls on each message.
    pub fn take_now(
        &self,
        key: &str,
        count: u64,
        window: Duration,
        cost: u64,
    ) -> Result<Taken, Duration> {
        self.with_state(|state, now| {
            let tat = state.cells.get(key).copied().unwrap_or(now);
            match advance(tat, now, count, window, cost) {
                Ok((next, taken)) => {
                    state.cells.insert(key.to_owned(), next);
                    Ok(taken)
                }
                Err(wait) => Err(Duration::from_nanos(wait)),
            }
        })
    }

    pub fn give_back_now(&self, key: &str, count: u64, window: Duration, cost: u64) {
        self.with_state(|state, now| {
            if let Some(tat) = state.cells.get_mut(key) {
                *tat = tat.saturating_sub(span_ns(count, window, cost)).max(now);
            }
        });
    }
}

#[async_trait]
impl LimitStore for MemoryLimits {
    async fn take(
        &self,
        key: &str,
        count: u64,
        window: Duration,
        cost: u64,
    ) -> Result<Result<Taken, Duration>, SessionError> {
        Ok(self.take_now(key, count, window, cost))
    }

    async fn give_back(
        &self,
        key: &str,
        count: u64,
        window: Duration,
        cost: u64,
    ) -> Result<(), SessionError> {
        self.give_back_now(key, count, window, cost);
        Ok(())
    }

    async fn remember(&self, key: &str, ttl: Duration) -> Result<(), SessionError> {
        self.with_state(|state, now| {
            let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
            state.marks.insert(key.to_owned(), now.saturating_add(ttl));
        });
        Ok(())
    }

    async fn recalls(&self, key: &str) -> Result<bool, SessionError> {
        Ok(self.with_state(|state, now| state.marks.get(key).is_some_and(|until| *until > now)))
    }
}

/// What counts as one client wherever clients are limited (here, and the connection caps of
/// `connections.rs`): an IPv4 address, or the /64 network of an IPv6 one (one subscriber holds a
/// whole /64 and may pick any address in it). An IPv4 address written as IPv6 is that IPv4 one.
pub fn client_network(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128))),
        v4 => v4,
    }
}

fn address_key(client: IpAddr) -> String {
    client_network(client).to_string()
}

/// The key of a username as typed: a digest, so that keys stay short whatever is typed and a
/// Redis dump does not list who was guessed at. Names that log in to one account share one
/// (`Admin`, ` admin`, `ａｄｍｉｎ`: see `names::username_key`).
fn account_key(username: &str) -> String {
    let digest = Sha256::digest(super::names::username_key(username).as_bytes());
    hex::encode(&digest[..16])
}

/// An allowance taken that may be given back.
#[must_use = "a charge is kept unless given back"]
pub struct Charge {
    key: String,
    count: u64,
    window: Duration,
    cost: u64,
    local: bool,
}

/// The limits of this process: the rates, and where they are counted.
pub struct Limits {
    rates: Rates,
    /// Shared by every process (Redis), or this process's memory.
    shared: Arc<dyn LimitStore>,
    /// This process's memory, for per-socket counts.
    local: Arc<MemoryLimits>,
}

impl Limits {
    pub fn new(rates: Rates, shared: Option<Arc<dyn LimitStore>>) -> Limits {
        let local = Arc::new(MemoryLimits::default());
        Limits {
            rates,
            shared: shared.unwrap_or_else(|| local.clone()),
            local,
        }
    }

    pub fn rates(&self) -> &Rates {
        &self.rates
    }

    /// Takes `cost` of `rate` under `key`, or refuses with how long to wait. `Ok(None)` when the
    /// rate is off.
    async fn take(
        &self,
        what: &'static str,
        key: String,
        rate: Rate,
        cost: u64,
        local: bool,
    ) -> Result<Option<Charge>, DomainError> {
        let Rate::Every { count, window } = rate else {
            return Ok(None);
        };
        let taken = if local {
            self.local.take_now(&key, count, window, cost)
        } else {
            self.shared.take(&key, count, window, cost).await?
        };
        match taken {
            Ok(taken) => {
                if taken == Taken::Last {
                    // Once per episode, not per refusal: a flood must not flood the log too.
                    tracing::warn!(limit = what, key = %key, "rate limit reached: further requests are refused for a while");
                }
                Ok(Some(Charge {
                    key,
                    count,
                    window,
                    cost,
                    local,
                }))
            }
            Err(wait) => {
                tracing::debug!(limit = what, key = %key, ?wait, "refused by a rate limit");
                metrics::counter!(crate::telemetry::RATE_LIMIT_REFUSALS, "limit" => limit_label(&key))
                    .increment(1);
                Err(DomainError::TooManyRequests(wait))
            }
        }
    }

    /// Gives back what `charge` took (the action did not happen, or did not count).
    pub async fn give_back(&self, charge: Option<Charge>) {
        let Some(charge) = charge else { return };
        if charge.local {
            self.local
                .give_back_now(&charge.key, charge.count, charge.window, charge.cost);
        } else if let Err(error) = self
            .shared
            .give_back(&charge.key, charge.count, charge.window, charge.cost)
            .await
        {
            // Only costs the client one unit of an allowance it had left.
            tracing::warn!(%error, "rate limit allowance not given back");
        }
    }

    /// One log-in attempt from `client`: refused when the address has failed too often.
    pub async fn take_login_address(&self, client: IpAddr) -> Result<Option<Charge>, DomainError> {
        let key = format!("login-ip:{}", address_key(client));
        self.take(
            "failed log-ins per address",
            key,
            self.rates.login_address,
            1,
            false,
        )
        .await
    }

    /// One log-in attempt to `username` from an address the account has not used lately.
    pub async fn take_login_account(&self, username: &str) -> Result<Option<Charge>, DomainError> {
        let key = format!("login-user:{}", account_key(username));
        self.take(
            "failed log-ins per account",
            key,
            self.rates.login_account,
            1,
            false,
        )
        .await
    }

    fn known_key(user_id: i32, client: IpAddr) -> String {
        format!("known:{user_id}:{}", address_key(client))
    }

    /// Whether `user_id` logged in from `client` within [`KNOWN_ADDRESS_TTL`].
    pub async fn knows(&self, user_id: i32, client: IpAddr) -> Result<bool, DomainError> {
        if self.rates.login_account == Rate::Off {
            return Ok(false);
        }
        Ok(self
            .shared
            .recalls(&Self::known_key(user_id, client))
            .await?)
    }

    /// Remembers that `user_id` logged in from `client`.
    pub async fn learn(&self, user_id: i32, client: IpAddr) {
        if self.rates.login_account == Rate::Off {
            return;
        }
        let key = Self::known_key(user_id, client);
        if let Err(error) = self.shared.remember(&key, KNOWN_ADDRESS_TTL).await {
            tracing::warn!(%error, "known log-in address not recorded");
        }
    }

    /// One sign-up from `client`.
    pub async fn take_signup(&self, client: IpAddr) -> Result<Option<Charge>, DomainError> {
        let key = format!("signup-ip:{}", address_key(client));
        self.take(
            "sign-ups per address",
            key,
            self.rates.signup_address,
            1,
            false,
        )
        .await
    }

    /// One message on socket `socket` of user `user_id`: the socket's own allowance (this
    /// process's memory), then the user's (shared).
    pub async fn take_message(&self, socket: &str, user_id: i32) -> Result<(), DomainError> {
        let key = format!("msg-socket:{socket}");
        let on_socket = self
            .take(
                "messages per socket",
                key,
                self.rates.message_socket,
                1,
                true,
            )
            .await?;
        let key = format!("msg-user:{user_id}");
        if let Err(error) = self
            .take("messages per user", key, self.rates.message_user, 1, false)
            .await
        {
            self.give_back(on_socket).await;
            return Err(error);
        }
        Ok(())
    }

    /// `bytes` more uploaded by `user_id`.
    pub async fn take_upload(&self, user_id: i32, bytes: u64) -> Result<(), DomainError> {
        let key = format!("upload-user:{user_id}");
        self.take(
            "upload bytes per user",
            key,
            self.rates.upload_user,
            bytes,
            false,
        )
        .await
        .map(drop)
    }
}

/// The label of a limit on `/metrics`, from its key's kind: the name of its setting
/// (`IM_LIMIT_LOGIN_ADDRESS` is `login_address`), never the key itself, which names a client.
fn limit_label(key: &str) -> &'static str {
    match key.split(':').next().unwrap_or_default() {
        "login-ip" => "login_address",
        "login-user" => "login_account",
        "signup-ip" => "signup_address",
        "msg-socket" => "message_socket",
        "msg-user" => "message_user",
        "upload-user" => "upload_user",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("off"), Ok(Rate::Off));
        assert_eq!(parse_rate("0"), Ok(Rate::Off));
        assert_eq!(
            parse_rate("20/10m"),
            Ok(Rate::every(20, Duration::from_secs(600)))
        );
        assert_eq!(
            parse_rate("64M/1h"),
            Ok(Rate::every(64 << 20, Duration::from_secs(3600)))
        );
        assert_eq!(
            parse_rate("5/30"),
            Ok(Rate::every(5, Duration::from_secs(30)))
        );
        for bad in [
            "", "20", "/10m", "20/", "0/10m", "20/0s", "x/1h", "20/1y", "-1/1h",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn gcra_allows_a_burst_then_one_per_interval() {
        let limits = MemoryLimits::default();
        let window = Duration::from_secs(100);
        for _ in 0..9 {
            assert_eq!(limits.take_now("k", 10, window, 1), Ok(Taken::Some));
        }
        assert_eq!(limits.take_now("k", 10, window, 1), Ok(Taken::Last));
        let wait = limits.take_now("k", 10, window, 1).unwrap_err();
        // The next cell frees within one interval (10 s), not the whole window.
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        limits.give_back_now("k", 10, window, 1);
        assert_eq!(limits.take_now("k", 10, window, 1), Ok(Taken::Last));
        // Other keys are untouched; a cost above the whole allowance never fits.
        assert_eq!(limits.take_now("other", 10, window, 10), Ok(Taken::Last));
        assert!(limits.take_now("third", 10, window, 11).is_err());
    }

    #[test]
    fn ipv6_counts_by_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.1");
    }
}
