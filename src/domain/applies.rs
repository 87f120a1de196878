//! Applies: asking to become someone's friend or to join a group, and the list of applies a user
//! must answer. Answering them is in `friendship` and `groups`, which share the checks here.

use std::collections::HashMap;

use serde::Serialize;

use crate::app::App;
use crate::store::models::{Apply, Group, NewApply};
use crate::store::{self, DbConn};

use super::conversations::GROUP_DISABLED;
use super::profiles::{self, NO_SUCH_USER, UserWithInfo};
use super::{Actor, DomainError};

pub const APPLY_KIND_USER: &str = "user";
pub const APPLY_KIND_GROUP: &str = "group";

pub const UNKNOWN_APPLY: &str = "参数错误";
pub const ALREADY_HANDLED: &str = "该申请已处理";
pub const ALREADY_FRIENDS: &str = "你们已经是好友关系了";
pub const ALREADY_MEMBER: &str = "你们已经是群中的一员了";
pub const NO_SUCH_GROUP: &str = "群组不存在";
pub const SELF_APPLY: &str = "不能添加自己为好友";
pub const BAD_KIND: &str = "申请类型只能是 user 或 group";

/// What an apply is addressed to: a user (+ `userInfo`) or a group.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ApplyTarget {
    User(UserWithInfo),
    Group(Group),
}

/// A row of `GET /applies`: `{type, id, toId, fromId, from, to}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListedApply {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: i32,
    pub to_id: i32,
    pub from_id: i32,
    pub from: Option<UserWithInfo>,
    pub to: Option<ApplyTarget>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppliesPage {
    pub count: usize,
    pub rows: Vec<ListedApply>,
}

/// The unhandled applies the user must answer, oldest first, with who sent them and what they
/// are addressed to; three queries whatever their number.
pub async fn list_applies(app: &App, actor: &Actor) -> Result<AppliesPage, DomainError> {
    let mut conn = app.db.get().await?;
    let applies = store::applies::open_applies_for(&mut conn, actor.user_id).await?;
    let mut user_ids: Vec<i32> = applies.iter().map(|a| a.from_id).collect();
    user_ids.extend(
        applies
            .iter()
            .filter(|a| a.kind == APPLY_KIND_USER)
            .map(|a| a.to_id),
    );
    let group_ids: Vec<i32> = applies
        .iter()
        .filter(|a| a.kind == APPLY_KIND_GROUP)
        .map(|a| a.to_id)
        .collect();
    let people = profiles::load_people(&mut conn, &user_ids).await?;
    let groups: HashMap<i32, Group> = store::groups::groups_by_ids(&mut conn, &group_ids)
        .await?
        .into_iter()
        .map(|g| (g.id, g))
        .collect();
    let rows: Vec<ListedApply> = applies
        .into_iter()
        .map(|apply| {
            let to = if apply.kind == APPLY_KIND_GROUP {
                groups.get(&apply.to_id).cloned().map(ApplyTarget::Group)
            } else {
                people.get(&apply.to_id).cloned().map(ApplyTarget::User)
            };
            ListedApply {
                from: people.get(&apply.from_id).cloned(),
                to,
                kind: apply.kind,
                id: apply.id,
                to_id: apply.to_id,
                from_id: apply.from_id,
            }
        })
        .collect();
    Ok(AppliesPage {
        count: rows.len(),
        rows,
    })
}

/// Asks to befriend user `to_id` (`kind` "user") or to join group `to_id` (`kind` "group"). An
/// unhandled apply of the same kind to the same target is returned as it is, not duplicated.
pub async fn create_apply(
    app: &App,
    actor: &Actor,
    kind: &str,
    to_id: i32,
) -> Result<Apply, DomainError> {
    let from_id = actor.user_id;
    let mut conn = app.db.get().await?;
    let (kind, addressee) = match kind {
        APPLY_KIND_USER => {
            if to_id == from_id {
                return Err(DomainError::rejected(SELF_APPLY));
            }
            if store::accounts::find_user(&mut conn, to_id)
                .await?
                .is_none()
            {
                return Err(DomainError::rejected(NO_SUCH_USER));
            }
            if store::friends::find_friendship(&mut conn, from_id, to_id)
                .await?
                .is_some()
            {
                return Err(DomainError::rejected(ALREADY_FRIENDS));
            }
            (APPLY_KIND_USER, to_id)
        }
        APPLY_KIND_GROUP => {
            let group = store::groups::find_group(&mut conn, to_id)
                .await?
                .ok_or_else(|| DomainError::rejected(NO_SUCH_GROUP))?;
            if group.disabled {
                return Err(DomainError::rejected(GROUP_DISABLED));
            }
            if group.owner_id == from_id
                || store::groups::is_member(&mut conn, group.id, from_id).await?
            {
                return Err(DomainError::rejected(ALREADY_MEMBER));
            }
            (APPLY_KIND_GROUP, group.owner_id)
        }
        _ => return Err(DomainError::invalid(BAD_KIND)),
    };
    if let Some(open) = store::applies::find_open_apply(&mut conn, kind, from_id, to_id).await? {
        return Ok(open);
    }
    let now = crate::time::now();
    let new = NewApply {
        kind,
        from_id,
        to_id,
        user_id: addressee,
        has_handled: false,
        created_at: now,
        updated_at: now,
    };
    if let Some(created) = store::applies::insert_apply_if_absent(&mut conn, &new).await? {
        return Ok(created);
    }
    // Another request stored the same apply between our look-up and our insert.
    store::applies::find_open_apply(&mut conn, kind, from_id, to_id)
        .await?
        .ok_or_else(|| DomainError::Internal("open apply vanished after a conflict".into()))
}

/// The apply `id` of `kind`, to be answered within the caller's transaction. Whether it is still
/// unhandled is checked by [`mark_handled`], after the caller checked who may answer it.
pub async fn find_apply(conn: &mut DbConn, id: i32, kind: &str) -> Result<Apply, DomainError> {
    store::applies::find_apply(conn, id)
        .await?
        .filter(|apply| apply.kind == kind)
        .ok_or_else(|| DomainError::rejected(UNKNOWN_APPLY))
}

/// Marks the apply answered; refused if it was answered already (before, or concurrently).
pub async fn mark_handled(conn: &mut DbConn, apply: &Apply) -> Result<(), DomainError> {
    if store::applies::mark_handled(conn, apply.id).await? {
        Ok(())
    } else {
        Err(DomainError::rejected(ALREADY_HANDLED))
    }
}

/// The unhandled friend apply `id` addressed to `user_id`, now marked handled.
pub async fn take_open_apply(
    conn: &mut DbConn,
    id: i32,
    kind: &str,
    user_id: i32,
) -> Result<Apply, DomainError> {
    let apply = find_apply(conn, id, kind).await?;
    if apply.user_id != user_id {
        return Err(DomainError::NotPermitted);
    }
    mark_handled(conn, &apply).await?;
    Ok(apply)
}
