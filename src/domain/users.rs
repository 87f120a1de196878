//! User management in the admin back office: the users list, role changes, bans and mutes that
//! act at once, and the chat-user pages (create, edit, delete) of the admin guide. Like
//! `admin.rs`, every function checks the acting user's `admin` right itself.

use std::collections::HashMap;

use serde::Serialize;

use crate::app::App;
use crate::store::admin::UserFilter;
use crate::store::models::{Role, User, UserInfo};
use crate::store::{self, DbConn};

use super::accounts::{NewAccount, hash_password, insert_account, random_photo};
use super::admin::{Listing, PageRequest, access_changed};
use super::events::DomainEvent;
use super::rbac::{self, role};
use super::{Actor, DomainError, names};

/// A user as the admin users list shows it: the user, `userInfo` and `roles`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRow {
    #[serde(flatten)]
    pub user: User,
    pub user_info: Option<UserInfo>,
    pub roles: Vec<Role>,
}

const UNKNOWN_USER: &str = "用户不存在";
const UNKNOWN_ROLE: &str = "角色不存在";
const BAD_PARAMS: &str = "参数校验失败";
const NOT_YOURSELF: &str = "不能对自己执行此操作";

const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 6..=128;

/// The users list's filters as the query string carries them; empty means no filter.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub username: Option<String>,
    pub provider: Option<String>,
}

pub async fn list_users(
    app: &App,
    admin: &Actor,
    page: &PageRequest,
    query: UserQuery,
) -> Result<Listing<UserRow>, DomainError> {
    rbac::require_admin(admin)?;
    let (sort, window) = (page.sort("username")?, page.window()?);
    let non_empty = |text: Option<String>| text.filter(|text| !text.is_empty());
    let filter = UserFilter {
        username_contains: non_empty(query.username),
        provider: non_empty(query.provider),
    };
    let mut conn = app.db.get().await?;
    let (count, users) = store::admin::list_users(&mut conn, &filter, sort, window).await?;
    let rows = with_roles(&mut conn, users).await?;
    Ok(Listing { count, rows })
}

/// Attaches their roles to users, in one query for all of them.
async fn with_roles(
    conn: &mut DbConn,
    users: Vec<(User, Option<UserInfo>)>,
) -> Result<Vec<UserRow>, DomainError> {
    let ids: Vec<i32> = users.iter().map(|(user, _)| user.id).collect();
    let mut roles: HashMap<i32, Vec<Role>> = HashMap::new();
    for (user_id, role) in store::admin::roles_of_users(conn, &ids).await? {
        roles.entry(user_id).or_default().push(role);
    }
    Ok(users
        .into_iter()
        .map(|(user, user_info)| UserRow {
            roles: roles.remove(&user.id).unwrap_or_default(),
            user,
            user_info,
        })
        .collect())
}

/// Replaces a user's roles, in one transaction, then applies the change to their sessions and
/// sockets at once.
async fn replace_roles(app: &App, user_id: i32, role_ids: Vec<i32>) -> Result<(), DomainError> {
    let mut conn = app.db.get().await?;
    conn.transaction(move |tx| {
        Box::pin(async move {
            if store::accounts::find_user(tx, user_id).await?.is_none() {
                return Err(DomainError::rejected(UNKNOWN_USER));
            }
            let mut role_ids = role_ids;
            role_ids.sort_unstable();
            role_ids.dedup();
            if store::admin::find_roles(tx, &role_ids).await?.len() != role_ids.len() {
                return Err(DomainError::rejected(UNKNOWN_ROLE));
            }
            store::rbac::set_user_roles(tx, user_id, &role_ids).await?;
            store::admin::touch_user(tx, user_id).await?;
            Ok(())
        })
    })
    .await?;
    access_changed(app, &mut conn, &[user_id]).await
}

/// An admin banning, muting or re-roling themselves would lock the back office; refused.
fn not_yourself(admin: &Actor, user_id: i32) -> Result<(), DomainError> {
    if admin.user_id == user_id {
        return Err(DomainError::rejected(NOT_YOURSELF));
    }
    Ok(())
}

