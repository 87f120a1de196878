//! Messaging: who may post to a conversation and read its history, what a message body may be,
//! and storing a message exactly once under the next sequence number of its conversation.
//!
//! Socket.IO is the only transport today, but nothing here knows it: the handlers parse the
//! event's JSON with the `*Request::from_json` functions and render what these return.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

use super::conversations::{Membership, MembershipKind, NOT_A_MEMBER, membership};
use super::rbac::right;
use super::{Actor, DomainError};
use crate::store::conversations::Owner;
use crate::store::messages::MessageRow;
use crate::store::models::{Conversation, Message};
use crate::store::{self, Db, DbConn, StoreError};

pub use super::message_writer::MessageWriter;

/// Largest message body, as its JSON text (docs/protocol.md §3.3).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest `clientMsgId`: a UUID fits with room to spare; longer ids only cost index space.
pub const MAX_CLIENT_MSG_ID: usize = 64;
pub const DEFAULT_PAGE_SIZE: i64 = 10;
/// Most messages one history page returns, whatever the client asks.
pub const MAX_PAGE_SIZE: i64 = 100;
/// Highest page number honoured: beyond it pages are empty anyway, and the offset stays small.
pub const MAX_PAGE_NUMBER: i64 = 100_000;

pub const NO_SPEAK_RIGHT: &str = "您已被禁言";
pub const BAD_CONVERSATION: &str = "conversationId 必须是会话编号";
pub const BAD_BODY: &str = "body 必须是带字符串 type 的 JSON 对象";
pub const BODY_TOO_LARGE: &str = "消息内容过长";
pub const BAD_CLIENT_MSG_ID: &str = "clientMsgId 必须是 1 到 64 个字符的字符串";
pub const CLIENT_MSG_ID_REUSED: &str = "clientMsgId 已用于另一会话";
pub const BAD_PAGING: &str = "pageSize、pageNumber 和 since 必须是数字";
pub const NOT_AN_OBJECT: &str = "参数必须是 JSON 对象";

/// What the client asks in `/v1/im/join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub conversation_id: i32,
}

impl JoinRequest {
    pub fn from_json(payload: &Value) -> Result<Self, DomainError> {
        let fields = object(payload)?;
        Ok(JoinRequest {
            conversation_id: conversation_id(fields.get("conversationId"))?,
        })
    }
}

/// What the client asks in `/v1/im/new-message` for a stored conversation. `fromId`, `toId` and
/// `type` are not read: the sender is the session user, the rest follows from the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    pub conversation_id: i32,
    pub body: Value,
    pub client_msg_id: Option<String>,
}

impl SendRequest {
    pub fn from_json(payload: &Value) -> Result<Self, DomainError> {
        let fields = object(payload)?;
        let body = fields.get("body").cloned().unwrap_or(Value::Null);
        check_body(&body)?;
        let client_msg_id = match fields.get("clientMsgId") {
            None | Some(Value::Null) => None,
            // No NUL: PostgreSQL cannot store it, and the failure took the whole batch down.
            Some(Value::String(id))
                if !id.is_empty() && id.len() <= MAX_CLIENT_MSG_ID && !id.contains('\0') =>
            {
                Some(id.clone())
            }
            Some(_) => return Err(DomainError::invalid(BAD_CLIENT_MSG_ID)),
        };
        Ok(SendRequest {
            conversation_id: conversation_id(fields.get("conversationId"))?,
            body,
            client_msg_id,
        })
    }
}

/// What the client asks in `/v1/im/get-messages`: a page, newest first, or with `since`, what
/// followed that sequence number, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRequest {
    pub conversation_id: i32,
    pub page_size: i64,
    pub page_number: i64,
    pub since: Option<i64>,
}

impl HistoryRequest {
    pub fn from_json(payload: &Value) -> Result<Self, DomainError> {
        let fields = object(payload)?;
        let (page_size, page_number, since) = paging(fields)?;
        Ok(HistoryRequest {
            conversation_id: conversation_id(fields.get("conversationId"))?,
            page_size,
            page_number,
            since,
        })
    }
}

/// Whether a payload is the robot's (`type: "robot"`), which is answered, never stored.
pub fn is_robot(payload: &Value) -> bool {
    payload.get("type").and_then(Value::as_str) == Some("robot")
}

/// The H5 client's robot chat is conversation `"robot"`.
pub const ROBOT_CONVERSATION: &str = "robot";

/// Whether an event names the robot's conversation, which has no members to check (everyone
/// may talk to the robot) and no stored history.
pub fn is_robot_conversation(payload: &Value) -> bool {
    payload.get("conversationId").and_then(Value::as_str) == Some(ROBOT_CONVERSATION)
}

