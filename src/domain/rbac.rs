//! Role-based access control: the rights and roles the system knows from its first start, and the
//! checks of every request and event: the session, read each time, and the user's rights, kept
//! briefly in a cache that a ban or a role change on this process clears at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::app::App;
use crate::store::{self, Db, DbConn};

use super::events::{DomainEvent, Events};
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
    let rights = app.rights.of_user(&app.db, session.user_id).await?;
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

/// How long a user's rights are kept without a look at the database. A change made on this
/// process clears them at once (its `AccessChanged` event); this bounds how long a change made by
/// another process, which this one does not hear of, takes to act.
pub const RIGHTS_TTL: Duration = Duration::from_secs(1);
/// Users kept before expired entries are swept out, so the cache stays as small as the set of
/// users active within [`RIGHTS_TTL`].
const SWEEP_ABOVE: usize = 4096;

/// Each user's rights as last read, for [`RIGHTS_TTL`]. Every Socket.IO event and REST request
/// needs them; reading them is three joined tables, far dearer than the event itself.
pub struct RightsCache {
    state: Mutex<CacheState>,
}

struct CacheState {
    /// The domain's events, read before every look-up, so an `AccessChanged` sent before it
    /// (the admin's request answered) is always seen.
    changes: broadcast::Receiver<DomainEvent>,
    /// Counts the changes seen: rights read from the database while one came in may predate it,
    /// so they are not kept.
    generation: u64,
    users: HashMap<i32, (Instant, Arc<[String]>)>,
}

impl RightsCache {
    pub fn new(events: &Events) -> Self {
        RightsCache {
            state: Mutex::new(CacheState {
                changes: events.subscribe(),
                generation: 0,
                users: HashMap::new(),
            }),
        }
    }

    /// The `keyName`s of the rights `user_id` holds.
    pub async fn of_user(&self, db: &Db, user_id: i32) -> Result<Arc<[String]>, DomainError> {
        let generation = {
            let mut state = self.lock();
            state.catch_up();
            match state.users.get(&user_id) {
                Some((read, rights)) if read.elapsed() < RIGHTS_TTL => return Ok(rights.clone()),
                _ => state.generation,
            }
        };
        let read = Instant::now();
        let mut conn = db.get().await?;
        let rights: Arc<[String]> = store::rbac::rights_of_user(&mut conn, user_id)
            .await?
            .into_iter()
            .map(|right| right.key_name)
            .collect();
        let mut state = self.lock();
        state.catch_up();
        if state.generation == generation {
            if state.users.len() >= SWEEP_ABOVE {
                state
                    .users
                    .retain(|_, (read, _)| read.elapsed() < RIGHTS_TTL);
            }
            state.users.insert(user_id, (read, rights.clone()));
        }
        Ok(rights)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // The state is a cache: whatever a panicking holder left is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl CacheState {
    /// Forgets the rights of the users whose access changed since the last look.
    fn catch_up(&mut self) {
        loop {
            match self.changes.try_recv() {
                Ok(DomainEvent::AccessChanged { user_id }) => {
                    self.users.remove(&user_id);
                    self.generation += 1;
                }
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    // Some changes were missed: any entry may be stale.
                    self.users.clear();
                    self.generation += 1;
                }
                Err(
                    broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed,
                ) => {
                    return;
                }
            }
        }
    }
}

/// Refuses an actor without the `admin` right.
pub fn require_admin(actor: &Actor) -> Result<(), DomainError> {
    if actor.has_right(right::ADMIN) {
        Ok(())
    } else {
        Err(DomainError::Forbidden)
    }
}
