//! The message writer's batches (group commit), on both backends: a batch that fails stores
//! nothing and fails every post in it; a `clientMsgId` retry is stored once, within a batch and
//! across batches; membership is checked per post inside the batch; `seq` stays strictly
//! increasing and gapless per conversation under concurrent senders.
//!
//! Demo ids (docs/protocol.md §6.3): `user` is 2, `member<n>` is n + 4; conversation 3 is
//! user–member3; group 1 (conversation 27) has user, disabled, muteuser and member1..member10.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Backend, TestServer};
use diesel_async::SimpleAsyncConnection;
use im_server::domain::DomainError;
use im_server::domain::conversations::NOT_A_MEMBER;
use im_server::domain::messaging::{self, CLIENT_MSG_ID_REUSED, NewPost, Posted};
use im_server::store;

const USER: i32 = 2;
const MEMBER3: i32 = 7;
const MEMBER4: i32 = 8;
const MEMBER20: i32 = 24;
const CHAT_USER_MEMBER3: i32 = 3;
const CHAT_USER_MEMBER4: i32 = 4;
const GROUP_CHAT: i32 = 27;

fn member(n: i32) -> i32 {
    n + 4
}

fn post(from_id: i32, conversation_id: i32, text: &str, client_msg_id: Option<&str>) -> NewPost {
    NewPost {
        from_id,
        conversation_id,
        body: serde_json::json!({"type": "text", "msg": text}).to_string(),
        client_msg_id: client_msg_id.map(str::to_owned),
    }
}

async fn store_batch(
    server: &TestServer,
    posts: Vec<NewPost>,
) -> Result<Vec<Result<Posted, DomainError>>, DomainError> {
    messaging::store_batch(&server.app.db, Arc::new(posts), None).await
}

async fn sql(server: &TestServer, sql: &str) {
    let conn = &mut server.app.db.get().await.expect("connection");
    im_server::db_run!(conn: { conn.batch_execute(sql).await.expect("SQL runs") });
}

/// Every stored message of a conversation, oldest first.
async fn stored(server: &TestServer, conversation_id: i32) -> Vec<store::models::Message> {
    let mut conn = server.app.db.get().await.expect("connection");
    store::messages::after_seq(&mut conn, conversation_id, 0, 100_000)
        .await
        .expect("history")
}

/// Makes the database refuse any message whose body says `boom`, as a failing disk or a lost
/// connection would refuse the whole transaction.
async fn refuse_boom(server: &TestServer) {
    match server.backend {
        Backend::Sqlite => {
            sql(
                server,
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON messages \
                 WHEN NEW.body LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'boom refused'); END;",
            )
            .await
        }
        Backend::Postgres(_) => {
            sql(
                server,
                "CREATE FUNCTION refuse_boom() RETURNS trigger AS $$ BEGIN \
                 IF NEW.body LIKE '%boom%' THEN RAISE EXCEPTION 'boom refused'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER refuse_boom BEFORE INSERT ON messages \
                 FOR EACH ROW EXECUTE FUNCTION refuse_boom();",
            )
            .await
        }
    }
}

fn message_text(message: &store::models::Message) -> String {
    let body: serde_json::Value = serde_json::from_str(&message.body).expect("JSON body");
    body["msg"].as_str().expect("msg").to_owned()
}

async fn a_failed_batch_fails_every_post_and_stores_none(backend: Backend) {
    let server = TestServer::start(backend).await;
    refuse_boom(&server).await;
    let outcome = store_batch(
        &server,
        vec![
            post(USER, CHAT_USER_MEMBER3, "fine", None),
            post(member(1), GROUP_CHAT, "fine too", Some("keyed")),
            post(MEMBER3, CHAT_USER_MEMBER3, "boom", None),
            post(MEMBER4, CHAT_USER_MEMBER4, "after it", None),
        ],
    )
    .await;
    assert!(outcome.is_err(), "the batch must fail: {outcome:?}");
    for conversation in [CHAT_USER_MEMBER3, CHAT_USER_MEMBER4, GROUP_CHAT] {
        assert!(stored(&server, conversation).await.is_empty());
    }
    // Nothing of it counted either: the next message of each conversation is its first.
    let next = store_batch(
        &server,
        vec![
            post(USER, CHAT_USER_MEMBER3, "again", None),
            post(member(1), GROUP_CHAT, "again", Some("keyed")),
        ],
    )
    .await
    .expect("a batch without boom is stored");
    for answer in next {
        let posted = answer.expect("stored");
        assert!(posted.fresh, "the failed batch's clientMsgId was not kept");
        assert_eq!(posted.message.seq, 1);
    }
}

