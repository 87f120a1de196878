//! Start-up data: the admin bootstrap, and the original's demo data (docs/protocol.md §6.3) on
//! request.

use rand::Rng;
use rand::distr::Alphanumeric;

use std::collections::HashMap;

use crate::store::bulk::GroupRow;
use crate::store::models::{NewApply, NewFriend, NewGroup, NewUser, NewUserInfo};
use crate::store::{self, DbConn};

use super::DomainError;
use super::rbac::{right, role};

const DEMO_PASSWORD: &str = "123456";
const DEMO_SIGN: &str = "念念不忘，必有回响~";
const DEMO_INTRODUCTION: &str =
    "富强、民主、文明、和谐、自由、平等、公正、法治、爱国、敬业、诚信、友善";
pub const DEMO_GROUPS: [&str; 2] = ["谈笑有鸿儒", "往来无白丁"];
const GROUP_PHOTO: &str = "/public/images/group.png";

/// What [`demo`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum DemoOutcome {
    Created {
        users: usize,
    },
    /// The database already had users; nothing was written.
    SkippedNotEmpty,
}

/// The demo users in the original's order: ids 1.. on a new database.
fn demo_users() -> Vec<(String, &'static str)> {
    let mut users = vec![
        ("admin".to_owned(), role::ADMIN),
        ("user".to_owned(), role::USER),
        ("disabled".to_owned(), role::DISABLED),
        ("muteuser".to_owned(), role::MUTE),
    ];
    users.extend((1..=30).map(|n| (format!("member{n}"), role::USER)));
    users
}

/// Writes the demo data of docs/protocol.md §6.3, all or nothing, on a database without users. A
/// database that has users is left untouched, whatever they are.
pub async fn demo(conn: &mut DbConn) -> Result<DemoOutcome, DomainError> {
    // One hash for every demo account: they share the published password anyway, and hashing
    // 34 times would cost seconds at start-up.
    let hash = super::accounts::hash_password(DEMO_PASSWORD).await?;
    conn.transaction(move |tx| {
        Box::pin(async move {
            if store::accounts::count_users(tx).await? > 0 {
                return Ok(DemoOutcome::SkippedNotEmpty);
            }
            let now = crate::time::now();
            let mut ids = std::collections::HashMap::new();
            for (n, (username, role_key)) in demo_users().iter().enumerate() {
                let user = store::accounts::insert_user(
                    tx,
                    &NewUser {
                        provider: "local",
                        username,
                        username_key: Some(&super::names::username_key(username)),
                        password: Some(&hash),
                        created_at: now,
                        updated_at: now,
                    },
                )
                .await?;
                store::accounts::insert_user_info(
                    tx,
                    &NewUserInfo {
                        user_id: user.id,
                        nickname: username,
                        photo: &super::accounts::default_photo(n as u32),
                        sign: Some(DEMO_SIGN),
                        created_at: now,
                        updated_at: now,
                    },
                )
                .await?;
                let role = store::rbac::find_role_by_key(tx, role_key)
                    .await?
                    .ok_or_else(|| {
                        DomainError::Internal(format!("built-in role {role_key} is missing"))
                    })?;
                store::rbac::grant_role(tx, user.id, role.id).await?;
                ids.insert(username.clone(), user.id);
            }
            let id = |name: &str| ids[name];

            // `user`'s friends, each with its own chat conversation (conversations 1..26).
            let mut friends = vec!["disabled".to_owned(), "muteuser".to_owned()];
            friends.extend((3..=26).map(|n| format!("member{n}")));
            for friend in &friends {
                let conversation = store::conversations::insert_conversation(tx, "chat").await?;
                let (a, b) = (id("user"), id(friend));
                store::friends::insert_friend(
                    tx,
                    &NewFriend {
                        user_id: a.min(b),
                        friend_id: a.max(b),
                        conversation_id: conversation.id,
                        created_at: now,
                        updated_at: now,
                    },
                )
                .await?;
            }

            let apply = |kind, from: i32, to: i32, addressee: i32| NewApply {
                kind,
                from_id: from,
                to_id: to,
                user_id: addressee,
                has_handled: false,
                created_at: now,
                updated_at: now,
            };
            for member in ["member1", "member2"] {
                store::applies::insert_apply(
                    tx,
                    &apply("user", id(member), id("user"), id("user")),
                )
                .await?;
            }

            let mut members = vec![
                "user".to_owned(),
                "disabled".to_owned(),
                "muteuser".to_owned(),
            ];
            members.extend((1..=10).map(|n| format!("member{n}")));
            for (n, name) in DEMO_GROUPS.iter().enumerate() {
                let conversation =
                    store::conversations::insert_conversation(tx, "groupchat").await?;
                let group = store::groups::insert_group(
                    tx,
                    &NewGroup {
                        name,
                        photo: GROUP_PHOTO,
                        introduction: Some(DEMO_INTRODUCTION),
                        owner_id: id("user"),
                        conversation_id: conversation.id,
                        created_at: now,
                        updated_at: now,
                    },
                )
                .await?;
                for member in &members {
                    store::groups::add_member(tx, group.id, id(member)).await?;
                }
                // The original created the group apply right after the first group (apply 3).
                if n == 0 {
                    store::applies::insert_apply(
                        tx,
                        &apply("group", id("member11"), group.id, id("user")),
                    )
                    .await?;
                }
            }
            Ok(DemoOutcome::Created { users: ids.len() })
        })
    })
    .await
}

