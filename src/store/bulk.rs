//! Batched inserts for large synthetic data sets (the benchmark seed), so tens of thousands of
//! users are written in seconds rather than minutes.
//!
//! PostgreSQL gets multi-row `INSERT`s of a thousand rows. diesel-async cannot send a multi-row
//! insert to SQLite, so there the rows go through one blocking task on the connection itself,
//! one cached prepared statement per row: no task switch per row, and in one transaction that
//! is as fast as SQLite writes. Callers wrap these functions in one transaction.

use chrono::NaiveDateTime;
use diesel::SqliteConnection;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::{conversations, friends, groups, user_groups, user_infos, user_roles, users};
use super::{DbConn, StoreError};

/// Rows per PostgreSQL statement: with at most 8 columns, 8,000 bind parameters, far below its
/// limit of 65535, and large enough that round trips stop mattering.
pub(super) const CHUNK: usize = 1000;

/// Inserts `rows` into `$table`, each backend its fastest way (see the module's comment); with
/// `returning`, answers the returned columns of every row.
macro_rules! insert_all {
    ($conn:expr, $table:path, $rows:ident) => {
        match $conn {
            $crate::store::DbConn::Sqlite(conn) => {
                $crate::store::bulk::on_sqlite(conn, move |conn| {
                    for row in $rows {
                        diesel::RunQueryDsl::execute(
                            diesel::insert_into($table).values(row),
                            conn,
                        )?;
                    }
                    Ok(())
                })
                .await
            }
            $crate::store::DbConn::Postgres(conn) => {
                for chunk in $rows.chunks($crate::store::bulk::CHUNK) {
                    diesel_async::RunQueryDsl::execute(
                        diesel::insert_into($table).values(chunk),
                        &mut **conn,
                    )
                    .await?;
                }
                Ok(())
            }
        }
    };
    ($conn:expr, $table:path, $rows:ident, returning $returned:expr) => {
        match $conn {
            $crate::store::DbConn::Sqlite(conn) => {
                $crate::store::bulk::on_sqlite(conn, move |conn| {
                    $rows
                        .into_iter()
                        .map(|row| {
                            diesel::RunQueryDsl::get_result(
                                diesel::insert_into($table).values(row).returning($returned),
                                conn,
                            )
                        })
                        .collect()
                })
                .await
            }
            $crate::store::DbConn::Postgres(conn) => {
                let mut returned = Vec::with_capacity($rows.len());
                for chunk in $rows.chunks($crate::store::bulk::CHUNK) {
                    returned.extend(
                        diesel_async::RunQueryDsl::get_results(
                            diesel::insert_into($table)
                                .values(chunk)
                                .returning($returned),
                            &mut **conn,
                        )
                        .await?,
                    );
                }
                Ok(returned)
            }
        }
    };
}
// The importer (`import.rs`) writes its tables the same way.
pub(super) use insert_all;

/// Runs `task` on the SQLite connection's own thread.
pub(super) async fn on_sqlite<R: Send + 'static>(
    conn: &mut super::SqliteConn,
    task: impl FnOnce(&mut SqliteConnection) -> QueryResult<R> + Send + 'static,
) -> Result<R, StoreError> {
    Ok(conn.spawn_blocking(task).await?)
}

/// Inserts local users sharing one password hash, each `(username, username key)`; returns
/// `(id, username)` of each, in no particular order.
pub async fn insert_users(
    conn: &mut DbConn,
    usernames: Vec<(String, String)>,
    password_hash: &str,
    now: NaiveDateTime,
) -> Result<Vec<(i32, String)>, StoreError> {
    let rows: Vec<_> = usernames
        .into_iter()
        .map(|(username, key)| {
            (
                users::provider.eq("local"),
                users::username.eq(username),
                users::username_key.eq(Some(key)),
                users::password.eq(Some(password_hash.to_owned())),
                users::created_at.eq(now),
                users::updated_at.eq(now),
            )
        })
        .collect();
    insert_all!(
        conn,
        users::table,
        rows,
        returning(users::id, users::username)
    )
}

/// Inserts profiles: each row is `(user_id, nickname, photo)`, without a sign.
pub async fn insert_user_infos(
    conn: &mut DbConn,
    rows: Vec<(i32, String, String)>,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|(user_id, nickname, photo)| {
            (
                user_infos::user_id.eq(user_id),
                user_infos::nickname.eq(nickname),
                user_infos::photo.eq(photo),
                user_infos::created_at.eq(now),
                user_infos::updated_at.eq(now),
            )
        })
        .collect();
    insert_all!(conn, user_infos::table, rows)
}

