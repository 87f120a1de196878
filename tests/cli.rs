//! The `im-server` binary as an operator runs it: settings from variables and flags, the
//! account commands under the API's rules, `migrate`, `seed`, the start-up log, the generated
//! admin password, the page at `/`, and `--help`. Every test runs the real binary in a
//! temporary working directory with a cleared environment.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_im-server");
/// How long a start may take on a loaded machine (a debug build migrates and hashes).
const START_WAIT: Duration = Duration::from_secs(60);

/// The binary in `dir`, with only the given environment (plus `PATH`).
fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir).env_clear().kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(env.iter().copied());
    command
}

/// Runs a command to its end (bounded), with `stdin` written to it.
async fn run(dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Output {
    let mut child = command(dir, env)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("im-server runs");
    let mut input = child.stdin.take().expect("stdin");
    match tokio::io::AsyncWriteExt::write_all(&mut input, stdin.as_bytes()).await {
        Ok(()) => {}
        // A command refused before it read its input (a bad flag, a name the API rules out)
        // has exited and closed the pipe: what counts is its status and output, read below.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => panic!("writing to im-server {args:?}'s stdin: {error}"),
    }
    drop(input);
    tokio::time::timeout(START_WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("im-server {args:?} did not finish"))
        .expect("im-server output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `serve` process, with what it has written so far.
struct Served {
    child: Child,
    url: String,
    /// The start-up summary's fields (JSON log format).
    summary: Value,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Starts `serve` on a free loopback port and waits for its start-up summary. The log format is
/// JSON unless `env` says otherwise; a human log's summary has only `url` parsed.
async fn serve(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Served {
    try_serve(dir, env, args)
        .await
        .unwrap_or_else(|output| panic!("serve did not start:\n{output}"))
}

/// Like [`serve`], but a process that exits first is an `Err` with what it wrote.
async fn try_serve(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Result<Served, String> {
    let mut env = env.to_vec();
    if !env.iter().any(|(name, _)| *name == "IM_LOG_FORMAT") {
        env.push(("IM_LOG_FORMAT", "json"));
    }
    let mut child = command(dir, &env)
        .arg("serve")
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("im-server runs");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (found, summary) = tokio::sync::oneshot::channel::<String>();
    let mut out_lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    tokio::spawn({
        let stdout = stdout.clone();
        async move {
            let mut found = Some(found);
            while let Ok(Some(line)) = out_lines.next_line().await {
                if line.contains("im-server serving")
                    && let Some(found) = found.take()
                {
                    let _ = found.send(line.clone());
                }
                stdout.lock().expect("log lines").push(line);
            }
        }
    });
    tokio::spawn({
        let stderr = stderr.clone();
        async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                stderr.lock().expect("log lines").push(line);
            }
        }
    });
    let written = |stdout: &Arc<Mutex<Vec<String>>>, stderr: &Arc<Mutex<Vec<String>>>| {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            stdout.lock().expect("log lines").join("\n"),
            stderr.lock().expect("log lines").join("\n")
        )
    };
    let line = tokio::select! {
        line = summary => line.ok(),
        _ = child.wait() => None,
        _ = tokio::time::sleep(START_WAIT) => panic!("no start-up summary within {START_WAIT:?}"),
    };
    let Some(line) = line else {
        // The process ended: let its readers finish before reporting what it wrote.
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        return Err(written(&stdout, &stderr));
    };
    let (url, summary) = match serde_json::from_str::<Value>(&line) {
        Ok(event) => (
            event["fields"]["url"]
                .as_str()
                .expect("url field")
                .to_owned(),
            event["fields"].clone(),
        ),
        Err(_) => {
            let url = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("url="))
                .expect("url= in the summary")
                .to_owned();
            (url, Value::Null)
        }
    };
    Ok(Served {
        child,
        url,
        summary,
        stdout,
        stderr,
    })
}

impl Served {
    fn all_output(&self) -> String {
        format!(
            "{}\n{}",
            self.stdout.lock().expect("log lines").join("\n"),
            self.stderr.lock().expect("log lines").join("\n")
        )
    }

    /// Stops the process and waits for it.
    async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(START_WAIT, self.child.wait()).await;
        self.all_output()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Logs in over the API: the session cookie set, if any, and the envelope.
async fn login(base: &str, username: &str, password: &str) -> (Option<String>, Value) {
    let response = client()
        .post(format!("{base}api/v1/login"))
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("login request");
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (cookie, response.json().await.expect("login envelope"))
}

fn assert_english(stderr: &str) {
    assert!(
        stderr.is_ascii(),
        "CLI errors are in English, without colour codes: {stderr:?}"
    );
    assert!(
        !stderr.to_ascii_lowercase().contains("backtrace") && !stderr.contains("Caused by"),
        "one line, no backtrace: {stderr}"
    );
}

#[tokio::test]
async fn booleans_take_the_usual_spellings_from_variables_and_flags() {
    for (value, demo) in [
        ("1", true),
        ("yes", true),
        ("TRUE", true),
        ("0", false),
        ("no", false),
        ("False", false),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let served = serve(
            dir.path(),
            &[
                ("IM_DEMO", value),
                ("IM_LOG_FORMAT", "JSON"),
                ("IM_ADMIN_PASSWORD", "admin-password"),
            ],
            &[],
        )
        .await;
        let told = served.summary["demo"]
            .as_str()
            .expect("demo field")
            .to_owned();
        served.stop().await;
        assert_eq!(
            told.starts_with("created"),
            demo,
            "IM_DEMO={value}: demo {told:?}"
        );
    }
    // The flag beats the variable, in both directions.
    let dir = tempfile::tempdir().expect("temp dir");
    let served = serve(dir.path(), &[("IM_DEMO", "yes")], &["--demo=false"]).await;
    let told = served.summary["demo"]
        .as_str()
        .expect("demo field")
        .to_owned();
    served.stop().await;
    assert!(told.starts_with("not asked"), "--demo=false: {told}");
    let served = serve(dir.path(), &[("IM_DEMO", "no")], &["--demo"]).await;
    let told = served.summary["demo"]
        .as_str()
        .expect("demo field")
        .to_owned();
    served.stop().await;
    assert!(
        told.starts_with("skipped: the database already has 1 users"),
        "--demo on a database with its admin: {told}"
    );
}

/// `IM_COOKIE_SECURE` and `--cookie-secure=false` decide the cookie's `Secure` attribute.
#[tokio::test]
async fn cookie_secure_follows_the_variable_and_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (env_value, args, secure) in [
        ("1", &[][..], true),
        ("1", &["--cookie-secure=false"][..], false),
        ("no", &["--cookie-secure"][..], true),
        ("NO", &[][..], false),
    ] {
        let served = serve(
            dir.path(),
            &[("IM_COOKIE_SECURE", env_value), ("IM_DEMO", "1")],
            args,
        )
        .await;
        let (cookie, body) = login(&served.url, "user", "123456").await;
        served.stop().await;
        assert_eq!(body["statusCode"], "0", "{body}");
        let cookie = cookie.expect("a session cookie");
        assert_eq!(
            cookie.contains("Secure"),
            secure,
            "IM_COOKIE_SECURE={env_value} {args:?}: {cookie}"
        );
    }
}

#[tokio::test]
async fn refused_values_name_the_variable_or_the_flag_they_came_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let boolean = "1/0, true/false or yes/no";
    for (env, args, told) in [
        (
            &[("IM_DEMO", "maybe")][..],
            &["serve"][..],
            &["IM_DEMO", boolean][..],
        ),
        (
            &[("IM_COOKIE_SECURE", "2")][..],
            &["serve"][..],
            &["IM_COOKIE_SECURE", boolean][..],
        ),
        (
            &[("IM_LOG_FORMAT", "xml")][..],
            &["serve"][..],
            &["IM_LOG_FORMAT", "human, json"][..],
        ),
        (
            &[("IM_BIND", "nowhere")][..],
            &["serve"][..],
            &["IM_BIND"][..],
        ),
        (
            &[][..],
            &["serve", "--demo=perhaps"][..],
            &["--demo", boolean][..],
        ),
    ] {
        let output = run(dir.path(), env, args, "").await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?} {args:?}: {stderr}");
        for part in told {
            assert!(
                stderr.contains(part),
                "{env:?} {args:?}: {part} in {stderr}"
            );
        }
        assert_english(&stderr);
    }
    // A variable that is set but overridden on the command line is not blamed.
    let output = run(
        dir.path(),
        &[("IM_DEMO", "1")],
        &["serve", "--demo=perhaps"],
        "",
    )
    .await;
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--demo") && !stderr.contains("IM_DEMO"),
        "{stderr}"
    );
    // Bad values checked after parsing name their variable too.
    let output = run(
        dir.path(),
        &[("IM_ADMIN_PASSWORD", "abc")],
        &["serve", "--bind", "127.0.0.1:0"],
        "",
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("IM_ADMIN_PASSWORD") && stderr.contains("6 to 128"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("abc"),
        "the refused password is not echoed: {stderr}"
    );
    assert_english(&stderr);
}

