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
    Ok(Membership { conversation, kind })
}

impl Membership {
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
