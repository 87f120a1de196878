//! Roles, rights and who holds them (`user_roles`, `role_rights`).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{NewRight, NewRole, Right, Role};
use super::schema::{rights, role_rights, roles, user_roles};
use super::{DbConn, StoreError};
use crate::db_run;

/// The rights a user holds through any of their roles, each once, in id order.
pub async fn rights_of_user(conn: &mut DbConn, user_id: i32) -> Result<Vec<Right>, StoreError> {
    db_run!(conn: {
        Ok(rights::table
            .filter(
                rights::id.eq_any(
                    role_rights::table
                        .inner_join(user_roles::table.on(user_roles::role_id.eq(role_rights::role_id)))
                        .filter(user_roles::user_id.eq(user_id))
                        .select(role_rights::right_id),
                ),
            )
            .order(rights::id)
            .select(Right::as_select())
            .load(conn)
            .await?)
    })
}

/// The roles a user holds, in id order.
pub async fn roles_of_user(conn: &mut DbConn, user_id: i32) -> Result<Vec<Role>, StoreError> {
    db_run!(conn: {
        Ok(roles::table
            .inner_join(user_roles::table)
            .filter(user_roles::user_id.eq(user_id))
            .order(roles::id)
            .select(Role::as_select())
            .load(conn)
            .await?)
    })
}

pub async fn find_role_by_key(conn: &mut DbConn, key: &str) -> Result<Option<Role>, StoreError> {
    db_run!(conn: {
        Ok(roles::table
            .filter(roles::key_name.eq(key))
            .select(Role::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn find_right_by_key(conn: &mut DbConn, key: &str) -> Result<Option<Right>, StoreError> {
    db_run!(conn: {
        Ok(rights::table
            .filter(rights::key_name.eq(key))
            .select(Right::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn insert_role(conn: &mut DbConn, new: &NewRole<'_>) -> Result<Role, StoreError> {
    db_run!(conn: {
        Ok(diesel::insert_into(roles::table)
            .values(new)
            .returning(Role::as_returning())
            .get_result(conn)
            .await?)
    })
}

pub async fn insert_right(conn: &mut DbConn, new: &NewRight<'_>) -> Result<Right, StoreError> {
    db_run!(conn: {
        Ok(diesel::insert_into(rights::table)
            .values(new)
            .returning(Right::as_returning())
            .get_result(conn)
            .await?)
    })
}

pub async fn grant_right(conn: &mut DbConn, role_id: i32, right_id: i32) -> Result<(), StoreError> {
    db_run!(conn: {
        diesel::insert_into(role_rights::table)
            .values((role_rights::role_id.eq(role_id), role_rights::right_id.eq(right_id)))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    });
    Ok(())
}

pub async fn grant_role(conn: &mut DbConn, user_id: i32, role_id: i32) -> Result<(), StoreError> {
    db_run!(conn: {
        diesel::insert_into(user_roles::table)
            .values((user_roles::user_id.eq(user_id), user_roles::role_id.eq(role_id)))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// Whether any user holds the right `key`, through any role.
pub async fn anyone_holds_right(conn: &mut DbConn, key: &str) -> Result<bool, StoreError> {
    db_run!(conn: {
        let holders: i64 = user_roles::table
            .inner_join(role_rights::table.on(role_rights::role_id.eq(user_roles::role_id)))
            .inner_join(rights::table.on(rights::id.eq(role_rights::right_id)))
            .filter(rights::key_name.eq(key))
            .count()
            .get_result(conn)
            .await?;
        Ok(holders > 0)
    })
}

/// Replaces all of a user's roles with `role_ids`.
pub async fn set_user_roles(
    conn: &mut DbConn,
    user_id: i32,
    role_ids: &[i32],
) -> Result<(), StoreError> {
    db_run!(conn: {
        diesel::delete(user_roles::table.filter(user_roles::user_id.eq(user_id)))
            .execute(conn)
            .await?;
    });
    for role_id in role_ids {
        grant_role(conn, user_id, *role_id).await?;
    }
    Ok(())
}
