//! Presence over Socket.IO: friends hear `/v1/im/online` when a user's first socket connects or
//! last one leaves, or when the process holding their sockets dies; a user who loses the `login`
//! right loses every socket at once, on every process.

use std::sync::{Arc, Weak};

use serde_json::json;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use tokio::sync::broadcast::error::RecvError;

use super::auth::Identity;
use super::{ONLINE, session_room, user_room};
use crate::app::App;
use crate::domain::events::DomainEvent;
use crate::domain::presence::{self, PresenceChange};
use crate::domain::rbac::right;

pub async fn connected<A: Adapter>(app: &App, socket: &SocketRef<A>, identity: &Identity) {
    let change = presence::socket_connected(app, identity.user_id, &socket.id.to_string()).await;
    announce(socket.broadcast(), change).await;
    if !socket.connected() {
        // It left while it was being recorded, and its disconnect handler found nothing to
        // forget: forget it now, or the user would stay online for ever.
        disconnected(app, socket, identity).await;
    }
}

pub async fn disconnected<A: Adapter>(app: &App, socket: &SocketRef<A>, identity: &Identity) {
    let change = presence::socket_disconnected(app, identity.user_id, &socket.id.to_string()).await;
    announce(socket.broadcast(), change).await;
}

/// Tells the user's friends, wherever they are connected, through `to`.
async fn announce<A: Adapter>(
    to: BroadcastOperators<A>,
    change: Result<Option<PresenceChange>, crate::domain::DomainError>,
) {
    let change = match change {
        Ok(Some(change)) => change,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(?error, "presence not updated");
            return;
        }
    };
    if change.tell.is_empty() {
        return;
    }
    let rooms: Vec<String> = change.tell.iter().map(|id| user_room(*id)).collect();
    let payload = json!({ "userId": change.user_id, "online": change.online });
    if let Err(error) = to.to(rooms).emit(ONLINE, &payload).await {
        tracing::warn!(%error, "presence not announced");
    }
}

/// Beats for this process's sockets for as long as the app lives (only with Redis does a beat do
/// anything): friends of users whose process died are told they went offline, and this
/// process's sockets are recorded again when Redis forgot them (it restarted empty) or missed a
/// change (it was unreachable when a socket left).
pub fn keep_alive<A: Adapter>(io: SocketIo<A>, app: Weak<App>) {
    let Some(period) = app.upgrade().map(|app| app.config.presence_ttl() / 3) else {
        return;
    };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(app) = app.upgrade() else { return };
            let (resync, changes) = match presence::heartbeat(&app).await {
                Ok(beat) => beat,
                Err(error) => {
                    tracing::warn!(?error, "presence heartbeat failed");
                    continue;
                }
            };
            for change in changes {
                announce(io.broadcast(), Ok(Some(change))).await;
            }
            if resync {
                let sockets: Vec<(i32, String)> = io
                    .sockets()
                    .iter()
                    .filter_map(|socket| {
                        let identity = socket.extensions.get::<Identity>()?;
                        Some((identity.user_id, socket.id.to_string()))
                    })
                    .collect();
                match presence::resync(&app, &sockets).await {
                    Ok(()) => tracing::info!(
                        sockets = sockets.len(),
                        "presence of this process's sockets written again"
                    ),
                    Err(error) => tracing::warn!(
                        ?error,
                        "presence not written; trying again at the next beat"
                    ),
                }
            }
        }
    });
}

/// Follows the domain's access changes for as long as the app lives: a user who no longer holds
/// `login` (banned, deleted, role taken away) is disconnected on every socket, and a session
/// that logged out takes its sockets with it, on every process.
pub fn watch_access<A: Adapter>(io: SocketIo<A>, app: Weak<App>) {
    let Some(mut events) = app.upgrade().map(|app| app.events.subscribe()) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let user_id = match events.recv().await {
                Ok(DomainEvent::AccessChanged { user_id }) => user_id,
                Ok(DomainEvent::SessionEnded {
                    user_id,
                    session_id,
                }) => {
                    if let Err(error) = io.to(session_room(&session_id)).disconnect().await {
                        tracing::warn!(%error, user_id, "sockets of an ended session not disconnected");
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    // Some changes were missed: re-check everyone connected.
                    tracing::warn!(missed, "access changes missed; re-checking all sockets");
                    let Some(app) = app.upgrade() else { return };
                    recheck_all(&app, &io).await;
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let Some(app) = app.upgrade() else { return };
            recheck(&app, &io, user_id).await;
        }
    });
}

async fn recheck<A: Adapter>(app: &Arc<App>, io: &SocketIo<A>, user_id: i32) {
    // The change that brought us here has already cleared this user from the rights cache.
    let may_log_in = app
        .rights
        .of_user(&app.db, user_id)
        .await
        .map(|rights| rights.iter().any(|key| key == right::LOGIN));
    match may_log_in {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(
                user_id,
                "user lost the login right: disconnecting their sockets"
            );
            if let Err(error) = io.to(user_room(user_id)).disconnect().await {
                tracing::warn!(%error, user_id, "sockets not disconnected");
            }
        }
        Err(error) => tracing::warn!(?error, user_id, "access change not applied"),
    }
}

async fn recheck_all<A: Adapter>(app: &Arc<App>, io: &SocketIo<A>) {
    let mut users: Vec<i32> = io
        .sockets()
        .iter()
        .filter_map(|socket| socket.extensions.get::<Identity>())
        .map(|identity| identity.user_id)
        .collect();
    users.sort_unstable();
    users.dedup();
    for user_id in users {
        recheck(app, io, user_id).await;
    }
}
