//! Users, their profiles (`user_infos`) and their GitHub identities.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{NewUser, NewUserInfo, User, UserInfo};
use super::schema::{user_infos, users};
use super::{DbConn, StoreError};
use crate::db_run;

pub async fn find_user(conn: &mut DbConn, id: i32) -> Result<Option<User>, StoreError> {
    db_run!(conn: {
        Ok(users::table.find(id).select(User::as_select()).first(conn).await.optional()?)
    })
}

pub async fn find_user_by_username(
    conn: &mut DbConn,
    username: &str,
) -> Result<Option<User>, StoreError> {
    db_run!(conn: {
        Ok(users::table
            .filter(users::username.eq(username))
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn count_users(conn: &mut DbConn) -> Result<i64, StoreError> {
    db_run!(conn: { Ok(users::table.count().get_result(conn).await?) })
}

pub async fn insert_user(conn: &mut DbConn, new: &NewUser<'_>) -> Result<User, StoreError> {
    db_run!(conn: {
        Ok(diesel::insert_into(users::table)
            .values(new)
            .returning(User::as_returning())
            .get_result(conn)
            .await?)
    })
}

pub async fn set_password(conn: &mut DbConn, user_id: i32, hash: &str) -> Result<(), StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        diesel::update(users::table.find(user_id))
            .set((users::password.eq(hash), users::updated_at.eq(now)))
            .execute(conn)
            .await?;
    });
    Ok(())
}

pub async fn find_user_info(
    conn: &mut DbConn,
    user_id: i32,
) -> Result<Option<UserInfo>, StoreError> {
    db_run!(conn: {
        Ok(user_infos::table
            .filter(user_infos::user_id.eq(user_id))
            .select(UserInfo::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn insert_user_info(
    conn: &mut DbConn,
    new: &NewUserInfo<'_>,
) -> Result<UserInfo, StoreError> {
    db_run!(conn: {
        Ok(diesel::insert_into(user_infos::table)
            .values(new)
            .returning(UserInfo::as_returning())
            .get_result(conn)
            .await?)
    })
}
