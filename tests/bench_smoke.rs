//! The benchmark tooling works: `im-server seed --bench-users` writes its data set once, fast, on
//! both backends, and each im-bench scenario runs for a second or two against a real server with a
//! handful of connections and prints a table that parses and shows traffic without errors. This
//! checks that the generator works, not how fast the server is.

mod common;

use clap::Parser;
use common::{Backend, TestServer};
use im_bench::{Cli, Table};
use im_server::app::Startup;
use im_server::domain::seed::{self, BenchOutcome, BenchSpec};
use im_server::store;

on_both_backends!(
    bench_seed_writes_users_groups_and_friendships_once,
    bench_seed_command_says_when_it_skips,
    rest_scenario_measures_logins_and_gets,
);

/// Users and group size of the smoke data set: 8 groups of 5, 20 pairs, bench1 with 30
/// conversations (one group, its pair, 28 more friendships).
const USERS: usize = 40;
const GROUP_SIZE: usize = 5;

async fn bench_server(backend: Backend) -> TestServer {
    let server = TestServer::start_with(backend, Startup::default(), |_| {}).await;
    let mut conn = server.app.db.get().await.expect("connection");
    let outcome = seed::bench(
        &mut conn,
        BenchSpec {
            users: USERS,
            group_size: GROUP_SIZE,
        },
    )
    .await
    .expect("bench seed");
    assert_eq!(
        outcome,
        BenchOutcome::Created {
            users: USERS,
            groups: USERS / GROUP_SIZE,
            friendships: USERS / 2 + 28,
        }
    );
    server
}

async fn bench_seed_writes_users_groups_and_friendships_once(backend: Backend) {
    let server = bench_server(backend).await;
    let mut conn = server.app.db.get().await.unwrap();
    let before = store::stats::table_counts(&mut conn).await.unwrap();
    // Only the admin of the start-up, and the benchmark users.
    assert_eq!(before.users, 1 + USERS as i64);
    assert_eq!(before.groups, (USERS / GROUP_SIZE) as i64);
    assert_eq!(before.friends, (USERS / 2 + 28) as i64);
    assert_eq!(before.conversations, before.groups + before.friends);

    let again = seed::bench(
        &mut conn,
        BenchSpec {
            users: USERS,
            group_size: GROUP_SIZE,
        },
    )
    .await
    .unwrap();
    assert_eq!(again, BenchOutcome::SkippedExists);
    assert_eq!(store::stats::table_counts(&mut conn).await.unwrap(), before);

    // Every benchmark user logs in with the shared password, and is in the group of its rank.
    for n in [1, 7, USERS] {
        let client = server.logged_in(&format!("bench{n}")).await;
        let me = client.get("/api/v1/currentUser").await;
        assert_eq!(me["statusCode"], "0", "{me}");
        assert_eq!(me["data"]["userInfo"]["nickname"], format!("bench{n}"));
        let group_name = format!("bench-group-{}", (n - 1) / GROUP_SIZE + 1);
        let group = store::groups::find_group_by_name(&mut conn, &group_name)
            .await
            .unwrap()
            .expect("group exists");
        let user_id = me["data"]["id"].as_i64().unwrap() as i32;
        assert!(
            store::groups::is_member(&mut conn, group.id, user_id)
                .await
                .unwrap(),
            "bench{n} in {group_name}"
        );
    }

    let refused = seed::bench(
        &mut conn,
        BenchSpec {
            users: 0,
            group_size: 5,
        },
    )
    .await;
    assert!(refused.is_err(), "zero users is refused");
}

async fn bench_seed_command_says_when_it_skips(backend: Backend) {
    // A server only to get a migrated database of this backend for the command to use.
    let server = TestServer::start_with(backend, Startup::default(), |_| {}).await;
    let run = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_im-server"))
            .args([
                "seed",
                "--bench-users",
                "12",
                "--group-size",
                "4",
                "--database-url",
                &server.database_url,
            ])
            .env("RUST_LOG", "warn")
            .output()
            .expect("im-server runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).expect("utf-8 output")
    };
    let first = run();
    assert!(
        first.starts_with("benchmark data: 12 users, 3 groups, 16 friendships in "),
        "{first}"
    );
    let second = run();
    assert_eq!(
        second,
        "bench1 exists: benchmark data was seeded before, nothing written\n"
    );
}

/// The generator's command line against `server`.
fn bench_cli(server: &TestServer, args: &[&str]) -> Cli {
    let mut argv = vec!["im-bench", "--url", &server.base, "--deadline", "60"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).expect("im-bench arguments parse")
}

/// Runs the scenario, prints its table, and reads it back as printed.
async fn run_bench(server: &TestServer, args: &[&str]) -> Table {
    let table = im_bench::run(bench_cli(server, args))
        .await
        .expect("scenario runs");
    let printed = table.to_string();
    println!("{printed}");
    let parsed = Table::parse(&printed).expect("printed table parses");
    assert_eq!(parsed, table, "the table reads back as printed");
    parsed
}

fn number(cell: &str) -> f64 {
    cell.parse()
        .unwrap_or_else(|_| panic!("{cell:?} is not a number"))
}

