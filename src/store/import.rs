//! Writing an import into our own database: what the target holds before, the rows of every
//! table in batches with their ids kept, and what is derived once all rows are in (each
//! conversation's `seq` order and `last_seq`, PostgreSQL's sequences).
//!
//! Every function takes the one connection the import's transaction runs on. PostgreSQL gets
//! multi-row `INSERT`s of a thousand rows; SQLite one cached prepared statement per row, run on
//! the connection's own thread (diesel-async cannot send SQLite a multi-row insert), which in one
//! transaction is as fast as SQLite writes.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};

use super::bulk::{CHUNK, insert_all};
use super::schema::{
    applies, conversations, friends, groups, messages, rights, role_rights, roles, user_groups,
    user_infos, user_roles, users,
};
use super::{DbConn, StoreError};
use crate::db_run;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The tables of ours that a database fresh from its first start leaves empty, besides `users`,
/// `user_infos`, `user_roles` (the bootstrap admin's) and the built-in rights and roles.
pub const EMPTY_AT_FIRST_START: [&str; 8] = [
    "conversations",
    "groups",
    "user_groups",
    "friends",
    "messages",
    "applies",
    "uploads",
    "github_identities",
];

/// SQLite's page cache for an import's connection, in KiB: a million messages make the
/// transaction far larger than the default 2 MiB cache, and SQLite then writes pages out to the
/// WAL and reads them back on the next insert that touches them (most of the time went to that).
/// This holds the pages that inserts keep touching (the ends of the tables and of each
/// conversation's and sender's index ranges) for histories of thousands of conversations, and
/// bounds the memory all the same. 24 MiB imported as fast as 40 MiB with 18 MB less at its peak
/// (BENCHMARKS.md).
const SQLITE_IMPORT_CACHE_KIB: u32 = 24 * 1024;

/// Readies the connection for a long run of inserts (on SQLite, a larger page cache).
pub async fn prepare_bulk(conn: &mut DbConn) -> Result<(), StoreError> {
    if let DbConn::Sqlite(conn) = conn {
        conn.batch_execute(&format!("PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KIB}"))
            .await?;
    }
    Ok(())
}

/// Rows in our table `table`.
pub async fn count_rows(conn: &mut DbConn, table: &'static str) -> Result<i64, StoreError> {
    let query = format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM \"{table}\"");
    let count: Count = db_run!(conn: { diesel::sql_query(query).get_result(conn).await? });
    Ok(count.n)
}

/// Up to `limit` users, `(id, username)`, by id.
pub async fn some_users(conn: &mut DbConn, limit: i64) -> Result<Vec<(i32, String)>, StoreError> {
    Ok(db_run!(conn: {
        users::table
            .select((users::id, users::username))
            .order(users::id)
            .limit(limit)
            .load(conn)
            .await?
    }))
}

/// `(id, key_name)` of every right.
pub async fn right_keys(conn: &mut DbConn) -> Result<Vec<(i32, String)>, StoreError> {
    Ok(db_run!(conn: {
        rights::table.select((rights::id, rights::key_name)).order(rights::id).load(conn).await?
    }))
}

/// `(id, name, key_name)` of every role.
pub async fn role_keys(conn: &mut DbConn) -> Result<Vec<(i32, String, String)>, StoreError> {
    Ok(db_run!(conn: {
        roles::table
            .select((roles::id, roles::name, roles::key_name))
            .order(roles::id)
            .load(conn)
            .await?
    }))
}

/// Deletes user `id` with what hangs on them (profile, roles: cascaded).
pub async fn delete_user(conn: &mut DbConn, id: i32) -> Result<(), StoreError> {
    db_run!(conn: {
        diesel::delete(users::table.find(id)).execute(conn).await?;
    });
    Ok(())
}

/// Which of `keys` some user already holds as username key.
pub async fn taken_username_keys(
    conn: &mut DbConn,
    keys: Vec<String>,
) -> Result<Vec<String>, StoreError> {
    let mut taken = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let found: Vec<Option<String>> = db_run!(conn: {
            users::table
                .filter(users::username_key.eq_any(chunk))
                .select(users::username_key)
                .load(conn)
                .await?
        });
        taken.extend(found.into_iter().flatten());
    }
    Ok(taken)
}

