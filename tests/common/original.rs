//! Databases of the original (its MySQL schema, tests/fixtures/original/schema.sql) on the test
//! MariaDB, each created for one test and dropped after it, and the data written into them the
//! way the original wrote it: HMAC-SHA256 hex passwords, wall-clock times at +08:00, JSON bodies.

use std::sync::atomic::{AtomicU32, Ordering};

use diesel_async::{AsyncConnection, AsyncMysqlConnection, SimpleAsyncConnection};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::SKIP_HINT;

/// The MariaDB of the tests when `IM_TEST_MYSQL_URL` is unset.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";

/// The original's schema, as its sequelize models create it.
pub const SCHEMA: &str = include_str!("../fixtures/original/schema.sql");

/// The original's default `userConfig.secret`, with which it hashed passwords.
pub const SECRET: &str = "im-server";

/// The demo users in the original's order (ids 1..=34).
pub fn demo_usernames() -> Vec<String> {
    let mut names: Vec<String> = ["admin", "user", "disabled", "muteuser"]
        .map(str::to_owned)
        .to_vec();
    names.extend((1..=30).map(|n| format!("member{n}")));
    names
}

/// The original's password hash: HMAC-SHA256 of the password under its secret, in hex.
pub fn legacy_hash(password: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(password.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A wall-clock time of the original (+08:00), `minutes` after the demo's start.
pub fn at(minutes: i64) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 20)
        .and_then(|d| d.and_hms_opt(9, 0, 0))
        .expect("valid date");
    (start + chrono::Duration::minutes(minutes))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// One database of the original's schema, dropped when this goes.
pub struct OriginalDb {
    /// The server's URL, without a database.
    pub server: String,
    pub name: String,
}

impl OriginalDb {
    /// Creates a new database with the original's tables. Fails, saying what to start, when
    /// MariaDB cannot be reached.
    pub async fn create() -> OriginalDb {
        let server = match std::env::var("IM_TEST_MYSQL_URL") {
            Ok(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_owned(),
            _ => DEFAULT_MYSQL_URL.to_owned(),
        };
        let name = format!(
            "im_orig_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = match AsyncMysqlConnection::establish(&server).await {
            Ok(conn) => conn,
            Err(e) => panic!(
                "MariaDB is not reachable at {server} ({e}). Start it (e.g. `service mariadb \
                 start`; .ci/run starts it), set IM_TEST_MYSQL_URL to one that runs, {SKIP_HINT}"
            ),
        };
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
            ))
            .await
            .expect("create the original's database");
        let db = OriginalDb { server, name };
        db.run_sql(SCHEMA).await;
        db
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub async fn conn(&self) -> AsyncMysqlConnection {
        AsyncMysqlConnection::establish(&self.url())
            .await
            .expect("connect to the original's database")
    }

    /// Runs `sql` (one or more statements).
    pub async fn run_sql(&self, sql: &str) {
        let mut conn = self.conn().await;
        conn.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{e} in {}", &sql[..sql.len().min(300)]));
    }

    /// Writes what the original's first start wrote (its `service/startup.js`), then a little
    /// history: messages in three conversations, which became the most recent ones.
    pub async fn write_demo(&self) {
        let hash = legacy_hash("123456");
        let mut sql = String::from(
            "INSERT INTO rights (id, name, key_name, `desc`, created_at, updated_at) VALUES ",
        );
        let rights = [
            ("管理", "admin", "权限已使用，请不要操作！！！"),
            ("登录", "login", "权限已使用，请不要操作！！！"),
            ("发言", "speak", "权限已使用，请不要操作！！！"),
            ("配置", "conf", "权限的描述性内容"),
            ("测试", "test", "权限的描述性内容"),
        ];
        sql += &rights
            .iter()
            .enumerate()
            .map(|(n, (name, key, desc))| {
                format!(
                    "({}, '{name}', '{key}', '{desc}', '{t}', '{t}')",
                    n + 1,
                    t = at(0)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        sql += ";\nINSERT INTO roles (id, name, key_name, created_at, updated_at) VALUES ";
        let roles = [
            ("管理员", "admin"),
            ("用户", "user"),
            ("封禁", "disabled"),
            ("禁言", "mute"),
        ];
        sql += &roles
            .iter()
            .enumerate()
            .map(|(n, (name, key))| {
                format!("({}, '{name}', '{key}', '{t}', '{t}')", n + 1, t = at(0))
            })
            .collect::<Vec<_>>()
            .join(", ");
        sql += &format!(
            ";\nINSERT INTO role_right (role_id, right_id, created_at, updated_at) VALUES \
             (1, 1, '{t}', '{t}'), (1, 2, '{t}', '{t}'), (2, 2, '{t}', '{t}'), \
             (2, 3, '{t}', '{t}'), (4, 2, '{t}', '{t}');\n",
            t = at(0)
        );
        let names = demo_usernames();
        sql +=
            "INSERT INTO users (id, provider, username, password, created_at, updated_at) VALUES ";
        sql += &names
            .iter()
            .enumerate()
            .map(|(n, name)| {
                format!(
                    "({}, 'local', '{name}', '{hash}', '{t}', '{t}')",
                    n + 1,
                    t = at(1)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        sql += ";\nINSERT INTO user_infos (id, nickname, photo, sign, created_at, updated_at, user_id) VALUES ";
        sql += &names
            .iter()
            .enumerate()
            .map(|(n, name)| {
                format!(
                    "({id}, '{name}', '/public/images/head{}.png', '念念不忘，必有回响~', '{t}', '{t}', {id})",
                    n % 9 + 1,
                    id = n + 1,
                    t = at(1)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        sql += ";\nINSERT INTO user_role (user_id, role_id, created_at, updated_at) VALUES ";
        sql += &names
            .iter()
            .enumerate()
            .map(|(n, name)| {
                let role = match name.as_str() {
                    "admin" => 1,
                    "disabled" => 3,
                    "muteuser" => 4,
                    _ => 2,
                };
                format!("({}, {role}, '{t}', '{t}')", n + 1, t = at(1))
            })
            .collect::<Vec<_>>()
            .join(", ");
        // Conversations 1..26 of `user`'s friendships, 27 and 28 of the groups; activeTime is
        // NULL until a message is sent, as the original left it.
        sql += ";\nINSERT INTO conversations (id, type, active_time, active, created_at, updated_at) VALUES ";
        sql += &(1..=28)
            .map(|id| {
                let kind = if id <= 26 { "chat" } else { "groupchat" };
                format!("({id}, '{kind}', NULL, 1, '{t}', '{t}')", t = at(2 + id))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let friend_ids: Vec<i32> = [3, 4].into_iter().chain(7..=30).collect();
        sql += ";\nINSERT INTO friends (id, user_id, friend_id, created_at, updated_at, conversation_id) VALUES ";
        sql += &friend_ids
            .iter()
            .enumerate()
            .map(|(n, friend)| {
                format!(
                    "({id}, 2, {friend}, '{t}', '{t}', {id})",
                    id = n + 1,
                    t = at(3 + n as i64)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let intro = "富强、民主、文明、和谐、自由、平等、公正、法治、爱国、敬业、诚信、友善";
        sql += &format!(
            ";\nINSERT INTO `groups` (id, name, photo, introduction, disabled, mute, owner_id, \
             created_at, updated_at, conversation_id) VALUES \
             (1, '谈笑有鸿儒', '/public/images/group.png', '{intro}', 0, 0, 2, '{t}', '{t}', 27), \
             (2, '往来无白丁', '/public/images/group.png', '{intro}', 0, 0, 2, '{t}', '{t}', 28);\n",
            t = at(40)
        );
        let members: Vec<i32> = [2, 3, 4].into_iter().chain(5..=14).collect();
        sql += "INSERT INTO user_group (created_at, updated_at, group_id, user_id) VALUES ";
        sql += &[1, 2]
            .iter()
            .flat_map(|group| members.iter().map(move |user| (*group, *user)))
            .map(|(group, user)| format!("('{t}', '{t}', {group}, {user})", t = at(41)))
            .collect::<Vec<_>>()
            .join(", ");
        sql += &format!(
            ";\nINSERT INTO applies (id, type, from_id, to_id, has_handled, created_at, updated_at, user_id) VALUES \
             (1, 'user', 5, 2, 0, '{t}', '{t}', 2), (2, 'user', 6, 2, 0, '{t}', '{t}', 2), \
             (3, 'group', 15, 1, 0, '{t}', '{t}', 2);\n",
            t = at(42)
        );
        // History: user (2) and disabled (3) in conversation 1, user and member3 (7) in 3, and
        // the group 谈笑有鸿儒 (27); each conversation's activeTime and updatedAt at its last.
        let mut messages = Vec::new();
        let mut id = 0;
        let mut minute = 100;
        for (conversation, a, b, count) in [(1, 2, 3, 3), (3, 2, 7, 12)] {
            for n in 0..count {
                id += 1;
                minute += 1;
                let (from, to) = if n % 2 == 0 { (a, b) } else { (b, a) };
                messages.push(format!(
                    "({id}, '{{\"type\":\"text\",\"msg\":\"c{conversation} m{n} 你好\"}}', {from}, {to}, '{t}', '{t}', {conversation})",
                    t = at(minute)
                ));
            }
            sql += &format!(
                "UPDATE conversations SET active_time = '{t}', updated_at = '{t}' WHERE id = {conversation};\n",
                t = at(minute)
            );
        }
        for n in 0..5 {
            id += 1;
            minute += 1;
            let from = members[n % members.len()];
            messages.push(format!(
                "({id}, '{{\"type\":\"text\",\"msg\":\"group m{n}\"}}', {from}, 1, '{t}', '{t}', 27)",
                t = at(minute)
            ));
        }
        sql += &format!(
            "UPDATE conversations SET active_time = '{t}', updated_at = '{t}' WHERE id = 27;\n",
            t = at(minute)
        );
        sql += "INSERT INTO messages (id, body, from_id, to_id, created_at, updated_at, conversation_id) VALUES ";
        sql += &messages.join(", ");
        self.run_sql(&sql).await;
    }

    /// Generates a large history for the speed and memory figures: `users` users (password
    /// 123456, role user), friend pairs 1–2, 3–4, … each with a conversation, and `messages`
    /// messages spread over those conversations one second apart, in multi-row INSERTs.
    pub async fn write_large(&self, users: i32, messages: i64) {
        let hash = legacy_hash("123456");
        let t0 = at(0);
        let mut sql = format!(
            "INSERT INTO roles (id, name, key_name, created_at, updated_at) VALUES \
             (2, '用户', 'user', '{t0}', '{t0}');\n"
        );
        for chunk in (1..=users).collect::<Vec<_>>().chunks(5000) {
            sql += "INSERT INTO users (id, provider, username, password, created_at, updated_at) VALUES ";
            sql += &chunk
                .iter()
                .map(|id| format!("({id}, 'local', 'load{id}', '{hash}', '{t0}', '{t0}')"))
                .collect::<Vec<_>>()
                .join(", ");
            sql += ";\nINSERT INTO user_infos (id, nickname, photo, created_at, updated_at, user_id) VALUES ";
            sql += &chunk
                .iter()
                .map(|id| {
                    format!("({id}, 'load{id}', '/public/images/head1.png', '{t0}', '{t0}', {id})")
                })
                .collect::<Vec<_>>()
                .join(", ");
            sql += ";\nINSERT INTO user_role (user_id, role_id, created_at, updated_at) VALUES ";
            sql += &chunk
                .iter()
                .map(|id| format!("({id}, 2, '{t0}', '{t0}')"))
                .collect::<Vec<_>>()
                .join(", ");
            sql += ";\n";
        }
        let pairs = users / 2;
        sql += "INSERT INTO conversations (id, type, active, created_at, updated_at) VALUES ";
        sql += &(1..=pairs)
            .map(|id| format!("({id}, 'chat', 1, '{t0}', '{t0}')"))
            .collect::<Vec<_>>()
            .join(", ");
        sql += ";\nINSERT INTO friends (id, user_id, friend_id, created_at, updated_at, conversation_id) VALUES ";
        sql += &(1..=pairs)
            .map(|id| format!("({id}, {}, {}, '{t0}', '{t0}', {id})", 2 * id - 1, 2 * id))
            .collect::<Vec<_>>()
            .join(", ");
        sql += ";";
        self.run_sql(&sql).await;

        let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("valid date");
        let mut conn = self.conn().await;
        let mut id: i64 = 0;
        while id < messages {
            let n = (messages - id).min(10_000);
            let mut sql = String::with_capacity(n as usize * 130);
            sql += "INSERT INTO messages (id, body, from_id, to_id, created_at, updated_at, conversation_id) VALUES ";
            for k in 0..n {
                id += 1;
                let conversation = (id % i64::from(pairs)) + 1;
                let (a, b) = (2 * conversation - 1, 2 * conversation);
                let (from, to) = if id % 2 == 0 { (a, b) } else { (b, a) };
                let t = (start + chrono::Duration::seconds(id)).format("%Y-%m-%d %H:%M:%S");
                if k > 0 {
                    sql += ", ";
                }
                sql += &format!(
                    "({id}, '{{\"type\":\"text\",\"msg\":\"message number {id}\"}}', {from}, {to}, '{t}', '{t}', {conversation})"
                );
            }
            conn.batch_execute(&sql).await.expect("insert messages");
        }
    }
}

impl Drop for OriginalDb {
    fn drop(&mut self) {
        let (server, statement) = (
            self.server.clone(),
            format!("DROP DATABASE IF EXISTS `{}`", self.name),
        );
        let dropped = super::on_own_runtime(move || async move {
            let mut admin = AsyncMysqlConnection::establish(&server).await.ok()?;
            admin.batch_execute(&statement).await.ok()
        });
        if dropped.is_none() {
            eprintln!("the original's test database {} left behind", self.name);
        }
    }
}
