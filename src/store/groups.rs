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