/// The history of the robot's conversation: always empty, since robot talk is never stored (the
/// original answered the same, as no message row matched).
pub fn robot_history(payload: &Value) -> Result<Value, DomainError> {
    let (page_size, page_number, _) = paging(object(payload)?)?;
    Ok(serde_json::json!({
        "conversationId": ROBOT_CONVERSATION,
        "pageSize": page_size,
        "pageNumber": page_number,
        "count": 0,
        "messages": [],
    }))
}

/// The body rule of docs/protocol.md §3.3: a JSON object with a string `type`, at most 64 KiB as
/// JSON.
pub fn check_body(body: &Value) -> Result<(), DomainError> {
    match body.get("type") {
        Some(Value::String(_)) if body.is_object() => {}
        _ => return Err(DomainError::invalid(BAD_BODY)),
    }
    // The length of the JSON text, counted without building it.
    let mut counter = ByteCounter(0);
    if serde_json::to_writer(&mut counter, body).is_err() || counter.0 > MAX_BODY_BYTES {
        return Err(DomainError::invalid(BODY_TOO_LARGE));
    }
    Ok(())
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        if self.0 > MAX_BODY_BYTES {
            // Stop serializing as soon as the limit is passed.
            return Err(std::io::Error::other("too large"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `pageSize` (default 10, clamped), `pageNumber` (default 1, clamped) and `since`.
fn paging(fields: &serde_json::Map<String, Value>) -> Result<(i64, i64, Option<i64>), DomainError> {
    let page_size = number(fields.get("pageSize"))?
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE);
    let page_number = number(fields.get("pageNumber"))?
        .unwrap_or(1)
        .clamp(1, MAX_PAGE_NUMBER);
    let since = number(fields.get("since"))?.map(|seq| seq.max(0));
    Ok((page_size, page_number, since))
}

fn object(payload: &Value) -> Result<&serde_json::Map<String, Value>, DomainError> {
    payload
        .as_object()
        .ok_or_else(|| DomainError::invalid(NOT_AN_OBJECT))
}

/// A conversation id: a positive number, or a string holding one (the H5 client sends both).
fn conversation_id(value: Option<&Value>) -> Result<i32, DomainError> {
    let id = match value {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    id.filter(|id| *id > 0)
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| DomainError::invalid(BAD_CONVERSATION))
}

/// An optional whole number, given as a number or a string holding one.
fn number(value: Option<&Value>) -> Result<Option<i64>, DomainError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| DomainError::invalid(BAD_PAGING)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| DomainError::invalid(BAD_PAGING)),
        Some(_) => Err(DomainError::invalid(BAD_PAGING)),
    }
}

/// Checks that the user may follow the conversation live: a member of one of their friendships
/// or of a group that is not disbanded.
pub async fn join(
    conn: &mut DbConn,
    actor: &Actor,
    request: &JoinRequest,
) -> Result<(), DomainError> {
    membership(conn, actor.user_id, request.conversation_id)
        .await?
        .ensure_open()?;
    Ok(())
}

/// A message as posted: `fresh` is false when a retry with the same `clientMsgId` found the one
/// already stored, which must then not be delivered to the room a second time.
#[derive(Debug, Clone)]
pub struct Posted {
    pub message: Message,
    pub fresh: bool,
}

/// Stores a message from the actor: they need the `speak` right and a membership of the
/// conversation, whose group (if any) is neither disbanded nor muted. The addressee is read from
/// the conversation, never from the client. The message goes through the process's writer,
/// which stores it with the others posted meanwhile in one transaction ([`store_batch`]); this
/// answers once that transaction committed, or failed.
pub async fn post(
    writer: &MessageWriter,
    actor: &Actor,
    request: &SendRequest,
) -> Result<Posted, DomainError> {
    if !actor.has_right(right::SPEAK) {
        return Err(DomainError::rejected(NO_SPEAK_RIGHT));
    }
    writer
        .store(NewPost {
            from_id: actor.user_id,
            conversation_id: request.conversation_id,
            body: request.body.to_string(),
            client_msg_id: request.client_msg_id.clone(),
        })
        .await
}

/// A message to store, from a sender whose `speak` right was checked.
#[derive(Debug, Clone)]
pub struct NewPost {
    pub from_id: i32,
    pub conversation_id: i32,
    /// The body as JSON text.
    pub body: String,
    pub client_msg_id: Option<String>,
}

/// How many times a batch is tried when a unique `clientMsgId` refused it: another process
/// stored the same send meanwhile, which the next try finds.
const BATCH_TRIES: usize = 2;

