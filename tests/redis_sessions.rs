//! Sessions in Redis (`REDIS_URL`): shared by several server processes, revocable at once, stored
//! without the session id itself, and failing fast when Redis is down.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestServer, assert_refused, data, redis_url, unique_prefix};
use im_server::app::Startup;
use serde_json::{Value, json};

on_both_backends!(
    services:
    a_session_made_on_one_process_works_on_another,
    revoking_a_user_ends_every_session_everywhere,
);

/// Two servers on one database and one Redis, like two processes behind nginx.
async fn pair(backend: Backend, redis: &str) -> (TestServer, TestServer) {
    let prefix = unique_prefix();
    let first = TestServer::start_with(backend.clone(), Startup { demo: true }, |config| {
        config.redis_url = Some(redis.to_owned());
        config.redis_prefix = prefix.clone();
    })
    .await;
    let url = first.database_url.clone();
    let second = TestServer::start_with(backend, Startup { demo: true }, |config| {
        config.database_url = url;
        config.redis_url = Some(redis.to_owned());
        config.redis_prefix = prefix.clone();
    })
    .await;
    (first, second)
}

async fn a_session_made_on_one_process_works_on_another(backend: Backend) {
    let redis = redis_url();
    let (first, second) = pair(backend, &redis).await;
    let token = data(&first.client().login("user", "123456").await)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let current = |server: &TestServer| {
        let request = reqwest::Client::new()
            .get(server.url("/api/v1/currentUser"))
            .header("token", token.clone());
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(data(&current(&first).await)["id"], 2);
    assert_eq!(data(&current(&second).await)["id"], 2);

    // Log out through the second process: the first one no longer knows the session.
    let logout: Value = reqwest::Client::new()
        .post(second.url("/api/v1/logout"))
        .header("token", token.clone())
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(data(&logout), &Value::Null);
    assert_refused(&current(&first).await, "1", "请登录");
    assert_refused(&current(&second).await, "1", "请登录");

    // Redis holds no session id in clear.
    let mut redis = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = first.app.config.redis_prefix.clone();
    let other = first.client();
    let token = data(&other.login("member1", "123456").await)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "sessions are in Redis under {prefix}");
    for key in &keys {
        assert!(!key.contains(&token), "raw session id in key {key}");
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        // Strings are sessions; presence keeps its own keys (`presence:`), with their own TTL.
        if kind == "string" && key.starts_with(&format!("{prefix}sess:")) {
            let value: String = redis::cmd("GET")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap();
            assert!(!value.contains(&token), "raw session id in value of {key}");
            let ttl: i64 = redis::cmd("TTL")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap();
            assert!(
                (86_000..=86_400).contains(&ttl),
                "session expires after a day of disuse: {ttl}"
            );
        }
    }
}

async fn revoking_a_user_ends_every_session_everywhere(backend: Backend) {
    let redis = redis_url();
    let (first, second) = pair(backend, &redis).await;
    let phone = first.logged_in("member2").await;
    let laptop = second.logged_in("member2").await;
    let bystander = second.logged_in("member3").await;
    assert_eq!(first.app.sessions.revoke_user(6).await.unwrap(), 2);
    assert_refused(&phone.get("/api/v1/currentUser").await, "1", "请登录");
    assert_refused(&laptop.get("/api/v1/currentUser").await, "1", "请登录");
    assert_eq!(data(&bystander.get("/api/v1/currentUser").await)["id"], 7);
    assert_eq!(
        second.app.sessions.revoke_user(6).await.unwrap(),
        0,
        "nothing left to end"
    );
}