/// Gives every user of `user_ids` the role `role_id`.
pub async fn grant_role(
    conn: &mut DbConn,
    user_ids: Vec<i32>,
    role_id: i32,
) -> Result<(), StoreError> {
    let rows: Vec<_> = user_ids
        .into_iter()
        .map(|user_id| {
            (
                user_roles::user_id.eq(user_id),
                user_roles::role_id.eq(role_id),
            )
        })
        .collect();
    insert_all!(conn, user_roles::table, rows)
}

/// Opens `count` active conversations of `kind` and returns their ids, in no particular order
/// (they are alike, so any id may go to any owner).
pub async fn insert_conversations(
    conn: &mut DbConn,
    kind: &str,
    count: usize,
    now: NaiveDateTime,
) -> Result<Vec<i32>, StoreError> {
    let row = (
        conversations::kind.eq(kind.to_owned()),
        conversations::active_time.eq(now),
        conversations::active.eq(true),
        conversations::created_at.eq(now),
        conversations::updated_at.eq(now),
    );
    match conn {
        DbConn::Sqlite(conn) => {
            on_sqlite(conn, move |conn| {
                (0..count)
                    .map(|_| {
                        diesel::RunQueryDsl::get_result(
                            diesel::insert_into(conversations::table)
                                .values(row.clone())
                                .returning(conversations::id),
                            conn,
                        )
                    })
                    .collect()
            })
            .await
        }
        DbConn::Postgres(conn) => {
            let mut ids = Vec::with_capacity(count);
            let mut left = count;
            while left > 0 {
                let n = left.min(CHUNK);
                let rows = vec![row.clone(); n];
                let inserted: Vec<i32> = diesel::insert_into(conversations::table)
                    .values(&rows)
                    .returning(conversations::id)
                    .get_results(&mut **conn)
                    .await?;
                ids.extend(inserted);
                left -= n;
            }
            Ok(ids)
        }
    }
}

/// What a benchmark group is made of.
#[derive(Debug, Clone)]
pub struct GroupRow {
    pub name: String,
    pub owner_id: i32,
    pub conversation_id: i32,
}

/// Inserts groups with one photo and introduction; returns `(id, name)` of each, in no
/// particular order.
pub async fn insert_groups(
    conn: &mut DbConn,
    rows: Vec<GroupRow>,
    photo: &str,
    introduction: Option<&str>,
    now: NaiveDateTime,
) -> Result<Vec<(i32, String)>, StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|row| {
            (
                groups::name.eq(row.name),
                groups::photo.eq(photo.to_owned()),
                groups::introduction.eq(introduction.map(str::to_owned)),
                groups::owner_id.eq(row.owner_id),
                groups::conversation_id.eq(row.conversation_id),
                groups::created_at.eq(now),
                groups::updated_at.eq(now),
            )
        })
        .collect();
    insert_all!(
        conn,
        groups::table,
        rows,
        returning(groups::id, groups::name)
    )
}

/// Adds members to groups: each pair is `(group_id, user_id)`.
pub async fn add_members(
    conn: &mut DbConn,
    members: Vec<(i32, i32)>,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    let rows: Vec<_> = members
        .into_iter()
        .map(|(group_id, user_id)| {
            (
                user_groups::group_id.eq(group_id),
                user_groups::user_id.eq(user_id),
                user_groups::created_at.eq(now),
            )
        })
        .collect();
    insert_all!(conn, user_groups::table, rows)
}

/// Inserts friendships: each row is `(user_id, friend_id, conversation_id)` with
/// `user_id < friend_id`.
pub async fn insert_friends(
    conn: &mut DbConn,
    rows: Vec<(i32, i32, i32)>,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    let rows: Vec<_> = rows
        .into_iter()
        .map(|(user_id, friend_id, conversation_id)| {
            (
                friends::user_id.eq(user_id),
                friends::friend_id.eq(friend_id),
                friends::conversation_id.eq(conversation_id),
                friends::created_at.eq(now),
                friends::updated_at.eq(now),
            )
        })
        .collect();
    insert_all!(conn, friends::table, rows)
}
