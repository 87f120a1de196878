//! `im-server import`: moving the original's MySQL/MariaDB database into ours in one run, ids
//! kept, all or nothing, in batches whose size bounds the memory used.
//!
//! A task reads the original's tables in an order where each comes after those it refers to
//! (`store::original`) and hands pages over a channel of two; this side maps each row to what
//! im-server itself would have stored (times from the original's wall clock to UTC, username
//! keys, per-conversation `seq` numbers, friendships with the smaller id first), mends or skips
//! what our schema cannot hold, counts both, and writes through `store::import`, all in one
//! transaction of the target, so that a failure leaves it as it was. Reading and writing overlap:
//! a page is read while the previous one is written.
//!
//! What stays in memory grows with the number of users, conversations, groups and friendships
//! (a few bytes to a few dozen each, to check references without asking the database), never
//! with the number of messages.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{FixedOffset, NaiveDateTime};
use tokio::sync::mpsc;

use crate::store::import::{
    self as target, ApplyRow, ConversationRow, FriendRow, GroupRow, MessageRow, RbacRow,
    UserInfoRow, UserRow,
};
use crate::store::original::{
    self, JoinTable, Source, SrcApply, SrcConversation, SrcFriend, SrcGroup, SrcMessage, SrcPair,
    SrcRbac, SrcUser, SrcUserInfo,
};
use crate::store::{Db, DbConn, StoreError};

use super::rbac;

/// Rows per page read from the original and per batch written.
pub const BATCH: usize = 5_000;

/// The photo sequelize gave a profile without one (the model's default).
const DEFAULT_HEAD: &str = "/public/images/head1.png";
/// The photo sequelize gave a group without one (the model's default).
const DEFAULT_GROUP_PHOTO: &str = "/public/images/group.png";
/// Examples named per kind of problem in the report.
const EXAMPLES: usize = 5;

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The original's `timezone` setting: its `DATETIME`s are wall-clock times there.
    pub source_offset: FixedOffset,
    /// Read, check and report everything, then roll back.
    pub dry_run: bool,
    /// Rows per page and batch.
    pub batch: usize,
}

/// Where an import tells its progress: a bar on a terminal, lines in a log.
pub trait Progress: Send + Sync {
    /// `table` begins, with `total` rows in the original.
    fn start(&self, table: &'static str, total: u64);
    /// `rows` more rows of the current table were handled.
    fn advance(&self, rows: u64);
    /// The current table is done.
    fn finish(&self, table: &'static str);
    /// A step after the tables (numbering, sequences) begins.
    fn step(&self, what: &'static str);
}

/// Rows of one of the original's tables: read, written, and of those written how many were
/// mended on the way; skipped ones are read and not written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub read: u64,
    pub written: u64,
    pub mended: u64,
    pub skipped: u64,
}

/// One kind of row that could not be imported as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub table: &'static str,
    /// What was wrong and what became of the rows.
    pub what: &'static str,
    /// Skipped (true) or mended (false).
    pub skipped: bool,
    pub count: u64,
    /// The original's ids of the first few rows (for a join table, the first key).
    pub examples: Vec<i64>,
}

/// What an import did (or, in a dry run, would have done).
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub dry_run: bool,
    pub tables: Vec<TableCount>,
    pub issues: Vec<Issue>,
    /// The bootstrap `admin` that the imported users replaced, if there was one.
    pub replaced_admin: bool,
    pub elapsed: Duration,
}

impl ImportReport {
    pub fn messages_written(&self) -> u64 {
        self.tables
            .iter()
            .find(|t| t.table == "messages")
            .map_or(0, |t| t.written)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The target holds more than a first start leaves in it; nothing was written.
    #[error(
        "the target database is not empty ({0}); import only into a new database, one that \
         im-server has at most started once (nothing was written)"
    )]
    NotEmpty(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot connect to the original's database: {0}")]
    Connect(StoreError),
    #[error("the source is not the original's database: table(s) {0} missing")]
    NotOriginal(String),
    #[error("reading {table} from the original's database failed: {error}")]
    Read {
        table: &'static str,
        error: StoreError,
    },
    #[error(
        "writing {table} failed near the original's id {near}: {error}; the import was rolled \
         back and the target is as it was"
    )]
    Write {
        table: &'static str,
        near: i64,
        error: StoreError,
    },
    #[error("the target database failed: {0}; the import was rolled back")]
    Target(StoreError),
    /// Not a failure: a dry run's way out of the transaction.
    #[error("dry run")]
    DryRun(Box<ImportReport>),
}

impl From<StoreError> for ImportError {
    fn from(error: StoreError) -> Self {
        ImportError::Target(error)
    }
}