#[tokio::test]
async fn user_create_applies_the_api_rules_and_creates_no_one_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path();
    for (args, stdin, why) in [
        (
            &["user", "create", "alice", "--password", "x"][..],
            "",
            "6 to 128",
        ),
        (
            &["user", "create", "a b", "--password", ""][..],
            "",
            "4 to 64",
        ),
        (&["user", "create", "abc"][..], "secret1\n", "4 to 64"),
        (
            &["user", "create", "al\u{7}ce"][..],
            "secret1\n",
            "control, invisible or bidi characters",
        ),
        (
            &["user", "create", "\u{430}dmin"][..],
            "secret1\n",
            "mix Latin, Greek and Cyrillic",
        ),
        (&["user", "create", "alice"][..], "short\n", "6 to 128"),
    ] {
        let output = run(path, &[], args, stdin).await;
        let stderr = text(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?} must be refused: {stderr}"
        );
        assert!(stderr.contains(why), "{args:?}: {stderr}");
        assert!(stderr.is_ascii(), "English: {stderr}");
    }
    // From standard input, as the help recommends; the role name in any case.
    let output = run(
        path,
        &[],
        &["user", "create", "alice", "--role", "MUTE"],
        "secret1\n",
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("created user alice"),
        "{}",
        text(&output.stdout)
    );
    let output = run(
        path,
        &[],
        &["user", "create", "alice", "--password", "secret2"],
        "",
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("that username is taken"), "{stderr}");
    assert_english(&stderr);
    // No `admin` came with alice.
    let output = run(
        path,
        &[],
        &["user", "passwd", "admin", "--password", "secret3"],
        "",
    )
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no such user"), "{stderr}");

    // passwd: the rule, then the change, seen through the API.
    let output = run(path, &[], &["user", "passwd", "alice"], "12345\n").await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("6 to 128"));
    let output = run(path, &[], &["user", "passwd", "alice"], "new-secret\n").await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let served = serve(path, &[("IM_ADMIN_PASSWORD", "admin-password")], &[]).await;
    let (_, old) = login(&served.url, "alice", "secret1").await;
    let (_, new) = login(&served.url, "alice", "new-secret").await;
    served.stop().await;
    assert_eq!(old["statusCode"], "1", "{old}");
    assert_eq!(new["statusCode"], "0", "{new}");
    let roles: Vec<&str> = new["data"]["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter_map(|role| role["keyName"].as_str())
        .collect();
    assert_eq!(roles, ["mute"]);
}

