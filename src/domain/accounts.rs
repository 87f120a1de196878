//! Accounts: sign-up, log-in (with the legacy-hash upgrade), log-out, and who the current user is.

use std::sync::LazyLock;

use rand::Rng;
use serde::Serialize;

use crate::app::App;
use crate::session::password::{self, Verdict};
use crate::store::models::{NewUser, NewUserInfo, Right, Role, User, UserInfo};
use crate::store::{self, DbConn, StoreError};

use super::events::DomainEvent;
use super::rbac::{right, role};
use super::{Actor, DomainError, names};

/// What log-in, sign-up and `currentUser` answer: the user's profile, rights and roles.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub user_info: Option<UserInfo>,
    pub rights: Vec<Right>,
    pub roles: Vec<Role>,
    pub id: i32,
    /// The session id, for clients without a cookie jar (API.md §1, new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

const PASSWORD_MIN: usize = 6;
/// An upper bound the original lacked.
const PASSWORD_MAX: usize = 128;

pub const BAD_PARAMS: &str = "参数校验失败";

/// A default avatar, `/public/images/head1.png` .. `head9.png`.
pub fn default_photo(n: u32) -> String {
    format!("/public/images/head{}.png", n % 9 + 1)
}

pub fn random_photo() -> String {
    default_photo(rand::rng().random_range(0..9))
}

/// The threads that run argon2. Each hash or check takes ~19 MiB of working memory and tens of
/// milliseconds of CPU by design. On tokio's blocking pool a burst of 100 log-ins ran on as many
/// threads at once and left 1.4 GB with the allocator (a heap per thread); a fixed pool of one
/// thread per core queues the burst instead, and its memory stays a few hashes' worth. One
/// process-wide pool, because the cores and the memory are the process's whatever `App` asks.
static HASHING: LazyLock<Option<rayon::ThreadPool>> = LazyLock::new(|| {
    give_back_hashing_memory();
    rayon::ThreadPoolBuilder::new()
        .num_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name(|n| format!("argon2-{n}"))
        .build()
        .inspect_err(|error| tracing::error!(%error, "cannot start the password hashing threads"))
        .ok()
});

/// glibc serves a large block with its own mapping, returned to the system when freed, but after
/// the first such free it raises that threshold to the block's size (up to 32 MiB), so from the
/// second log-in on each ~19 MiB argon2 block came from a thread's heap and stayed there: 100
/// log-ins left ~150 MiB behind. A fixed threshold of 1 MiB keeps every argon2 block a mapping of
/// its own; the cost is a fresh mapping per hash, small beside the hash itself.
fn give_back_hashing_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 1024 * 1024;
        // SAFETY: mallopt only sets an allocator parameter; it is safe to call at any time.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) } != 1 {
            tracing::warn!("could not set the allocator's mapping threshold");
        }
    }
}

/// Runs argon2 work on the hashing threads and waits for it without blocking the runtime.
async fn run_hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DomainError> {
    let pool = HASHING
        .as_ref()
        .ok_or_else(|| DomainError::Internal("no password hashing threads".into()))?;
    let (done, result) = tokio::sync::oneshot::channel();
    pool.spawn(move || {
        // The receiver is gone only if the request was dropped; nobody waits for the answer.
        let _ = done.send(work());
    });
    result
        .await
        .map_err(|_| DomainError::Internal("password hashing thread failed".into()))
}

/// Hashes a new password with argon2id.
pub async fn hash_password(password: &str) -> Result<String, DomainError> {
    let password = password.to_owned();
    run_hashing(move || password::hash(&password))
        .await?
        .map_err(|e| DomainError::Internal(format!("hashing failed: {e}")))
}

async fn verify_password(
    stored: &str,
    password: &str,
    legacy_secret: &str,
) -> Result<Verdict, DomainError> {
    let (stored, password, secret) = (
        stored.to_owned(),
        password.to_owned(),
        legacy_secret.to_owned(),
    );
    run_hashing(move || password::verify(&password, &stored, &secret)).await
}