/// A page of one table of the original, or the end of a table.
enum Page {
    Rights(Vec<SrcRbac>),
    Roles(Vec<SrcRbac>),
    RoleRights(Vec<SrcPair>),
    Users(Vec<SrcUser>),
    UserInfos(Vec<SrcUserInfo>),
    UserRoles(Vec<SrcPair>),
    Conversations(Vec<SrcConversation>),
    Groups(Vec<SrcGroup>),
    UserGroups(Vec<SrcPair>),
    Friends(Vec<SrcFriend>),
    Messages(Vec<SrcMessage>),
    Applies(Vec<SrcApply>),
    End(&'static str),
}

type Read = Result<Page, ImportError>;

/// The original's database, connected, checked to be one, its tables counted: what [`run`]
/// reads. Opened before the target is touched, so that a wrong or unreachable source leaves the
/// target alone.
pub struct OpenedSource {
    source: Source,
    totals: HashMap<&'static str, u64>,
    max_conversation: i32,
    started: Instant,
}

/// Connects to the original's database at `url` and checks that it has the original's tables.
pub async fn open_source(url: &str) -> Result<OpenedSource, ImportError> {
    let started = Instant::now();
    let mut source = Source::connect(url).await.map_err(ImportError::Connect)?;
    let missing = source
        .missing_tables()
        .await
        .map_err(ImportError::Connect)?;
    if !missing.is_empty() {
        return Err(ImportError::NotOriginal(missing.join(", ")));
    }
    let mut totals = HashMap::new();
    for table in original::TABLES {
        let count = source
            .count(table)
            .await
            .map_err(|error| ImportError::Read { table, error })?;
        totals.insert(table, count);
    }
    let max_conversation =
        source
            .max_id("conversations")
            .await
            .map_err(|error| ImportError::Read {
                table: "conversations",
                error,
            })?;
    Ok(OpenedSource {
        source,
        totals,
        max_conversation,
        started,
    })
}

/// Imports the original's database `source` (see [`open_source`]) into `db`, which must hold no
/// more than a first start leaves (built-in rights and roles, the bootstrap admin).
pub async fn run(
    db: &Db,
    source: OpenedSource,
    options: ImportOptions,
    progress: Arc<dyn Progress>,
) -> Result<ImportReport, ImportError> {
    if options.batch == 0 {
        return Err(ImportError::Invalid(
            "the batch size must be at least 1".into(),
        ));
    }
    let OpenedSource {
        source,
        totals,
        max_conversation,
        started,
    } = source;
    let (pages, receiver) = mpsc::channel(2);
    let batch = options.batch;
    let reader = tokio::spawn(read_all(source, pages, batch));
    let mut conn = db.get().await?;
    let dry_run = options.dry_run;
    // SQLite's calls run in place on one blocking thread for the whole import rather than one
    // hand-off each; for PostgreSQL this changes only the thread.
    let outcome = crate::store::on_one_thread(async move {
        conn.transaction(move |tx| {
            Box::pin(async move {
                let mut import = Import::new(options, progress, totals, max_conversation);
                import.prepare(tx).await?;
                import.write_all(tx, receiver).await?;
                import.derive(tx, dry_run).await?;
                let report = import.report(started);
                if dry_run {
                    return Err(ImportError::DryRun(Box::new(report)));
                }
                Ok(report)
            })
        })
        .await
    })
    .await
    .map_err(|error| ImportError::Target(StoreError::Query(error.to_string())))?;
    reader.abort();
    match outcome {
        Ok(report) => Ok(report),
        Err(ImportError::DryRun(report)) => Ok(*report),
        Err(error) => Err(error),
    }
}

/// Reads every table of the original in order, page by page, into `pages`; stops at the first
/// failure (sent on) or when the writer has gone.
async fn read_all(mut source: Source, pages: mpsc::Sender<Read>, batch: usize) {
    macro_rules! by_id {
        ($table:literal, $method:ident, $variant:ident) => {{
            let mut after = 0;
            loop {
                let rows = match source.$method(after, batch).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        let _ = pages
                            .send(Err(ImportError::Read {
                                table: $table,
                                error,
                            }))
                            .await;
                        return;
                    }
                };
                let last = rows.last().map(|row| row.id);
                let full = rows.len() == batch;
                if !rows.is_empty() && pages.send(Ok(Page::$variant(rows))).await.is_err() {
                    return;
                }
                match last {
                    Some(id) if full => after = id,
                    _ => break,
                }
            }
            if pages.send(Ok(Page::End($table))).await.is_err() {
                return;
            }
        }};
    }
    macro_rules! by_pair {
        ($join:expr, $variant:ident) => {{
            let join: JoinTable = $join;
            let mut after = (i32::MIN, i32::MIN);
            loop {
                let rows = match source.pairs(join, after, batch).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        let _ = pages
                            .send(Err(ImportError::Read {
                                table: join.table,
                                error,
                            }))
                            .await;
                        return;
                    }
                };
                let last = rows.last().map(|row| (row.a, row.b));
                let full = rows.len() == batch;
                if !rows.is_empty() && pages.send(Ok(Page::$variant(rows))).await.is_err() {
                    return;
                }
                match last {
                    Some(key) if full => after = key,
                    _ => break,
                }
            }
            if pages.send(Ok(Page::End(join.table))).await.is_err() {
                return;
            }
        }};
    }
    by_id!("rights", rights, Rights);
    by_id!("roles", roles, Roles);
    by_pair!(original::ROLE_RIGHT, RoleRights);
    by_id!("users", users, Users);
    by_id!("user_infos", user_infos, UserInfos);
    by_pair!(original::USER_ROLE, UserRoles);
    by_id!("conversations", conversations, Conversations);
    by_id!("groups", groups, Groups);
    by_pair!(original::USER_GROUP, UserGroups);
    by_id!("friends", friends, Friends);
    by_id!("messages", messages, Messages);
    by_id!("applies", applies, Applies);
}