#[tokio::test]
async fn migrate_applies_once_and_refuses_a_missing_tree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(dir.path(), &[], &["migrate"], "").await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let applied: usize = stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count: {stdout}"));
    assert!(applied >= 1, "{stdout}");
    assert!(
        dir.path().join("data/im.db").is_file(),
        "the default database"
    );
    let output = run(dir.path(), &[], &["migrate"], "").await;
    assert_eq!(text(&output.stdout).trim(), "0 migration(s) applied");

    let missing = dir.path().join("no/such/dir");
    let url = format!("sqlite://{}/im.db", missing.display());
    let output = run(dir.path(), &[("DATABASE_URL", &url)], &["migrate"], "").await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(
        !dir.path().join("no").exists(),
        "nothing created for a mistyped path"
    );
    assert_english(&stderr);
}

#[tokio::test]
async fn seed_needs_something_to_write_and_demo_writes_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(dir.path(), &[], &["seed"], "").await;
    assert_eq!(output.status.code(), Some(2), "bare seed is refused");
    assert!(
        text(&output.stderr).contains("--demo"),
        "{}",
        text(&output.stderr)
    );

    let output = run(dir.path(), &[], &["seed", "--demo"], "").await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("user/123456") && stdout.contains("admin/123456"),
        "{stdout}"
    );
    let output = run(dir.path(), &[], &["seed", "--demo"], "").await;
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a second demo seed is refused: {stderr}"
    );
    assert!(stderr.contains("already has users"), "{stderr}");

    let served = serve(dir.path(), &[], &[]).await;
    assert_eq!(served.summary["admin"], "an admin exists");
    let (_, user) = login(&served.url, "user", "123456").await;
    let (_, admin) = login(&served.url, "admin", "123456").await;
    served.stop().await;
    assert_eq!(user["statusCode"], "0", "{user}");
    assert_eq!(admin["statusCode"], "0", "{admin}");
}

