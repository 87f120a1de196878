//! The admin back office (docs/protocol.md §4.4–§4.5): list paging and sorting as the Ant Design
//! Pro front end sends them, and the management of rights, roles and groups. Every function takes
//! the acting [`Actor`] and checks the `admin` right itself, so no transport can skip it.

use std::collections::HashMap;

use serde::Serialize;

use crate::app::App;
pub use crate::store::admin::GroupFlag;
use crate::store::admin::{Sort, SortField, Window};
use crate::store::models::{Group, NewRight, NewRole, Right, Role};
use crate::store::{self, DbConn, StoreError};

use super::events::DomainEvent;
use super::rbac::{self, RIGHTS, ROLES};
use super::{Actor, DomainError};

/// A page of a list: `{count, rows}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Listing<T> {
    pub count: i64,
    pub rows: Vec<T>,
}

const DEFAULT_PAGE_SIZE: i64 = 10;
/// The largest page served: the front end asks for at most 100; more would only load the database.
const MAX_PAGE_SIZE: i64 = 100;
/// Far beyond any real list, small enough that `offset` cannot overflow.
const MAX_PAGE_NUMBER: i64 = 1_000_000;

/// Paging as the query string carries it (`pageSize`, `pageNumber`, 1-based).
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub page_size: Option<String>,
    pub page_number: Option<String>,
    pub sorter: Option<String>,
}

/// Parses one paging number: absent or empty means `default`; out of range is clamped.
fn page_number(text: Option<&str>, default: i64, max: i64, what: &str) -> Result<i64, DomainError> {
    match text.map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => {
            let value: i64 = text
                .parse()
                .map_err(|_| DomainError::invalid(format!("{what} 必须是整数")))?;
            Ok(value.clamp(1, max))
        }
    }
}

impl PageRequest {
    /// The window of rows: defaults 10 and 1, clamped, a clear refusal for what is not a number.
    pub fn window(&self) -> Result<Window, DomainError> {
        let size = page_number(
            self.page_size.as_deref(),
            DEFAULT_PAGE_SIZE,
            MAX_PAGE_SIZE,
            "pageSize",
        )?;
        let number = page_number(
            self.page_number.as_deref(),
            1,
            MAX_PAGE_NUMBER,
            "pageNumber",
        )?;
        Ok(Window {
            offset: (number - 1) * size,
            limit: size,
        })
    }

    /// The order `sorter` asks for, e.g. `{"createdAt":"descend"}`. Absent, empty, `{}`, unknown
    /// keys and unknown directions mean the default order (by id); `name_key` is the key that
    /// sorts by name (`username` for users). Text that is not a JSON object is refused.
    pub fn sort(&self, name_key: &str) -> Result<Sort, DomainError> {
        let text = match self.sorter.as_deref().map(str::trim) {
            None | Some("") => return Ok(Sort::default()),
            Some(text) => text,
        };
        let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|_| {
                DomainError::invalid("sorter 必须是 JSON 对象，如 {\"createdAt\":\"descend\"}")
            })?;
        for (key, direction) in &fields {
            let field = match key.as_str() {
                "id" => SortField::Id,
                "createdAt" => SortField::CreatedAt,
                "updatedAt" => SortField::UpdatedAt,
                key if key == name_key => SortField::Name,
                _ => continue,
            };
            let descending = match direction.as_str() {
                Some("descend" | "desc") => true,
                Some("ascend" | "asc") => false,
                _ => continue,
            };
            return Ok(Sort { field, descending });
        }
        Ok(Sort::default())
    }
}

// ---- rights ----

/// What an admin writes to create or change a right.
#[derive(Debug, Clone)]
pub struct RightForm {
    pub name: String,
    pub key_name: String,
    pub desc: String,
}

const DUPLICATE_RIGHT: &str = "已有此权限";
const UNKNOWN_RIGHT: &str = "无此权限";
const BUILTIN_RIGHT: &str = "内置权限不能删除或修改关键字";
const DUPLICATE_ROLE: &str = "已有此角色名称或者关键字";
const UNKNOWN_ROLE: &str = "角色不存在";
const BUILTIN_ROLE: &str = "内置角色不能删除或修改关键字";
const ADMIN_ROLE_RIGHTS: &str = "管理员角色必须保留管理和登录权限";
const UNKNOWN_GROUP: &str = "群组不存在";
const BAD_PARAMS: &str = "参数校验失败";

