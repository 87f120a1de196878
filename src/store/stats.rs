//! Row counts of the main tables: for operators (metrics) and for checking that seeding is idempotent.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::*;
use super::{DbConn, StoreError};
use crate::db_run;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCounts {
    pub users: i64,
    pub roles: i64,
    pub rights: i64,
    pub friends: i64,
    pub groups: i64,
    pub conversations: i64,
    pub messages: i64,
    pub applies: i64,
}

pub async fn table_counts(conn: &mut DbConn) -> Result<TableCounts, StoreError> {
    db_run!(conn: {
        Ok(TableCounts {
            users: users::table.count().get_result(conn).await?,
            roles: roles::table.count().get_result(conn).await?,
            rights: rights::table.count().get_result(conn).await?,
            friends: friends::table.count().get_result(conn).await?,
            groups: groups::table.count().get_result(conn).await?,
            conversations: conversations::table.count().get_result(conn).await?,
            messages: messages::table.count().get_result(conn).await?,
            applies: applies::table.count().get_result(conn).await?,
        })
    })
}
