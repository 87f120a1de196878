//! The session user's conversation list: `GET /conversations`, `PUT /conversations/active`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, put};
use serde::Deserialize;

use super::envelope::{ApiResult, ok};
use super::extract::Body;
use crate::app::App;
use crate::domain::Actor;
use crate::domain::conversations::{self, ListedConversation};

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/conversations", get(list_conversations))
        .route("/conversations/active", put(update_conversation_active))
}

async fn list_conversations(
    State(app): State<Arc<App>>,
    actor: Actor,
) -> ApiResult<Vec<ListedConversation>> {
    ok(conversations::list_conversations(&app, &actor).await?)
}

#[derive(Deserialize)]
struct ActiveBody {
    id: i32,
    #[serde(default = "shown")]
    active: bool,
}

fn shown() -> bool {
    true
}

async fn update_conversation_active(
    State(app): State<Arc<App>>,
    actor: Actor,
    Body(body): Body<ActiveBody>,
) -> ApiResult<()> {
    conversations::set_active(&app, &actor, body.id, body.active).await?;
    ok(())
}
