//! Role-based access control: the rights and roles the system knows from its first start, and the
//! checks that read them fresh, so a ban or a role change acts on the very next request.

use crate::app::App;
use crate::store::{self, DbConn};

use super::{Actor, DomainError};

/// Rights by `keyName`.
pub mod right {
    pub const ADMIN: &str = "admin";
    pub const LOGIN: &str = "login";
    pub const SPEAK: &str = "speak";
    pub const CONF: &str = "conf";
    pub const TEST: &str = "test";
}

/// Roles by `keyName`.
pub mod role {
    pub const ADMIN: &str = "admin";
    pub const USER: &str = "user";
    pub const DISABLED: &str = "disabled";
    pub const MUTE: &str = "mute";
}

pub struct RightSpec {
    pub name: &'static str,
    pub key: &'static str,
    pub desc: &'static str,
}

pub struct RoleSpec {
    pub name: &'static str,
    pub key: &'static str,
    pub desc: &'static str,
    pub rights: &'static [&'static str],
}

/// The original's rights, in its order (ids 1..5 on a new database).
pub const RIGHTS: [RightSpec; 5] = [
    RightSpec {
        name: "管理",
        key: right::ADMIN,
        desc: "使用管理后台",
    },
    RightSpec {
        name: "登录",
        key: right::LOGIN,
        desc: "登录系统",
    },
    RightSpec {
        name: "发言",
        key: right::SPEAK,
        desc: "发送消息",
    },
    RightSpec {
        name: "配置",
        key: right::CONF,
        desc: "修改配置",
    },
    RightSpec {
        name: "测试",
        key: right::TEST,
        desc: "测试新功能",
    },
];

/// The original's roles, in its order (ids 1..4 on a new database), with their default rights.
pub const ROLES: [RoleSpec; 4] = [
    RoleSpec {
        name: "管理员",
        key: role::ADMIN,
        desc: "管理员",
        rights: &[right::ADMIN, right::LOGIN],
    },
    RoleSpec {
        name: "用户",
        key: role::USER,
        desc: "普通用户",
        rights: &[right::LOGIN, right::SPEAK],
    },
    RoleSpec {
        name: "封禁",
        key: role::DISABLED,
        desc: "封禁的用户",
        rights: &[],
    },
    RoleSpec {
        name: "禁言",
        key: role::MUTE,
        desc: "禁言的用户",
        rights: &[right::LOGIN],
    },
];

/// Creates whichever of the built-in rights and roles is missing. A role's default rights are
/// granted only when the role is created, so what an admin changed later stays changed.
pub async fn ensure_builtin(conn: &mut DbConn) -> Result<(), DomainError> {
    conn.transaction(|tx| {
        Box::pin(async move {
            let now = crate::time::now();
            for spec in &RIGHTS {
                if store::rbac::find_right_by_key(tx, spec.key)
                    .await?
                    .is_none()
                {
                    store::rbac::insert_right(
                        tx,
                        &store::models::NewRight {
                            name: spec.name,
                            key_name: spec.key,
                            description: spec.desc,
                            created_at: now,
                            updated_at: now,
                        },
                    )
                    .await?;
                }
            }
            for spec in &ROLES {
                if store::rbac::find_role_by_key(tx, spec.key).await?.is_some() {
                    continue;
                }
                let role = store::rbac::insert_role(
                    tx,
                    &store::models::NewRole {
                        name: spec.name,
                        key_name: spec.key,
                        description: spec.desc,
                        created_at: now,
                        updated_at: now,
                    },
                )
                .await?;
                for key in spec.rights {
                    if let Some(right) = store::rbac::find_right_by_key(tx, key).await? {
                        store::rbac::grant_right(tx, role.id, right.id).await?;
                    }
                }
            }
            Ok::<_, DomainError>(())
        })
    })
    .await
}

/// The actor behind a session id (cookie or token), or `NotLoggedIn` when the session is unknown,
/// expired, or its user has lost the `login` right (banned, deleted).
pub async fn authenticate(app: &App, session_id: &str) -> Result<Actor, DomainError> {
    if !crate::session::looks_like_session_id(session_id) {
        return Err(DomainError::NotLoggedIn);
    }
    let session = app
        .sessions
        .resolve(session_id)
        .await?
        .ok_or(DomainError::NotLoggedIn)?;
    let mut conn = app.db.get().await?;
    let rights: Vec<String> = store::rbac::rights_of_user(&mut conn, session.user_id)
        .await?
        .into_iter()
        .map(|right| right.key_name)
        .collect();
    let actor = Actor {
        user_id: session.user_id,
        session_id: session.id,
        rights,
    };
    if !actor.has_right(right::LOGIN) {
        return Err(DomainError::NotLoggedIn);
    }
    Ok(actor)
}

/// Refuses an actor without the `admin` right.
pub fn require_admin(actor: &Actor) -> Result<(), DomainError> {
    if actor.has_right(right::ADMIN) {
        Ok(())
    } else {
        Err(DomainError::Forbidden)
    }
}