async fn rest_scenario_measures_logins_and_gets(backend: Backend) {
    let server = bench_server(backend).await;
    let table = run_bench(
        &server,
        &[
            "rest",
            "--duration",
            "1",
            "--login-rate",
            "10",
            "--rate",
            "40",
        ],
    )
    .await;
    assert_eq!(
        table.column("request").unwrap(),
        ["POST /api/v1/login", "GET /api/v1/conversations"]
    );
    assert_eq!(
        table.notes,
        ["GET /api/v1/conversations answered a list of 30 item(s) for bench1"],
        "bench1 has the 30 conversations of the REST scenario"
    );
    let sent = table.column("sent").unwrap();
    let ok = table.column("ok").unwrap();
    assert_eq!(sent, ["10", "40"], "a fixed rate for one second");
    assert_eq!(ok, sent, "every request succeeded");
    assert_eq!(table.column("errors").unwrap(), ["0", "0"]);
    for p99 in table.column("p99 ms").unwrap() {
        let p99 = number(p99);
        assert!(p99 > 0.0 && p99 < 30_000.0, "p99 {p99} ms");
    }
}

#[test]
fn generator_refuses_targets_off_this_machine() {
    for url in [
        "http://10.0.0.1:7001",
        "http://192.168.1.2:7001",
        "http://example.com:7001",
        "https://127.0.0.1:7001",
    ] {
        let cli = Cli::try_parse_from(["im-bench", "--url", url, "rest"]).unwrap();
        let refused = im_bench::validate(&cli).expect_err(url);
        assert!(
            refused.to_string().contains("loopback") || refused.to_string().contains("http://"),
            "{url}: {refused}"
        );
    }
    for url in [
        "http://127.0.0.1:7001",
        "http://localhost:7001",
        "http://[::1]:7001",
    ] {
        let cli = Cli::try_parse_from(["im-bench", "--url", url, "rest"]).unwrap();
        im_bench::validate(&cli).expect(url);
    }
    // Bounded: more sockets than one process may hold need more processes.
    let cli = Cli::try_parse_from(["im-bench", "idle", "--connections", "19001"]).unwrap();
    assert!(im_bench::validate(&cli).is_err());
    let cli = Cli::try_parse_from(["im-bench", "--procs", "2", "idle", "--connections", "19001"])
        .unwrap();
    im_bench::validate(&cli).expect("two processes hold 19,001 sockets");
}

/// Checks a step table: traffic flowed, nothing was lost, no error and no dropped socket.
fn assert_clean_steps(table: &Table) {
    for (sent, delivered) in table
        .column("sent")
        .unwrap()
        .into_iter()
        .zip(table.column("delivered").unwrap())
    {
        assert!(number(sent) > 0.0, "messages sent");
        assert!(number(delivered) > 0.0, "messages delivered");
    }
    assert_eq!(
        table.column("delivered").unwrap(),
        table.column("expected").unwrap()
    );
    for column in ["lost", "short receivers", "errors"] {
        assert!(
            table
                .column(column)
                .unwrap()
                .iter()
                .all(|cell| *cell == "0"),
            "{column}: {table}"
        );
    }
    for p99 in table.column("p99 ms").unwrap() {
        assert!(number(p99) > 0.0, "latency measured");
    }
    assert!(
        table
            .notes
            .iter()
            .any(|n| n.ends_with("dropped during the run: 0")),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_scenario_holds_sockets() {
    let server = bench_server(Backend::Sqlite).await;
    let table = run_bench(
        &server,
        &[
            "idle",
            "--connections",
            "6",
            "--users",
            "4",
            "--duration",
            "1",
        ],
    )
    .await;
    assert_eq!(table.column("connected").unwrap(), ["6"]);
    assert_eq!(table.column("failed").unwrap(), ["0"]);
    assert_eq!(table.column("dropped").unwrap(), ["0"]);
    assert_eq!(table.column("errors").unwrap(), ["0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_scenario_delivers_to_every_member_eio4() {
    let server = bench_server(Backend::Sqlite).await;
    let table = run_bench(
        &server,
        &[
            "fanout",
            "--groups",
            "2",
            "--group-size",
            "5",
            "--rates",
            "10,20",
            "--duration",
            "1",
            "--drain",
            "1",
        ],
    )
    .await;
    assert_clean_steps(&table);
    assert!(
        table
            .notes
            .iter()
            .any(|n| n.starts_with("highest offered rate")),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_scenario_delivers_to_every_member_eio3() {
    let server = bench_server(Backend::Sqlite).await;
    let table = run_bench(
        &server,
        &[
            "--eio",
            "3",
            "fanout",
            "--groups",
            "1",
            "--group-size",
            "5",
            "--rates",
            "10",
            "--duration",
            "1",
            "--drain",
            "1",
        ],
    )
    .await;
    assert_clean_steps(&table);
}

async fn chat_scenario(backend: Backend) {
    let server = bench_server(backend).await;
    let table = run_bench(
        &server,
        &[
            "chat",
            "--pairs",
            "3",
            "--rates",
            "15",
            "--duration",
            "2",
            "--drain",
            "1",
        ],
    )
    .await;
    assert_clean_steps(&table);
    // Every message was stored: the conversations hold what was sent.
    let mut conn = server.app.db.get().await.unwrap();
    let counts = store::stats::table_counts(&mut conn).await.unwrap();
    assert_eq!(
        counts.messages.to_string(),
        table.column("sent").unwrap()[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_scenario_stores_and_delivers_sqlite() {
    chat_scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    im_skip_services,
    ignore = "needs PostgreSQL: IM_TEST_SKIP_SERVICES is set"
)]
async fn chat_scenario_stores_and_delivers_postgres() {
    chat_scenario(Backend::postgres()).await;
}
