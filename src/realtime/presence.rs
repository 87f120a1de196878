//! Presence over Socket.IO: friends hear `/v1/im/online` when a user's first socket connects or
//! last one leaves; a user who loses the `login` right loses every socket at once.

use std::sync::{Arc, Weak};

use serde_json::json;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use tokio::sync::broadcast::error::RecvError;

use super::auth::Identity;
use super::{ONLINE, user_room};
use crate::app::App;
use crate::domain::events::DomainEvent;
use crate::domain::presence::{self, PresenceChange};
use crate::domain::rbac::right;
use crate::store;

pub async fn connected(app: &App, socket: &SocketRef, identity: &Identity) {
    let change = presence::socket_connected(app, identity.user_id, &socket.id.to_string()).await;
    announce(socket, change).await;
    if !socket.connected() {
        // It left while it was being recorded, and its disconnect handler found nothing to
        // forget: forget it now, or the user would stay online for ever.
        disconnected(app, socket, identity).await;
    }
}

pub async fn disconnected(app: &App, socket: &SocketRef, identity: &Identity) {
    let change = presence::socket_disconnected(app, identity.user_id, &socket.id.to_string()).await;
    announce(socket, change).await;
}

async fn announce(
    socket: &SocketRef,
    change: Result<Option<PresenceChange>, crate::domain::DomainError>,
) {
    let change = match change {
        Ok(Some(change)) => change,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "presence not updated");
            return;
        }
    };
    if change.tell.is_empty() {
        return;
    }
    let rooms: Vec<String> = change.tell.iter().map(|id| user_room(*id)).collect();
    let payload = json!({ "userId": change.user_id, "online": change.online });
    if let Err(error) = socket.broadcast().to(rooms).emit(ONLINE, &payload).await {
        tracing::warn!(%error, "presence not announced");
    }
}

/// Follows the domain's access changes for as long as the app lives: a user who no longer holds
/// `login` (banned, deleted, role taken away) is disconnected on every socket, and a session
/// that logged out takes its sockets with it.
pub fn watch_access(io: SocketIo, app: Weak<App>) {
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
                    disconnect_session(&io, user_id, &session_id);
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

/// Disconnects the user's sockets on this process that were opened with `session_id`; their
/// other devices stay. (Sockets on other processes are refused on their next event, when the
/// session is not found; they follow at once with the Redis adapter.)
fn disconnect_session(io: &SocketIo, user_id: i32, session_id: &str) {
    for socket in io.to(user_room(user_id)).sockets() {
        let opened_by_session = socket
            .extensions
            .get::<Identity>()
            .is_some_and(|identity| identity.session_id == session_id);
        if opened_by_session && let Err(error) = socket.disconnect() {
            tracing::warn!(%error, user_id, "socket of an ended session not disconnected");
        }
    }
}

async fn recheck(app: &Arc<App>, io: &SocketIo, user_id: i32) {
    let may_log_in = async {
        let mut conn = app.db.get().await?;
        let rights = store::rbac::rights_of_user(&mut conn, user_id).await?;
        Ok::<_, store::StoreError>(rights.iter().any(|r| r.key_name == right::LOGIN))
    }
    .await;
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
        Err(error) => tracing::warn!(%error, user_id, "access change not applied"),
    }
}

async fn recheck_all(app: &Arc<App>, io: &SocketIo) {
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