async fn the_writer_answers_only_what_was_stored(backend: Backend) {
    let server = TestServer::start(backend).await;
    refuse_boom(&server).await;
    // Many concurrent posts through the process's writer, one of them refused by the database:
    // whatever batch it fell into fails whole; every other batch is stored.
    let sends = (0..200).map(|n| {
        let app = server.app.clone();
        let text = if n == 100 {
            "boom".to_owned()
        } else {
            format!("m{n}")
        };
        let from = if n % 2 == 0 { USER } else { MEMBER3 };
        tokio::spawn(async move {
            let answer = app
                .messages
                .store(post(from, CHAT_USER_MEMBER3, &text, None))
                .await;
            (text, answer)
        })
    });
    let answers: Vec<(String, Result<Posted, DomainError>)> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|joined| joined.expect("task"))
        .collect();
    let stored: HashMap<String, store::models::Message> = stored(&server, CHAT_USER_MEMBER3)
        .await
        .into_iter()
        .map(|message| (message_text(&message), message))
        .collect();
    let mut failed = 0;
    for (text, answer) in &answers {
        match answer {
            Ok(posted) => {
                let kept = stored
                    .get(text)
                    .unwrap_or_else(|| panic!("{text} acked, not stored"));
                assert_eq!(kept.id, posted.message.id);
                assert_eq!(kept.seq, posted.message.seq);
            }
            Err(_) => {
                failed += 1;
                assert!(!stored.contains_key(text), "{text} failed, yet stored");
            }
        }
    }
    assert!(
        answers
            .iter()
            .any(|(text, answer)| text == "boom" && answer.is_err()),
        "boom must fail"
    );
    assert_eq!(stored.len() + failed, answers.len());
    // The numbers of the stored ones are 1..=n: a failed batch leaves no gap.
    let mut seqs: Vec<i64> = stored.values().map(|message| message.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=stored.len() as i64).collect::<Vec<_>>());
}

async fn a_client_msg_id_retry_is_stored_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Within one batch: the repeat answers the first, not delivered again (`fresh` false). The
    // same id from another sender is another send.
    let first = store_batch(
        &server,
        vec![
            post(USER, CHAT_USER_MEMBER3, "hello", Some("c-1")),
            post(USER, CHAT_USER_MEMBER3, "hello", Some("c-1")),
            post(MEMBER3, CHAT_USER_MEMBER3, "hi", Some("c-1")),
            post(USER, CHAT_USER_MEMBER4, "reused", Some("c-1")),
        ],
    )
    .await
    .expect("batch stored");
    let original = first[0].as_ref().expect("stored");
    assert!(original.fresh);
    let repeat = first[1].as_ref().expect("the repeat is answered");
    assert!(!repeat.fresh);
    assert_eq!(repeat.message.id, original.message.id);
    let other = first[2].as_ref().expect("another sender's send");
    assert!(other.fresh);
    assert_ne!(other.message.id, original.message.id);
    match &first[3] {
        Err(DomainError::Invalid(message)) => assert_eq!(message, CLIENT_MSG_ID_REUSED),
        other => panic!("a clientMsgId of another conversation: {other:?}"),
    }
    // Across batches: a later retry finds the stored message.
    let later = store_batch(
        &server,
        vec![
            post(USER, CHAT_USER_MEMBER3, "hello", Some("c-1")),
            post(USER, CHAT_USER_MEMBER3, "new", Some("c-2")),
        ],
    )
    .await
    .expect("batch stored");
    let retried = later[0].as_ref().expect("the retry is answered");
    assert!(!retried.fresh);
    assert_eq!(retried.message.id, original.message.id);
    assert_eq!(retried.message.seq, original.message.seq);
    // And through the writer, concurrently: ten tries of one send make one message.
    let tries = (0..10).map(|_| {
        let app = server.app.clone();
        tokio::spawn(async move {
            app.messages
                .store(post(MEMBER3, CHAT_USER_MEMBER3, "once", Some("c-3")))
                .await
        })
    });
    let tries: Vec<Posted> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .map(|joined| joined.expect("task").expect("stored"))
        .collect();
    assert_eq!(tries.iter().filter(|posted| posted.fresh).count(), 1);
    assert!(
        tries
            .iter()
            .all(|posted| posted.message.id == tries[0].message.id)
    );
    let texts: Vec<String> = stored(&server, CHAT_USER_MEMBER3)
        .await
        .iter()
        .map(message_text)
        .collect();
    assert_eq!(texts, ["hello", "hi", "new", "once"]);
}

