//! Conversations: the rooms that a friendship or a group talks in.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::models::{Conversation, Friend, Group, NewConversation, User, UserInfo};
use super::schema::{conversations, friends, groups, user_groups, user_infos, users};
use super::{DbConn, StoreError};
use crate::db_run;

/// Opens a new, active conversation of `kind` (`chat` or `groupchat`).
pub async fn insert_conversation(
    conn: &mut DbConn,
    kind: &str,
) -> Result<Conversation, StoreError> {
    let now = crate::time::now();
    let new = NewConversation {
        kind,
        active_time: now,
        active: true,
        created_at: now,
        updated_at: now,
    };
    db_run!(conn: {
        Ok(diesel::insert_into(conversations::table)
            .values(&new)
            .returning(Conversation::as_returning())
            .get_result(conn)
            .await?)
    })
}

/// What a conversation belongs to: a friendship or a group.
#[derive(Debug, Clone)]
pub enum Owner {
    Friendship(Friend),
    Group(Group),
}

/// The conversation and its owner, if `user_id` takes part in it: one of the pair of a friendship,
/// or a member of the group (disabled or not: callers decide what a disbanded group still allows).
pub async fn find_for_member(
    conn: &mut DbConn,
    conversation_id: i32,
    user_id: i32,
) -> Result<Option<(Conversation, Owner)>, StoreError> {
    db_run!(conn: {
        let friendship: Option<(Conversation, Friend)> = conversations::table
            .inner_join(friends::table)
            .filter(conversations::id.eq(conversation_id))
            .filter(friends::user_id.eq(user_id).or(friends::friend_id.eq(user_id)))
            .select((Conversation::as_select(), Friend::as_select()))
            .first(conn)
            .await
            .optional()?;
        if let Some((conversation, friend)) = friendship {
            return Ok(Some((conversation, Owner::Friendship(friend))));
        }
        let group: Option<(Conversation, Group)> = conversations::table
            .inner_join(groups::table)
            .filter(conversations::id.eq(conversation_id))
            .filter(groups::id.eq_any(group_ids_of_user(user_id)))
            .select((Conversation::as_select(), Group::as_select()))
            .first(conn)
            .await
            .optional()?;
        Ok(group.map(|(conversation, group)| (conversation, Owner::Group(group))))
    })
}

/// Each of `conversation_ids` that exists, with its owner, whoever asks: the batch form of
/// [`find_for_member`], whose caller checks the membership itself (the pair of a friendship, or
/// [`group_members`] for a group).
pub async fn owners_of(
    conn: &mut DbConn,
    conversation_ids: &[i32],
) -> Result<Vec<(Conversation, Owner)>, StoreError> {
    db_run!(conn: {
        let chats: Vec<(Conversation, Friend)> = conversations::table
            .inner_join(friends::table)
            .filter(conversations::id.eq_any(conversation_ids))
            .select((Conversation::as_select(), Friend::as_select()))
            .load(conn)
            .await?;
        let groupchats: Vec<(Conversation, Group)> = conversations::table
            .inner_join(groups::table)
            .filter(conversations::id.eq_any(conversation_ids))
            .select((Conversation::as_select(), Group::as_select()))
            .load(conn)
            .await?;
        Ok(chats
            .into_iter()
            .map(|(conversation, friend)| (conversation, Owner::Friendship(friend)))
            .chain(
                groupchats
                    .into_iter()
                    .map(|(conversation, group)| (conversation, Owner::Group(group))),
            )
            .collect())
    })
}

/// The `(group_id, user_id)` memberships among `group_ids` × `user_ids`.
pub async fn group_members(
    conn: &mut DbConn,
    group_ids: &[i32],
    user_ids: &[i32],
) -> Result<Vec<(i32, i32)>, StoreError> {
    if group_ids.is_empty() || user_ids.is_empty() {
        return Ok(Vec::new());
    }
    db_run!(conn: {
        Ok(user_groups::table
            .filter(user_groups::group_id.eq_any(group_ids))
            .filter(user_groups::user_id.eq_any(user_ids))
            .select((user_groups::group_id, user_groups::user_id))
            .load(conn)
            .await?)
    })
}