/// Stores a batch of posts in one transaction, each under the next sequence number of its
/// conversation in the order given. Each post gets its own answer: refused (not a member, a
/// disbanded or muted group, a `clientMsgId` of another conversation), found already stored (a
/// retry, in an earlier batch or earlier in this one), or stored now. The outer error is the
/// batch's: nothing of it was stored, and every post of it failed.
///
/// `written`, if given, is notified once every statement but the commit succeeded: the batch
/// then holds the row locks of its conversations, so a batch started after that numbers its
/// messages after this one's (PostgreSQL makes its locks wait for this commit).
pub async fn store_batch(
    db: &Db,
    posts: Arc<Vec<NewPost>>,
    written: Option<Arc<Notify>>,
) -> Result<Vec<Result<Posted, DomainError>>, DomainError> {
    let mut conn = db.get().await?;
    let mut tries = 0;
    loop {
        tries += 1;
        let batch = posts.clone();
        let written = written.clone();
        let stored = conn
            .transaction(|tx| {
                Box::pin(async move {
                    let answers = store_in(tx, &batch).await?;
                    if let Some(written) = written {
                        written.notify_one();
                    }
                    Ok(answers)
                })
            })
            .await;
        match stored {
            Err(StoreError::UniqueViolation(_)) if tries < BATCH_TRIES => continue,
            other => return Ok(other?),
        }
    }
}

/// The body of [`store_batch`]'s transaction: its queries are one per kind, not one per post.
async fn store_in(
    tx: &mut DbConn,
    posts: &[NewPost],
) -> Result<Vec<Result<Posted, DomainError>>, StoreError> {
    let mut answers: Vec<Option<Result<Posted, DomainError>>> =
        posts.iter().map(|_| None).collect();
    // Who may post where, read in the transaction that writes: a member removed, or a group
    // disbanded or muted, before it committed is refused here.
    let conversation_ids = distinct(posts.iter().map(|post| post.conversation_id));
    let owners: HashMap<i32, (Conversation, Owner)> =
        store::conversations::owners_of(tx, &conversation_ids)
            .await?
            .into_iter()
            .map(|(conversation, owner)| (conversation.id, (conversation, owner)))
            .collect();
    let group_ids = distinct(owners.values().filter_map(|(_, owner)| match owner {
        Owner::Group(group) => Some(group.id),
        Owner::Friendship(_) => None,
    }));
    let sender_ids = distinct(posts.iter().map(|post| post.from_id));
    let group_members: HashSet<(i32, i32)> =
        store::conversations::group_members(tx, &group_ids, &sender_ids)
            .await?
            .into_iter()
            .collect();
    let mut to_ids = vec![0; posts.len()];
    for (i, post) in posts.iter().enumerate() {
        let member = owners
            .get(&post.conversation_id)
            .filter(|(_, owner)| match owner {
                Owner::Friendship(friend) => {
                    friend.user_id == post.from_id || friend.friend_id == post.from_id
                }
                Owner::Group(group) => group_members.contains(&(group.id, post.from_id)),
            })
            .ok_or_else(|| DomainError::rejected(NOT_A_MEMBER))
            .and_then(|(conversation, owner)| {
                Membership::of_member(post.from_id, conversation.clone(), owner.clone())
                    .ensure_open_for_messages()
            });
        match member {
            Ok(member) => {
                to_ids[i] = match &member.kind {
                    MembershipKind::Chat { peer_id } => *peer_id,
                    MembershipKind::Group { group } => group.id,
                }
            }
            Err(refused) => answers[i] = Some(Err(refused)),
        }
    }

    // Retries: a send stored by an earlier batch, or by an earlier post of this one.
    let keyed: Vec<usize> = (0..posts.len())
        .filter(|&i| answers[i].is_none() && posts[i].client_msg_id.is_some())
        .collect();
    let client_msg_ids = distinct(
        keyed
            .iter()
            .filter_map(|&i| posts[i].client_msg_id.as_deref()),
    );
    let keyed_senders = distinct(keyed.iter().map(|&i| posts[i].from_id));
    let earlier: HashMap<(i32, String), Message> =
        store::messages::find_by_client_msg_ids(tx, &keyed_senders, &client_msg_ids)
            .await?
            .into_iter()
            .filter_map(|message| {
                let key = (message.from_id, message.client_msg_id.clone()?);
                Some((key, message))
            })
            .collect();
    let mut first_send: HashMap<(i32, &str), usize> = HashMap::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for &i in &keyed {
        let post = &posts[i];
        let id = post.client_msg_id.as_deref().unwrap_or_default();
        if let Some(stored) = earlier.get(&(post.from_id, id.to_owned())) {
            answers[i] = Some(already_stored(stored.clone(), post.conversation_id));
        } else if let Some(&first) = first_send.get(&(post.from_id, id)) {
            repeats.push((i, first));
        } else {
            first_send.insert((post.from_id, id), i);
        }
    }
    let repeated: HashSet<usize> = repeats.iter().map(|(i, _)| *i).collect();
    let fresh: Vec<usize> = (0..posts.len())
        .filter(|i| answers[*i].is_none() && !repeated.contains(i))
        .collect();

    if !fresh.is_empty() {
        // Sequence numbers: each conversation's are taken at once, then handed out in order.
        let mut counts: Vec<(i32, i64)> = Vec::new();
        for &i in &fresh {
            let id = posts[i].conversation_id;
            match counts
                .iter_mut()
                .find(|(conversation, _)| *conversation == id)
            {
                Some((_, count)) => *count += 1,
                None => counts.push((id, 1)),
            }
        }
        let now = crate::time::now();
        let last = store::messages::take_seqs(tx, &counts, now).await?;
        let mut next = HashMap::with_capacity(counts.len());
        for (id, count) in counts {
            let last = last.get(&id).ok_or(StoreError::NotFound)?;
            next.insert(id, last - count + 1);
        }
        let numbered: Vec<(usize, i64)> = fresh
            .iter()
            .map(|&i| {
                let seq = next.entry(posts[i].conversation_id).or_default();
                *seq += 1;
                (i, *seq - 1)
            })
            .collect();
        let rows: Vec<MessageRow> = numbered
            .iter()
            .map(|&(i, seq)| {
                let post = &posts[i];
                MessageRow {
                    conversation_id: post.conversation_id,
                    seq,
                    from_id: post.from_id,
                    to_id: to_ids[i],
                    body: post.body.clone(),
                    client_msg_id: post.client_msg_id.clone(),
                }
            })
            .collect();
        let mut inserted: HashMap<(i32, i64), Message> =
            store::messages::insert_messages(tx, rows, now)
                .await?
                .into_iter()
                .map(|message| ((message.conversation_id, message.seq), message))
                .collect();
        for (i, seq) in numbered {
            let id = posts[i].conversation_id;
            let message = inserted.remove(&(id, seq)).ok_or_else(|| {
                StoreError::Query(format!("message {id}/{seq} not returned by its insert"))
            })?;
            answers[i] = Some(Ok(Posted {
                message,
                fresh: true,
            }));
        }
    }
    for (i, first) in repeats {
        let answer = match &answers[first] {
            Some(Ok(posted)) => already_stored(posted.message.clone(), posts[i].conversation_id),
            _ => Err(DomainError::Internal(
                "a repeated send without its first".into(),
            )),
        };
        answers[i] = Some(answer);
    }
    Ok(answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| Err(DomainError::Internal("post not answered".into())))
        })
        .collect())
}

