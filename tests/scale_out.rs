//! Scale-out: three `im-server` processes on one PostgreSQL database and one Redis, behind nginx
//! configured by the repository's nginx.conf, driven by the real socket.io-client 2 and 4
//! packages (`tests/compat/cluster.js`), some straight to a process and some through nginx.
//! Then the faults: a process killed, Redis and PostgreSQL stopped and restarted, mid-traffic,
//! each printing its figures (`cargo test --test scale_out -- --nocapture`).
//! Needs PostgreSQL, Redis, nginx, redis-server, PostgreSQL 15's server binaries and Node
//! (.ci/run has them).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, PrivatePostgres, PrivateRedis, client_config, run_clients};
use common::{Backend, TestServer, assert_refused, data, redis_url};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};

/// PostgreSQL and Redis of the test machine (failing, with what to start, when either is down).
fn services() -> (String, String) {
    let Backend::Postgres(pg) = Backend::postgres() else {
        unreachable!("Backend::postgres is PostgreSQL")
    };
    (pg, redis_url())
}

/// The demo group 谈笑有鸿儒's conversation, where the clients talk.
const ROOM: i32 = 27;
/// Seconds after which a dead process's users count as offline, in the fault tests.
const PRESENCE_TTL: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    im_skip_services,
    ignore = "needs PostgreSQL, Redis, nginx and Node: IM_TEST_SKIP_SERVICES is set"
)]
async fn a_session_made_on_one_process_works_on_the_others() {
    let (pg, redis) = services();
    let cluster = Cluster::start(&pg, &redis, 3).await;

    // Log in through nginx; the cookie then opens every process.
    let browser = cluster.client();
    let token = data(&browser.login("user", "123456").await)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(data(&browser.get("/api/v1/currentUser").await)["id"], 2);
    for n in 0..3 {
        let direct = cluster.direct(n);
        let reply: serde_json::Value = direct
            .http
            .get(format!("{}/api/v1/currentUser", direct.base))
            .header("token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(data(&reply)["id"], 2, "process {n}");
    }

    // Logging out on one process ends the session on all of them.
    let direct = cluster.direct(2);
    let reply: serde_json::Value = direct
        .http
        .post(format!("{}/api/v1/logout", direct.base))
        .header("token", &token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    data(&reply);
    assert_refused(&browser.get("/api/v1/currentUser").await, "1", "请登录");
    for process in &cluster.processes {
        assert!(!process.log().contains("ERROR"), "{}", process.log());
    }
}

/// With each client library over each transport: a session works on every process; a group
/// message sent through any process reaches every member's sockets on all of them and is
/// stored; presence is heard and listed across processes; a ban drops sockets everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    im_skip_services,
    ignore = "needs PostgreSQL, Redis, nginx and Node: IM_TEST_SKIP_SERVICES is set"
)]
async fn sockets_messages_presence_and_bans_cross_processes() {
    let (pg, redis) = services();
    let cluster = Cluster::start(&pg, &redis, 3).await;
    let combinations = [
        ("sio2", "websocket"),
        ("sio2", "polling"),
        ("sio4", "websocket"),
        ("sio4", "polling"),
    ];
    let mut rows = Vec::new();
    let mut sent = 0;
    for (run, (client, transport)) in combinations.into_iter().enumerate() {
        let mut config = client_config(&cluster);
        config["client"] = json!(client);
        config["transport"] = json!(transport);
        // Each run bans a user of its own (member27 + run).
        config["run"] = json!(run);
        let result = run_clients(
            "spread",
            &config,
            Duration::from_secs(60),
            async |name, args| {
                assert_eq!(name, "presence-recorded", "unknown hook");
                wait_for_presence(&cluster, args).await;
            },
        )
        .await;
        let figures = result.figures.expect("figures");
        let ban_ms = figures["banMs"].as_i64().expect("ban time");
        assert!(ban_ms < 2000, "ban took {ban_ms} ms");
        sent += figures["fanoutSockets"].as_u64().expect("sockets");
        rows.push(figures);
    }
    print_rows(
        "cross-process checks, per client and transport",
        &rows,
        &[
            ("client", "client"),
            ("transport", "transport"),
            ("fanoutSockets", "sockets (=msgs)"),
            ("fanoutDeliveries", "deliveries"),
            ("fanoutMs", "fan-out ms"),
            ("banMs", "ban drop ms"),
        ],
    );
    // Every message the runs sent is in the database, once.
    let stored = stored_ids(&cluster.database_url, ROOM).await;
    assert_eq!(stored.len() as u64, sent, "each message sent stored once");
    assert_no_panic(&cluster);
}