/// Ids known to exist in the target, added in increasing order (as the tables are read).
#[derive(Default)]
struct SortedIds(Vec<i32>);

impl SortedIds {
    fn push(&mut self, id: i32) {
        match self.0.last() {
            Some(&last) if last >= id => {
                if let Err(at) = self.0.binary_search(&id) {
                    self.0.insert(at, id);
                }
            }
            _ => self.0.push(id),
        }
    }

    fn contains(&self, id: i32) -> bool {
        self.0.binary_search(&id).is_ok()
    }
}

/// Where a conversation's numbering stands: how many messages, and the (`created_at`, `id`) of
/// the last one, to notice one that arrives out of order.
struct Numbering {
    count: i64,
    last: (NaiveDateTime, i32),
}

#[derive(Default)]
struct IssueLog {
    entries: BTreeMap<(&'static str, &'static str), Issue>,
}

impl IssueLog {
    fn note(&mut self, table: &'static str, what: &'static str, skipped: bool, id: i64) {
        let entry = self.entries.entry((table, what)).or_insert_with(|| Issue {
            table,
            what,
            skipped,
            count: 0,
            examples: Vec::new(),
        });
        entry.count += 1;
        if entry.examples.len() < EXAMPLES {
            entry.examples.push(id);
        }
    }
}

/// The writing side of one import: the mapping state and the counts.
struct Import {
    options: ImportOptions,
    progress: Arc<dyn Progress>,
    totals: HashMap<&'static str, u64>,
    counts: BTreeMap<&'static str, TableCount>,
    issues: IssueLog,
    replaced_admin: bool,

    /// Built-in rights and roles of the target by key: `(id, name)`.
    builtin_rights: HashMap<String, i32>,
    builtin_roles: HashMap<String, (i32, String)>,
    taken_right_ids: HashSet<i32>,
    taken_role_ids: HashSet<i32>,
    role_names: HashSet<String>,
    next_right: i32,
    next_role: i32,
    right_map: HashMap<i32, i32>,
    role_map: HashMap<i32, i32>,

    users: SortedIds,
    with_profile: HashSet<i32>,
    nameless_profiles: Vec<i32>,
    conversations: SortedIds,
    /// Conversations already a group's or a friendship's.
    owned: HashSet<i32>,
    next_conversation: i32,
    /// Group id → owner id, of the imported groups.
    groups: HashMap<i32, i32>,
    group_names: HashSet<String>,
    /// (smaller user id, larger) → the friendship's conversation.
    friendships: HashMap<(i32, i32), i32>,
    /// A duplicate friendship's conversation → the kept friendship's.
    merged: HashMap<i32, i32>,
    numbering: HashMap<i32, Numbering>,
    out_of_order: HashSet<i32>,
    open_applies: HashSet<(&'static str, i32, i32)>,
}

impl Import {
    fn new(
        options: ImportOptions,
        progress: Arc<dyn Progress>,
        totals: HashMap<&'static str, u64>,
        max_conversation: i32,
    ) -> Import {
        Import {
            options,
            progress,
            totals,
            counts: BTreeMap::new(),
            issues: IssueLog::default(),
            replaced_admin: false,
            builtin_rights: HashMap::new(),
            builtin_roles: HashMap::new(),
            taken_right_ids: HashSet::new(),
            taken_role_ids: HashSet::new(),
            role_names: HashSet::new(),
            next_right: 0,
            next_role: 0,
            right_map: HashMap::new(),
            role_map: HashMap::new(),
            users: SortedIds::default(),
            with_profile: HashSet::new(),
            nameless_profiles: Vec::new(),
            conversations: SortedIds::default(),
            owned: HashSet::new(),
            next_conversation: max_conversation.saturating_add(1),
            groups: HashMap::new(),
            group_names: HashSet::new(),
            friendships: HashMap::new(),
            merged: HashMap::new(),
            numbering: HashMap::new(),
            out_of_order: HashSet::new(),
            open_applies: HashSet::new(),
        }
    }

    fn utc(&self, wall_clock: NaiveDateTime) -> NaiveDateTime {
        wall_clock
            - chrono::Duration::seconds(i64::from(self.options.source_offset.local_minus_utc()))
    }

    fn count(&mut self, table: &'static str) -> &mut TableCount {
        self.counts.entry(table).or_insert_with(|| TableCount {
            table,
            ..TableCount::default()
        })
    }

    fn skip(&mut self, table: &'static str, what: &'static str, id: i64) {
        self.count(table).skipped += 1;
        self.issues.note(table, what, true, id);
    }

    fn mend(&mut self, table: &'static str, what: &'static str, id: i64) {
        self.count(table).mended += 1;
        self.issues.note(table, what, false, id);
    }

