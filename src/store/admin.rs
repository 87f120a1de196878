//! The admin back office's queries: paged and sorted lists of rights, roles, groups and users
//! (each list in two or three queries whatever the page size, never one per row), their edits,
//! and the removal of a user with everything that belongs to them.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{Group, Right, Role, User, UserInfo};
use super::schema::{
    applies, conversations, friends, github_identities, groups, messages, rights, role_rights,
    roles, user_groups, user_infos, user_roles, users,
};
use super::{DbConn, StoreError};
use crate::db_run;

/// Which column a list is sorted by; `Name` is `username` for users and `name` elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortField {
    #[default]
    Id,
    Name,
    CreatedAt,
    UpdatedAt,
}

/// The order of a list; rows that tie are ordered by id, so pages never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sort {
    pub field: SortField,
    pub descending: bool,
}

/// A window of a list: `limit` rows after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub offset: i64,
    pub limit: i64,
}

/// Orders a boxed query by `$sort`, then by id.
macro_rules! sorted {
    ($query:expr, $sort:expr, id: $id:expr, name: $name:expr, created: $created:expr, updated: $updated:expr) => {{
        let query = $query;
        let query = match ($sort.field, $sort.descending) {
            (SortField::Id, false) => query.order($id.asc()),
            (SortField::Id, true) => query.order($id.desc()),
            (SortField::Name, false) => query.order($name.asc()),
            (SortField::Name, true) => query.order($name.desc()),
            (SortField::CreatedAt, false) => query.order($created.asc()),
            (SortField::CreatedAt, true) => query.order($created.desc()),
            (SortField::UpdatedAt, false) => query.order($updated.asc()),
            (SortField::UpdatedAt, true) => query.order($updated.desc()),
        };
        query.then_order_by($id.asc())
    }};
}

// ---- rights ----

pub async fn list_rights(
    conn: &mut DbConn,
    sort: Sort,
    window: Window,
) -> Result<(i64, Vec<Right>), StoreError> {
    db_run!(conn: {
        let count: i64 = rights::table.count().get_result(conn).await?;
        let rows = sorted!(rights::table.select(Right::as_select()).into_boxed(), sort,
                id: rights::id, name: rights::name, created: rights::created_at, updated: rights::updated_at)
            .limit(window.limit)
            .offset(window.offset)
            .load(conn)
            .await?;
        Ok((count, rows))
    })
}

pub async fn find_right(conn: &mut DbConn, id: i32) -> Result<Option<Right>, StoreError> {
    db_run!(conn: {
        Ok(rights::table.find(id).select(Right::as_select()).first(conn).await.optional()?)
    })
}

/// How many of `ids` name existing rights.
pub async fn count_rights_among(conn: &mut DbConn, ids: &[i32]) -> Result<i64, StoreError> {
    db_run!(conn: {
        Ok(rights::table.filter(rights::id.eq_any(ids)).count().get_result(conn).await?)
    })
}

/// Changes a right's fields; the number of rows changed (0 for an unknown id).
pub async fn update_right(
    conn: &mut DbConn,
    id: i32,
    name: &str,
    key_name: &str,
    description: &str,
) -> Result<usize, StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        Ok(diesel::update(rights::table.find(id))
            .set((
                rights::name.eq(name),
                rights::key_name.eq(key_name),
                rights::description.eq(description),
                rights::updated_at.eq(now),
            ))
            .execute(conn)
            .await?)
    })
}

/// Removes a right and its grants to roles.
pub async fn delete_right(conn: &mut DbConn, id: i32) -> Result<usize, StoreError> {
    db_run!(conn: {
        diesel::delete(role_rights::table.filter(role_rights::right_id.eq(id)))
            .execute(conn)
            .await?;
        Ok(diesel::delete(rights::table.find(id)).execute(conn).await?)
    })
}

// ---- roles ----

pub async fn list_roles(
    conn: &mut DbConn,
    sort: Sort,
    window: Window,
) -> Result<(i64, Vec<Role>), StoreError> {
    db_run!(conn: {
        let count: i64 = roles::table.count().get_result(conn).await?;
        let rows = sorted!(roles::table.select(Role::as_select()).into_boxed(), sort,
                id: roles::id, name: roles::name, created: roles::created_at, updated: roles::updated_at)
            .limit(window.limit)
            .offset(window.offset)
            .load(conn)
            .await?;
        Ok((count, rows))
    })
}