/// What a user's conversation list is made of: the active conversations of their friendships,
/// each with the friendship and the other user (with their profile), and those of their groups
/// that are not disabled.
#[derive(Debug, Default)]
pub struct ListRows {
    pub chats: Vec<ChatRow>,
    pub groupchats: Vec<(Conversation, Group)>,
}

pub type ChatRow = (Conversation, Friend, User, Option<UserInfo>);

// What the list's queries select; a macro because a selection's type names its backend.
macro_rules! chat_columns {
    () => {
        (
            Conversation::as_select(),
            Friend::as_select(),
            User::as_select(),
            Option::<UserInfo>::as_select(),
        )
    };
}
macro_rules! group_columns {
    () => {
        (Conversation::as_select(), Group::as_select())
    };
}

/// The active conversations of `user_id`'s friendships, joined to the other user of each.
#[diesel::dsl::auto_type(no_type_alias)]
fn active_chats_of_user(user_id: i32) -> _ {
    let peer_id: diesel::dsl::case_when<
        diesel::dsl::Eq<friends::user_id, i32>,
        friends::friend_id,
        diesel::sql_types::Integer,
    > = diesel::dsl::case_when(friends::user_id.eq(user_id), friends::friend_id);
    conversations::table
        .inner_join(friends::table)
        .inner_join(
            users::table.on(users::id
                .nullable()
                .eq(peer_id.otherwise(friends::user_id).nullable())),
        )
        .left_join(user_infos::table.on(user_infos::user_id.eq(users::id)))
        .filter(conversations::active.eq(true))
        .filter(
            friends::user_id
                .eq(user_id)
                .or(friends::friend_id.eq(user_id)),
        )
}

/// The active conversations of the groups `user_id` is a member of that are not disabled.
#[diesel::dsl::auto_type(no_type_alias)]
fn active_groupchats_of_user(user_id: i32) -> _ {
    let member_of: group_ids_of_user = group_ids_of_user(user_id);
    conversations::table
        .inner_join(groups::table)
        .filter(conversations::active.eq(true))
        .filter(groups::disabled.eq(false))
        .filter(groups::id.eq_any(member_of))
}

/// The ids of the groups `user_id` is a member of, for `groups::id.eq_any`: the user's groups
/// first, then each by its key. An EXISTS per group made SQLite scan every group (76 µs against
/// 7 µs with 200 groups, and growing with them).
#[diesel::dsl::auto_type]
fn group_ids_of_user(user_id: i32) -> _ {
    user_groups::table
        .filter(user_groups::user_id.eq(user_id))
        .select(user_groups::group_id)
}

/// The rows of `user_id`'s conversation list. On SQLite both queries run in one hand-off to the
/// connection's thread: a hand-off costs more than either query, and the list is the request
/// clients repeat most.
pub async fn list_of_user(conn: &mut DbConn, user_id: i32) -> Result<ListRows, StoreError> {
    match conn {
        DbConn::Sqlite(conn) => Ok(conn
            .spawn_blocking(move |conn| {
                Ok(ListRows {
                    chats: diesel::RunQueryDsl::load::<ChatRow>(
                        active_chats_of_user(user_id).select(chat_columns!()),
                        conn,
                    )?,
                    groupchats: diesel::RunQueryDsl::load(
                        active_groupchats_of_user(user_id).select(group_columns!()),
                        conn,
                    )?,
                })
            })
            .await?),
        DbConn::Postgres(conn) => {
            let conn = &mut **conn;
            Ok(ListRows {
                chats: active_chats_of_user(user_id)
                    .select(chat_columns!())
                    .load::<ChatRow>(conn)
                    .await?,
                groupchats: active_groupchats_of_user(user_id)
                    .select(group_columns!())
                    .load(conn)
                    .await?,
            })
        }
    }
}

/// Shows or hides a conversation in its members' lists and marks it used now.
pub async fn set_active(conn: &mut DbConn, id: i32, active: bool) -> Result<(), StoreError> {
    let now = crate::time::now();
    db_run!(conn: {
        diesel::update(conversations::table.find(id))
            .set((
                conversations::active.eq(active),
                conversations::active_time.eq(now),
                conversations::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
    });
    Ok(())
}