/// Without `IM_ADMIN_PASSWORD` and with a log that is not a terminal, the generated password goes
/// to a file only its owner reads, named in the log, and nowhere else; it opens `admin`.
#[tokio::test]
async fn the_generated_admin_password_is_shown_once_in_a_private_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let served = serve(dir.path(), &[], &[]).await;
    let file = dir.path().join("data/admin-password.txt");
    let admin_told = served.summary["admin"]
        .as_str()
        .expect("admin field")
        .to_owned();
    assert!(
        admin_told.contains("generated") && admin_told.contains("data/admin-password.txt"),
        "{admin_told}"
    );
    let content = std::fs::read_to_string(&file).expect("the password file");
    let password = content.lines().next().expect("a first line").to_owned();
    assert_eq!(password.len(), 20, "{content}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    }
    let (_, admin) = login(&served.url, "admin", &password).await;
    let first_output = served.stop().await;
    assert_eq!(admin["statusCode"], "0", "{admin}");
    assert!(
        !first_output.contains(&password),
        "never in the log: {first_output}"
    );

    // The next start finds the admin: nothing new is generated or written.
    let before = std::fs::metadata(&file).expect("metadata").modified().ok();
    let served = serve(dir.path(), &[], &[]).await;
    assert_eq!(served.summary["admin"], "an admin exists");
    served.stop().await;
    assert_eq!(
        std::fs::metadata(&file).expect("metadata").modified().ok(),
        before
    );

    // With IM_ADMIN_PASSWORD the log says where the admin came from.
    let dir = tempfile::tempdir().expect("temp dir");
    let served = serve(dir.path(), &[("IM_ADMIN_PASSWORD", "chosen-password")], &[]).await;
    let told = served.summary["admin"]
        .as_str()
        .expect("admin field")
        .to_owned();
    let (_, admin) = login(&served.url, "admin", "chosen-password").await;
    let output = served.stop().await;
    assert!(told.contains("IM_ADMIN_PASSWORD"), "{told}");
    assert_eq!(admin["statusCode"], "0", "{admin}");
    assert!(!output.contains("chosen-password"), "{output}");
    assert!(!dir.path().join("data/admin-password.txt").exists());
}

