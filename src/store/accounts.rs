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

/// The user whose username key (`domain::names::username_key`) is `key`.
pub async fn find_user_by_key(conn: &mut DbConn, key: &str) -> Result<Option<User>, StoreError> {
    db_run!(conn: {
        Ok(users::table
            .filter(users::username_key.eq(key))
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Every user's id, username and key, in id order: what the key backfill at start needs.
pub async fn usernames_and_keys(
    conn: &mut DbConn,
) -> Result<Vec<(i32, String, Option<String>)>, StoreError> {
    db_run!(conn: {
        Ok(users::table
            .order(users::id)
            .select((users::id, users::username, users::username_key))
            .load(conn)
            .await?)
    })
}

pub async fn set_username_key(
    conn: &mut DbConn,
    user_id: i32,
    key: &str,
) -> Result<(), StoreError> {
    db_run!(conn: {
        diesel::update(users::table.find(user_id))
            .set(users::username_key.eq(key))
            .execute(conn)
            .await?;
    });
    Ok(())
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

/// A user's profile by its own id (the id the H5 client puts in `PUT /userinfo/:id`).
pub async fn find_user_info_by_id(
    conn: &mut DbConn,
    id: i32,
) -> Result<Option<UserInfo>, StoreError> {
    db_run!(conn: {
        Ok(user_infos::table
            .find(id)
            .select(UserInfo::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Rewrites the editable fields of a profile.
pub async fn update_user_info(
    conn: &mut DbConn,
    id: i32,
    nickname: &str,
    photo: &str,
    sign: Option<&str>,
) -> Result<(), StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        diesel::update(user_infos::table.find(id))
            .set((
                user_infos::nickname.eq(nickname),
                user_infos::photo.eq(photo),
                user_infos::sign.eq(sign),
                user_infos::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// Users with their profiles, in one query, in id order; ids without a user are left out.
pub async fn users_with_infos(
    conn: &mut DbConn,
    ids: &[i32],
) -> Result<Vec<(User, Option<UserInfo>)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    db_run!(conn: {
        Ok(users::table
            .left_join(user_infos::table)
            .filter(users::id.eq_any(ids))
            .order(users::id)
            .select((User::as_select(), Option::<UserInfo>::as_select()))
            .load(conn)
            .await?)
    })
}

/// Users whose username contains `value` (taken literally), with their profiles, at most `limit`.
pub async fn search_users(
    conn: &mut DbConn,
    value: &str,
    limit: i64,
) -> Result<Vec<(User, Option<UserInfo>)>, StoreError> {
    let pattern = super::contains_pattern(value);
    db_run!(conn: {
        Ok(users::table
            .left_join(user_infos::table)
            .filter(super::lower(users::username).like(&pattern).escape('\\'))
            .order(users::id)
            .limit(limit)
            .select((User::as_select(), Option::<UserInfo>::as_select()))
            .load(conn)
            .await?)
    })
}