/// A right or a role.
#[derive(Debug, Clone)]
pub struct RbacRow {
    pub id: i32,
    pub name: String,
    pub key_name: String,
    pub description: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub async fn insert_rights(conn: &mut DbConn, rows: Vec<RbacRow>) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            (
                rights::id.eq(r.id),
                rights::name.eq(r.name),
                rights::key_name.eq(r.key_name),
                rights::description.eq(r.description),
                rights::created_at.eq(r.created_at),
                rights::updated_at.eq(r.updated_at),
            )
        })
        .collect();
    insert_all!(conn, rights::table, rows)
}

pub async fn insert_roles(conn: &mut DbConn, rows: Vec<RbacRow>) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            (
                roles::id.eq(r.id),
                roles::name.eq(r.name),
                roles::key_name.eq(r.key_name),
                roles::description.eq(r.description),
                roles::created_at.eq(r.created_at),
                roles::updated_at.eq(r.updated_at),
            )
        })
        .collect();
    insert_all!(conn, roles::table, rows)
}

/// Takes every right from the roles `role_ids`, before the import grants theirs.
pub async fn clear_role_rights(conn: &mut DbConn, role_ids: Vec<i32>) -> Result<(), StoreError> {
    db_run!(conn: {
        diesel::delete(role_rights::table.filter(role_rights::role_id.eq_any(role_ids)))
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// Grants rights: each pair is `(role_id, right_id)`.
pub async fn insert_role_rights(
    conn: &mut DbConn,
    pairs: Vec<(i32, i32)>,
) -> Result<(), StoreError> {
    let rows: Vec<_> = pairs
        .into_iter()
        .map(|(role, right)| {
            (
                role_rights::role_id.eq(role),
                role_rights::right_id.eq(right),
            )
        })
        .collect();
    insert_all!(conn, role_rights::table, rows)
}

/// Gives roles: each pair is `(user_id, role_id)`.
pub async fn insert_user_roles(
    conn: &mut DbConn,
    pairs: Vec<(i32, i32)>,
) -> Result<(), StoreError> {
    let rows: Vec<_> = pairs
        .into_iter()
        .map(|(user, role)| (user_roles::user_id.eq(user), user_roles::role_id.eq(role)))
        .collect();
    insert_all!(conn, user_roles::table, rows)
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i32,
    pub provider: String,
    pub username: String,
    pub username_key: Option<String>,
    pub password: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub async fn insert_users(conn: &mut DbConn, rows: Vec<UserRow>) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            (
                users::id.eq(r.id),
                users::provider.eq(r.provider),
                users::username.eq(r.username),
                users::username_key.eq(r.username_key),
                users::password.eq(r.password),
                users::created_at.eq(r.created_at),
                users::updated_at.eq(r.updated_at),
            )
        })
        .collect();
    insert_all!(conn, users::table, rows)
}

#[derive(Debug, Clone)]
pub struct UserInfoRow {
    pub id: i32,
    pub user_id: i32,
    pub nickname: String,
    pub photo: String,
    pub sign: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub async fn insert_user_infos(
    conn: &mut DbConn,
    rows: Vec<UserInfoRow>,
) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            (
                user_infos::id.eq(r.id),
                user_infos::user_id.eq(r.user_id),
                user_infos::nickname.eq(r.nickname),
                user_infos::photo.eq(r.photo),
                user_infos::sign.eq(r.sign),
                user_infos::created_at.eq(r.created_at),
                user_infos::updated_at.eq(r.updated_at),
            )
        })
        .collect();
    insert_all!(conn, user_infos::table, rows)
}

#[derive(Debug, Clone)]
pub struct ConversationRow {
    pub id: i32,
    pub kind: &'static str,
    pub active_time: NaiveDateTime,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Inserts conversations with no messages yet (`last_seq` is set by [`set_last_seqs`]).
pub async fn insert_conversations(
    conn: &mut DbConn,
    rows: Vec<ConversationRow>,
) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            (
                conversations::id.eq(r.id),
                conversations::kind.eq(r.kind),
                conversations::active_time.eq(r.active_time),
                conversations::active.eq(r.active),
                conversations::last_seq.eq(0i64),
                conversations::created_at.eq(r.created_at),
                conversations::updated_at.eq(r.updated_at),
            )
        })
        .collect();
    insert_all!(conn, conversations::table, rows)
}

