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