/// Names and keys: not blank, not absurdly long, no control characters.
fn check_label(text: &str) -> Result<(), DomainError> {
    let length = text.trim().chars().count();
    if length == 0 || length > 64 || text.chars().any(char::is_control) {
        return Err(DomainError::invalid(BAD_PARAMS));
    }
    Ok(())
}

fn check_desc(text: &str) -> Result<(), DomainError> {
    if text.chars().count() > 255 {
        return Err(DomainError::invalid(BAD_PARAMS));
    }
    Ok(())
}

fn is_builtin_right(key: &str) -> bool {
    RIGHTS.iter().any(|spec| spec.key == key)
}

fn is_builtin_role(key: &str) -> bool {
    ROLES.iter().any(|spec| spec.key == key)
}

/// A unique violation on write means the same thing as the check before it: a race lost.
fn duplicate(message: &'static str) -> impl FnOnce(StoreError) -> DomainError {
    move |error| match error {
        StoreError::UniqueViolation(_) => DomainError::rejected(message),
        other => other.into(),
    }
}

pub async fn list_rights(
    app: &App,
    admin: &Actor,
    page: &PageRequest,
) -> Result<Listing<Right>, DomainError> {
    rbac::require_admin(admin)?;
    let (sort, window) = (page.sort("name")?, page.window()?);
    let mut conn = app.db.get().await?;
    let (count, rows) = store::admin::list_rights(&mut conn, sort, window).await?;
    Ok(Listing { count, rows })
}

pub async fn create_right(app: &App, admin: &Actor, form: RightForm) -> Result<Right, DomainError> {
    rbac::require_admin(admin)?;
    check_label(&form.name)?;
    check_label(&form.key_name)?;
    check_desc(&form.desc)?;
    let mut conn = app.db.get().await?;
    if store::rbac::find_right_by_key(&mut conn, &form.key_name)
        .await?
        .is_some()
    {
        return Err(DomainError::rejected(DUPLICATE_RIGHT));
    }
    let now = crate::time::now();
    store::rbac::insert_right(
        &mut conn,
        &NewRight {
            name: &form.name,
            key_name: &form.key_name,
            description: &form.desc,
            created_at: now,
            updated_at: now,
        },
    )
    .await
    .map_err(duplicate(DUPLICATE_RIGHT))
}

pub async fn update_right(
    app: &App,
    admin: &Actor,
    id: i32,
    form: RightForm,
) -> Result<(), DomainError> {
    rbac::require_admin(admin)?;
    check_label(&form.name)?;
    check_label(&form.key_name)?;
    check_desc(&form.desc)?;
    let mut conn = app.db.get().await?;
    let right = store::admin::find_right(&mut conn, id)
        .await?
        .ok_or_else(|| DomainError::rejected(UNKNOWN_RIGHT))?;
    // The server's own checks look rights up by key: renaming a built-in key would disable them.
    if is_builtin_right(&right.key_name) && right.key_name != form.key_name {
        return Err(DomainError::rejected(BUILTIN_RIGHT));
    }
    if let Some(other) = store::rbac::find_right_by_key(&mut conn, &form.key_name).await?
        && other.id != id
    {
        return Err(DomainError::rejected(DUPLICATE_RIGHT));
    }
    store::admin::update_right(&mut conn, id, &form.name, &form.key_name, &form.desc)
        .await
        .map_err(duplicate(DUPLICATE_RIGHT))?;
    Ok(())
}

pub async fn delete_right(app: &App, admin: &Actor, id: i32) -> Result<(), DomainError> {
    rbac::require_admin(admin)?;
    let mut conn = app.db.get().await?;
    let right = store::admin::find_right(&mut conn, id)
        .await?
        .ok_or_else(|| DomainError::rejected(UNKNOWN_RIGHT))?;
    if is_builtin_right(&right.key_name) {
        return Err(DomainError::rejected(BUILTIN_RIGHT));
    }
    let holders = conn
        .transaction(|tx| {
            Box::pin(async move {
                let holders = holders_of_right(tx, id).await?;
                store::admin::delete_right(tx, id).await?;
                Ok::<_, DomainError>(holders)
            })
        })
        .await?;
    access_changed(app, &mut conn, &holders).await
}

