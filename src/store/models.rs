//! Records as read from the store, serialized in the wire shapes of docs/protocol.md §3, and the
//! insert forms that write them. Read models and insert forms are separate types (Lemmy's rule).

use chrono::NaiveDateTime;
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::sql_types::Timestamp;
use diesel::sqlite::{Sqlite, SqliteType, SqliteValue};
use serde::Serialize;
use utoipa::ToSchema;

use super::schema::*;

/// A time column as read back. SQLite keeps times as text, and diesel parses that text by trying
/// chrono format strings in turn; a list of 30 conversations reads about 270 times, and that
/// parsing was the largest single cost of the request. The text this server writes
/// (`YYYY-MM-DD HH:MM:SS` and an optional fraction) is read directly; anything else, and every
/// PostgreSQL value, goes to diesel as before.
#[derive(diesel::deserialize::FromSqlRow)]
pub struct StoredTime(NaiveDateTime);

impl From<StoredTime> for NaiveDateTime {
    fn from(time: StoredTime) -> Self {
        time.0
    }
}

impl FromSql<Timestamp, Sqlite> for StoredTime {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        if value.value_type() == Some(SqliteType::Text)
            && let Some(time) = crate::time::parse_stored(value.read_text())
        {
            return Ok(StoredTime(time));
        }
        <NaiveDateTime as FromSql<Timestamp, Sqlite>>::from_sql(value).map(StoredTime)
    }
}

impl FromSql<Timestamp, Pg> for StoredTime {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, Pg>>::from_sql(value).map(StoredTime)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize, ToSchema)]
#[diesel(table_name = users)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i32,
    #[schema(pattern = "^(local|github)$")]
    pub provider: String,
    pub username: String,
    /// Never leaves the server.
    #[serde(skip)]
    pub password: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub provider: &'a str,
    pub username: &'a str,
    pub username_key: Option<&'a str>,
    pub password: Option<&'a str>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize, ToSchema)]
#[diesel(table_name = user_infos)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    pub id: i32,
    pub user_id: i32,
    pub nickname: String,
    pub photo: String,
    pub sign: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = user_infos)]
pub struct NewUserInfo<'a> {
    pub user_id: i32,
    pub nickname: &'a str,
    pub photo: &'a str,
    pub sign: Option<&'a str>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A role of the RBAC model (docs/protocol.md §3.2 `role`).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Serialize, ToSchema)]
#[diesel(table_name = roles)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub id: i32,
    pub name: String,
    pub key_name: String,
    #[serde(rename = "desc")]
    pub description: String,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = roles)]
pub struct NewRole<'a> {
    pub name: &'a str,
    pub key_name: &'a str,
    pub description: &'a str,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A right of the RBAC model (docs/protocol.md §3.2 `right`).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Serialize, ToSchema)]
#[diesel(table_name = rights)]
#[serde(rename_all = "camelCase")]
pub struct Right {
    pub id: i32,
    pub name: String,
    pub key_name: String,
    #[serde(rename = "desc")]
    pub description: String,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = rights)]
pub struct NewRight<'a> {
    pub name: &'a str,
    pub key_name: &'a str,
    pub description: &'a str,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize, ToSchema)]
#[diesel(table_name = conversations)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: i32,
    #[serde(rename = "type")]
    #[schema(pattern = "^(chat|groupchat)$")]
    pub kind: String,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub active_time: NaiveDateTime,
    pub active: bool,
    /// The sequence number of the newest message; internal.
    #[serde(skip)]
    pub last_seq: i64,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = conversations)]
pub struct NewConversation<'a> {
    pub kind: &'a str,
    pub active_time: NaiveDateTime,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize, ToSchema)]
#[diesel(table_name = groups)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: i32,
    pub name: String,
    pub photo: String,
    pub introduction: Option<String>,
    pub disabled: bool,
    pub mute: bool,
    pub owner_id: i32,
    pub conversation_id: i32,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = groups)]
pub struct NewGroup<'a> {
    pub name: &'a str,
    pub photo: &'a str,
    pub introduction: Option<&'a str>,
    pub owner_id: i32,
    pub conversation_id: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize, ToSchema)]
#[diesel(table_name = friends)]
#[serde(rename_all = "camelCase")]
pub struct Friend {
    pub id: i32,
    pub user_id: i32,
    pub friend_id: i32,
    pub conversation_id: i32,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = friends)]
pub struct NewFriend {
    pub user_id: i32,
    pub friend_id: i32,
    pub conversation_id: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize, ToSchema)]
#[diesel(table_name = applies)]
#[serde(rename_all = "camelCase")]
pub struct Apply {
    pub id: i32,
    #[serde(rename = "type")]
    #[schema(pattern = "^(user|group)$")]
    pub kind: String,
    pub from_id: i32,
    pub to_id: i32,
    pub user_id: i32,
    pub has_handled: bool,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    #[schema(value_type = crate::time::WireTime)]
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = applies)]
pub struct NewApply<'a> {
    pub kind: &'a str,
    pub from_id: i32,
    pub to_id: i32,
    pub user_id: i32,
    pub has_handled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A stored chat message (docs/protocol.md §3.2 `message`, plus the additive `seq`).
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Identifiable, Serialize)]
#[diesel(table_name = messages)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: i32,
    pub conversation_id: i32,
    /// Position in its conversation, 1, 2, 3…: what a reconnecting client asks to resume from.
    pub seq: i64,
    pub from_id: i32,
    pub to_id: i32,
    /// The client's JSON, stored as text and sent back as the JSON it was.
    #[serde(serialize_with = "serialize_json_text")]
    pub body: String,
    /// The sender's id for this send, so a retry is stored once; internal.
    #[serde(skip)]
    pub client_msg_id: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    #[diesel(deserialize_as = StoredTime)]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    #[diesel(deserialize_as = StoredTime)]
    pub updated_at: NaiveDateTime,
}

/// Writes JSON stored as text as that JSON (a string if it somehow is not JSON).
fn serialize_json_text<S: serde::Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => json.serialize(serializer),
        Err(_) => serializer.serialize_str(text),
    }
}