    /// Checks that the target holds no more than a first start leaves, and removes the
    /// bootstrap admin, whom the imported users replace.
    async fn prepare(&mut self, tx: &mut DbConn) -> Result<(), ImportError> {
        let mut found = Vec::new();
        target::prepare_bulk(tx).await?;
        for table in target::EMPTY_AT_FIRST_START {
            let n = target::count_rows(tx, table).await?;
            if n > 0 {
                found.push(format!("{n} {table}"));
            }
        }
        let users = target::some_users(tx, 2).await?;
        let bootstrap = match users.as_slice() {
            [] => None,
            [(id, name)] if name == "admin" => Some(*id),
            _ => {
                let n = target::count_rows(tx, "users").await?;
                found.push(format!("{n} users"));
                None
            }
        };
        let rights = target::right_keys(tx).await?;
        let roles = target::role_keys(tx).await?;
        let extra_rights: Vec<&str> = rights
            .iter()
            .map(|(_, key)| key.as_str())
            .filter(|key| !rbac::RIGHTS.iter().any(|spec| spec.key == *key))
            .collect();
        if !extra_rights.is_empty() {
            found.push(format!("rights of its own: {}", extra_rights.join(", ")));
        }
        let extra_roles: Vec<&str> = roles
            .iter()
            .map(|(_, _, key)| key.as_str())
            .filter(|key| !rbac::ROLES.iter().any(|spec| spec.key == *key))
            .collect();
        if !extra_roles.is_empty() {
            found.push(format!("roles of its own: {}", extra_roles.join(", ")));
        }
        if !found.is_empty() {
            return Err(ImportError::NotEmpty(found.join(", ")));
        }
        if let Some(id) = bootstrap {
            target::delete_user(tx, id).await?;
            self.replaced_admin = true;
        }
        // Profiles of nobody cannot be left over from a first start but would take imported ids.
        if target::count_rows(tx, "user_infos").await? > 0 {
            return Err(ImportError::NotEmpty(
                "profiles without a user in user_infos".into(),
            ));
        }
        for (id, key) in rights {
            self.taken_right_ids.insert(id);
            self.builtin_rights.insert(key, id);
        }
        for (id, name, key) in roles {
            self.taken_role_ids.insert(id);
            self.role_names.insert(name.clone());
            self.builtin_roles.insert(key, (id, name));
        }
        self.next_right = target::max_id(tx, "rights").await?;
        self.next_role = target::max_id(tx, "roles").await?;
        Ok(())
    }

    async fn write_all(
        &mut self,
        tx: &mut DbConn,
        mut pages: mpsc::Receiver<Read>,
    ) -> Result<(), ImportError> {
        let mut current: Option<&'static str> = None;
        while let Some(page) = pages.recv().await {
            let page = page?;
            let table = table_of(&page);
            if current != Some(table) {
                self.count(table);
                self.progress
                    .start(table, self.totals.get(table).copied().unwrap_or(0));
                current = Some(table);
            }
            match page {
                Page::End(table) => {
                    self.end_of(tx, table).await?;
                    self.progress.finish(table);
                    current = None;
                    if table == "applies" {
                        return Ok(());
                    }
                }
                page => {
                    let rows = self.write_page(tx, page).await.map_err(|e| match e {
                        (near, ImportError::Target(error)) => {
                            ImportError::Write { table, near, error }
                        }
                        (_, other) => other,
                    })?;
                    self.count(table).read += rows;
                    self.progress.advance(rows);
                }
            }
        }
        Err(ImportError::Read {
            table: current.unwrap_or("the original's tables"),
            error: StoreError::Unavailable("the reading task stopped".into()),
        })
    }

    /// Writes one page; answers the rows it held. A failure comes with the first id of the page.
    async fn write_page(&mut self, tx: &mut DbConn, page: Page) -> Result<u64, (i64, ImportError)> {
        macro_rules! go {
            ($rows:ident, $first:expr, $method:ident) => {{
                let n = $rows.len() as u64;
                let first: i64 = $rows.first().map_or(0, $first);
                self.$method(tx, $rows).await.map_err(|e| (first, e))?;
                Ok(n)
            }};
        }
        match page {
            Page::Rights(rows) => go!(rows, |r| i64::from(r.id), rights),
            Page::Roles(rows) => go!(rows, |r| i64::from(r.id), roles),
            Page::RoleRights(rows) => go!(rows, |r| i64::from(r.a), role_rights),
            Page::Users(rows) => go!(rows, |r| i64::from(r.id), users),
            Page::UserInfos(rows) => go!(rows, |r| i64::from(r.id), user_infos),
            Page::UserRoles(rows) => go!(rows, |r| i64::from(r.a), user_roles),
            Page::Conversations(rows) => go!(rows, |r| i64::from(r.id), conversations),
            Page::Groups(rows) => go!(rows, |r| i64::from(r.id), groups),
            Page::UserGroups(rows) => go!(rows, |r| i64::from(r.a), members),
            Page::Friends(rows) => go!(rows, |r| i64::from(r.id), friends),
            Page::Messages(rows) => go!(rows, |r| i64::from(r.id), messages),
            Page::Applies(rows) => go!(rows, |r| i64::from(r.id), applies),
            Page::End(_) => Ok(0),
        }
    }