/// The users who hold the right `right_id` through any role.
async fn holders_of_right(conn: &mut DbConn, right_id: i32) -> Result<Vec<i32>, DomainError> {
    let roles: Vec<i32> = store::admin::roles_with_right(conn, right_id).await?;
    Ok(store::admin::holders_of_roles(conn, &roles).await?)
}

// ---- roles ----

/// A role with its rights, as the roles list shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleWithRights {
    #[serde(flatten)]
    pub role: Role,
    pub rights: Vec<Right>,
}

/// What an admin writes to create or change a role.
#[derive(Debug, Clone)]
pub struct RoleForm {
    pub name: String,
    pub key_name: String,
    pub desc: String,
    /// `None` leaves the rights of an existing role as they are.
    pub right_ids: Option<Vec<i32>>,
}

impl RoleForm {
    fn check(&self) -> Result<(), DomainError> {
        check_label(&self.name)?;
        check_label(&self.key_name)?;
        check_desc(&self.desc)
    }
}

pub async fn list_roles(
    app: &App,
    admin: &Actor,
    page: &PageRequest,
) -> Result<Listing<RoleWithRights>, DomainError> {
    rbac::require_admin(admin)?;
    let (sort, window) = (page.sort("name")?, page.window()?);
    let mut conn = app.db.get().await?;
    let (count, roles) = store::admin::list_roles(&mut conn, sort, window).await?;
    let ids: Vec<i32> = roles.iter().map(|role| role.id).collect();
    let mut rights: HashMap<i32, Vec<Right>> = HashMap::new();
    for (role_id, right) in store::admin::rights_of_roles(&mut conn, &ids).await? {
        rights.entry(role_id).or_default().push(right);
    }
    let rows = roles
        .into_iter()
        .map(|role| RoleWithRights {
            rights: rights.remove(&role.id).unwrap_or_default(),
            role,
        })
        .collect();
    Ok(Listing { count, rows })
}

/// Refuses right ids that do not exist (each once, so duplicates in the list are harmless).
async fn check_rights_exist(conn: &mut DbConn, ids: &[i32]) -> Result<Vec<i32>, DomainError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let found = store::admin::count_rights_among(conn, &ids).await?;
    if usize::try_from(found).ok() != Some(ids.len()) {
        return Err(DomainError::rejected("权限不存在"));
    }
    Ok(ids)
}

pub async fn create_role(app: &App, admin: &Actor, form: RoleForm) -> Result<Role, DomainError> {
    rbac::require_admin(admin)?;
    form.check()?;
    let mut conn = app.db.get().await?;
    conn.transaction(move |tx| {
        Box::pin(async move {
            let right_ids =
                check_rights_exist(tx, form.right_ids.as_deref().unwrap_or(&[])).await?;
            if store::admin::role_name_or_key_taken(tx, &form.name, &form.key_name, None).await? {
                return Err(DomainError::rejected(DUPLICATE_ROLE));
            }
            let now = crate::time::now();
            let role = store::rbac::insert_role(
                tx,
                &NewRole {
                    name: &form.name,
                    key_name: &form.key_name,
                    description: &form.desc,
                    created_at: now,
                    updated_at: now,
                },
            )
            .await
            .map_err(duplicate(DUPLICATE_ROLE))?;
            store::admin::set_role_rights(tx, role.id, &right_ids).await?;
            Ok(role)
        })
    })
    .await
}

