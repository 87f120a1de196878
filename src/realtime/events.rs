//! The three events of docs/protocol.md §5, thin: parse, call the domain, ack or broadcast the
//! answer. Each event's work runs within IM_EVENT_TIMEOUT ([`limited`]).

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, TryData};

use super::auth::{Identity, current_actor};
use super::telemetry::timed;
use super::{GET_MESSAGES, JOIN, NEW_MESSAGE, Outcome, Reply, conversation_room, user_room};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::DomainError;
use crate::domain::messaging::{self, HistoryRequest, JoinRequest, SendRequest};
use crate::domain::robot::Robot;
use crate::store::models::Message;
use crate::timeouts::{self, Limited};

/// A message as `/v1/im/new-message` delivers it: docs/protocol.md §5.4's fields (no `updatedAt`)
/// plus `seq`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivered<'a> {
    pub id: i32,
    #[serde(serialize_with = "raw_json")]
    pub body: &'a str,
    pub from_id: i32,
    pub to_id: i32,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: chrono::NaiveDateTime,
    pub conversation_id: i32,
    pub seq: i64,
}

impl<'a> From<&'a Message> for Delivered<'a> {
    fn from(message: &'a Message) -> Self {
        Delivered {
            id: message.id,
            body: &message.body,
            from_id: message.from_id,
            to_id: message.to_id,
            created_at: message.created_at,
            conversation_id: message.conversation_id,
            seq: message.seq,
        }
    }
}

fn raw_json<S: serde::Serializer>(text: &&str, serializer: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<Value>(text) {
        Ok(json) => json.serialize(serializer),
        Err(_) => serializer.serialize_str(text),
    }
}

/// A socket just let in (its listeners are already set up): record its presence.
pub async fn on_connect<A: Adapter>(app: Arc<App>, socket: SocketRef<A>) {
    match socket.extensions.get::<Identity>() {
        Some(identity) => super::presence::connected(&app, &socket, &identity).await,
        // Cannot happen: the connect check stores the identity before letting a socket in.
        None => {
            let _ = socket.disconnect();
        }
    }
}

/// Listens to the events of a socket whose session was just checked.
pub fn listen<A: Adapter>(
    app: &Arc<App>,
    robot: &Arc<Robot>,
    socket: &SocketRef<A>,
    identity: &Identity,
) {
    // Here rather than in `on_connect`, which runs after the client saw its CONNECT answer.
    super::telemetry::opened(socket);
    socket.on(JOIN, {
        let app = app.clone();
        move |socket: SocketRef<A>, TryData(payload): TryData<Value>, reply: Reply<A>| {
            let app = app.clone();
            async move { timed(JOIN, join_conversation(&app, socket, payload.ok(), reply)).await }
        }
    });
    socket.on(NEW_MESSAGE, {
        let app = app.clone();
        let robot = robot.clone();
        move |socket: SocketRef<A>,
              io: SocketIo<A>,
              TryData(payload): TryData<Value>,
              reply: Reply<A>| {
            let app = app.clone();
            let robot = robot.clone();
            async move {
                timed(
                    NEW_MESSAGE,
                    post_message(app, robot, socket, io, payload.ok(), reply),
                )
                .await
            }
        }
    });
    socket.on(GET_MESSAGES, {
        let app = app.clone();
        move |socket: SocketRef<A>, TryData(payload): TryData<Value>, reply: Reply<A>| {
            let app = app.clone();
            async move {
                timed(
                    GET_MESSAGES,
                    get_messages(&app, socket, payload.ok(), reply),
                )
                .await
            }
        }
    });
    socket.on_disconnect({
        let app = app.clone();
        let identity = identity.clone();
        move |socket: SocketRef<A>| {
            let app = app.clone();
            let identity = identity.clone();
            if let Some(overflow) = socket.extensions.get::<Arc<super::overflow::Overflow>>() {
                overflow.forget(socket.id);
            }
            super::telemetry::closed(&socket);
            async move { super::presence::disconnected(&app, &socket, &identity).await }
        }
    });
}

/// Runs an event's work within IM_EVENT_TIMEOUT. Past it the event fails as unavailable and the
/// work is dropped where it stood; the calls it made are bounded on their own too (database,
/// Redis), so nothing of it keeps waiting much longer. A send is the exception: it goes on, on
/// its own task ([`post_message`]).
async fn limited<T>(
    app: &App,
    event: &str,
    work: impl Future<Output = Result<T, DomainError>>,
) -> Result<T, DomainError> {
    let limit = app.config.event_timeout();
    timeouts::within(Limited::Event, limit, work)
        .await
        .unwrap_or_else(|| {
            Err(DomainError::Unavailable(format!(
                "{event} timed out: its handler took longer than IM_EVENT_TIMEOUT ({} s)",
                limit.as_secs()
            )))
        })
}

/// An event's payload, or the error for one that is missing or not JSON.
fn payload(payload: Option<Value>) -> Result<Value, DomainError> {
    payload.ok_or_else(|| DomainError::invalid(messaging::NOT_AN_OBJECT))
}

