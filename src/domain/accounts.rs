//! Accounts: sign-up, log-in (with the legacy-hash upgrade), log-out, and who the current user is.

use std::net::IpAddr;
use std::sync::LazyLock;

use rand::Rng;
use serde::Serialize;

use crate::app::App;
use crate::session::password::{self, Verdict};
use crate::store::models::{NewUser, NewUserInfo, Right, Role, User, UserInfo};
use crate::store::{self, DbConn, StoreError};

use super::events::DomainEvent;
use super::names::{USERNAME_MAX, USERNAME_MIN};
use super::rbac::{right, role};
use super::{Actor, DomainError, names};

/// What log-in, sign-up and `currentUser` answer: the user's profile, rights and roles.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub user_info: Option<UserInfo>,
    pub rights: Vec<Right>,
    pub roles: Vec<Role>,
    pub id: i32,
    /// The session id, for clients without a cookie jar (docs/protocol.md §1.4).
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

/// An argon2 hash of a password nobody has, with the parameters of every real hash: a log-in to
/// a name that does not exist (or to an account without a password) is checked against it, so
/// that it takes as long as a wrong password and the answer's timing does not tell which names
/// exist.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let unguessable = crate::session::new_session_id();
    password::hash(&unguessable)
        .inspect_err(|error| tracing::error!(%error, "cannot make the dummy password hash"))
        .ok()
});

/// Makes the dummy hash now, so that the first log-in to an unknown name is not the one slow
/// enough to tell.
pub async fn prepare_dummy_hash() -> Result<(), DomainError> {
    run_hashing(|| {
        LazyLock::force(&DUMMY_HASH);
    })
    .await
}

/// The user's stored hash to check a log-in against; `None`: check the dummy one instead.
fn hash_to_check(user: Option<&User>) -> Option<String> {
    match user.and_then(|user| user.password.as_deref()) {
        Some(stored) if !stored.is_empty() => Some(stored.to_owned()),
        _ => None,
    }
}

/// Checks a username and password from `client` and opens a session.
///
/// Failed log-ins are limited per client address and, from addresses the account has not
/// logged in from lately, per account (see [`super::limits`]). The allowances are taken before
/// the password is checked, so parallel guesses cannot all slip in before the first failure is
/// counted, and given back when the password was right.
pub async fn login(
    app: &App,
    username: &str,
    password: &str,
    client: IpAddr,
) -> Result<Identity, DomainError> {
    let on_address = app.limits.take_login_address(client).await?;
    let checked = check_credentials(app, username, password, client).await;
    let (user, on_account) = match checked {
        Ok(Checked::Right { user, on_account }) => (user, on_account),
        Ok(Checked::Wrong(error)) => return Err(error),
        Err(error) => {
            // Refused by the account's limit, or a fault: no guess was made.
            app.limits.give_back(on_address).await;
            return Err(error);
        }
    };
    app.limits.give_back(on_address).await;
    app.limits.give_back(on_account).await;
    app.limits.learn(user.id, client).await;
    let mut conn = app.db.get().await?;
    open_session(app, &mut conn, &user).await
}

/// How a password check came out, once the limits let it happen.
enum Checked {
    Right {
        user: User,
        on_account: Option<super::limits::Charge>,
    },
    /// A wrong name or password: the allowances taken stay taken.
    Wrong(DomainError),
}