/// The demo accounts an operator can log in with, all with the demo password.
pub const DEMO_LOGINS: &str = "user/123456 (a chat user with friends and groups), admin/123456 \
     (the admin), muteuser/123456 (muted), member1..member30/123456; `disabled` is banned";

/// Whether start-up must create `admin`: nobody holds the admin right. Fails when the name
/// `admin` is taken by someone without it, which only an operator can sort out.
pub async fn admin_needed(conn: &mut DbConn) -> Result<bool, DomainError> {
    if store::rbac::anyone_holds_right(conn, right::ADMIN).await? {
        return Ok(false);
    }
    // By key: `Admin` or `ａｄｍｉｎ` would take the name `admin` as surely as `admin` itself.
    if super::accounts::find_user(conn, "admin").await?.is_some() {
        return Err(DomainError::Internal(
            "no user holds the admin right and the name `admin` is taken: create an admin with \
             `im-server user create NAME --role admin`"
                .into(),
        ));
    }
    Ok(true)
}

/// A password for the bootstrap `admin` when the operator gave none: 20 letters and digits.
pub fn generate_admin_password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// Creates `admin` with the admin role and `password`, which meets the rule of every password.
pub async fn create_admin(conn: &mut DbConn, password: &str) -> Result<(), DomainError> {
    super::accounts::check_password(password)
        .map_err(|rule| DomainError::invalid(format!("admin password refused: {rule}")))?;
    let hash = super::accounts::hash_password(password).await?;
    super::accounts::create_local_user(conn, "admin", &hash, role::ADMIN, false).await?;
    Ok(())
}

/// How many benchmark users and how large their groups (`im-server seed --bench-users N --group-size M`).
#[derive(Debug, Clone, Copy)]
pub struct BenchSpec {
    pub users: usize,
    pub group_size: usize,
}

/// What [`bench`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum BenchOutcome {
    Created {
        users: usize,
        groups: usize,
        friendships: usize,
    },
    /// `bench1` exists: the benchmark data was written before; nothing was written now.
    SkippedExists,
}

/// Most benchmark users one seed writes: far above what one machine's sockets can use.
pub const BENCH_USERS_MAX: usize = 1_000_000;
/// Conversations of `bench1`, the user of the REST benchmark: a realistic, non-trivial list.
pub const BENCH_REST_CONVERSATIONS: usize = 30;
const BENCH_GROUP_PREFIX: &str = "bench-group-";

/// The name of benchmark user `n` (1-based).
pub fn bench_username(n: usize) -> String {
    format!("bench{n}")
}

/// Writes the benchmark data set, all or nothing, in one transaction of batched inserts:
/// users `bench1..benchN` (password `123456`, role `user`); groups `bench-group-K` of
/// `group_size` consecutive users each, with their groupchat conversations; the friend pairs
/// bench1–bench2, bench3–bench4, … with chat conversations; and friendships of `bench1` with
/// `bench3..bench30`, so that `bench1` has [`BENCH_REST_CONVERSATIONS`] conversations.
/// When `bench1` exists nothing is written.
pub async fn bench(conn: &mut DbConn, spec: BenchSpec) -> Result<BenchOutcome, DomainError> {
    if spec.users == 0 || spec.users > BENCH_USERS_MAX {
        return Err(DomainError::invalid(format!(
            "--bench-users must be between 1 and {BENCH_USERS_MAX}"
        )));
    }
    if spec.group_size == 0 {
        return Err(DomainError::invalid("--group-size must be at least 1"));
    }
    // One hash for all: they share the password, and argon2 per user would take minutes.
    let hash = super::accounts::hash_password(DEMO_PASSWORD).await?;
    conn.transaction(move |tx| Box::pin(async move { write_bench(tx, spec, &hash).await }))
        .await
}

