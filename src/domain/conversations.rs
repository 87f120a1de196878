//! Conversations and who takes part in them: the one membership rule that REST (toggling a
//! conversation) and Socket.IO (join, send, history) both apply.

use crate::store::conversations::Owner;
use crate::store::models::{Conversation, Group};
use crate::store::{self, DbConn};

use super::DomainError;

/// A conversation the user takes part in.
#[derive(Debug, Clone)]
pub struct Membership {
    pub conversation: Conversation,
    pub kind: MembershipKind,
}

#[derive(Debug, Clone)]
pub enum MembershipKind {
    /// One of a friendship; `peer_id` is the other user.
    Chat { peer_id: i32 },
    /// A member of `group`.
    Group { group: Group },
}

pub const NOT_A_MEMBER: &str = "不是此会话的成员";
pub const GROUP_DISABLED: &str = "该群已解散";
pub const GROUP_MUTED: &str = "该群已禁言";

/// The user's membership of the conversation, or a refusal when the conversation is unknown or
/// theirs to see is not (the same answer for both, so ids cannot be probed).
pub async fn membership(
    conn: &mut DbConn,
    user_id: i32,
    conversation_id: i32,
) -> Result<Membership, DomainError> {
    let (conversation, owner) =
        store::conversations::find_for_member(conn, conversation_id, user_id)
            .await?
            .ok_or_else(|| DomainError::rejected(NOT_A_MEMBER))?;
    Ok(Membership::of_member(user_id, conversation, owner))
}

impl Membership {
    /// The membership of `user_id`, already known to take part in the conversation owned by
    /// `owner` (one of the friendship's pair, or a member of the group).
    pub fn of_member(user_id: i32, conversation: Conversation, owner: Owner) -> Self {
        let kind = match owner {
            Owner::Friendship(friend) => MembershipKind::Chat {
                peer_id: if friend.user_id == user_id {
                    friend.friend_id
                } else {
                    friend.user_id
                },
            },
            Owner::Group(group) => MembershipKind::Group { group },
        };
        Membership { conversation, kind }
    }

    /// Refuses a disbanded group: it is hidden and its chat is stopped.
    pub fn ensure_open(self) -> Result<Self, DomainError> {
        match &self.kind {
            MembershipKind::Group { group } if group.disabled => {
                Err(DomainError::rejected(GROUP_DISABLED))
            }
            _ => Ok(self),
        }
    }

    /// Refuses a disbanded or muted group: no new message may be posted there.
    pub fn ensure_open_for_messages(self) -> Result<Self, DomainError> {
        let open = self.ensure_open()?;
        match &open.kind {
            MembershipKind::Group { group } if group.mute => {
                Err(DomainError::rejected(GROUP_MUTED))
            }
            _ => Ok(open),
        }
    }
}

/// What a listed conversation is with: the friend (user + `userInfo`) or the group.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Target {
    Friend(super::profiles::UserWithInfo),
    Group(Group),
}

/// A conversation of the session user's list: the conversation plus its `target`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ListedConversation {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub target: Target,
}

/// The user's active conversations, newest `updatedAt` first: those of their friendships and of
/// their groups that are not disabled. Two queries whatever the number of conversations.
pub async fn list_conversations(
    app: &crate::app::App,
    actor: &super::Actor,
) -> Result<Vec<ListedConversation>, DomainError> {
    let mut conn = app.db.get().await?;
    let rows = store::conversations::list_of_user(&mut conn, actor.user_id).await?;
    drop(conn);
    // A friendship whose other user is gone (deleted meanwhile) has no row: nothing to show.
    let chats = rows
        .chats
        .into_iter()
        .map(|(conversation, _, peer, peer_info)| ListedConversation {
            conversation,
            target: Target::Friend((peer, peer_info).into()),
        });
    let groupchats = rows
        .groupchats
        .into_iter()
        .map(|(conversation, group)| ListedConversation {
            conversation,
            target: Target::Group(group),
        });
    let mut listed: Vec<ListedConversation> = chats.chain(groupchats).collect();
    listed.sort_by(|a, b| {
        (b.conversation.updated_at, b.conversation.id)
            .cmp(&(a.conversation.updated_at, a.conversation.id))
    });
    Ok(listed)
}

/// Shows (or hides) a conversation in the user's list and marks it used now; only a member may,
/// and not in a disbanded group (the original let anyone touch any conversation).
pub async fn set_active(
    app: &crate::app::App,
    actor: &super::Actor,
    conversation_id: i32,
    active: bool,
) -> Result<(), DomainError> {
    let mut conn = app.db.get().await?;
    membership(&mut conn, actor.user_id, conversation_id)
        .await?
        .ensure_open()?;
    store::conversations::set_active(&mut conn, conversation_id, active).await?;
    Ok(())
}