/// The rights of each of `role_ids`, as `(role id, right)` pairs in right-id order: one query.
pub async fn rights_of_roles(
    conn: &mut DbConn,
    role_ids: &[i32],
) -> Result<Vec<(i32, Right)>, StoreError> {
    db_run!(conn: {
        Ok(role_rights::table
            .inner_join(rights::table)
            .filter(role_rights::role_id.eq_any(role_ids))
            .order((role_rights::role_id, rights::id))
            .select((role_rights::role_id, Right::as_select()))
            .load(conn)
            .await?)
    })
}

/// The roles that hold the right `right_id`.
pub async fn roles_with_right(conn: &mut DbConn, right_id: i32) -> Result<Vec<i32>, StoreError> {
    db_run!(conn: {
        Ok(role_rights::table
            .filter(role_rights::right_id.eq(right_id))
            .select(role_rights::role_id)
            .load(conn)
            .await?)
    })
}

pub async fn find_role(conn: &mut DbConn, id: i32) -> Result<Option<Role>, StoreError> {
    db_run!(conn: {
        Ok(roles::table.find(id).select(Role::as_select()).first(conn).await.optional()?)
    })
}

/// The roles among `ids` that exist.
pub async fn find_roles(conn: &mut DbConn, ids: &[i32]) -> Result<Vec<Role>, StoreError> {
    db_run!(conn: {
        Ok(roles::table
            .filter(roles::id.eq_any(ids))
            .order(roles::id)
            .select(Role::as_select())
            .load(conn)
            .await?)
    })
}

/// Whether a role other than `except_id` already has this name or key.
pub async fn role_name_or_key_taken(
    conn: &mut DbConn,
    name: &str,
    key_name: &str,
    except_id: Option<i32>,
) -> Result<bool, StoreError> {
    let except_id = except_id.unwrap_or(0);
    db_run!(conn: {
        Ok(diesel::select(diesel::dsl::exists(
            roles::table
                .filter(roles::name.eq(name).or(roles::key_name.eq(key_name)))
                .filter(roles::id.ne(except_id)),
        ))
        .get_result(conn)
        .await?)
    })
}

pub async fn update_role(
    conn: &mut DbConn,
    id: i32,
    name: &str,
    key_name: &str,
    description: &str,
) -> Result<usize, StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        Ok(diesel::update(roles::table.find(id))
            .set((
                roles::name.eq(name),
                roles::key_name.eq(key_name),
                roles::description.eq(description),
                roles::updated_at.eq(now),
            ))
            .execute(conn)
            .await?)
    })
}

/// Replaces the rights of a role with `right_ids` (distinct ids, checked to exist).
pub async fn set_role_rights(
    conn: &mut DbConn,
    role_id: i32,
    right_ids: &[i32],
) -> Result<(), StoreError> {
    db_run!(conn: {
        diesel::delete(role_rights::table.filter(role_rights::role_id.eq(role_id)))
            .execute(conn)
            .await?;
    });
    // A role holds a handful of rights: one insert each is cheaper than a portable batch.
    for right_id in right_ids {
        super::rbac::grant_right(conn, role_id, *right_id).await?;
    }
    Ok(())
}

/// The users holding any of `role_ids`, each once.
pub async fn holders_of_roles(conn: &mut DbConn, role_ids: &[i32]) -> Result<Vec<i32>, StoreError> {
    db_run!(conn: {
        Ok(user_roles::table
            .filter(user_roles::role_id.eq_any(role_ids))
            .select(user_roles::user_id)
            .distinct()
            .order(user_roles::user_id)
            .load(conn)
            .await?)
    })
}

/// Those of `user_ids` who hold the right `key` through any role: one query.
pub async fn holding_right(
    conn: &mut DbConn,
    user_ids: &[i32],
    key: &str,
) -> Result<Vec<i32>, StoreError> {
    db_run!(conn: {
        Ok(user_roles::table
            .inner_join(role_rights::table.on(role_rights::role_id.eq(user_roles::role_id)))
            .inner_join(rights::table.on(rights::id.eq(role_rights::right_id)))
            .filter(user_roles::user_id.eq_any(user_ids))
            .filter(rights::key_name.eq(key))
            .select(user_roles::user_id)
            .distinct()
            .load(conn)
            .await?)
    })
}