async fn identity(
    conn: &mut DbConn,
    user_id: i32,
    token: Option<String>,
) -> Result<Identity, DomainError> {
    Ok(Identity {
        user_info: store::accounts::find_user_info(conn, user_id).await?,
        rights: store::rbac::rights_of_user(conn, user_id).await?,
        roles: store::rbac::roles_of_user(conn, user_id).await?,
        id: user_id,
        token,
    })
}

/// Checks a username and password and opens a session.
pub async fn login(app: &App, username: &str, password: &str) -> Result<Identity, DomainError> {
    let mut conn = app.db.get().await?;
    let user = find_user(&mut conn, username)
        .await?
        .ok_or_else(|| DomainError::rejected("用户名错误"))?;
    let stored = user.password.as_deref().unwrap_or_default();
    match verify_password(stored, password, &app.config.legacy_secret).await? {
        Verdict::Mismatch => return Err(DomainError::rejected("密码错误")),
        Verdict::Match => {}
        Verdict::MatchLegacy => {
            let upgraded = hash_password(password).await?;
            store::accounts::set_password(&mut conn, user.id, &upgraded).await?;
            tracing::info!(
                user_id = user.id,
                "legacy password hash upgraded to argon2id"
            );
        }
    }
    open_session(app, &mut conn, &user).await
}

/// The user a log-in names: by the exact username first (so that an old account whose name
/// differs from an older one only in case still logs in), then by its key (`USER`, ` user` and
/// `ｕｓｅｒ` all name `user`).
pub async fn find_user(conn: &mut DbConn, username: &str) -> Result<Option<User>, DomainError> {
    if let Some(user) = store::accounts::find_user_by_username(conn, username).await? {
        return Ok(Some(user));
    }
    let key = names::username_key(username);
    Ok(store::accounts::find_user_by_key(conn, &key).await?)
}

/// Opens a session for a user whose credentials were checked, if they may log in.
pub async fn open_session(
    app: &App,
    conn: &mut DbConn,
    user: &User,
) -> Result<Identity, DomainError> {
    let rights = store::rbac::rights_of_user(conn, user.id).await?;
    if !rights.iter().any(|r| r.key_name == right::LOGIN) {
        return Err(DomainError::rejected("不具备登录权限"));
    }
    let session = app.sessions.create(user.id).await?;
    identity(conn, user.id, Some(session.id)).await
}

/// Creates a local account with role `user`, places it in the first open group, opens a session.
pub async fn signup(app: &App, username: &str, password: &str) -> Result<Identity, DomainError> {
    let username = names::username(username)?;
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&password.chars().count()) {
        return Err(DomainError::invalid(BAD_PARAMS));
    }
    let hash = hash_password(password).await?;
    let mut conn = app.db.get().await?;
    let user = create_local_user(&mut conn, &username, &hash, role::USER, true).await?;
    open_session(app, &mut conn, &user).await
}

/// The refusal of a username that is taken.
pub const DUPLICATE_USERNAME: &str = "用户名重复";

/// What a new account starts with.
pub struct NewAccount<'a> {
    pub provider: &'a str,
    pub username: &'a str,
    /// `None` for accounts that log in elsewhere (GitHub).
    pub password_hash: Option<&'a str>,
    pub nickname: &'a str,
    pub photo: &'a str,
    pub role_key: &'static str,
    /// Place the user in the first open group, the original's sign-up rule.
    pub join_first_group: bool,
}

