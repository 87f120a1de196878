//! Who uploaded which file, so that a profile photo can only be one's own upload.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::uploads;
use super::{DbConn, StoreError};
use crate::db_run;

/// Records that `user_id` uploaded the files served at `urls`.
pub async fn record(conn: &mut DbConn, user_id: i32, urls: &[String]) -> Result<(), StoreError> {
    let now = crate::time::now();
    // One row at a time: a request holds at most nine files.
    for url in urls {
        db_run!(conn: {
            diesel::insert_into(uploads::table)
                .values((
                    uploads::user_id.eq(user_id),
                    uploads::url.eq(url),
                    uploads::created_at.eq(now),
                ))
                .execute(conn)
                .await?;
        });
    }
    Ok(())
}

/// The user who uploaded the file served at `url`.
pub async fn uploader(conn: &mut DbConn, url: &str) -> Result<Option<i32>, StoreError> {
    db_run!(conn: {
        Ok(uploads::table
            .filter(uploads::url.eq(url))
            .select(uploads::user_id)
            .first(conn)
            .await
            .optional()?)
    })
}