async fn join_conversation<A: Adapter>(
    app: &App,
    socket: SocketRef<A>,
    payload: Option<Value>,
    reply: Reply<A>,
) -> Outcome {
    let joined = limited(app, JOIN, async {
        let actor = current_actor(app, &socket).await?;
        let payload = self::payload(payload)?;
        if messaging::is_robot_conversation(&payload) {
            // Robot talk goes to the sender's socket only: there is no room to join.
            return Ok(None);
        }
        let request = JoinRequest::from_json(&payload)?;
        let mut conn = app.db.get().await?;
        messaging::join(&mut conn, &actor, &request).await?;
        Ok(Some(request.conversation_id))
    })
    .await;
    match joined {
        Ok(Some(conversation_id)) => {
            socket.join(conversation_room(conversation_id));
            reply.ok(&serde_json::json!({ "conversationId": conversation_id }))
        }
        Ok(None) => {
            reply.ok(&serde_json::json!({ "conversationId": messaging::ROBOT_CONVERSATION }))
        }
        Err(error) => reply.fail(&socket, JOIN, &error),
    }
}

/// What became of a `/v1/im/new-message`.
enum Sent {
    /// Robot talk, answered by the robot (never stored).
    ToRobot(Actor, Value),
    /// Stored now (and broadcast), or found stored by an earlier send with its `clientMsgId`.
    Stored(messaging::Posted),
}

async fn post_message<A: Adapter>(
    app: Arc<App>,
    robot: Arc<Robot>,
    socket: SocketRef<A>,
    io: SocketIo<A>,
    payload: Option<Value>,
    reply: Reply<A>,
) -> Outcome {
    // The send runs on a task of its own, which goes on when the client is told that it took
    // too long: once queued, the message may still be stored, and then it must be broadcast
    // like any other (the client's retry finds it stored and is not broadcast again).
    let send = tokio::spawn(send_message(app.clone(), socket.clone(), io, payload));
    let sent = limited(&app, NEW_MESSAGE, async {
        send.await
            .unwrap_or_else(|error| Err(DomainError::from(error)))
    })
    .await;
    let posted = match sent {
        Ok(Sent::Stored(posted)) => posted,
        Ok(Sent::ToRobot(actor, payload)) => {
            return super::robot::converse(robot, socket, &actor, payload, reply);
        }
        Err(error) => return reply.fail(&socket, NEW_MESSAGE, &error),
    };
    let delivered = Delivered::from(&posted.message);
    if !posted.fresh && !reply.asked() {
        // A retry whose first send was delivered already: only this socket needs it again.
        if let Err(error) =
            super::overflow::send_to(&socket, || socket.emit(NEW_MESSAGE, &delivered))
        {
            tracing::debug!(%error, "message not re-sent");
        }
    }
    reply.ok(&delivered)
}

/// A send, from the session check to the broadcast of the stored message.
async fn send_message<A: Adapter>(
    app: Arc<App>,
    socket: SocketRef<A>,
    io: SocketIo<A>,
    payload: Option<Value>,
) -> Result<Sent, DomainError> {
    let actor = current_actor(&app, &socket).await?;
    // Counted before anything else is done with it: a refused message costs one lookup.
    let socket_id = socket.id.to_string();
    app.limits.take_message(&socket_id, actor.user_id).await?;
    let payload = self::payload(payload)?;
    if messaging::is_robot(&payload) {
        return Ok(Sent::ToRobot(actor, payload));
    }
    let request = SendRequest::from_json(&payload)?;
    let posted = messaging::post(&app.messages, &actor, &request).await?;
    if posted.fresh {
        // The room, and every device of the sender (the room may not hold them all). Before the
        // ack: a client that sends its next message once this one is acked has its messages
        // broadcast in its order, so a socket dropped for a full queue (`overflow`) has
        // received a prefix of them, and `since` fetches the rest.
        let rooms = [
            conversation_room(posted.message.conversation_id),
            user_room(actor.user_id),
        ];
        let delivered = Delivered::from(&posted.message);
        if let Err(error) = io.to(rooms).emit(NEW_MESSAGE, &delivered).await {
            tracing::warn!(%error, "broadcast of a stored message failed");
        }
    }
    Ok(Sent::Stored(posted))
}

async fn get_messages<A: Adapter>(
    app: &App,
    socket: SocketRef<A>,
    payload: Option<Value>,
    reply: Reply<A>,
) -> Outcome {
    let history = limited(app, GET_MESSAGES, async {
        let actor = current_actor(app, &socket).await?;
        let payload = self::payload(payload)?;
        if messaging::is_robot_conversation(&payload) {
            return messaging::robot_history(&payload);
        }
        let request = HistoryRequest::from_json(&payload)?;
        let mut conn = app.db.get().await?;
        let history = messaging::history(&mut conn, &actor, &request).await?;
        serde_json::to_value(history).map_err(|e| DomainError::Internal(e.to_string()))
    })
    .await;
    match history {
        Ok(history) => reply.ok(&history),
        Err(error) => reply.fail(&socket, GET_MESSAGES, &error),
    }
}
