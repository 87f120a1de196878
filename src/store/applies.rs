//! Friend and group applications.

use diesel_async::RunQueryDsl;

use super::models::{Apply, NewApply};
use super::schema::applies;
use super::{DbConn, StoreError};
use crate::db_run;
use diesel::prelude::*;

pub async fn insert_apply(conn: &mut DbConn, new: &NewApply<'_>) -> Result<Apply, StoreError> {
    db_run!(conn: {
        Ok(diesel::insert_into(applies::table)
            .values(new)
            .returning(Apply::as_returning())
            .get_result(conn)
            .await?)
    })
}

pub async fn find_apply(conn: &mut DbConn, id: i32) -> Result<Option<Apply>, StoreError> {
    db_run!(conn: {
        Ok(applies::table
            .find(id)
            .select(Apply::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// The unhandled apply of `from_id` to `to_id` of `kind`, if there is one (there is at most one).
pub async fn find_open_apply(
    conn: &mut DbConn,
    kind: &str,
    from_id: i32,
    to_id: i32,
) -> Result<Option<Apply>, StoreError> {
    db_run!(conn: {
        Ok(applies::table
            .filter(applies::kind.eq(kind))
            .filter(applies::from_id.eq(from_id))
            .filter(applies::to_id.eq(to_id))
            .filter(applies::has_handled.eq(false))
            .select(Apply::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Inserts the apply unless an unhandled one of the same kind, sender and target exists (the
/// `applies_open` index); `None` when it did, so a race of two requests stores one apply.
pub async fn insert_apply_if_absent(
    conn: &mut DbConn,
    new: &NewApply<'_>,
) -> Result<Option<Apply>, StoreError> {
    db_run!(conn: {
        Ok(diesel::insert_into(applies::table)
            .values(new)
            .on_conflict_do_nothing()
            .returning(Apply::as_returning())
            .get_result(conn)
            .await
            .optional()?)
    })
}

/// The unhandled applies `user_id` must answer, oldest first.
pub async fn open_applies_for(conn: &mut DbConn, user_id: i32) -> Result<Vec<Apply>, StoreError> {
    db_run!(conn: {
        Ok(applies::table
            .filter(applies::user_id.eq(user_id))
            .filter(applies::has_handled.eq(false))
            .order(applies::id)
            .select(Apply::as_select())
            .load(conn)
            .await?)
    })
}

/// Marks an unhandled apply handled; `false` when it was handled already (by a concurrent answer).
pub async fn mark_handled(conn: &mut DbConn, id: i32) -> Result<bool, StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        let changed = diesel::update(
            applies::table
                .filter(applies::id.eq(id))
                .filter(applies::has_handled.eq(false)),
        )
        .set((applies::has_handled.eq(true), applies::updated_at.eq(now)))
        .execute(conn)
        .await?;
        Ok(changed == 1)
    })
}
