//! Messages: storing one under the next sequence number of its conversation, and reading a
//! conversation's history by page or from a sequence number on.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{Message, NewMessage};
use super::schema::{conversations, messages};
use super::{DbConn, StoreError};
use crate::db_run;

/// Takes the next sequence number of a conversation and marks it active now (`activeTime`, and
/// `updatedAt`, which orders the conversation list). Call it in the transaction that inserts the
/// message, so that the number is used exactly once.
pub async fn next_seq(conn: &mut DbConn, conversation_id: i32) -> Result<i64, StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        Ok(diesel::update(conversations::table.find(conversation_id))
            .set((
                conversations::last_seq.eq(conversations::last_seq + 1),
                conversations::active_time.eq(now),
                conversations::updated_at.eq(now),
            ))
            .returning(conversations::last_seq)
            .get_result(conn)
            .await?)
    })
}

pub async fn insert_message(
    conn: &mut DbConn,
    new: &NewMessage<'_>,
) -> Result<Message, StoreError> {
    db_run!(conn: {
        Ok(diesel::insert_into(messages::table)
            .values(new)
            .returning(Message::as_returning())
            .get_result(conn)
            .await?)
    })
}

/// The message a sender already stored under their `client_msg_id`, if any.
pub async fn find_by_client_msg_id(
    conn: &mut DbConn,
    from_id: i32,
    client_msg_id: &str,
) -> Result<Option<Message>, StoreError> {
    db_run!(conn: {
        Ok(messages::table
            .filter(messages::from_id.eq(from_id))
            .filter(messages::client_msg_id.eq(client_msg_id))
            .select(Message::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// How many messages a conversation holds.
pub async fn count_in_conversation(
    conn: &mut DbConn,
    conversation_id: i32,
) -> Result<i64, StoreError> {
    db_run!(conn: {
        Ok(messages::table
            .filter(messages::conversation_id.eq(conversation_id))
            .count()
            .get_result(conn)
            .await?)
    })
}

/// One page of a conversation's messages, newest first.
pub async fn page_newest_first(
    conn: &mut DbConn,
    conversation_id: i32,
    limit: i64,
    offset: i64,
) -> Result<Vec<Message>, StoreError> {
    db_run!(conn: {
        Ok(messages::table
            .filter(messages::conversation_id.eq(conversation_id))
            .order(messages::seq.desc())
            .limit(limit)
            .offset(offset)
            .select(Message::as_select())
            .load(conn)
            .await?)
    })
}

/// How many messages came after sequence number `since`.
pub async fn count_since(
    conn: &mut DbConn,
    conversation_id: i32,
    since: i64,
) -> Result<i64, StoreError> {
    db_run!(conn: {
        Ok(messages::table
            .filter(messages::conversation_id.eq(conversation_id))
            .filter(messages::seq.gt(since))
            .count()
            .get_result(conn)
            .await?)
    })
}

/// The first `limit` messages after sequence number `since`, oldest first: what a reconnecting
/// client missed, in the order it happened.
pub async fn after_seq(
    conn: &mut DbConn,
    conversation_id: i32,
    since: i64,
    limit: i64,
) -> Result<Vec<Message>, StoreError> {
    db_run!(conn: {
        Ok(messages::table
            .filter(messages::conversation_id.eq(conversation_id))
            .filter(messages::seq.gt(since))
            .order(messages::seq.asc())
            .limit(limit)
            .select(Message::as_select())
            .load(conn)
            .await?)
    })
}