async fn builtin_role_id(app: &App, key: &'static str) -> Result<i32, DomainError> {
    let mut conn = app.db.get().await?;
    store::rbac::find_role_by_key(&mut conn, key)
        .await?
        .map(|role| role.id)
        .ok_or_else(|| DomainError::Internal(format!("built-in role {key} is missing")))
}

pub async fn set_user_roles(
    app: &App,
    admin: &Actor,
    user_id: i32,
    role_ids: Vec<i32>,
) -> Result<(), DomainError> {
    rbac::require_admin(admin)?;
    not_yourself(admin, user_id)?;
    replace_roles(app, user_id, role_ids).await
}

/// Bans a user (role `disabled` in place of their roles) or restores them (role `user`).
pub async fn set_user_disabled(
    app: &App,
    admin: &Actor,
    user_id: i32,
    disabled: bool,
) -> Result<(), DomainError> {
    rbac::require_admin(admin)?;
    not_yourself(admin, user_id)?;
    let key = if disabled { role::DISABLED } else { role::USER };
    let role_id = builtin_role_id(app, key).await?;
    replace_roles(app, user_id, vec![role_id]).await
}

/// Mutes a user (role `mute` in place of their roles) or restores them (role `user`).
pub async fn set_user_mute(
    app: &App,
    admin: &Actor,
    user_id: i32,
    mute: bool,
) -> Result<(), DomainError> {
    rbac::require_admin(admin)?;
    not_yourself(admin, user_id)?;
    let key = if mute { role::MUTE } else { role::USER };
    let role_id = builtin_role_id(app, key).await?;
    replace_roles(app, user_id, vec![role_id]).await
}

/// A new chat user as the admin writes it.
#[derive(Debug, Clone)]
pub struct NewChatUser {
    pub username: String,
    pub password: String,
    /// The avatar's URL (uploaded first through `/api/v1/upload`); a default one when absent.
    pub avatar: Option<String>,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub nickname: Option<String>,
    pub photo: Option<String>,
    pub sign: Option<String>,
    pub password: Option<String>,
}

/// The admin pages' one answer to bad input, whatever the rule of `names` that refused it.
fn bad_params(error: DomainError) -> DomainError {
    match error {
        DomainError::Invalid(_) => DomainError::invalid(BAD_PARAMS),
        other => other,
    }
}

fn check_password(password: &str) -> Result<(), DomainError> {
    if !PASSWORD_LEN.contains(&password.chars().count()) {
        return Err(DomainError::invalid(BAD_PARAMS));
    }
    Ok(())
}

/// Creates a local chat user with role `user`, placed in the first open group like a sign-up,
/// all in one transaction.
pub async fn create_user(
    app: &App,
    admin: &Actor,
    new: NewChatUser,
) -> Result<UserRow, DomainError> {
    rbac::require_admin(admin)?;
    let username = names::username(&new.username)?;
    check_password(&new.password)?;
    let avatar = new.avatar.filter(|avatar| !avatar.trim().is_empty());
    let mut conn = app.db.get().await?;
    if let Some(avatar) = &avatar {
        // The new user has no uploads yet: the avatar is one the admin uploaded.
        names::check_photo(&mut conn, avatar, None, admin.user_id)
            .await
            .map_err(bad_params)?;
    }
    let hash = hash_password(&new.password).await?;
    let photo = avatar.unwrap_or_else(random_photo);
    let nickname = names::default_nickname(&username);
    let user_id = conn
        .transaction(move |tx| {
            Box::pin(async move {
                let account = NewAccount {
                    provider: "local",
                    username: &username,
                    password_hash: Some(&hash),
                    nickname: &nickname,
                    photo: &photo,
                    role_key: role::USER,
                    join_first_group: true,
                };
                Ok::<_, DomainError>(insert_account(tx, &account).await?.id)
            })
        })
        .await?;
    user_row(&mut conn, user_id).await
}

