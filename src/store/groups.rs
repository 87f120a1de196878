//! Groups and their members (`user_groups`).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{Group, NewGroup};
use super::schema::{groups, user_groups};
use super::{DbConn, StoreError};
use crate::db_run;

pub async fn insert_group(conn: &mut DbConn, new: &NewGroup<'_>) -> Result<Group, StoreError> {
    db_run!(conn: {
        Ok(diesel::insert_into(groups::table)
            .values(new)
            .returning(Group::as_returning())
            .get_result(conn)
            .await?)
    })
}

/// Adds `user_id` to the group; a member already in it stays as they are.
pub async fn add_member(conn: &mut DbConn, group_id: i32, user_id: i32) -> Result<(), StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        diesel::insert_into(user_groups::table)
            .values((
                user_groups::group_id.eq(group_id),
                user_groups::user_id.eq(user_id),
                user_groups::created_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// The oldest group that is not disabled: where a new user is placed at sign-up.
pub async fn first_open_group(conn: &mut DbConn) -> Result<Option<Group>, StoreError> {
    db_run!(conn: {
        Ok(groups::table
            .filter(groups::disabled.eq(false))
            .order(groups::id)
            .select(Group::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn find_group_by_name(
    conn: &mut DbConn,
    name: &str,
) -> Result<Option<Group>, StoreError> {
    db_run!(conn: {
        Ok(groups::table
            .filter(groups::name.eq(name))
            .select(Group::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn is_member(conn: &mut DbConn, group_id: i32, user_id: i32) -> Result<bool, StoreError> {
    db_run!(conn: {
        Ok(diesel::select(diesel::dsl::exists(
            user_groups::table
                .filter(user_groups::group_id.eq(group_id))
                .filter(user_groups::user_id.eq(user_id)),
        ))
        .get_result(conn)
        .await?)
    })
}

pub async fn find_group(conn: &mut DbConn, id: i32) -> Result<Option<Group>, StoreError> {
    db_run!(conn: {
        Ok(groups::table
            .find(id)
            .select(Group::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// The groups `user_id` is a member of that are not disabled, oldest first.
pub async fn open_groups_of_user(
    conn: &mut DbConn,
    user_id: i32,
) -> Result<Vec<Group>, StoreError> {
    db_run!(conn: {
        Ok(groups::table
            .inner_join(user_groups::table)
            .filter(user_groups::user_id.eq(user_id))
            .filter(groups::disabled.eq(false))
            .order(groups::id)
            .select(Group::as_select())
            .load(conn)
            .await?)
    })
}

/// Groups by id, in id order; ids without a group are left out.
pub async fn groups_by_ids(conn: &mut DbConn, ids: &[i32]) -> Result<Vec<Group>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    db_run!(conn: {
        Ok(groups::table
            .filter(groups::id.eq_any(ids))
            .order(groups::id)
            .select(Group::as_select())
            .load(conn)
            .await?)
    })
}

/// Groups that are not disabled whose name contains `value` (taken literally), at most `limit`.
pub async fn search_open_groups(
    conn: &mut DbConn,
    value: &str,
    limit: i64,
) -> Result<Vec<Group>, StoreError> {
    let pattern = super::contains_pattern(value);
    db_run!(conn: {
        Ok(groups::table
            .filter(groups::disabled.eq(false))
            .filter(super::lower(groups::name).like(&pattern).escape('\\'))
            .order(groups::id)
            .limit(limit)
            .select(Group::as_select())
            .load(conn)
            .await?)
    })
}