pub async fn update_role(
    app: &App,
    admin: &Actor,
    id: i32,
    form: RoleForm,
) -> Result<(), DomainError> {
    rbac::require_admin(admin)?;
    form.check()?;
    let mut conn = app.db.get().await?;
    let holders = conn
        .transaction(move |tx| {
            Box::pin(async move {
                let role = store::admin::find_role(tx, id)
                    .await?
                    .ok_or_else(|| DomainError::rejected(UNKNOWN_ROLE))?;
                if is_builtin_role(&role.key_name) && role.key_name != form.key_name {
                    return Err(DomainError::rejected(BUILTIN_ROLE));
                }
                if store::admin::role_name_or_key_taken(tx, &form.name, &form.key_name, Some(id))
                    .await?
                {
                    return Err(DomainError::rejected(DUPLICATE_ROLE));
                }
                store::admin::update_role(tx, id, &form.name, &form.key_name, &form.desc)
                    .await
                    .map_err(duplicate(DUPLICATE_ROLE))?;
                if let Some(right_ids) = &form.right_ids {
                    let right_ids = check_rights_exist(tx, right_ids).await?;
                    if role.key_name == rbac::role::ADMIN {
                        keeps_back_office_open(tx, &right_ids).await?;
                    }
                    store::admin::set_role_rights(tx, id, &right_ids).await?;
                }
                Ok::<_, DomainError>(store::admin::holders_of_roles(tx, &[id]).await?)
            })
        })
        .await?;
    access_changed(app, &mut conn, &holders).await
}

pub async fn delete_roles(app: &App, admin: &Actor, ids: Vec<i32>) -> Result<(), DomainError> {
    rbac::require_admin(admin)?;
    let mut conn = app.db.get().await?;
    let holders = conn
        .transaction(move |tx| {
            Box::pin(async move {
                let roles = store::admin::find_roles(tx, &ids).await?;
                if roles.iter().any(|role| is_builtin_role(&role.key_name)) {
                    return Err(DomainError::rejected(BUILTIN_ROLE));
                }
                let ids: Vec<i32> = roles.iter().map(|role| role.id).collect();
                let holders = store::admin::holders_of_roles(tx, &ids).await?;
                store::admin::delete_roles(tx, &ids).await?;
                Ok::<_, DomainError>(holders)
            })
        })
        .await?;
    access_changed(app, &mut conn, &holders).await
}

/// The built-in `admin` role must keep the `admin` and `login` rights: without them nobody could
/// open the back office again to undo the change.
async fn keeps_back_office_open(conn: &mut DbConn, right_ids: &[i32]) -> Result<(), DomainError> {
    for key in [rbac::right::ADMIN, rbac::right::LOGIN] {
        let kept = store::rbac::find_right_by_key(conn, key)
            .await?
            .is_some_and(|right| right_ids.contains(&right.id));
        if !kept {
            return Err(DomainError::rejected(ADMIN_ROLE_RIGHTS));
        }
    }
    Ok(())
}

/// After the rights of `user_ids` changed: ends the sessions of those who may no longer log in,
/// and tells the transports (their sockets re-check or drop).
pub async fn access_changed(
    app: &App,
    conn: &mut DbConn,
    user_ids: &[i32],
) -> Result<(), DomainError> {
    let may_log_in = store::admin::holding_right(conn, user_ids, rbac::right::LOGIN).await?;
    for &user_id in user_ids {
        if !may_log_in.contains(&user_id) {
            app.sessions.revoke_user(user_id).await?;
        }
        // No subscriber (no socket layer yet, or none listening) is not an error.
        let _ = app.events.send(DomainEvent::AccessChanged { user_id });
    }
    Ok(())
}

// ---- groups ----

pub async fn list_groups(
    app: &App,
    admin: &Actor,
    page: &PageRequest,
) -> Result<Listing<Group>, DomainError> {
    rbac::require_admin(admin)?;
    let (sort, window) = (page.sort("name")?, page.window()?);
    let mut conn = app.db.get().await?;
    let (count, rows) = store::admin::list_groups(&mut conn, sort, window).await?;
    Ok(Listing { count, rows })
}

/// Disbands or restores a group (`GroupFlag::Disabled`), or mutes or unmutes it
/// (`GroupFlag::Mute`), and tells the transports.
pub async fn set_group_flag(
    app: &App,
    admin: &Actor,
    group_id: i32,
    flag: GroupFlag,
    on: bool,
) -> Result<(), DomainError> {
    rbac::require_admin(admin)?;
    let mut conn = app.db.get().await?;
    if store::admin::set_group_flag(&mut conn, group_id, flag, on).await? == 0 {
        return Err(DomainError::rejected(UNKNOWN_GROUP));
    }
    let _ = app.events.send(DomainEvent::GroupChanged { group_id });
    Ok(())
}