#[derive(Debug, Clone)]
pub struct GroupRow {
    pub id: i32,
    pub name: String,
    pub photo: String,
    pub introduction: Option<String>,
    pub disabled: bool,
    pub mute: bool,
    pub owner_id: i32,
    pub conversation_id: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub async fn insert_groups(conn: &mut DbConn, rows: Vec<GroupRow>) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            (
                groups::id.eq(r.id),
                groups::name.eq(r.name),
                groups::photo.eq(r.photo),
                groups::introduction.eq(r.introduction),
                groups::disabled.eq(r.disabled),
                groups::mute.eq(r.mute),
                groups::owner_id.eq(r.owner_id),
                groups::conversation_id.eq(r.conversation_id),
                groups::created_at.eq(r.created_at),
                groups::updated_at.eq(r.updated_at),
            )
        })
        .collect();
    insert_all!(conn, groups::table, rows)
}

/// Adds members: each row is `(group_id, user_id, created_at)`.
pub async fn insert_members(
    conn: &mut DbConn,
    rows: Vec<(i32, i32, NaiveDateTime)>,
) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|(group, user, at)| {
            (
                user_groups::group_id.eq(group),
                user_groups::user_id.eq(user),
                user_groups::created_at.eq(at),
            )
        })
        .collect();
    insert_all!(conn, user_groups::table, rows)
}

#[derive(Debug, Clone)]
pub struct FriendRow {
    pub id: i32,
    /// The smaller of the two user ids.
    pub user_id: i32,
    pub friend_id: i32,
    pub conversation_id: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub async fn insert_friends(conn: &mut DbConn, rows: Vec<FriendRow>) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            (
                friends::id.eq(r.id),
                friends::user_id.eq(r.user_id),
                friends::friend_id.eq(r.friend_id),
                friends::conversation_id.eq(r.conversation_id),
                friends::created_at.eq(r.created_at),
                friends::updated_at.eq(r.updated_at),
            )
        })
        .collect();
    insert_all!(conn, friends::table, rows)
}

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: i32,
    pub conversation_id: i32,
    pub seq: i64,
    pub from_id: i32,
    pub to_id: i32,
    /// JSON text.
    pub body: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub async fn insert_messages(conn: &mut DbConn, rows: Vec<MessageRow>) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            (
                messages::id.eq(r.id),
                messages::conversation_id.eq(r.conversation_id),
                messages::seq.eq(r.seq),
                messages::from_id.eq(r.from_id),
                messages::to_id.eq(r.to_id),
                messages::body.eq(r.body),
                messages::created_at.eq(r.created_at),
                messages::updated_at.eq(r.updated_at),
            )
        })
        .collect();
    insert_all!(conn, messages::table, rows)
}

#[derive(Debug, Clone)]
pub struct ApplyRow {
    pub id: i32,
    pub kind: &'static str,
    pub from_id: i32,
    pub to_id: i32,
    pub user_id: i32,
    pub has_handled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub async fn insert_applies(conn: &mut DbConn, rows: Vec<ApplyRow>) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| {
            (
                applies::id.eq(r.id),
                applies::kind.eq(r.kind),
                applies::from_id.eq(r.from_id),
                applies::to_id.eq(r.to_id),
                applies::user_id.eq(r.user_id),
                applies::has_handled.eq(r.has_handled),
                applies::created_at.eq(r.created_at),
                applies::updated_at.eq(r.updated_at),
            )
        })
        .collect();
    insert_all!(conn, applies::table, rows)
}