/// Returns once Redis records `args.sockets` sockets of user `args.userId` (at most 10 s): what
/// the clients wait for before they check that a second device keeps its user online.
async fn wait_for_presence(cluster: &Cluster, args: &Value) {
    let user = args["userId"].as_i64().expect("userId");
    let wanted = args["sockets"].as_u64().expect("sockets");
    let key = format!("{}presence:user:{user}", cluster.redis_prefix);
    let mut redis = redis::Client::open(cluster.redis_url.as_str())
        .expect("Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis connection");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let recorded: u64 = redis::cmd("SCARD")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("SCARD");
        if recorded >= wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} holds {recorded} sockets after 10 s, not {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// kill -9 of one process under steady traffic: the other processes' clients notice nothing,
/// the dead one's reconnect through nginx and fetch what they missed with `since`, no
/// acknowledged message is missing, and its only-there users go offline after the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    im_skip_services,
    ignore = "needs PostgreSQL, Redis, nginx and Node: IM_TEST_SKIP_SERVICES is set"
)]
async fn a_process_killed_mid_traffic() {
    let (pg, redis) = services();
    let ttl = PRESENCE_TTL.to_string();
    let mut cluster = Cluster::start_with(&pg, &redis, 3, &[("IM_PRESENCE_TTL", &ttl)]).await;
    let mut config = client_config(&cluster);
    config["fault"] = json!("kill");
    config["presenceTtl"] = json!(PRESENCE_TTL);
    let processes = &mut cluster.processes;
    let result = run_clients(
        "traffic",
        &config,
        Duration::from_secs(90),
        async |name, _| {
            assert_eq!(name, "fault");
            processes[2].kill();
        },
    )
    .await;
    let figures = result.figures.expect("figures");
    print_figures("kill -9 of process 2 of 3, mid-traffic", &figures);
    assert_running(&mut cluster, 0..2);
    assert_all_acked_stored(&cluster.database_url, &figures).await;
    assert_no_panic(&cluster);
}

/// Redis (sessions, presence, the Socket.IO adapter) stopped and started again mid-traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    im_skip_services,
    ignore = "needs PostgreSQL, Redis, nginx and Node: IM_TEST_SKIP_SERVICES is set"
)]
async fn redis_restarted_mid_traffic() {
    let (pg, _) = services();
    let mut redis = PrivateRedis::start();
    let mut cluster = Cluster::start(&pg, &redis.url(), 3).await;
    let mut config = client_config(&cluster);
    config["fault"] = json!("redis");
    let result = run_clients(
        "traffic",
        &config,
        Duration::from_secs(90),
        async |name, _| match name {
            "fault" => redis.stop(),
            "restore" => redis.resume(),
            other => panic!("unknown hook {other}"),
        },
    )
    .await;
    let figures = result.figures.expect("figures");
    print_figures(
        "Redis stopped for 3 s and restarted empty (sessions lost: clients log in again)",
        &figures,
    );
    assert_running(&mut cluster, 0..3);
    assert_all_acked_stored(&cluster.database_url, &figures).await;
    assert_no_panic(&cluster);
}