/// One user with profile and roles.
async fn user_row(conn: &mut DbConn, user_id: i32) -> Result<UserRow, DomainError> {
    let user = store::accounts::find_user(conn, user_id)
        .await?
        .ok_or_else(|| DomainError::rejected(UNKNOWN_USER))?;
    let info = store::accounts::find_user_info(conn, user_id).await?;
    let mut rows = with_roles(conn, vec![(user, info)]).await?;
    rows.pop()
        .ok_or_else(|| DomainError::Internal("user vanished while read".into()))
}

/// Changes a user's profile and, when given, password. A new password ends their sessions: whoever
/// held the old one is logged out.
pub async fn update_user(
    app: &App,
    admin: &Actor,
    user_id: i32,
    changes: UserChanges,
) -> Result<(), DomainError> {
    rbac::require_admin(admin)?;
    let mut changes = changes;
    if let Some(nickname) = &changes.nickname {
        changes.nickname = Some(names::nickname(nickname).map_err(bad_params)?);
    }
    if let Some(sign) = &changes.sign {
        changes.sign = Some(names::sign(sign).map_err(bad_params)?);
    }
    if let Some(photo) = &changes.photo {
        let mut conn = app.db.get().await?;
        // Only a changed photo is checked, as on the user's own route: the admin pages send the
        // profile back whole, and a photo set before the rules must not block other changes.
        let current = store::accounts::find_user_info(&mut conn, user_id).await?;
        if current.is_none_or(|info| &info.photo != photo) {
            names::check_photo(&mut conn, photo, Some(user_id), admin.user_id)
                .await
                .map_err(bad_params)?;
        }
    }
    let hash = match &changes.password {
        Some(password) => {
            check_password(password)?;
            Some(hash_password(password).await?)
        }
        None => None,
    };
    let password_changed = hash.is_some();
    let mut conn = app.db.get().await?;
    conn.transaction(move |tx| {
        Box::pin(async move {
            if store::accounts::find_user(tx, user_id).await?.is_none() {
                return Err(DomainError::rejected(UNKNOWN_USER));
            }
            store::admin::update_user_info(
                tx,
                user_id,
                changes.nickname.as_deref(),
                changes.photo.as_deref(),
                changes.sign.as_deref(),
            )
            .await?;
            match &hash {
                Some(hash) => store::accounts::set_password(tx, user_id, hash).await?,
                None => store::admin::touch_user(tx, user_id).await?,
            }
            Ok::<_, DomainError>(())
        })
    })
    .await?;
    if password_changed {
        app.sessions.revoke_user(user_id).await?;
        let _ = app.events.send(DomainEvent::AccessChanged { user_id });
    }
    Ok(())
}

/// Deletes a user with everything that belongs to them (see `store::admin::delete_user`),
/// including the groups they own: a group cannot outlive its owner, and the admin guide deletes
/// a chat user outright. Members of those groups are told through `GroupChanged`.
pub async fn delete_user(app: &App, admin: &Actor, user_id: i32) -> Result<(), DomainError> {
    rbac::require_admin(admin)?;
    not_yourself(admin, user_id)?;
    let mut conn = app.db.get().await?;
    let groups = conn
        .transaction(move |tx| {
            Box::pin(async move {
                if store::accounts::find_user(tx, user_id).await?.is_none() {
                    return Err(DomainError::rejected(UNKNOWN_USER));
                }
                let groups = store::admin::groups_owned_by(tx, user_id).await?;
                store::admin::delete_user(tx, user_id).await?;
                Ok::<_, DomainError>(groups)
            })
        })
        .await?;
    app.sessions.revoke_user(user_id).await?;
    let _ = app.events.send(DomainEvent::AccessChanged { user_id });
    for group in groups {
        let _ = app
            .events
            .send(DomainEvent::GroupChanged { group_id: group.id });
    }
    Ok(())
}