    /// What is done once a whole table is in.
    async fn end_of(&mut self, tx: &mut DbConn, table: &'static str) -> Result<(), ImportError> {
        match table {
            "roles" => {
                // The original's grants replace the default ones of every role it has.
                let roles: Vec<i32> = self.role_map.values().copied().collect();
                target::clear_role_rights(tx, roles).await?;
            }
            "user_infos" => {
                let nameless = std::mem::take(&mut self.nameless_profiles);
                target::nickname_from_username(tx, nameless).await?;
                self.profiles_for_the_rest(tx).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Gives every imported user without a profile one as sign-up makes it: nickname = name.
    async fn profiles_for_the_rest(&mut self, tx: &mut DbConn) -> Result<(), ImportError> {
        let mut next_id = target::max_id(tx, "user_infos").await?;
        let mut after = 0;
        loop {
            let users = target::users_without_profile(tx, after, self.options.batch as i64).await?;
            let Some(&(last, _)) = users.last() else {
                return Ok(());
            };
            after = last;
            let now = crate::time::now();
            let rows: Vec<UserInfoRow> = users
                .into_iter()
                .map(|(user_id, username)| {
                    next_id += 1;
                    self.issues.note(
                        "user_infos",
                        "user without a profile: one made (nickname = username)",
                        false,
                        i64::from(user_id),
                    );
                    UserInfoRow {
                        id: next_id,
                        user_id,
                        nickname: username,
                        photo: DEFAULT_HEAD.to_owned(),
                        sign: None,
                        created_at: now,
                        updated_at: now,
                    }
                })
                .collect();
            let n = rows.len() as u64;
            self.count("user_infos").written += n;
            self.count("user_infos").mended += n;
            target::insert_user_infos(tx, rows).await?;
        }
    }

    fn rbac_row(&self, row: &SrcRbac, id: i32, key: String, name: String) -> RbacRow {
        RbacRow {
            id,
            name,
            key_name: key,
            description: row.desc.clone().unwrap_or_default(),
            created_at: self.utc(row.created_at),
            updated_at: self.utc(row.updated_at),
        }
    }

    async fn rights(&mut self, tx: &mut DbConn, rows: Vec<SrcRbac>) -> Result<(), ImportError> {
        let mut new = Vec::new();
        for row in rows {
            let Some(key) = row.key_name.clone().filter(|k| !k.is_empty()) else {
                self.skip("rights", "no keyName", i64::from(row.id));
                continue;
            };
            if let Some(&id) = self.builtin_rights.get(&key) {
                self.right_map.insert(row.id, id);
                self.count("rights").written += 1;
                continue;
            }
            let id = if self.taken_right_ids.insert(row.id) {
                row.id
            } else {
                self.mend(
                    "rights",
                    "id taken by a built-in right: given a new id",
                    i64::from(row.id),
                );
                self.next_right += 1;
                self.taken_right_ids.insert(self.next_right);
                self.next_right
            };
            self.next_right = self.next_right.max(id);
            self.right_map.insert(row.id, id);
            self.builtin_rights.insert(key.clone(), id);
            let name = row.name.clone().unwrap_or_else(|| key.clone());
            new.push(self.rbac_row(&row, id, key, name));
        }
        self.count("rights").written += new.len() as u64;
        target::insert_rights(tx, new).await?;
        Ok(())
    }

    async fn roles(&mut self, tx: &mut DbConn, rows: Vec<SrcRbac>) -> Result<(), ImportError> {
        let mut new = Vec::new();
        for row in rows {
            let Some(key) = row.key_name.clone().filter(|k| !k.is_empty()) else {
                self.skip("roles", "no keyName", i64::from(row.id));
                continue;
            };
            if let Some((id, _)) = self.builtin_roles.get(&key) {
                self.role_map.insert(row.id, *id);
                self.count("roles").written += 1;
                continue;
            }
            let id = if self.taken_role_ids.insert(row.id) {
                row.id
            } else {
                self.mend(
                    "roles",
                    "id taken by a built-in role: given a new id",
                    i64::from(row.id),
                );
                self.next_role += 1;
                self.taken_role_ids.insert(self.next_role);
                self.next_role
            };
            self.next_role = self.next_role.max(id);
            let mut name = row.name.clone().unwrap_or_else(|| key.clone());
            if !self.role_names.insert(name.clone()) {
                self.mend(
                    "roles",
                    "name taken by a built-in role: key appended",
                    i64::from(row.id),
                );
                name = format!("{name} ({key})");
                self.role_names.insert(name.clone());
            }
            self.role_map.insert(row.id, id);
            self.builtin_roles.insert(key.clone(), (id, name.clone()));
            new.push(self.rbac_row(&row, id, key, name));
        }
        self.count("roles").written += new.len() as u64;
        target::insert_roles(tx, new).await?;
        Ok(())
    }

    async fn role_rights(
        &mut self,
        tx: &mut DbConn,
        rows: Vec<SrcPair>,
    ) -> Result<(), ImportError> {
        let mut pairs = Vec::new();
        for row in rows {
            match (self.role_map.get(&row.a), self.right_map.get(&row.b)) {
                (Some(&role), Some(&right)) => pairs.push((role, right)),
                _ => self.skip("role_right", "role or right not imported", i64::from(row.a)),
            }
        }
        self.count("role_right").written += pairs.len() as u64;
        target::insert_role_rights(tx, pairs).await?;
        Ok(())
    }

    async fn users(&mut self, tx: &mut DbConn, rows: Vec<SrcUser>) -> Result<(), ImportError> {
        let mut new = Vec::with_capacity(rows.len());
        let mut keys_here = HashSet::new();
        for row in rows {
            let Some(username) = row.username.clone().filter(|n| !n.is_empty()) else {
                self.skip("users", "no username", i64::from(row.id));
                continue;
            };
            let key = super::names::username_key(&username);
            // Within the page the older account keeps the key; against the target, below.
            let key = keys_here.insert(key.clone()).then_some(key);
            if key.is_none() {
                self.mend("users", "name differs from an older one only in case or width: logs in by its exact spelling", i64::from(row.id));
            }
            new.push(UserRow {
                id: row.id,
                provider: row
                    .provider
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "local".to_owned()),
                username,
                username_key: key,
                password: row.password.clone(),
                created_at: self.utc(row.created_at),
                updated_at: self.utc(row.updated_at),
            });
        }
        let keys: Vec<String> = new.iter().filter_map(|u| u.username_key.clone()).collect();
        let taken: HashSet<String> = target::taken_username_keys(tx, keys)
            .await?
            .into_iter()
            .collect();
        for user in &mut new {
            if user
                .username_key
                .as_ref()
                .is_some_and(|k| taken.contains(k))
            {
                user.username_key = None;
                self.mend("users", "name differs from an older one only in case or width: logs in by its exact spelling", i64::from(user.id));
            }
            self.users.push(user.id);
        }
        self.count("users").written += new.len() as u64;
        target::insert_users(tx, new).await?;
        Ok(())
    }

    async fn user_infos(
        &mut self,
        tx: &mut DbConn,
        rows: Vec<SrcUserInfo>,
    ) -> Result<(), ImportError> {
        let mut new = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(user_id) = row.user_id.filter(|id| self.users.contains(*id)) else {
                self.skip(
                    "user_infos",
                    "profile of no (imported) user",
                    i64::from(row.id),
                );
                continue;
            };
            if !self.with_profile.insert(user_id) {
                self.skip(
                    "user_infos",
                    "a second profile of one user",
                    i64::from(row.id),
                );
                continue;
            }
            let nickname = match row.nickname.clone() {
                Some(nickname) => nickname,
                None => {
                    self.mend("user_infos", "no nickname: the username", i64::from(row.id));
                    self.nameless_profiles.push(row.id);
                    String::new()
                }
            };
            new.push(UserInfoRow {
                id: row.id,
                user_id,
                nickname,
                photo: row.photo.clone().unwrap_or_else(|| DEFAULT_HEAD.to_owned()),
                sign: row.sign.clone(),
                created_at: self.utc(row.created_at),
                updated_at: self.utc(row.updated_at),
            });
        }
        self.count("user_infos").written += new.len() as u64;
        target::insert_user_infos(tx, new).await?;
        Ok(())
    }

    async fn user_roles(&mut self, tx: &mut DbConn, rows: Vec<SrcPair>) -> Result<(), ImportError> {
        let mut pairs = Vec::new();
        for row in rows {
            match (self.users.contains(row.a), self.role_map.get(&row.b)) {
                (true, Some(&role)) => pairs.push((row.a, role)),
                (false, _) => self.skip("user_role", "user no longer exists", i64::from(row.a)),
                (true, None) => self.skip("user_role", "role not imported", i64::from(row.a)),
            }
        }
        self.count("user_role").written += pairs.len() as u64;
        target::insert_user_roles(tx, pairs).await?;
        Ok(())
    }

    async fn conversations(
        &mut self,
        tx: &mut DbConn,
        rows: Vec<SrcConversation>,
    ) -> Result<(), ImportError> {
        let mut new = Vec::with_capacity(rows.len());
        for row in rows {
            let kind = match row.kind.as_deref() {
                Some("chat") => "chat",
                Some("groupchat") => "groupchat",
                _ => {
                    self.mend(
                        "conversations",
                        "no or unknown type: chat",
                        i64::from(row.id),
                    );
                    "chat"
                }
            };
            let updated_at = self.utc(row.updated_at);
            new.push(ConversationRow {
                id: row.id,
                kind,
                // The original set activeTime only when a message was sent or the conversation
                // shown again; its last change is the best stand-in before that.
                active_time: row.active_time.map_or(updated_at, |t| self.utc(t)),
                active: row.active.unwrap_or(true),
                created_at: self.utc(row.created_at),
                updated_at,
            });
            self.conversations.push(row.id);
        }
        self.count("conversations").written += new.len() as u64;
        target::insert_conversations(tx, new).await?;
        Ok(())
    }

    /// A conversation for a group or friendship whose own is missing or already another's.
    async fn new_conversation(
        &mut self,
        tx: &mut DbConn,
        kind: &'static str,
        at: NaiveDateTime,
    ) -> Result<i32, ImportError> {
        let id = self.next_conversation;
        self.next_conversation = id.checked_add(1).ok_or_else(|| {
            ImportError::Invalid("conversation ids run out of the 32-bit range".into())
        })?;
        target::insert_conversations(
            tx,
            vec![ConversationRow {
                id,
                kind,
                active_time: at,
                active: true,
                created_at: at,
                updated_at: at,
            }],
        )
        .await?;
        self.conversations.push(id);
        self.owned.insert(id);
        Ok(id)
    }

    /// The conversation a group or friendship keeps: its own if it exists and is no one
    /// else's, otherwise a new one.
    async fn own_conversation(
        &mut self,
        tx: &mut DbConn,
        table: &'static str,
        id: i32,
        conversation: Option<i32>,
        kind: &'static str,
        at: NaiveDateTime,
    ) -> Result<i32, ImportError> {
        match conversation {
            Some(c) if self.conversations.contains(c) && self.owned.insert(c) => Ok(c),
            Some(c) if self.conversations.contains(c) => {
                self.mend(
                    table,
                    "conversation already another's: a new one",
                    i64::from(id),
                );
                self.new_conversation(tx, kind, at).await
            }
            _ => {
                self.mend(
                    table,
                    "no conversation (deleted): a new, empty one",
                    i64::from(id),
                );
                self.new_conversation(tx, kind, at).await
            }
        }
    }

    async fn groups(&mut self, tx: &mut DbConn, rows: Vec<SrcGroup>) -> Result<(), ImportError> {
        let mut new = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(owner_id) = row.owner_id.filter(|id| self.users.contains(*id)) else {
                self.skip(
                    "groups",
                    "owner no longer exists (members and messages go with it)",
                    i64::from(row.id),
                );
                continue;
            };
            let updated_at = self.utc(row.updated_at);
            let conversation_id = self
                .own_conversation(
                    tx,
                    "groups",
                    row.id,
                    row.conversation_id,
                    "groupchat",
                    updated_at,
                )
                .await?;
            let mut name = row
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| {
                    self.mend("groups", "no name: `group <id>`", i64::from(row.id));
                    format!("group {}", row.id)
                });
            if !self.group_names.insert(name.clone()) {
                self.mend(
                    "groups",
                    "name taken: ` (<id>)` appended",
                    i64::from(row.id),
                );
                name = format!("{name} ({})", row.id);
                self.group_names.insert(name.clone());
            }
            self.groups.insert(row.id, owner_id);
            new.push(GroupRow {
                id: row.id,
                name,
                photo: row
                    .photo
                    .clone()
                    .unwrap_or_else(|| DEFAULT_GROUP_PHOTO.to_owned()),
                introduction: row.introduction.clone(),
                disabled: row.disabled.unwrap_or(false),
                mute: row.mute.unwrap_or(false),
                owner_id,
                conversation_id,
                created_at: self.utc(row.created_at),
                updated_at,
            });
        }
        self.count("groups").written += new.len() as u64;
        target::insert_groups(tx, new).await?;
        Ok(())
    }