async fn check_credentials(
    app: &App,
    username: &str,
    password: &str,
    client: IpAddr,
) -> Result<Checked, DomainError> {
    let mut conn = app.db.get().await?;
    let user = find_user(&mut conn, username).await?;
    drop(conn);
    // Asked for an unknown name too (of a user id that never exists), so that both cost the
    // same round trip.
    let known = app
        .limits
        .knows(user.as_ref().map_or(0, |user| user.id), client)
        .await?
        && user.is_some();
    let on_account = if known {
        None
    } else {
        app.limits.take_login_account(username).await?
    };
    let stored = hash_to_check(user.as_ref());
    let verdict = {
        let (password, secret) = (password.to_owned(), app.config.legacy_secret.clone());
        run_hashing(move || match stored.as_deref().or(DUMMY_HASH.as_deref()) {
            Some(stored) => password::verify(&password, stored, &secret),
            None => Verdict::Mismatch,
        })
        .await?
    };
    let Some(user) = user else {
        return Ok(Checked::Wrong(DomainError::rejected("用户名错误")));
    };
    if hash_to_check(Some(&user)).is_none() {
        return Ok(Checked::Wrong(DomainError::rejected("密码错误")));
    }
    match verdict {
        Verdict::Mismatch => return Ok(Checked::Wrong(DomainError::rejected("密码错误"))),
        Verdict::Match => {}
        Verdict::MatchLegacy => {
            let upgraded = hash_password(password).await?;
            let mut conn = app.db.get().await?;
            store::accounts::set_password(&mut conn, user.id, &upgraded).await?;
            tracing::info!(
                user_id = user.id,
                "legacy password hash upgraded to argon2id"
            );
        }
    }
    Ok(Checked::Right { user, on_account })
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

/// The refusal of a user without the `login` right (banned, or a role without it).
pub const NO_LOGIN_RIGHT: &str = "不具备登录权限";

/// Opens a session for a user whose credentials were checked, if they may log in.
pub async fn open_session(
    app: &App,
    conn: &mut DbConn,
    user: &User,
) -> Result<Identity, DomainError> {
    let rights = store::rbac::rights_of_user(conn, user.id).await?;
    if !rights.iter().any(|r| r.key_name == right::LOGIN) {
        return Err(DomainError::rejected(NO_LOGIN_RIGHT));
    }
    let session = app.sessions.create(user.id).await?;
    identity(conn, user.id, Some(session.id)).await
}

/// Why a username or password breaks the rules. Clients are told only `参数校验失败`, as the
/// original did; operators' tools (the CLI, start-up settings) say which rule it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialRule {
    #[error("a username must be {USERNAME_MIN} to {USERNAME_MAX} characters long")]
    UsernameLength,
    #[error(
        "a username may not hold control, invisible or bidi characters, whitespace other than \
         a space, nor mix Latin, Greek and Cyrillic letters"
    )]
    UsernameCharacters,
    #[error("a password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long")]
    PasswordLength,
}

impl From<CredentialRule> for DomainError {
    fn from(_: CredentialRule) -> Self {
        DomainError::invalid(BAD_PARAMS)
    }
}

/// Which rule of [`names::username`] a username breaks, for operators' tools; every account is
/// created through that function whatever path it takes.
pub fn check_username(username: &str) -> Result<(), CredentialRule> {
    if names::username(username).is_ok() {
        return Ok(());
    }
    let length = username.trim().chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&length) {
        return Err(CredentialRule::UsernameLength);
    }
    Err(CredentialRule::UsernameCharacters)
}

/// The rule every password meets, however it is set.
pub fn check_password(password: &str) -> Result<(), CredentialRule> {
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&password.chars().count()) {
        return Err(CredentialRule::PasswordLength);
    }
    Ok(())
}

/// Creates a local account with role `user`, places it in the first open group, opens a session.
/// Sign-ups are limited per client address; one refused for a taken name still counts, so that
/// sign-up cannot be used to list names at speed.
pub async fn signup(
    app: &App,
    username: &str,
    password: &str,
    client: IpAddr,
) -> Result<Identity, DomainError> {
    let charge = app.limits.take_signup(client).await?;
    match create_account(app, username, password).await {
        Ok(identity) => Ok(identity),
        Err(error @ DomainError::Rejected(_)) => Err(error),
        Err(error) => {
            app.limits.give_back(charge).await;
            Err(error)
        }
    }
}

async fn create_account(
    app: &App,
    username: &str,
    password: &str,
) -> Result<Identity, DomainError> {
    check_username(username)?;
    check_password(password)?;
    let hash = hash_password(password).await?;
    let mut conn = app.db.get().await?;
    let user = create_local_user(&mut conn, username, &hash, role::USER, true).await?;
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
pub async fn set_password(
    conn: &mut DbConn,
    username: &str,
    password: &str,
) -> Result<(), DomainError> {
    check_password(password)?;
    let user = find_user(conn, username)
        .await?
        .ok_or_else(|| DomainError::rejected(super::profiles::NO_SUCH_USER))?;
    let hash = hash_password(password).await?;
    store::accounts::set_password(conn, user.id, &hash).await?;
    Ok(())
}