/// PostgreSQL stopped (immediate: as in a crash) and started again mid-traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    im_skip_services,
    ignore = "needs PostgreSQL, Redis, nginx and Node: IM_TEST_SKIP_SERVICES is set"
)]
async fn postgres_restarted_mid_traffic() {
    let (_, redis) = services();
    let postgres = PrivatePostgres::start();
    let mut cluster = Cluster::start(&postgres.url(), &redis, 3).await;
    let mut config = client_config(&cluster);
    config["fault"] = json!("postgres");
    let result = run_clients(
        "traffic",
        &config,
        Duration::from_secs(90),
        async |name, _| match name {
            "fault" => postgres.stop(),
            "restore" => postgres.resume(),
            other => panic!("unknown hook {other}"),
        },
    )
    .await;
    let figures = result.figures.expect("figures");
    print_figures("PostgreSQL stopped for 3 s and restarted", &figures);
    assert_running(&mut cluster, 0..3);
    assert_all_acked_stored(&cluster.database_url, &figures).await;
    assert_no_panic(&cluster);
}

/// A PostgreSQL that hangs rather than refuses (frozen with SIGSTOP: connections open, nothing
/// answers) under a warm pool: every request gets a 503 within seconds, never a hang, and
/// service resumes by itself once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    im_skip_services,
    ignore = "needs PostgreSQL's server binaries: IM_TEST_SKIP_SERVICES is set"
)]
async fn a_frozen_postgres_gives_errors_not_hangs() {
    let postgres = PrivatePostgres::start();
    let server = TestServer::start(Backend::Postgres(postgres.url())).await;
    let client = server.logged_in("user").await;
    // As many requests at once as the pool holds, so that it keeps that many idle connections.
    let friends = || {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (client, url) = (client.clone(), server.url("/api/v1/friend"));
            requests.spawn(async move {
                let started = Instant::now();
                let response = client.http.get(url).send().await.expect("an answer");
                let status = response.status().as_u16();
                let reply: Value = response.json().await.expect("JSON");
                (started.elapsed(), status, reply)
            });
        }
        requests.join_all()
    };
    for (_, status, reply) in friends().await {
        assert_eq!(status, 200, "{reply}");
    }

    let frozen = postgres.freeze();
    let answers = tokio::time::timeout(Duration::from_secs(20), friends())
        .await
        .expect("requests against a frozen database answered within 20 s");
    let slowest = answers
        .iter()
        .map(|(took, _, _)| *took)
        .max()
        .expect("answers");
    for (took, status, reply) in &answers {
        assert_eq!(*status, 503, "{reply}");
        assert_eq!(
            reply["errorMessage"], "服务暂时不可用，请稍后再试",
            "{reply}"
        );
        assert!(*took < Duration::from_secs(7), "refused after {took:?}");
    }
    let probe = Instant::now();
    let ready = reqwest::get(server.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    let probe = probe.elapsed();

    drop(frozen);
    let thawed = Instant::now();
    let deadline = thawed + Duration::from_secs(15);
    loop {
        let answers = friends().await;
        if answers.iter().all(|(_, status, _)| *status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {:?}", answers[0].2);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    print_figures(
        "PostgreSQL frozen (SIGSTOP) under a warm pool",
        &json!({
            "requestsRefused": answers.len(),
            "slowestRefusalMs": slowest.as_millis() as u64,
            "readyzMs": probe.as_millis() as u64,
            "resumedMs": thawed.elapsed().as_millis() as u64,
        }),
    );
}

#[derive(QueryableByName)]
struct StoredId {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    id: i32,
}

/// The ids of the messages of `conversation`, read straight from the database.
async fn stored_ids(database_url: &str, conversation: i32) -> HashSet<i32> {
    let mut conn = AsyncPgConnection::establish(database_url)
        .await
        .expect("database reachable");
    diesel::sql_query("SELECT id FROM messages WHERE conversation_id = $1")
        .bind::<diesel::sql_types::Integer, _>(conversation)
        .load::<StoredId>(&mut conn)
        .await
        .expect("messages read")
        .into_iter()
        .map(|row| row.id)
        .collect()
}

/// Every message the clients had acknowledged is in the database: none lost.
async fn assert_all_acked_stored(database_url: &str, figures: &Value) {
    let stored = stored_ids(database_url, ROOM).await;
    let acked: Vec<i32> = figures["ackedIds"]
        .as_array()
        .expect("acked ids")
        .iter()
        .map(|id| id.as_i64().expect("an id") as i32)
        .collect();
    assert!(!acked.is_empty(), "no message was acknowledged");
    let lost: Vec<i32> = acked
        .iter()
        .copied()
        .filter(|id| !stored.contains(id))
        .collect();
    assert_eq!(
        lost,
        Vec::<i32>::new(),
        "acknowledged but not in the database"
    );
    assert_eq!(figures["lost"], 0, "{figures}");
    println!(
        "database: {} of {} acknowledged messages stored; {} stored in all",
        acked.len() - lost.len(),
        acked.len(),
        stored.len()
    );
}

/// Processes stay up through an outage of the services they need.
fn assert_running(cluster: &mut Cluster, which: std::ops::Range<usize>) {
    for n in which {
        assert!(
            cluster.processes[n].running(),
            "process {n} exited:\n{}",
            cluster.processes[n].log()
        );
    }
}

/// A process that panicked has a bug, even if the clients coped.
fn assert_no_panic(cluster: &Cluster) {
    for process in &cluster.processes {
        let log = process.log();
        assert!(!log.contains("panicked"), "{}:\n{log}", process.base);
    }
}

/// One figure per line: what a fault test measured.
fn print_figures(title: &str, figures: &Value) {
    let labels = [
        ("trafficMs", "traffic, ms"),
        ("members", "clients in the group"),
        ("acked", "messages acknowledged"),
        ("stored", "messages stored (get-messages)"),
        ("refused", "messages refused (error ack)"),
        ("probesRefused", "get-messages refused (error ack)"),
        ("refusedBy", "refusals by message"),
        ("maxRefusalMs", "slowest refusal, ms"),
        ("unanswered", "events without answer in 3 s"),
        ("unansweredConnected", "... on a socket still connected"),
        ("maxAckMs", "slowest acknowledgement, ms"),
        ("outageMs", "outage, ms"),
        ("readyz503AfterMs", "/readyz 503 after, ms"),
        ("readyz200AfterMs", "/readyz 200 after restore, ms"),
        ("readyzMaxMs", "slowest /readyz, ms"),
        ("recoveryMs", "recovery (delivered to all), ms"),
        ("disconnected", "clients disconnected"),
        ("reconnects", "reconnections"),
        ("viaNginx", "came back through nginx"),
        ("maxReconnectMs", "longest reconnection, ms"),
        ("relogins", "logged in again"),
        ("fetchedWithSince", "fetched with since"),
        ("missedLive", "missed live (then fetched)"),
        ("presenceOfflineMs", "offline announced after, ms"),
        ("requestsRefused", "requests refused (503)"),
        ("slowestRefusalMs", "slowest refusal, ms"),
        ("readyzMs", "/readyz 503 after, ms"),
        ("resumedMs", "answering again after the thaw, ms"),
        ("lost", "lost"),
    ];
    println!("\n{title}");
    println!("| figure | value |\n| --- | --- |");
    for (key, label) in labels {
        if let Some(value) = figures.get(key) {
            println!("| {label} | {value} |");
        }
    }
}

/// A table with one row per run.
fn print_rows(title: &str, rows: &[Value], columns: &[(&str, &str)]) {
    println!("\n{title}");
    let header: Vec<&str> = columns.iter().map(|(_, label)| *label).collect();
    println!("| {} |", header.join(" | "));
    println!("|{}", " --- |".repeat(columns.len()));
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|(key, _)| match &row[*key] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        println!("| {} |", cells.join(" | "));
    }
}