    async fn members(&mut self, tx: &mut DbConn, rows: Vec<SrcPair>) -> Result<(), ImportError> {
        let mut new = Vec::with_capacity(rows.len());
        for row in rows {
            let (group_id, user_id) = (row.a, row.b);
            if !self.groups.contains_key(&group_id) {
                self.skip("user_group", "group not imported", i64::from(group_id));
            } else if !self.users.contains(user_id) {
                self.skip("user_group", "member no longer exists", i64::from(group_id));
            } else {
                new.push((group_id, user_id, self.utc(row.created_at)));
            }
        }
        self.count("user_group").written += new.len() as u64;
        target::insert_members(tx, new).await?;
        Ok(())
    }

    async fn friends(&mut self, tx: &mut DbConn, rows: Vec<SrcFriend>) -> Result<(), ImportError> {
        let mut new = Vec::with_capacity(rows.len());
        for row in rows {
            let id = i64::from(row.id);
            let (Some(a), Some(b)) = (row.user_id, row.friend_id) else {
                self.skip("friends", "a user of it no longer exists", id);
                continue;
            };
            if !self.users.contains(a) || !self.users.contains(b) {
                self.skip("friends", "a user of it no longer exists", id);
                continue;
            }
            if a == b {
                self.skip("friends", "a user befriending themselves", id);
                continue;
            }
            let pair = (a.min(b), a.max(b));
            if let Some(&kept) = self.friendships.get(&pair) {
                self.skip(
                    "friends",
                    "duplicate friendship: its messages join the first one's",
                    id,
                );
                if let Some(c) = row.conversation_id.filter(|c| {
                    *c != kept && self.conversations.contains(*c) && !self.owned.contains(c)
                }) {
                    self.owned.insert(c);
                    self.merged.insert(c, kept);
                }
                continue;
            }
            if a > b {
                self.mend("friends", "ids in reverse order: smaller one first", id);
            }
            let updated_at = self.utc(row.updated_at);
            let conversation_id = self
                .own_conversation(
                    tx,
                    "friends",
                    row.id,
                    row.conversation_id,
                    "chat",
                    updated_at,
                )
                .await?;
            self.friendships.insert(pair, conversation_id);
            new.push(FriendRow {
                id: row.id,
                user_id: pair.0,
                friend_id: pair.1,
                conversation_id,
                created_at: self.utc(row.created_at),
                updated_at,
            });
        }
        self.count("friends").written += new.len() as u64;
        target::insert_friends(tx, new).await?;
        Ok(())
    }