/// Removes roles with their grants and their assignments to users.
pub async fn delete_roles(conn: &mut DbConn, ids: &[i32]) -> Result<usize, StoreError> {
    db_run!(conn: {
        diesel::delete(role_rights::table.filter(role_rights::role_id.eq_any(ids)))
            .execute(conn)
            .await?;
        diesel::delete(user_roles::table.filter(user_roles::role_id.eq_any(ids)))
            .execute(conn)
            .await?;
        Ok(diesel::delete(roles::table.filter(roles::id.eq_any(ids))).execute(conn).await?)
    })
}

// ---- groups ----

pub async fn list_groups(
    conn: &mut DbConn,
    sort: Sort,
    window: Window,
) -> Result<(i64, Vec<Group>), StoreError> {
    db_run!(conn: {
        let count: i64 = groups::table.count().get_result(conn).await?;
        let rows = sorted!(groups::table.select(Group::as_select()).into_boxed(), sort,
                id: groups::id, name: groups::name, created: groups::created_at, updated: groups::updated_at)
            .limit(window.limit)
            .offset(window.offset)
            .load(conn)
            .await?;
        Ok((count, rows))
    })
}

/// A group's switch that an admin turns on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupFlag {
    /// Disbanded: hidden, and its chat stopped.
    Disabled,
    /// No new message accepted.
    Mute,
}

/// Sets one of a group's flags; the number of rows changed (0 for an unknown id).
pub async fn set_group_flag(
    conn: &mut DbConn,
    id: i32,
    flag: GroupFlag,
    on: bool,
) -> Result<usize, StoreError> {
    let now = crate::time::now();
    let group = groups::table.find(id);
    db_run!(conn: {
        Ok(match flag {
            GroupFlag::Disabled => diesel::update(group)
                .set((groups::disabled.eq(on), groups::updated_at.eq(now)))
                .execute(conn)
                .await?,
            GroupFlag::Mute => diesel::update(group)
                .set((groups::mute.eq(on), groups::updated_at.eq(now)))
                .execute(conn)
                .await?,
        })
    })
}

/// The groups a user owns.
pub async fn groups_owned_by(conn: &mut DbConn, user_id: i32) -> Result<Vec<Group>, StoreError> {
    db_run!(conn: {
        Ok(groups::table
            .filter(groups::owner_id.eq(user_id))
            .order(groups::id)
            .select(Group::as_select())
            .load(conn)
            .await?)
    })
}

// ---- users ----

/// Which users a list shows: `username` containing a text in any case (taken literally, `%`
/// and `_` included), and an exact `provider`.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub username_contains: Option<String>,
    pub provider: Option<String>,
}

diesel::define_sql_function! {
    /// SQL `lower()`, the same on SQLite and PostgreSQL, so that both backends match a filter
    /// regardless of case (SQLite's LIKE ignores ASCII case, PostgreSQL's does not).
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// `text` as a LIKE pattern matching it anywhere, with `\`, `%` and `_` escaped by `\`.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A page of users with their profiles, and how many users match in all.
pub async fn list_users(
    conn: &mut DbConn,
    filter: &UserFilter,
    sort: Sort,
    window: Window,
) -> Result<(i64, Vec<(User, Option<UserInfo>)>), StoreError> {
    let pattern = filter
        .username_contains
        .as_deref()
        .map(|text| contains_pattern(&text.to_lowercase()));
    let provider = filter.provider.clone();
    db_run!(conn: {
        let mut counted = users::table.into_boxed();
        let mut paged = users::table
            .left_join(user_infos::table)
            .select((User::as_select(), Option::<UserInfo>::as_select()))
            .into_boxed();
        if let Some(pattern) = &pattern {
            counted = counted.filter(lower(users::username).like(pattern.clone()).escape('\\'));
            paged = paged.filter(lower(users::username).like(pattern.clone()).escape('\\'));
        }
        if let Some(provider) = &provider {
            counted = counted.filter(users::provider.eq(provider.clone()));
            paged = paged.filter(users::provider.eq(provider.clone()));
        }
        let count: i64 = counted.count().get_result(conn).await?;
        let rows = sorted!(paged, sort,
                id: users::id, name: users::username, created: users::created_at, updated: users::updated_at)
            .limit(window.limit)
            .offset(window.offset)
            .load(conn)
            .await?;
        Ok((count, rows))
    })
}

/// The roles of each of `user_ids`, as `(user id, role)` pairs in role-id order: one query.
pub async fn roles_of_users(
    conn: &mut DbConn,
    user_ids: &[i32],
) -> Result<Vec<(i32, Role)>, StoreError> {
    db_run!(conn: {
        Ok(user_roles::table
            .inner_join(roles::table)
            .filter(user_roles::user_id.eq_any(user_ids))
            .order((user_roles::user_id, roles::id))
            .select((user_roles::user_id, Role::as_select()))
            .load(conn)
            .await?)
    })
}

/// Changes the given fields of a user's profile; `None` leaves a field as it is.
pub async fn update_user_info(
    conn: &mut DbConn,
    user_id: i32,
    nickname: Option<&str>,
    photo: Option<&str>,
    sign: Option<&str>,
) -> Result<(), StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        diesel::update(user_infos::table.filter(user_infos::user_id.eq(user_id)))
            .set((
                nickname.map(|nickname| user_infos::nickname.eq(nickname)),
                photo.map(|photo| user_infos::photo.eq(photo)),
                sign.map(|sign| user_infos::sign.eq(sign)),
                user_infos::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// Marks a user as changed (`updatedAt`), after a change of their password or roles.
pub async fn touch_user(conn: &mut DbConn, user_id: i32) -> Result<(), StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        diesel::update(users::table.find(user_id))
            .set(users::updated_at.eq(now))
            .execute(conn)
            .await?;
    });
    Ok(())
}