/// Numbers the messages of `conversation_ids` 1, 2, … in (`created_at`, `id`) order: for the
/// conversations whose messages did not arrive in that order. Two steps, since the numbers move
/// within one conversation and `(conversation_id, seq)` is unique at every row.
pub async fn renumber(conn: &mut DbConn, conversation_ids: Vec<i32>) -> Result<(), StoreError> {
    for chunk in conversation_ids.chunks(CHUNK) {
        let list = chunk
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let negate = format!("UPDATE messages SET seq = -seq WHERE conversation_id IN ({list})");
        let number = format!(
            "UPDATE messages SET seq = r.rn FROM (SELECT id, row_number() OVER \
             (PARTITION BY conversation_id ORDER BY created_at, id) AS rn FROM messages \
             WHERE conversation_id IN ({list})) AS r WHERE messages.id = r.id"
        );
        db_run!(conn: {
            conn.batch_execute(&negate).await?;
            conn.batch_execute(&number).await?;
        });
    }
    Ok(())
}

/// Sets every conversation's `last_seq` to its last message's `seq` (0 without messages).
pub async fn set_last_seqs(conn: &mut DbConn) -> Result<(), StoreError> {
    db_run!(conn: {
        conn.batch_execute(
            "UPDATE conversations SET last_seq = COALESCE((SELECT MAX(seq) FROM messages \
             WHERE messages.conversation_id = conversations.id), 0)",
        )
        .await?;
    });
    Ok(())
}

/// The tables whose ids come from a sequence, with the sequence's name on PostgreSQL.
const SERIALS: [(&str, &str); 11] = [
    ("users", "users_id_seq"),
    ("user_infos", "user_infos_id_seq"),
    ("roles", "roles_id_seq"),
    ("rights", "rights_id_seq"),
    ("conversations", "conversations_id_seq"),
    ("groups", "groups_id_seq"),
    ("friends", "friends_id_seq"),
    ("messages", "messages_id_seq"),
    ("applies", "applies_id_seq"),
    ("uploads", "uploads_id_seq"),
    ("github_identities", "github_identities_id_seq"),
];

/// Makes the next id of every table follow the largest one it holds. SQLite's AUTOINCREMENT
/// already counts explicit ids; PostgreSQL's sequences do not. On PostgreSQL this is not undone
/// by a rollback, so it is the last step before the commit.
pub async fn continue_sequences(conn: &mut DbConn) -> Result<(), StoreError> {
    if let DbConn::Postgres(conn) = conn {
        for (table, sequence) in SERIALS {
            // is_called = false when the table is empty: the next id is then 1.
            diesel::sql_query(format!(
                "SELECT setval('{sequence}', COALESCE((SELECT MAX(id) FROM \"{table}\"), 0) + 1, false)"
            ))
            .execute(&mut **conn)
            .await?;
        }
    }
    Ok(())
}

/// The largest id of our table `table` (0 when empty).
pub async fn max_id(conn: &mut DbConn, table: &'static str) -> Result<i32, StoreError> {
    let query = format!("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) AS n FROM \"{table}\"");
    let count: Count = db_run!(conn: { diesel::sql_query(query).get_result(conn).await? });
    Ok(i32::try_from(count.n).unwrap_or(i32::MAX))
}

/// Gives the profiles `info_ids` their user's name as nickname: profiles that had none.
pub async fn nickname_from_username(
    conn: &mut DbConn,
    info_ids: Vec<i32>,
) -> Result<(), StoreError> {
    for chunk in info_ids.chunks(CHUNK) {
        let list = chunk
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let query = format!(
            "UPDATE user_infos SET nickname = (SELECT username FROM users \
             WHERE users.id = user_infos.user_id) WHERE id IN ({list})"
        );
        db_run!(conn: { conn.batch_execute(&query).await?; });
    }
    Ok(())
}

/// `(id, username)` of up to `limit` users after `after` (by id) who have no profile.
pub async fn users_without_profile(
    conn: &mut DbConn,
    after: i32,
    limit: i64,
) -> Result<Vec<(i32, String)>, StoreError> {
    Ok(db_run!(conn: {
        users::table
            .left_join(user_infos::table)
            .filter(user_infos::id.is_null())
            .filter(users::id.gt(after))
            .select((users::id, users::username))
            .order(users::id)
            .limit(limit)
            .load(conn)
            .await?
    }))
}