    async fn messages(
        &mut self,
        tx: &mut DbConn,
        rows: Vec<SrcMessage>,
    ) -> Result<(), ImportError> {
        let mut new = Vec::with_capacity(rows.len());
        for row in rows {
            let id = i64::from(row.id);
            let Some(conversation) = row.conversation_id else {
                self.skip("messages", "no conversation (deleted in the original)", id);
                continue;
            };
            if !self.conversations.contains(conversation) {
                self.skip("messages", "conversation does not exist", id);
                continue;
            }
            let conversation_id = self
                .merged
                .get(&conversation)
                .copied()
                .unwrap_or(conversation);
            let Some(from_id) = row.from_id.filter(|id| self.users.contains(*id)) else {
                self.skip("messages", "sender no longer exists", id);
                continue;
            };
            let Some(to_id) = row.to_id else {
                self.skip("messages", "no addressee (toId)", id);
                continue;
            };
            let Some(raw) = row.body else {
                self.skip("messages", "no body", id);
                continue;
            };
            let body = if serde_json::from_str::<serde::de::IgnoredAny>(&raw).is_ok() {
                raw
            } else {
                self.mend("messages", "body not JSON: kept as a text message", id);
                serde_json::json!({"type": "text", "msg": raw}).to_string()
            };
            let created_at = self.utc(row.created_at);
            let seq = match self.numbering.get_mut(&conversation_id) {
                Some(numbering) => {
                    if (created_at, row.id) < numbering.last {
                        self.out_of_order.insert(conversation_id);
                    } else {
                        numbering.last = (created_at, row.id);
                    }
                    numbering.count += 1;
                    numbering.count
                }
                None => {
                    self.numbering.insert(
                        conversation_id,
                        Numbering {
                            count: 1,
                            last: (created_at, row.id),
                        },
                    );
                    1
                }
            };
            new.push(MessageRow {
                id: row.id,
                conversation_id,
                seq,
                from_id,
                to_id,
                body,
                created_at,
                updated_at: self.utc(row.updated_at),
            });
        }
        self.count("messages").written += new.len() as u64;
        target::insert_messages(tx, new).await?;
        Ok(())
    }