/// Removes a user and what belongs to them: the groups they own (with their members, applies,
/// conversations and messages), their friendships with those conversations and every message in
/// them, their messages elsewhere, memberships, applies from or to them, roles, profile and
/// GitHub identity. Run it in a transaction.
pub async fn delete_user(conn: &mut DbConn, user_id: i32) -> Result<usize, StoreError> {
    db_run!(conn: {
        let owned: Vec<(i32, i32)> = groups::table
            .filter(groups::owner_id.eq(user_id))
            .select((groups::id, groups::conversation_id))
            .load(conn)
            .await?;
        let owned_groups: Vec<i32> = owned.iter().map(|(id, _)| *id).collect();
        let mut chats: Vec<i32> = friends::table
            .filter(friends::user_id.eq(user_id).or(friends::friend_id.eq(user_id)))
            .select(friends::conversation_id)
            .load(conn)
            .await?;
        chats.extend(owned.iter().map(|(_, conversation)| *conversation));
        diesel::delete(user_groups::table.filter(user_groups::group_id.eq_any(&owned_groups)))
            .execute(conn)
            .await?;
        diesel::delete(applies::table.filter(
            applies::kind.eq("group").and(applies::to_id.eq_any(&owned_groups)),
        ))
        .execute(conn)
        .await?;
        diesel::delete(groups::table.filter(groups::id.eq_any(&owned_groups)))
            .execute(conn)
            .await?;
        diesel::delete(messages::table.filter(
            messages::conversation_id.eq_any(&chats).or(messages::from_id.eq(user_id)),
        ))
        .execute(conn)
        .await?;
        diesel::delete(friends::table.filter(friends::user_id.eq(user_id).or(friends::friend_id.eq(user_id))))
            .execute(conn)
            .await?;
        diesel::delete(conversations::table.filter(conversations::id.eq_any(&chats)))
            .execute(conn)
            .await?;
        diesel::delete(user_groups::table.filter(user_groups::user_id.eq(user_id)))
            .execute(conn)
            .await?;
        diesel::delete(applies::table.filter(
            applies::from_id
                .eq(user_id)
                .or(applies::user_id.eq(user_id))
                .or(applies::kind.eq("user").and(applies::to_id.eq(user_id))),
        ))
        .execute(conn)
        .await?;
        diesel::delete(user_roles::table.filter(user_roles::user_id.eq(user_id)))
            .execute(conn)
            .await?;
        diesel::delete(user_infos::table.filter(user_infos::user_id.eq(user_id)))
            .execute(conn)
            .await?;
        diesel::delete(github_identities::table.filter(github_identities::user_id.eq(user_id)))
            .execute(conn)
            .await?;
        Ok(diesel::delete(users::table.find(user_id)).execute(conn).await?)
    })
}
