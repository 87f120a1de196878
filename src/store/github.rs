//! GitHub identities: which local user a GitHub account (by its numeric id) logs in as.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::github_identities;
use super::{DbConn, StoreError};
use crate::db_run;

/// The local user linked to the GitHub account `github_id`.
pub async fn find_linked_user(
    conn: &mut DbConn,
    github_id: i64,
) -> Result<Option<i32>, StoreError> {
    db_run!(conn: {
        Ok(github_identities::table
            .filter(github_identities::github_id.eq(github_id))
            .select(github_identities::user_id)
            .first(conn)
            .await
            .optional()?)
    })
}

/// Links the GitHub account `github_id` (currently named `login`) to a local user.
pub async fn link(
    conn: &mut DbConn,
    github_id: i64,
    user_id: i32,
    login: &str,
) -> Result<(), StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        diesel::insert_into(github_identities::table)
            .values((
                github_identities::github_id.eq(github_id),
                github_identities::user_id.eq(user_id),
                github_identities::login.eq(login),
                github_identities::created_at.eq(now),
            ))
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// The GitHub account (its numeric id) linked to local user `user_id`.
pub async fn github_id_of(conn: &mut DbConn, user_id: i32) -> Result<Option<i64>, StoreError> {
    db_run!(conn: {
        Ok(github_identities::table
            .filter(github_identities::user_id.eq(user_id))
            .select(github_identities::github_id)
            .first(conn)
            .await
            .optional()?)
    })
}
