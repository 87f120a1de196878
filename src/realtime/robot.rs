//! The chat robot over Socket.IO: the sender's payload is echoed to their socket, then the
//! robot's answer follows on the same event, computed off the event loop.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::{NEW_MESSAGE, Outcome, Reply};
use crate::domain::Actor;
use crate::domain::robot::{self, Robot};

/// Answers a `type: "robot"` message; nothing is stored and no room hears it.
pub fn converse<A: Adapter>(
    robot: Arc<Robot>,
    socket: SocketRef<A>,
    actor: &Actor,
    payload: Value,
    reply: Reply<A>,
) -> Outcome {
    let question = match robot::Question::from_json(&payload) {
        Ok(question) => question,
        Err(error) => return reply.fail(&socket, NEW_MESSAGE, &error),
    };
    if let Err(error) = super::overflow::send_to(&socket, || socket.emit(NEW_MESSAGE, &payload)) {
        tracing::debug!(%error, "robot echo not sent");
    }
    let outcome = reply.ok(&payload);
    let user_id = actor.user_id;
    // The answer may wait on an outside service: it must hold up neither this socket's other
    // events nor anyone else's.
    tokio::spawn(async move {
        let answer = robot.answer(user_id, &question).await;
        let response = question.response(payload, answer);
        if let Err(error) =
            super::overflow::send_to(&socket, || socket.emit(NEW_MESSAGE, &response))
        {
            tracing::debug!(%error, "robot answer not sent");
        }
    });
    outcome
}
