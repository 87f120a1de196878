//! The session user's conversation list: `GET /conversations`, `PUT /conversations/active`.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use super::openapi::{Answer, Null, Reads, Writes};
use crate::app::App;
use crate::domain::Actor;
use crate::domain::conversations::{self, ListedConversation};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default()
        .routes(routes!(list_conversations))
        .routes(routes!(update_conversation_active))
}

/// The user's active conversations, newest `updatedAt` first, each with its `target`.
#[utoipa::path(get, path = "/conversations", tag = "conversations",
    responses((status = 200, description = "the conversations", body = Answer<Vec<ListedConversation>>),
              Reads))]
async fn list_conversations(
    State(app): State<Arc<App>>,
    actor: Actor,
) -> ApiResult<Vec<ListedConversation>> {
    ok(conversations::list_conversations(&app, &actor).await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ActiveBody {
    /// The conversation's id.
    id: i32,
    /// Shown (the default) or hidden in the list.
    #[serde(default = "shown")]
    active: bool,
}

fn shown() -> bool {
    true
}

/// Shows or hides a conversation in the user's list and sets its `activeTime` to now.
#[utoipa::path(put, path = "/conversations/active", tag = "conversations",
    request_body = ActiveBody,
    responses((status = 200, description = "`data` null; or `不是此会话的成员`, `该群已解散`",
               body = Answer<Null>), Writes))]
async fn update_conversation_active(
    State(app): State<Arc<App>>,
    actor: Actor,
    Body(body): Body<ActiveBody>,
) -> ApiResult<()> {
    conversations::set_active(&app, &actor, body.id, body.active).await?;
    ok(())
}