/// With Redis unreachable the process stays up, says it is not ready, and refuses what needs
/// Redis at once instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_fast_and_readiness_says_so() {
    let server = TestServer::start_with(Backend::Sqlite, Startup { demo: true }, |config| {
        // Nothing listens on port 1.
        config.redis_url = Some("redis://127.0.0.1:1".into());
    })
    .await;
    let client = server.client();
    let started = Instant::now();
    let response = client
        .http
        .post(server.url("/api/v1/login"))
        .json(&json!({"username": "user", "password": "123456"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_refused(&body, "1", "服务暂时不可用，请稍后再试");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed fast: {:?}",
        started.elapsed()
    );

    let ready = client.http.get(server.url("/readyz")).send().await.unwrap();
    let status = ready.status();
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "unavailable", "database": "ok", "redis": "unavailable"})
    );
    assert_eq!(status, 503);
    let health = client
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// Presence in Redis, with two registers as two processes: a user is online while a socket of
/// theirs is on a live process, and goes offline when that process stops beating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(im_skip_services, ignore = "needs Redis: IM_TEST_SKIP_SERVICES is set")]
async fn presence_spans_processes_and_ends_with_a_dead_one() {
    use im_server::domain::presence::PresenceRegister;
    use im_server::session::presence::RedisPresence;

    let redis = redis_url();
    let prefix = unique_prefix();
    let manager = || {
        let url = redis.clone();
        async move {
            redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap())
                .await
                .unwrap()
        }
    };
    // The first process lives for the whole test whatever the machine's load; the second one,
    // which this test lets die, is gone a second after its last beat.
    let first = RedisPresence::new(manager().await, &prefix, Duration::from_secs(120));
    let second = RedisPresence::new(manager().await, &prefix, Duration::from_secs(1));
    assert!(
        first.heartbeat().await.unwrap().resync,
        "a new process has nothing recorded yet"
    );
    second.heartbeat().await.unwrap();

    assert!(
        first.connected(5, "a").await.unwrap(),
        "first socket: came online"
    );
    assert!(
        !second.connected(5, "b").await.unwrap(),
        "second socket, other process"
    );
    assert!(second.connected(6, "c").await.unwrap());
    let online = first.online_among(&[5, 6, 7]).await.unwrap();
    assert_eq!(online, [5, 6].into_iter().collect());
    assert!(
        !first.disconnected(5, "a").await.unwrap(),
        "still on the other process"
    );
    assert!(
        !first.disconnected(5, "a").await.unwrap(),
        "forgetting twice changes nothing"
    );
    assert_eq!(second.online_among(&[5]).await.unwrap().len(), 1);

    // The second process dies: it beats no more. Once its key expired, the first process's
    // next beat reports its users offline, once: beats until one does (Redis expires the key a
    // second after the second's last beat; 15 s bounds a stalled machine).
    first.connected(6, "d").await.unwrap();
    let died = Instant::now();
    let went_offline = loop {
        let beat = first.heartbeat().await.unwrap();
        assert!(!beat.resync, "the first process kept beating: {beat:?}");
        if !beat.went_offline.is_empty() {
            break beat.went_offline;
        }
        assert!(
            died.elapsed() < Duration::from_secs(15),
            "the second process's users never went offline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        went_offline,
        vec![5],
        "6 still has a socket on the first process"
    );
    assert_eq!(
        first.online_among(&[5, 6]).await.unwrap(),
        [6].into_iter().collect()
    );
    assert_eq!(
        first.heartbeat().await.unwrap().went_offline,
        Vec::<i32>::new()
    );

    // Redis forgets everything (a restart): the next beat says so, for sockets to be recorded again.
    let mut conn = manager().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}presence:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(first.heartbeat().await.unwrap().resync);
    first
        .resync(&[(6, "d".into()), (9, "e".into())])
        .await
        .unwrap();
    assert_eq!(
        second.online_among(&[5, 6, 9]).await.unwrap(),
        [6, 9].into_iter().collect()
    );
    // A resync replaces: the sockets not listed are gone.
    first.resync(&[(9, "e".into())]).await.unwrap();
    assert_eq!(
        second.online_among(&[6, 9]).await.unwrap(),
        [9].into_iter().collect()
    );
    assert!(!first.disconnected(6, "d").await.unwrap(), "already gone");
    assert!(
        first.disconnected(9, "e").await.unwrap(),
        "the last socket of 9"
    );
}
