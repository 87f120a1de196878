//! Friendships, stored once per pair with the smaller user id first.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{Friend, NewFriend};
use super::schema::friends;
use super::{DbConn, StoreError};
use crate::db_run;

pub async fn insert_friend(conn: &mut DbConn, new: &NewFriend) -> Result<Friend, StoreError> {
    db_run!(conn: {
        Ok(diesel::insert_into(friends::table)
            .values(new)
            .returning(Friend::as_returning())
            .get_result(conn)
            .await?)
    })
}

/// The friendship of two users, whichever order they are given in.
pub async fn find_friendship(
    conn: &mut DbConn,
    a: i32,
    b: i32,
) -> Result<Option<Friend>, StoreError> {
    let (low, high) = (a.min(b), a.max(b));
    db_run!(conn: {
        Ok(friends::table
            .filter(friends::user_id.eq(low))
            .filter(friends::friend_id.eq(high))
            .select(Friend::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Every friendship of `user_id` with its conversation, oldest friendship first.
pub async fn friendships_of_user(
    conn: &mut DbConn,
    user_id: i32,
) -> Result<Vec<(Friend, super::models::Conversation)>, StoreError> {
    use super::models::Conversation;
    use super::schema::conversations;
    db_run!(conn: {
        Ok(friends::table
            .inner_join(conversations::table)
            .filter(friends::user_id.eq(user_id).or(friends::friend_id.eq(user_id)))
            .order(friends::id)
            .select((Friend::as_select(), Conversation::as_select()))
            .load(conn)
            .await?)
    })
}