/// The human log written to a pipe has no colour codes, its summary says where it serves and on
/// what, and the request log can be switched on.
#[tokio::test]
async fn the_log_is_plain_text_with_one_summary_and_a_request_log_on_demand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let served = serve(
        dir.path(),
        &[
            ("IM_LOG_FORMAT", "Human"),
            ("IM_DEMO", "1"),
            ("RUST_LOG", "info,im_server::http=debug"),
        ],
        &[],
    )
    .await;
    let health = client()
        .get(format!("{}healthz", served.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let missing = client()
        .get(format!("{}api/v1/groups/12345", served.url))
        .send()
        .await
        .expect("a route");
    assert!(missing.status().is_success());
    // The request log line is written once the response is on its way: wait for it, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !served.all_output().contains("route=/api/v1/groups/{id}")
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = served.stop().await;
    assert!(
        !output.contains('\u{1b}'),
        "no colour codes in a pipe: {output}"
    );
    let summary = output
        .lines()
        .find(|line| line.contains("im-server serving"))
        .expect("one summary");
    for part in [
        "url=http://127.0.0.1:",
        "database=sqlite://data/im.db",
        "backend=Sqlite",
        "migrations_applied=",
        "user/123456",
        "admin/123456",
    ] {
        assert!(summary.contains(part), "{part} in {summary}");
    }
    assert!(!output.contains("database schema up to date"), "{output}");
    assert!(
        output.contains("method=GET route=/healthz status=200"),
        "request log: {output}"
    );
    assert!(
        output.contains("route=/api/v1/groups/{id} status=200"),
        "a route template, not the path: {output}"
    );
    assert!(!output.contains("/api/v1/groups/12345"), "{output}");
}

#[tokio::test]
async fn the_root_page_says_what_this_is_and_json_clients_still_get_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let served = serve(dir.path(), &[("IM_ADMIN_PASSWORD", "admin-password")], &[]).await;
    let page = client()
        .get(&served.url)
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("GET /");
    let status = page.status();
    let kind = page
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let html = page.text().await.expect("page");
    let json = client()
        .get(&served.url)
        .header("accept", "application/json")
        .send()
        .await
        .expect("GET / as JSON");
    let json_status = json.status();
    let json_body: Value = json.json().await.expect("a JSON body");
    let elsewhere = client()
        .get(format!("{}nothing-here", served.url))
        .send()
        .await
        .expect("GET /nothing-here");
    let elsewhere_status = elsewhere.status();
    served.stop().await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    for part in [
        concat!("im-server <small>", env!("CARGO_PKG_VERSION")),
        "/healthz",
        "/readyz",
        "H5 client",
        "Admin",
        "Mini-programs",
    ] {
        assert!(html.contains(part), "{part} on the page");
    }
    assert_eq!(json_status, 404);
    assert_eq!(json_body, serde_json::json!({ "message": "Not Found" }));
    assert_eq!(elsewhere_status, 404);
}

#[tokio::test]
async fn a_client_built_into_static_web_is_served_and_a_wrong_folder_stops_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("IM_ADMIN_PASSWORD", "admin-password")];
    let web = dir.path().join("static/web");
    std::fs::create_dir_all(&web).expect("static/web");
    std::fs::write(web.join("index.html"), "<!doctype html><title>H5</title>").expect("index");
    let served = serve(dir.path(), &env, &[]).await;
    let page = client()
        .get(format!("{}chat/123", served.url))
        .send()
        .await
        .expect("GET /chat/123");
    let status = page.status();
    let body = page.text().await.expect("page");
    let (web_told, admin_told) = (
        served.summary["web_client"].clone(),
        served.summary["admin_client"].clone(),
    );
    served.stop().await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "<!doctype html><title>H5</title>")
    );
    assert_eq!(web_told, "static/web at /");
    assert_eq!(admin_told, "none (IM_ADMIN_DIR)");

    // A folder named but holding no client: the start fails, saying so.
    let failed = try_serve(dir.path(), &[("IM_ADMIN_DIR", "dist/admin"), env[0]], &[])
        .await
        .err()
        .expect("no index.html in dist/admin: the start fails");
    assert!(
        failed.contains("IM_ADMIN_DIR: dist/admin holds no index.html"),
        "{failed}"
    );
    // `off` turns the default folder off: the built-in page is back.
    let served = serve(dir.path(), &[("IM_WEB_DIR", "off"), env[0]], &[]).await;
    let page = client().get(&served.url).send().await.expect("GET /");
    let body = page.text().await.expect("page");
    let web_told = served.summary["web_client"].clone();
    served.stop().await;
    assert!(body.contains("No web client is served from here"), "{body}");
    assert_eq!(web_told, "none (IM_WEB_DIR): / shows the built-in page");
}

#[tokio::test]
async fn help_per_subcommand_shows_its_own_options() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(dir.path(), &[], &["user", "create", "--help"], "").await;
    let help = text(&output.stdout);
    assert!(output.status.success());
    for own in [
        "<USERNAME>",
        "--password",
        "--role",
        "--database-url",
        "admin, user",
    ] {
        assert!(help.contains(own), "{own} in {help}");
    }
    for foreign in ["--bind", "--robot", "--github", "--redis-url", "--demo"] {
        assert!(!help.contains(foreign), "{foreign} in {help}");
    }
    let output = run(dir.path(), &[], &["serve", "--help"], "").await;
    let help = text(&output.stdout);
    for own in [
        "--bind",
        "--robot-secret-key",
        "--demo[=<BOOL>]",
        "IM_COOKIE_SECURE",
    ] {
        assert!(help.contains(own), "{own} in serve --help");
    }
    // A secret in the environment is not printed by --help.
    let output = run(
        dir.path(),
        &[
            ("IM_ADMIN_PASSWORD", "do-not-print"),
            ("DATABASE_URL", "postgres://u:hidden-pw@h/db"),
        ],
        &["serve", "--help"],
        "",
    )
    .await;
    let help = text(&output.stdout);
    assert!(
        !help.contains("do-not-print") && !help.contains("hidden-pw"),
        "{help}"
    );
}

