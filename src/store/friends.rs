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