/// Writes a user, their profile, their role and, if asked, their membership of the first open
/// group, inside the caller's transaction. Every way an account comes to be goes through here,
/// and so through the naming rules of `names` (the username and nickname are checked again
/// here, whatever the caller did).
pub async fn insert_account(tx: &mut DbConn, new: &NewAccount<'_>) -> Result<User, DomainError> {
    let username = names::username(new.username)?;
    let nickname = names::nickname(new.nickname)?;
    let key = names::username_key(&username);
    if store::accounts::find_user_by_key(tx, &key).await?.is_some()
        || store::accounts::find_user_by_username(tx, &username)
            .await?
            .is_some()
    {
        return Err(DomainError::rejected(DUPLICATE_USERNAME));
    }
    let now = crate::time::now();
    let user = store::accounts::insert_user(
        tx,
        &NewUser {
            provider: new.provider,
            username: &username,
            username_key: Some(&key),
            password: new.password_hash,
            created_at: now,
            updated_at: now,
        },
    )
    .await
    .map_err(|e| match e {
        StoreError::UniqueViolation(_) => DomainError::rejected(DUPLICATE_USERNAME),
        other => other.into(),
    })?;
    store::accounts::insert_user_info(
        tx,
        &NewUserInfo {
            user_id: user.id,
            nickname: &nickname,
            photo: new.photo,
            sign: None,
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    let role = store::rbac::find_role_by_key(tx, new.role_key)
        .await?
        .ok_or_else(|| {
            DomainError::Internal(format!("built-in role {} is missing", new.role_key))
        })?;
    store::rbac::grant_role(tx, user.id, role.id).await?;
    if new.join_first_group
        && let Some(group) = store::groups::first_open_group(tx).await?
    {
        store::groups::add_member(tx, group.id, user.id).await?;
    }
    Ok(user)
}

/// Writes a local user named `username` with a default photo, in one transaction (sign-up,
/// operators' `user create`, the admin bootstrap).
pub async fn create_local_user(
    conn: &mut DbConn,
    username: &str,
    password_hash: &str,
    role_key: &'static str,
    join_first_group: bool,
) -> Result<User, DomainError> {
    let username = names::username(username)?;
    let nickname = names::default_nickname(&username);
    let password_hash = password_hash.to_owned();
    conn.transaction(move |tx| {
        Box::pin(async move {
            let account = NewAccount {
                provider: "local",
                username: &username,
                password_hash: Some(&password_hash),
                nickname: &nickname,
                photo: &random_photo(),
                role_key,
                join_first_group,
            };
            insert_account(tx, &account).await
        })
    })
    .await
}

/// Ends the session a client held before it logged in or signed up (the cookie its browser
/// sent), with its sockets: a log-in starts afresh, so a session planted in the browser before
/// (session fixation) or left by the previous user of a shared machine ends there. An id that
/// names no live session is ignored; a store that cannot be reached is only logged, since the
/// new session is already open.
pub async fn end_previous_session(app: &App, previous: &str, new_session: Option<&str>) {
    if !crate::session::looks_like_session_id(previous) || Some(previous) == new_session {
        return;
    }
    let session = match app.sessions.resolve(previous).await {
        Ok(Some(session)) => session,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "previous session not ended at log-in");
            return;
        }
    };
    if let Err(error) = app.sessions.revoke(&session.id).await {
        tracing::warn!(%error, "previous session not ended at log-in");
        return;
    }
    let _ = app.events.send(DomainEvent::SessionEnded {
        user_id: session.user_id,
        session_id: session.id,
    });
}

/// Ends the actor's session, and with it the sockets it opened.
pub async fn logout(app: &App, actor: &Actor) -> Result<(), DomainError> {
    app.sessions.revoke(&actor.session_id).await?;
    let _ = app.events.send(DomainEvent::SessionEnded {
        user_id: actor.user_id,
        session_id: actor.session_id.clone(),
    });
    Ok(())
}

/// The actor's profile, rights and roles, read now.
pub async fn current_user(app: &App, actor: &Actor) -> Result<Identity, DomainError> {
    let mut conn = app.db.get().await?;
    identity(&mut conn, actor.user_id, None).await
}

/// Sets a user's password (operators' `user passwd`).
pub async fn set_password(app: &App, username: &str, password: &str) -> Result<(), DomainError> {
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&password.chars().count()) {
        return Err(DomainError::invalid(format!(
            "password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"
        )));
    }
    let hash = hash_password(password).await?;
    let mut conn = app.db.get().await?;
    let user = find_user(&mut conn, username)
        .await?
        .ok_or_else(|| DomainError::rejected(format!("no user named {username:?}")))?;
    store::accounts::set_password(&mut conn, user.id, &hash).await?;
    Ok(())
}