    async fn applies(&mut self, tx: &mut DbConn, rows: Vec<SrcApply>) -> Result<(), ImportError> {
        let mut new = Vec::with_capacity(rows.len());
        for row in rows {
            let id = i64::from(row.id);
            let kind = match row.kind.as_deref() {
                Some("user") => "user",
                Some("group") => "group",
                _ => {
                    self.skip("applies", "no or unknown type", id);
                    continue;
                }
            };
            let Some(from_id) = row.from_id.filter(|id| self.users.contains(*id)) else {
                self.skip("applies", "applicant no longer exists", id);
                continue;
            };
            let Some(to_id) = row.to_id else {
                self.skip("applies", "no target (toId)", id);
                continue;
            };
            let target_exists = match kind {
                "user" => self.users.contains(to_id),
                _ => self.groups.contains_key(&to_id),
            };
            if !target_exists {
                self.skip("applies", "its user or group no longer exists", id);
                continue;
            }
            // The addressee: the original set it after creating the apply, so it can be missing.
            let addressee = match row.user_id.filter(|id| self.users.contains(*id)) {
                Some(user) => Some(user),
                None => {
                    let derived = match kind {
                        "user" => Some(to_id).filter(|id| self.users.contains(*id)),
                        _ => self.groups.get(&to_id).copied(),
                    };
                    if derived.is_some() {
                        self.mend(
                            "applies",
                            "no addressee: the target user or the group's owner",
                            id,
                        );
                    }
                    derived
                }
            };
            let Some(user_id) = addressee else {
                self.skip("applies", "addressee no longer exists", id);
                continue;
            };
            let mut has_handled = row.has_handled.unwrap_or(false);
            if !has_handled && !self.open_applies.insert((kind, from_id, to_id)) {
                self.mend(
                    "applies",
                    "a second open apply for the same target: marked handled",
                    id,
                );
                has_handled = true;
            }
            new.push(ApplyRow {
                id: row.id,
                kind,
                from_id,
                to_id,
                user_id,
                has_handled,
                created_at: self.utc(row.created_at),
                updated_at: self.utc(row.updated_at),
            });
        }
        self.count("applies").written += new.len() as u64;
        target::insert_applies(tx, new).await?;
        Ok(())
    }

    /// What follows from all rows: the order of out-of-order histories, every conversation's
    /// last `seq`, the sequences of ids (not in a dry run: PostgreSQL keeps them on rollback).
    async fn derive(&mut self, tx: &mut DbConn, dry_run: bool) -> Result<(), ImportError> {
        self.progress.step("numbering messages");
        let mut late: Vec<i32> = self.out_of_order.drain().collect();
        late.sort_unstable();
        target::renumber(tx, late).await?;
        target::set_last_seqs(tx).await?;
        if !dry_run {
            self.progress.step("continuing id sequences");
            target::continue_sequences(tx).await?;
        }
        Ok(())
    }

    fn report(&mut self, started: Instant) -> ImportReport {
        let tables = original::TABLES
            .iter()
            .map(|table| {
                self.counts.get(table).cloned().unwrap_or(TableCount {
                    table,
                    ..TableCount::default()
                })
            })
            .collect();
        ImportReport {
            dry_run: self.options.dry_run,
            tables,
            issues: std::mem::take(&mut self.issues.entries)
                .into_values()
                .collect(),
            replaced_admin: self.replaced_admin,
            elapsed: started.elapsed(),
        }
    }
}

fn table_of(page: &Page) -> &'static str {
    match page {
        Page::Rights(_) => "rights",
        Page::Roles(_) => "roles",
        Page::RoleRights(_) => "role_right",
        Page::Users(_) => "users",
        Page::UserInfos(_) => "user_infos",
        Page::UserRoles(_) => "user_role",
        Page::Conversations(_) => "conversations",
        Page::Groups(_) => "groups",
        Page::UserGroups(_) => "user_group",
        Page::Friends(_) => "friends",
        Page::Messages(_) => "messages",
        Page::Applies(_) => "applies",
        Page::End(table) => table,
    }
}