async fn membership_is_checked_per_post_in_the_batch(backend: Backend) {
    let server = TestServer::start(backend).await;
    sql(&server, "UPDATE groups SET mute = TRUE WHERE id = 2").await;
    let answers = store_batch(
        &server,
        vec![
            post(USER, CHAT_USER_MEMBER3, "mine", None),
            // Not of the pair, not of the group, a conversation that does not exist.
            post(MEMBER4, CHAT_USER_MEMBER3, "intruder", None),
            post(MEMBER20, GROUP_CHAT, "outsider", None),
            post(USER, 999_999, "nowhere", None),
            // The muted group 2 (conversation 28).
            post(USER, 28, "muted", None),
            post(member(10), GROUP_CHAT, "member", None),
        ],
    )
    .await
    .expect("refusals do not fail the batch");
    let refusal = |i: usize| match &answers[i] {
        Err(DomainError::Rejected(message)) => message.to_string(),
        other => panic!("post {i} must be refused: {other:?}"),
    };
    assert_eq!(refusal(1), NOT_A_MEMBER);
    assert_eq!(refusal(2), NOT_A_MEMBER);
    assert_eq!(refusal(3), NOT_A_MEMBER);
    assert_eq!(refusal(4), im_server::domain::conversations::GROUP_MUTED);
    let mine = answers[0].as_ref().expect("stored");
    assert_eq!((mine.message.to_id, mine.message.seq), (MEMBER3, 1));
    let group = answers[5].as_ref().expect("stored");
    assert_eq!((group.message.to_id, group.message.seq), (1, 1));
    assert_eq!(stored(&server, CHAT_USER_MEMBER3).await.len(), 1);
    assert_eq!(stored(&server, 28).await.len(), 0);
}

async fn seq_increases_strictly_under_concurrent_senders(backend: Backend) {
    let server = TestServer::start(backend).await;
    const SENDERS: i32 = 8;
    const EACH: i64 = 40;
    // Eight members send to the group and, interleaved, user and member3 to their chat; each
    // sender waits for every answer before its next send.
    let senders = (1..=SENDERS).map(|n| {
        let app = server.app.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for k in 0..EACH {
                let (from, conversation) = match (n, k % 4) {
                    (1, 0) => (USER, CHAT_USER_MEMBER3),
                    (2, 0) => (MEMBER3, CHAT_USER_MEMBER3),
                    _ => (member(n), GROUP_CHAT),
                };
                let posted = app
                    .messages
                    .store(post(from, conversation, &format!("{n}-{k}"), None))
                    .await
                    .expect("stored");
                assert!(posted.fresh);
                seqs.push((conversation, posted.message.seq));
            }
            seqs
        })
    });
    let mut by_conversation: HashMap<i32, Vec<i64>> = HashMap::new();
    for sender in futures_util::future::join_all(senders).await {
        let seqs = sender.expect("sender");
        for conversation in [CHAT_USER_MEMBER3, GROUP_CHAT] {
            let mine: Vec<i64> = seqs
                .iter()
                .filter(|(c, _)| *c == conversation)
                .map(|(_, seq)| *seq)
                .collect();
            assert!(
                mine.windows(2).all(|pair| pair[0] < pair[1]),
                "one sender's messages keep their order: {mine:?}"
            );
            by_conversation
                .entry(conversation)
                .or_default()
                .extend(mine);
        }
    }
    for (conversation, mut seqs) in by_conversation {
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
        let kept = stored(&server, conversation).await;
        assert_eq!(
            kept.iter().map(|message| message.seq).collect::<Vec<_>>(),
            seqs,
            "conversation {conversation}"
        );
    }
}

