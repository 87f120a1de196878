//! Presence: a user is online while any of their sockets, on any process, is connected, and their
//! friends are told when that changes. The register of sockets is a trait: this process's memory
//! for one process, Redis (`session::presence`) for several.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::DomainError;
use crate::app::App;
use crate::store;

/// Which sockets of which users are connected.
#[async_trait]
pub trait PresenceRegister: Send + Sync + 'static {
    /// Records a connected socket; true when it is the user's first (they just came online).
    async fn connected(&self, user_id: i32, socket_id: &str) -> Result<bool, DomainError>;
    /// Forgets a socket; true when it was the user's last (they just went offline).
    async fn disconnected(&self, user_id: i32, socket_id: &str) -> Result<bool, DomainError>;
    /// Those of `user_ids` with at least one socket.
    async fn online_among(&self, user_ids: &[i32]) -> Result<HashSet<i32>, DomainError>;
    /// Called every third of the presence TTL: keeps this process's sockets counted and forgets
    /// those of processes that stopped beating. A register in this process's memory has nothing
    /// to do.
    async fn heartbeat(&self) -> Result<Heartbeat, DomainError> {
        Ok(Heartbeat::default())
    }
    /// Makes `sockets` (user, socket) the whole of this process's record, after a heartbeat
    /// asked for it.
    async fn resync(&self, _sockets: &[(i32, String)]) -> Result<(), DomainError> {
        Ok(())
    }
}

/// What a heartbeat found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// This process's record of sockets is not to be trusted (Redis lost it, this process was
    /// taken for dead, or a change could not be written): it must be written again whole.
    pub resync: bool,
    /// Users who had sockets only on processes that stopped: they are offline now.
    pub went_offline: Vec<i32>,
}

/// The register of one process.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    sockets: Mutex<HashMap<i32, HashSet<String>>>,
}

impl MemoryPresence {
    fn sockets(&self) -> std::sync::MutexGuard<'_, HashMap<i32, HashSet<String>>> {
        // A panic while holding the lock cannot leave the map half-changed (each change is one
        // call), so a poisoned lock is still usable.
        self.sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl PresenceRegister for MemoryPresence {
    async fn connected(&self, user_id: i32, socket_id: &str) -> Result<bool, DomainError> {
        let mut sockets = self.sockets();
        let of_user = sockets.entry(user_id).or_default();
        let first = of_user.is_empty();
        of_user.insert(socket_id.to_owned());
        Ok(first)
    }

    async fn disconnected(&self, user_id: i32, socket_id: &str) -> Result<bool, DomainError> {
        let mut sockets = self.sockets();
        let Some(of_user) = sockets.get_mut(&user_id) else {
            return Ok(false);
        };
        let removed = of_user.remove(socket_id);
        let last = removed && of_user.is_empty();
        if of_user.is_empty() {
            sockets.remove(&user_id);
        }
        Ok(last)
    }

    async fn online_among(&self, user_ids: &[i32]) -> Result<HashSet<i32>, DomainError> {
        let sockets = self.sockets();
        Ok(user_ids
            .iter()
            .copied()
            .filter(|id| sockets.contains_key(id))
            .collect())
    }
}

/// Those of `user_ids` who are online now (for the friend list's `online` field).
pub async fn online_users(app: &App, user_ids: &[i32]) -> Result<HashSet<i32>, DomainError> {
    app.presence.online_among(user_ids).await
}

/// A change of presence and who must hear of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub user_id: i32,
    pub online: bool,
    /// The user's friends.
    pub tell: Vec<i32>,
}

/// Records a new socket of the user; a change when it is their first.
pub async fn socket_connected(
    app: &App,
    user_id: i32,
    socket_id: &str,
) -> Result<Option<PresenceChange>, DomainError> {
    if !app.presence.connected(user_id, socket_id).await? {
        return Ok(None);
    }
    change(app, user_id, true).await
}

/// Forgets a socket of the user; a change when it was their last.
pub async fn socket_disconnected(
    app: &App,
    user_id: i32,
    socket_id: &str,
) -> Result<Option<PresenceChange>, DomainError> {
    if !app.presence.disconnected(user_id, socket_id).await? {
        return Ok(None);
    }
    change(app, user_id, false).await
}

/// Beats for this process; the users who went offline with a stopped process, and whether this
/// process's sockets must be recorded again (with `resync`).
pub async fn heartbeat(app: &App) -> Result<(bool, Vec<PresenceChange>), DomainError> {
    let beat = app.presence.heartbeat().await?;
    let mut changes = Vec::with_capacity(beat.went_offline.len());
    for user_id in beat.went_offline {
        changes.extend(change(app, user_id, false).await?);
    }
    Ok((beat.resync, changes))
}

/// Writes again the whole record of this process's sockets, `(user, socket)`. Nobody is told:
/// to their friends these users never went away.
pub async fn resync(app: &App, sockets: &[(i32, String)]) -> Result<(), DomainError> {
    app.presence.resync(sockets).await
}

/// The change to announce, unless it was already overtaken. The friends are looked up between
/// the record and the announcement, and meanwhile another device (on another process, perhaps)
/// may have come or gone, whose own announcement may then go out first: friends would be left
/// with the older state. Asking the register again just before announcing keeps that window to
/// the announcement itself.
async fn change(
    app: &App,
    user_id: i32,
    online: bool,
) -> Result<Option<PresenceChange>, DomainError> {
    let mut conn = app.db.get().await?;
    let tell = store::presence::friend_ids(&mut conn, user_id).await?;
    drop(conn);
    if tell.is_empty() {
        return Ok(None);
    }
    let now_online = app
        .presence
        .online_among(&[user_id])
        .await?
        .contains(&user_id);
    if now_online != online {
        return Ok(None);
    }
    Ok(Some(PresenceChange {
        user_id,
        online,
        tell,
    }))
}