/// The distinct values of `values`, sorted.
fn distinct<T: Ord>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut values: Vec<T> = values.collect();
    values.sort_unstable();
    values.dedup();
    values
}

fn already_stored(stored: Message, conversation_id: i32) -> Result<Posted, DomainError> {
    if stored.conversation_id != conversation_id {
        return Err(DomainError::invalid(CLIENT_MSG_ID_REUSED));
    }
    Ok(Posted {
        message: stored,
        fresh: false,
    })
}

/// One answer to `/v1/im/get-messages` (docs/protocol.md §5.5), plus the additive `since`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub conversation_id: i32,
    pub page_size: i64,
    pub page_number: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// All messages of the conversation; with `since`, those after it.
    pub count: i64,
    pub messages: Vec<Message>,
}

/// A page of a conversation's history, for a member of it.
pub async fn history(
    conn: &mut DbConn,
    actor: &Actor,
    request: &HistoryRequest,
) -> Result<History, DomainError> {
    membership(conn, actor.user_id, request.conversation_id)
        .await?
        .ensure_open()?;
    let id = request.conversation_id;
    let (count, messages) = match request.since {
        Some(since) => (
            store::messages::count_since(conn, id, since).await?,
            store::messages::after_seq(conn, id, since, request.page_size).await?,
        ),
        None => (
            store::messages::count_in_conversation(conn, id).await?,
            store::messages::page_newest_first(
                conn,
                id,
                request.page_size,
                (request.page_number - 1) * request.page_size,
            )
            .await?,
        ),
    };
    Ok(History {
        conversation_id: id,
        page_size: request.page_size,
        page_number: request.page_number,
        since: request.since,
        count,
        messages,
    })
}
