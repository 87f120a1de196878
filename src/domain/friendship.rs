//! Friendships: the friend list, and answering a friend apply. A friendship is stored once, with
//! the smaller user id first, and has its own `chat` conversation.

use serde::Serialize;

use crate::app::App;
use crate::store::models::{Conversation, Friend, NewFriend};
use crate::store::{self, DbConn, StoreError};

use super::applies::{self, APPLY_KIND_USER};
use super::profiles::{self, UserWithInfo};
use super::{Actor, DomainError};

/// A friend as `GET /friend` lists them: user + `userInfo` + the pair's `conversation`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListedFriend {
    #[serde(flatten)]
    pub person: UserWithInfo,
    pub conversation: Conversation,
    /// **new**: whether the friend has a socket connected right now, on any device.
    pub online: bool,
}

/// The user's friends, oldest friendship first, with their presence; two queries whatever their
/// number, and one presence look-up.
pub async fn list_friends(app: &App, actor: &Actor) -> Result<Vec<ListedFriend>, DomainError> {
    let mut conn = app.db.get().await?;
    let friendships = store::friends::friendships_of_user(&mut conn, actor.user_id).await?;
    let peer_of = |friend: &Friend| {
        if friend.user_id == actor.user_id {
            friend.friend_id
        } else {
            friend.user_id
        }
    };
    let ids: Vec<i32> = friendships.iter().map(|(f, _)| peer_of(f)).collect();
    let mut people = profiles::load_people(&mut conn, &ids).await?;
    let online = super::presence::online_users(app, &ids).await?;
    Ok(friendships
        .into_iter()
        .filter_map(|(friend, conversation)| {
            let peer = peer_of(&friend);
            people.remove(&peer).map(|person| ListedFriend {
                person,
                conversation,
                online: online.contains(&peer),
            })
        })
        .collect())
}

/// The friendship of `a` and `b`, created with its `chat` conversation if they were not friends.
pub async fn befriend(conn: &mut DbConn, a: i32, b: i32) -> Result<Friend, DomainError> {
    if let Some(friend) = store::friends::find_friendship(conn, a, b).await? {
        return Ok(friend);
    }
    let conversation = store::conversations::insert_conversation(conn, "chat").await?;
    let now = crate::time::now();
    let new = NewFriend {
        user_id: a.min(b),
        friend_id: a.max(b),
        conversation_id: conversation.id,
        created_at: now,
        updated_at: now,
    };
    store::friends::insert_friend(conn, &new)
        .await
        .map_err(|error| match error {
            // Two answers befriending the same pair at once (an apply each way, on PostgreSQL):
            // the caller's transaction rolls back and the loser is asked to try again.
            StoreError::UniqueViolation(_) => DomainError::rejected("操作冲突，请重试"),
            other => other.into(),
        })
}

/// `POST /add/friend` on approval: the friendship plus `target: {id}`, the other user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApprovedFriend {
    #[serde(flatten)]
    pub friend: Friend,
    pub target: FriendTarget,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FriendTarget {
    pub id: i32,
}

/// Answers a friend apply addressed to the actor: on approval the two become friends. The apply
/// is handled either way, in the same transaction; an apply addressed to someone else is
/// refused and left as it was.
pub async fn answer_friend_apply(
    app: &App,
    actor: &Actor,
    apply_id: i32,
    approval: bool,
) -> Result<Option<ApprovedFriend>, DomainError> {
    let user_id = actor.user_id;
    let mut conn = app.db.get().await?;
    conn.transaction(move |tx| {
        Box::pin(async move {
            let apply = applies::take_open_apply(tx, apply_id, APPLY_KIND_USER, user_id).await?;
            if !approval {
                return Ok(None);
            }
            let friend = befriend(tx, apply.from_id, user_id).await?;
            Ok(Some(ApprovedFriend {
                friend,
                target: FriendTarget { id: apply.from_id },
            }))
        })
    })
    .await
}
