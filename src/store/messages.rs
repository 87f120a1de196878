//! Messages: storing them, one or a whole batch, under the next sequence numbers of their
//! conversations, finding a sender's earlier sends by `clientMsgId`, and reading a
//! conversation's history by page or from a sequence number on.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::Message;
use super::schema::{conversations, messages};
use super::{DbConn, StoreError};
use crate::db_run;

/// Takes `count` sequence numbers for each `(conversation_id, count)` and marks those
/// conversations active at `now`; answers each conversation's last number after the update, so
/// its new messages are numbered `last - count + 1 ..= last`. Call it in the transaction that
/// inserts those messages. Conversations that do not exist are missing from the answer.
pub async fn take_seqs(
    conn: &mut DbConn,
    counts: &[(i32, i64)],
    now: NaiveDateTime,
) -> Result<HashMap<i32, i64>, StoreError> {
    // One statement for the whole batch on either backend: diesel prepares an UPDATE anew each
    // time it runs (it never caches one), so one per conversation would cost a parse each.
    let rows: Vec<TakenSeq> = match conn {
        // SQLite's transactions take the write lock up front (BEGIN IMMEDIATE), so the order of
        // the updates does not matter. SQLite has no arrays: the pairs go as one JSON text.
        DbConn::Sqlite(conn) => {
            let pairs = serde_json::to_string(counts)
                .map_err(|error| StoreError::Query(error.to_string()))?;
            diesel::sql_query(
                "UPDATE conversations SET last_seq = last_seq + v.n, active_time = ?, \
                 updated_at = ? \
                 FROM (SELECT json_extract(value, '$[0]') AS cid, json_extract(value, '$[1]') AS n \
                       FROM json_each(?)) AS v \
                 WHERE conversations.id = v.cid RETURNING id, last_seq",
            )
            .bind::<diesel::sql_types::Timestamp, _>(now)
            .bind::<diesel::sql_types::Timestamp, _>(now)
            .bind::<diesel::sql_types::Text, _>(pairs)
            .load(&mut **conn)
            .await?
        }
        // The rows are locked first, in id order, so that two processes' batches touching the
        // same conversations queue instead of deadlocking.
        DbConn::Postgres(conn) => {
            let conn = &mut **conn;
            let mut ids: Vec<i32> = counts.iter().map(|(id, _)| *id).collect();
            ids.sort_unstable();
            conversations::table
                .filter(conversations::id.eq_any(&ids))
                .order(conversations::id)
                .select(conversations::id)
                .for_update()
                .load::<i32>(conn)
                .await?;
            let (ids, counts): (Vec<i32>, Vec<i64>) = counts.iter().copied().unzip();
            diesel::sql_query(
                "UPDATE conversations AS c \
                 SET last_seq = c.last_seq + v.n, active_time = $3, updated_at = $3 \
                 FROM unnest($1::int4[], $2::int8[]) AS v(id, n) \
                 WHERE c.id = v.id RETURNING c.id, c.last_seq",
            )
            .bind::<diesel::sql_types::Array<diesel::sql_types::Integer>, _>(ids)
            .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(counts)
            .bind::<diesel::sql_types::Timestamp, _>(now)
            .load(conn)
            .await?
        }
    };
    Ok(rows.into_iter().map(|row| (row.id, row.last_seq)).collect())
}

#[derive(QueryableByName)]
struct TakenSeq {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    id: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    last_seq: i64,
}

/// A message to insert; every message of a batch is stored at the same time.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub conversation_id: i32,
    pub seq: i64,
    pub from_id: i32,
    pub to_id: i32,
    /// The body as JSON text.
    pub body: String,
    pub client_msg_id: Option<String>,
}

/// Rows per PostgreSQL insert: 8 columns × 1000 bind parameters, well under its limit of 65535.
const PG_INSERT_CHUNK: usize = 1000;

/// Inserts a batch of messages; answers them as stored, in no particular order (each is known by
/// its conversation and `seq`). All rows share one time, `now`.
pub async fn insert_messages(
    conn: &mut DbConn,
    rows: Vec<MessageRow>,
    now: NaiveDateTime,
) -> Result<Vec<Message>, StoreError> {
    match conn {
        // One statement for the batch, its rows as one JSON text: diesel cannot send SQLite a
        // multi-row insert, and one insert per row costs more in building and looking up its
        // statement than in storing the row.
        DbConn::Sqlite(conn) => {
            let rows: Vec<_> = rows
                .iter()
                .map(|row| {
                    (
                        row.conversation_id,
                        row.seq,
                        row.from_id,
                        row.to_id,
                        &row.body,
                        &row.client_msg_id,
                    )
                })
                .collect();
            let rows = serde_json::to_string(&rows)
                .map_err(|error| StoreError::Query(error.to_string()))?;
            Ok(diesel::sql_query(
                "INSERT INTO messages \
                 (conversation_id, seq, from_id, to_id, body, client_msg_id, created_at, updated_at) \
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
                        json_extract(value, '$[2]'), json_extract(value, '$[3]'), \
                        json_extract(value, '$[4]'), json_extract(value, '$[5]'), ?, ? \
                 FROM json_each(?) ORDER BY key \
                 RETURNING id, conversation_id, seq, from_id, to_id, body, client_msg_id, \
                           created_at, updated_at",
            )
            .bind::<diesel::sql_types::Timestamp, _>(now)
            .bind::<diesel::sql_types::Timestamp, _>(now)
            .bind::<diesel::sql_types::Text, _>(rows)
            .load(&mut **conn)
            .await?)
        }
        DbConn::Postgres(conn) => {
            let rows: Vec<_> = rows
                .into_iter()
                .map(|row| {
                    (
                        messages::conversation_id.eq(row.conversation_id),
                        messages::seq.eq(row.seq),
                        messages::from_id.eq(row.from_id),
                        messages::to_id.eq(row.to_id),
                        messages::body.eq(row.body),
                        messages::client_msg_id.eq(row.client_msg_id),
                        messages::created_at.eq(now),
                        messages::updated_at.eq(now),
                    )
                })
                .collect();
            let mut stored = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(PG_INSERT_CHUNK) {
                stored.extend(
                    diesel::insert_into(messages::table)
                        .values(chunk)
                        .returning(Message::as_returning())
                        .get_results(&mut **conn)
                        .await?,
                );
            }
            Ok(stored)
        }
    }
}

/// The messages any of `from_ids` stored under any of `client_msg_ids`: a superset of the pairs
/// a batch asks about, which the caller matches exactly.
pub async fn find_by_client_msg_ids(
    conn: &mut DbConn,
    from_ids: &[i32],
    client_msg_ids: &[&str],
) -> Result<Vec<Message>, StoreError> {
    if from_ids.is_empty() || client_msg_ids.is_empty() {
        return Ok(Vec::new());
    }
    db_run!(conn: {
        Ok(messages::table
            .filter(messages::from_id.eq_any(from_ids))
            .filter(messages::client_msg_id.eq_any(client_msg_ids))
            .select(Message::as_select())
            .load(conn)
            .await?)
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
