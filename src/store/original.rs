//! Reading the original's MySQL/MariaDB database (the tables its sequelize models create), page
//! by page, for `im-server import`.
//!
//! The driver is diesel-async's `AsyncMysqlConnection`: diesel's MySQL backend over mysql_async,
//! pure Rust, so the server links no libmysqlclient and the import uses the same query layer as
//! the rest of the store. Rows come back as the original stored them: times as wall-clock
//! `DATETIME`s at the original's time zone, every column that sequelize left nullable as an
//! `Option`, so that the domain decides what to mend and what to skip. Tables with an `id` are
//! read by keyset (`id > last ORDER BY id LIMIT n`), the join tables by their composite keys:
//! each page is one indexed range read however large the table, and only one page is in memory.

use chrono::NaiveDateTime;
use diesel::QueryableByName;
use diesel::sql_types::{Bool, Datetime, Integer, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};

use super::StoreError;

/// The original's tables, in the order an import reads them (each after those it refers to).
pub const TABLES: [&str; 12] = [
    "rights",
    "roles",
    "role_right",
    "users",
    "user_infos",
    "user_role",
    "conversations",
    "groups",
    "user_group",
    "friends",
    "messages",
    "applies",
];

/// An open connection to the original's database.
pub struct Source {
    conn: AsyncMysqlConnection,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SrcUser {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub provider: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub username: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub password: Option<String>,
    #[diesel(sql_type = Datetime)]
    pub created_at: NaiveDateTime,
    #[diesel(sql_type = Datetime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SrcUserInfo {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Nullable<Integer>)]
    pub user_id: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    pub nickname: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub photo: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub sign: Option<String>,
    #[diesel(sql_type = Datetime)]
    pub created_at: NaiveDateTime,
    #[diesel(sql_type = Datetime)]
    pub updated_at: NaiveDateTime,
}

/// A right or a role: the two tables have the same columns.
#[derive(Debug, Clone, QueryableByName)]
pub struct SrcRbac {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub key_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub desc: Option<String>,
    #[diesel(sql_type = Datetime)]
    pub created_at: NaiveDateTime,
    #[diesel(sql_type = Datetime)]
    pub updated_at: NaiveDateTime,
}

/// A row of a join table (`role_right`, `user_role`, `user_group`): its two keys, in the order of
/// the table's primary key, and when it was made.
#[derive(Debug, Clone, QueryableByName)]
pub struct SrcPair {
    #[diesel(sql_type = Integer)]
    pub a: i32,
    #[diesel(sql_type = Integer)]
    pub b: i32,
    #[diesel(sql_type = Datetime)]
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SrcConversation {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub kind: Option<String>,
    #[diesel(sql_type = Nullable<Datetime>)]
    pub active_time: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Bool>)]
    pub active: Option<bool>,
    #[diesel(sql_type = Datetime)]
    pub created_at: NaiveDateTime,
    #[diesel(sql_type = Datetime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SrcGroup {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub photo: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub introduction: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    pub disabled: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    pub mute: Option<bool>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub owner_id: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub conversation_id: Option<i32>,
    #[diesel(sql_type = Datetime)]
    pub created_at: NaiveDateTime,
    #[diesel(sql_type = Datetime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SrcFriend {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Nullable<Integer>)]
    pub user_id: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub friend_id: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub conversation_id: Option<i32>,
    #[diesel(sql_type = Datetime)]
    pub created_at: NaiveDateTime,
    #[diesel(sql_type = Datetime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SrcMessage {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    /// The JSON text as stored (MySQL's `JSON`, MariaDB's `LONGTEXT`), not yet checked.
    #[diesel(sql_type = Nullable<Text>)]
    pub body: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub from_id: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub to_id: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub conversation_id: Option<i32>,
    #[diesel(sql_type = Datetime)]
    pub created_at: NaiveDateTime,
    #[diesel(sql_type = Datetime)]
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SrcApply {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub kind: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub from_id: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub to_id: Option<i32>,
    #[diesel(sql_type = Nullable<Bool>)]
    pub has_handled: Option<bool>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub user_id: Option<i32>,
    #[diesel(sql_type = Datetime)]
    pub created_at: NaiveDateTime,
    #[diesel(sql_type = Datetime)]
    pub updated_at: NaiveDateTime,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The columns of each table as the import reads them. ENUM and JSON columns are cast to text:
/// MySQL sends them with types of their own, MariaDB as strings.
const USERS: &str = "SELECT id, provider, username, password, created_at, updated_at FROM users";
const USER_INFOS: &str =
    "SELECT id, user_id, nickname, photo, sign, created_at, updated_at FROM user_infos";
const RIGHTS: &str = "SELECT id, name, key_name, `desc`, created_at, updated_at FROM rights";
const ROLES: &str = "SELECT id, name, key_name, `desc`, created_at, updated_at FROM roles";
const CONVERSATIONS: &str = "SELECT id, CAST(type AS CHAR) AS kind, active_time, active, \
     created_at, updated_at FROM conversations";
const GROUPS: &str = "SELECT id, name, photo, introduction, disabled, mute, owner_id, \
     conversation_id, created_at, updated_at FROM `groups`";
const FRIENDS: &str =
    "SELECT id, user_id, friend_id, conversation_id, created_at, updated_at FROM friends";
const MESSAGES: &str = "SELECT id, CAST(body AS CHAR) AS body, from_id, to_id, conversation_id, \
     created_at, updated_at FROM messages";
const APPLIES: &str = "SELECT id, CAST(type AS CHAR) AS kind, from_id, to_id, has_handled, \
     user_id, created_at, updated_at FROM applies";

/// A join table: its name and the two columns of its primary key, in the key's order.
#[derive(Debug, Clone, Copy)]
pub struct JoinTable {
    pub table: &'static str,
    pub a: &'static str,
    pub b: &'static str,
}

pub const ROLE_RIGHT: JoinTable = JoinTable {
    table: "role_right",
    a: "role_id",
    b: "right_id",
};
pub const USER_ROLE: JoinTable = JoinTable {
    table: "user_role",
    a: "user_id",
    b: "role_id",
};
pub const USER_GROUP: JoinTable = JoinTable {
    table: "user_group",
    a: "group_id",
    b: "user_id",
};

impl Source {
    /// Connects to `url` (`mysql://user:password@host:3306/database`).
    pub async fn connect(url: &str) -> Result<Source, StoreError> {
        let conn = AsyncMysqlConnection::establish(url)
            .await
            .map_err(|error| StoreError::Unavailable(error.to_string()))?;
        let mut source = Source { conn };
        // A consistent view of every table for the whole read (InnoDB's snapshot), so that a
        // source still in use cannot hand over a message whose conversation came after its page.
        source
            .conn
            .batch_execute(
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
                 START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            )
            .await?;
        Ok(source)
    }

    /// Which of the original's tables the database lacks.
    pub async fn missing_tables(&mut self) -> Result<Vec<&'static str>, StoreError> {
        let present: Vec<Name> = diesel::sql_query(
            "SELECT CAST(table_name AS CHAR) AS name FROM information_schema.tables \
             WHERE table_schema = DATABASE()",
        )
        .load(&mut self.conn)
        .await?;
        Ok(TABLES
            .into_iter()
            .filter(|table| !present.iter().any(|p| p.name.eq_ignore_ascii_case(table)))
            .collect())
    }

    /// Rows in `table`, one of [`TABLES`].
    pub async fn count(&mut self, table: &'static str) -> Result<u64, StoreError> {
        let count: Count = diesel::sql_query(format!(
            "SELECT CAST(COUNT(*) AS SIGNED) AS n FROM `{table}`"
        ))
        .get_result(&mut self.conn)
        .await?;
        Ok(u64::try_from(count.n).unwrap_or(0))
    }

    /// The largest id in `table`, one of [`TABLES`] with an `id`; 0 when it is empty.
    pub async fn max_id(&mut self, table: &'static str) -> Result<i32, StoreError> {
        let count: Count = diesel::sql_query(format!(
            "SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) AS n FROM `{table}`"
        ))
        .get_result(&mut self.conn)
        .await?;
        Ok(i32::try_from(count.n).unwrap_or(i32::MAX))
    }

    async fn page<T>(
        &mut self,
        select: &'static str,
        after: i32,
        limit: usize,
    ) -> Result<Vec<T>, StoreError>
    where
        T: QueryableByName<diesel::mysql::Mysql> + Send + 'static,
    {
        Ok(
            diesel::sql_query(format!("{select} WHERE id > ? ORDER BY id LIMIT ?"))
                .bind::<Integer, _>(after)
                .bind::<diesel::sql_types::BigInt, _>(limit as i64)
                .load(&mut self.conn)
                .await?,
        )
    }

    pub async fn users(&mut self, after: i32, limit: usize) -> Result<Vec<SrcUser>, StoreError> {
        self.page(USERS, after, limit).await
    }

    pub async fn user_infos(
        &mut self,
        after: i32,
        limit: usize,
    ) -> Result<Vec<SrcUserInfo>, StoreError> {
        self.page(USER_INFOS, after, limit).await
    }

    pub async fn rights(&mut self, after: i32, limit: usize) -> Result<Vec<SrcRbac>, StoreError> {
        self.page(RIGHTS, after, limit).await
    }

    pub async fn roles(&mut self, after: i32, limit: usize) -> Result<Vec<SrcRbac>, StoreError> {
        self.page(ROLES, after, limit).await
    }

    pub async fn conversations(
        &mut self,
        after: i32,
        limit: usize,
    ) -> Result<Vec<SrcConversation>, StoreError> {
        self.page(CONVERSATIONS, after, limit).await
    }

    pub async fn groups(&mut self, after: i32, limit: usize) -> Result<Vec<SrcGroup>, StoreError> {
        self.page(GROUPS, after, limit).await
    }

    pub async fn friends(
        &mut self,
        after: i32,
        limit: usize,
    ) -> Result<Vec<SrcFriend>, StoreError> {
        self.page(FRIENDS, after, limit).await
    }

    pub async fn messages(
        &mut self,
        after: i32,
        limit: usize,
    ) -> Result<Vec<SrcMessage>, StoreError> {
        self.page(MESSAGES, after, limit).await
    }

    pub async fn applies(&mut self, after: i32, limit: usize) -> Result<Vec<SrcApply>, StoreError> {
        self.page(APPLIES, after, limit).await
    }

    /// The page of `join` after the key `(a, b)`, in key order.
    pub async fn pairs(
        &mut self,
        join: JoinTable,
        after: (i32, i32),
        limit: usize,
    ) -> Result<Vec<SrcPair>, StoreError> {
        let JoinTable { table, a, b } = join;
        Ok(diesel::sql_query(format!(
            "SELECT {a} AS a, {b} AS b, created_at FROM `{table}` \
             WHERE {a} IS NOT NULL AND {b} IS NOT NULL AND ({a} > ? OR ({a} = ? AND {b} > ?)) \
             ORDER BY {a}, {b} LIMIT ?"
        ))
        .bind::<Integer, _>(after.0)
        .bind::<Integer, _>(after.0)
        .bind::<Integer, _>(after.1)
        .bind::<diesel::sql_types::BigInt, _>(limit as i64)
        .load(&mut self.conn)
        .await?)
    }
}
