//! Conversations: the rooms that a friendship or a group talks in.

use diesel_async::RunQueryDsl;

use super::models::{Conversation, NewConversation};
use super::schema::conversations;
use super::{DbConn, StoreError};
use crate::db_run;
use diesel::prelude::*;

/// Opens a new, active conversation of `kind` (`chat` or `groupchat`).
pub async fn insert_conversation(
    conn: &mut DbConn,
    kind: &str,
) -> Result<Conversation, StoreError> {
    let now = crate::time::now();
    let new = NewConversation {
        kind,
        active_time: now,
        active: true,
        created_at: now,
        updated_at: now,
    };
    db_run!(conn: {
        Ok(diesel::insert_into(conversations::table)
            .values(&new)
            .returning(Conversation::as_returning())
            .get_result(conn)
            .await?)
    })
}