async fn write_bench(
    tx: &mut DbConn,
    spec: BenchSpec,
    hash: &str,
) -> Result<BenchOutcome, DomainError> {
    if store::accounts::find_user_by_username(tx, &bench_username(1))
        .await?
        .is_some()
    {
        return Ok(BenchOutcome::SkippedExists);
    }
    let now = crate::time::now();
    let names: Vec<String> = (1..=spec.users).map(bench_username).collect();
    let keyed = names
        .iter()
        .map(|name| (name.clone(), super::names::username_key(name)))
        .collect();
    let by_name: HashMap<String, i32> = store::bulk::insert_users(tx, keyed, hash, now)
        .await?
        .into_iter()
        .map(|(id, name)| (name, id))
        .collect();
    // ids[n - 1] is the id of bench{n}.
    let ids = names
        .iter()
        .map(|name| {
            by_name
                .get(name)
                .copied()
                .ok_or_else(|| DomainError::Internal(format!("inserted user {name} not returned")))
        })
        .collect::<Result<Vec<i32>, _>>()?;

    let infos = names
        .into_iter()
        .zip(&ids)
        .enumerate()
        .map(|(n, (name, id))| (*id, name, super::accounts::default_photo(n as u32)))
        .collect();
    store::bulk::insert_user_infos(tx, infos, now).await?;
    let role = store::rbac::find_role_by_key(tx, role::USER)
        .await?
        .ok_or_else(|| DomainError::Internal("built-in role user is missing".into()))?;
    store::bulk::grant_role(tx, ids.clone(), role.id).await?;

    // Groups of `group_size` consecutive users; the first member owns the group.
    let members_of: Vec<&[i32]> = ids.chunks(spec.group_size).collect();
    let group_conversations =
        store::bulk::insert_conversations(tx, "groupchat", members_of.len(), now).await?;
    let new_groups: Vec<GroupRow> = members_of
        .iter()
        .zip(group_conversations)
        .enumerate()
        .map(|(k, (members, conversation_id))| GroupRow {
            name: format!("{BENCH_GROUP_PREFIX}{}", k + 1),
            owner_id: members[0],
            conversation_id,
        })
        .collect();
    let group_ids: HashMap<String, i32> = store::bulk::insert_groups(
        tx,
        new_groups.clone(),
        GROUP_PHOTO,
        Some(DEMO_INTRODUCTION),
        now,
    )
    .await?
    .into_iter()
    .map(|(id, name)| (name, id))
    .collect();
    let mut memberships = Vec::with_capacity(ids.len());
    for (group, members) in new_groups.iter().zip(&members_of) {
        let group_id = group_ids.get(&group.name).copied().ok_or_else(|| {
            DomainError::Internal(format!("inserted group {} not returned", group.name))
        })?;
        memberships.extend(members.iter().map(|user_id| (group_id, *user_id)));
    }
    store::bulk::add_members(tx, memberships, now).await?;

    // Pairs bench1–bench2, bench3–bench4, …, then bench1 with bench3.. until it has its
    // conversations: one group, its pair, and the rest.
    let mut pairs: Vec<(i32, i32)> = ids.chunks_exact(2).map(|pair| (pair[0], pair[1])).collect();
    let extra = BENCH_REST_CONVERSATIONS.saturating_sub(2);
    pairs.extend(ids.iter().skip(2).take(extra).map(|other| (ids[0], *other)));
    let chat_conversations =
        store::bulk::insert_conversations(tx, "chat", pairs.len(), now).await?;
    let friendships = pairs.len();
    let friends = pairs
        .into_iter()
        .zip(chat_conversations)
        .map(|((a, b), conversation_id)| (a.min(b), a.max(b), conversation_id))
        .collect();
    store::bulk::insert_friends(tx, friends, now).await?;
    Ok(BenchOutcome::Created {
        users: ids.len(),
        groups: new_groups.len(),
        friendships,
    })
}