/// On a terminal (util-linux `script` gives the server one) the generated password is printed
/// there, no file is written, and the log has its colours.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn on_a_terminal_the_generated_password_is_printed_not_filed() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Killing `script` closes the terminal, which hangs the server up (SIGHUP ends it).
    let inner = format!("exec {BIN} serve --bind 127.0.0.1:0");
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("util-linux `script` runs (it gives the server a terminal)");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(START_WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains("im-server serving");
            seen.push(line);
            if done {
                break;
            }
        }
    })
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    let output = seen.join("\n");
    assert!(read.is_ok(), "no start-up summary: {output}");
    let password = output
        .lines()
        .find_map(|line| line.split("created user `admin` with password: ").nth(1))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("the password on the terminal: {output}"));
    assert_eq!(password.len(), 20, "{password:?}");
    assert!(output.contains('\u{1b}'), "colours on a terminal: {output}");
    assert!(output.contains("printed above on the terminal"), "{output}");
    assert!(!dir.path().join("data/admin-password.txt").exists());
}

/// The commands other than `serve` on PostgreSQL, where start-up's lock holds a connection of
/// its own while the command works.
#[tokio::test]
#[cfg_attr(
    im_skip_services,
    ignore = "needs PostgreSQL: IM_TEST_SKIP_SERVICES is set"
)]
async fn the_account_commands_work_on_postgres() {
    let common::Backend::Postgres(server) = common::Backend::postgres() else {
        unreachable!("Backend::postgres is PostgreSQL")
    };
    let url = common::new_pg_database(&server).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("DATABASE_URL", url.as_str())];
    let mut outputs = Vec::new();
    for (args, stdin) in [
        (&["migrate"][..], ""),
        (
            &["user", "create", "alice", "--role", "admin"][..],
            "secret1\n",
        ),
        (&["user", "passwd", "alice"][..], "secret2\n"),
        (&["seed", "--demo"][..], ""),
    ] {
        let output = run(dir.path(), &env, args, stdin).await;
        outputs.push((args, output));
    }
    common::drop_pg_database(&server, &url);
    let [migrate, create, passwd, demo] = &outputs[..] else {
        unreachable!("four commands ran");
    };
    for (args, output) in &outputs[..3] {
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    assert!(text(&migrate.1.stdout).contains("migration(s) applied"));
    assert!(text(&create.1.stdout).contains("created user alice"));
    assert!(text(&passwd.1.stdout).contains("password of alice changed"));
    // alice makes the database non-empty: the demo data stays out.
    assert_eq!(demo.1.status.code(), Some(1), "{}", text(&demo.1.stderr));
    assert!(text(&demo.1.stderr).contains("already has users"));
}

/// A start that cannot make an admin says why, in English, rather than the clients' generic
/// "internal error".
#[tokio::test]
async fn a_start_that_cannot_bootstrap_the_admin_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(
        dir.path(),
        &[],
        &["user", "create", "admin", "--password", "secret1"],
        "",
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let failed = try_serve(dir.path(), &[], &[])
        .await
        .err()
        .expect("no admin right, and the name taken: the start fails");
    assert!(
        failed.contains("the name `admin` is taken")
            && failed.contains("im-server user create NAME --role admin"),
        "{failed}"
    );
    assert!(!failed.contains("服务器内部错误"), "{failed}");
    // Which is a way out.
    let output = run(
        dir.path(),
        &[],
        &[
            "user",
            "create",
            "boss",
            "--role",
            "admin",
            "--password",
            "secret1",
        ],
        "",
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let served = serve(dir.path(), &[], &[]).await;
    assert_eq!(served.summary["admin"], "an admin exists");
    served.stop().await;
}