async fn seq_follows_the_order_of_sending(backend: Backend) {
    let server = TestServer::start(backend).await;
    // One sender that does not wait for answers, as a socket streaming messages: they queue in
    // order, spread over several batches (on PostgreSQL, batches that overlap), and must be
    // numbered in that order.
    let sends = (0..1500).map(|k| {
        server
            .app
            .messages
            .store(post(USER, CHAT_USER_MEMBER3, &format!("{k}"), None))
    });
    // Unconstrained: Tokio's cooperative budget would otherwise make the 129th send of this one
    // task wait for a later turn, and queue it out of order (the test's doing, not the writer's).
    let answers = tokio::task::unconstrained(futures_util::future::join_all(sends)).await;
    let seqs: Vec<i64> = answers
        .into_iter()
        .map(|answer| answer.expect("stored").message.seq)
        .collect();
    assert_eq!(seqs, (1..=1500).collect::<Vec<i64>>());
}

on_both_backends!(
    seq_follows_the_order_of_sending,
    a_failed_batch_fails_every_post_and_stores_none,
    the_writer_answers_only_what_was_stored,
    a_client_msg_id_retry_is_stored_once,
    membership_is_checked_per_post_in_the_batch,
    seq_increases_strictly_under_concurrent_senders,
);

/// The thread a SQLite call of `conn` runs on.
async fn call_thread(db: &store::Db) -> std::thread::ThreadId {
    let mut conn = db.get().await.expect("connection");
    let store::DbConn::Sqlite(conn) = &mut conn else {
        panic!("a SQLite connection");
    };
    conn.spawn_blocking(|_| Ok(std::thread::current().id()))
        .await
        .expect("call")
}

/// What the SQLite writer relies on: within `on_one_thread` every call of a SQLite connection
/// runs where it is made, and outside it each is handed to a blocking thread, also on a thread
/// that ran `on_one_thread` work before, however that work ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_calls_run_in_place_only_on_one_thread() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/im.db", dir.path().display());
    // One blocking thread would be reused for everything and prove nothing either way.
    let db = store::Db::connect(&url, 2, None).expect("pool");
    let outside = call_thread(&db).await;
    assert_ne!(
        outside,
        std::thread::current().id(),
        "a call outside is handed off"
    );

    let inside = store::on_one_thread({
        let db = db.clone();
        async move {
            let here = std::thread::current().id();
            let calls = [call_thread(&db).await, call_thread(&db).await];
            (here, calls)
        }
    })
    .await
    .expect("work");
    assert_eq!(
        inside.1,
        [inside.0, inside.0],
        "calls run on the work's own thread"
    );

    // Work that panics leaves no thread marked: later calls are handed off again.
    for _ in 0..4 {
        let panicked = store::on_one_thread(async { panic!("work that fails") }).await;
        assert!(panicked.is_err());
        let (here, call) = tokio::task::spawn_blocking({
            let db = db.clone();
            let runtime = tokio::runtime::Handle::current();
            move || {
                (
                    std::thread::current().id(),
                    runtime.block_on(call_thread(&db)),
                )
            }
        })
        .await
        .expect("blocking thread");
        assert_ne!(
            call, here,
            "a call from an unmarked blocking thread is handed off"
        );
    }
}
