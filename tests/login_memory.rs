//! A burst of log-ins must not blow up the server's memory: each argon2 check takes ~19 MiB, so
//! they run a few at a time. Alone in its test binary, so that no other test's server shares the
//! process whose resident memory is measured.

mod common;

use common::{Backend, TestServer, data};

/// The resident memory of this process (the server runs in it), in MiB, where /proc tells.
fn resident_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// Log-ins that all arrive at once.
const BURST: usize = 48;
/// Measured on the 2-core machine (debug build): on tokio's blocking pool the burst grew memory
/// by about 445 MiB; on one hashing thread per core, by about 160 MiB, glibc keeping argon2's
/// blocks in the threads' heaps; with those blocks returned after each hash, by 7 MiB.
const MAX_GROWTH_MIB: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "measures resident memory in /proc (Linux only)"
)]
async fn a_burst_of_logins_keeps_memory_bounded() {
    let server = TestServer::start(Backend::Sqlite).await;
    // One log-in first, so the allocator and the blocking pool are warm.
    data(&server.client().login("user", "123456").await);
    let before = resident_mib().expect("/proc/self/status tells the resident memory");
    // One client for all: each HTTP client of its own would cost the test process megabytes.
    let client = server.client();
    let logins = (0..BURST).map(|n| {
        let client = client.clone();
        let username = format!("member{}", n % 30 + 1);
        tokio::spawn(async move { client.login(&username, "123456").await })
    });
    for login in futures_util::future::join_all(logins).await {
        data(&login.expect("log-in task"));
    }
    let after = resident_mib().expect("measured before");
    eprintln!("resident memory: {before} MiB before the burst, {after} MiB after");
    assert!(
        after.saturating_sub(before) < MAX_GROWTH_MIB,
        "{BURST} log-ins at once grew memory from {before} to {after} MiB"
    );
}
