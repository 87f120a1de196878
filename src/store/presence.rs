//! Who hears of a user's presence: the other side of each of their friendships.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::friends;
use super::{DbConn, StoreError};
use crate::db_run;

/// The ids of a user's friends (pairs are stored once, smaller id first, so both sides are read).
pub async fn friend_ids(conn: &mut DbConn, user_id: i32) -> Result<Vec<i32>, StoreError> {
    db_run!(conn: {
        let low: Vec<i32> = friends::table
            .filter(friends::user_id.eq(user_id))
            .select(friends::friend_id)
            .load(conn)
            .await?;
        let high: Vec<i32> = friends::table
            .filter(friends::friend_id.eq(user_id))
            .select(friends::user_id)
            .load(conn)
            .await?;
        Ok(low.into_iter().chain(high).collect())
    })
}
