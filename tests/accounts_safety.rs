//! What keeps accounts honest on an open server: usernames that cannot pass for others, names
//! and signs that show as they are, photos that only point at our own files, a log-in that ends
//! the session the browser had, and a readiness probe that notices a database that cannot write.

mod common;

use std::time::Duration;

use common::{Backend, TestServer, assert_refused, data};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use im_server::app::{App, Startup};
use serde_json::{Value, json};

const DUPLICATE: &str = "用户名重复";
const BAD_PARAMS: &str = "参数校验失败";

async fn signup(server: &TestServer, username: &str) -> Value {
    server
        .client()
        .post(
            "/api/v1/signup",
            &json!({"username": username, "password": "secret1"}),
        )
        .await
}

async fn look_alike_usernames_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    // The demo has `user` and `admin`: none of these may pass for them.
    for taken in ["USER", "user ", " user", "ｕｓｅｒ", "Admin", "ＡＤＭＩＮ"] {
        assert_refused(&signup(&server, taken).await, "1", DUPLICATE);
    }
    for invisible in [
        "us\u{200b}er",
        "\u{0430}dmin",
        "abc\u{202e}dcba",
        "new\u{2066}name",
        "tab\tname",
    ] {
        assert_refused(&signup(&server, invisible).await, "1", BAD_PARAMS);
    }
    // A new name is stored trimmed and normalised, and so is its nickname.
    let created = signup(&server, "  Ｎｅｗｂｉｅ ").await;
    assert_eq!(
        data(&created)["userInfo"]["nickname"],
        "Newbie",
        "{created}"
    );
    assert_refused(&signup(&server, "newbie").await, "1", DUPLICATE);
    // It logs in however its case or width is typed.
    for typed in ["Newbie", "newbie", "ＮＥＷＢＩＥ"] {
        let reply = server.client().login(typed, "secret1").await;
        assert_eq!(data(&reply)["id"], created["data"]["id"], "{typed}");
    }
    // The admin pages follow the same rules.
    let admin = server.logged_in("admin").await;
    for bad in ["ＵＳＥＲ", "us\u{200b}er2"] {
        let reply = admin
            .post(
                "/api/v1/admin/users",
                &json!({"username": bad, "password": "secret1"}),
            )
            .await;
        assert_eq!(reply["statusCode"], "1", "{bad:?}: {reply}");
    }
}

async fn nicknames_and_signs_show_as_they_are(backend: Backend) {
    let server = TestServer::start(backend).await;
    let user = server.logged_in("user").await;
    let me = data(&user.get("/api/v1/currentUser").await)["userInfo"].clone();
    let path = format!("/api/v1/userinfo/{}", me["id"]);
    for (body, message) in [
        (json!({"nickname": "ad\u{200d}min"}), "昵称含有不允许的字符"),
        (
            json!({"nickname": "abc\u{202e}dcba"}),
            "昵称含有不允许的字符",
        ),
        (
            json!({"sign": "hello\u{202e}dlrow"}),
            "签名含有不允许的字符",
        ),
        (json!({"sign": "two\nlines"}), "签名含有不允许的字符"),
    ] {
        assert_refused(&user.put(&path, &body).await, "1", message);
    }
    let admin = server.logged_in("admin").await;
    let reply = admin
        .put(
            "/api/v1/admin/users",
            &json!({"id": me["userId"], "nickname": "ad\u{200b}min"}),
        )
        .await;
    assert_refused(&reply, "1", BAD_PARAMS);
    // Emoji keep their joiners and selectors.
    let family = "家👨\u{200d}👩\u{200d}👧 ❤\u{fe0f}";
    data(&user.put(&path, &json!({"nickname": family})).await);
    assert_eq!(
        data(&user.get("/api/v1/currentUser").await)["userInfo"]["nickname"],
        family
    );
}

async fn photos_are_our_own_files(backend: Backend) {
    let server = TestServer::start(backend).await;
    let user = server.logged_in("user").await;
    let me = data(&user.get("/api/v1/currentUser").await)["userInfo"].clone();
    let path = format!("/api/v1/userinfo/{}", me["id"]);
    let strangers = server.logged_in("member1").await.upload_png().await;
    for photo in [
        "https://evil.example/x.png",
        "http://127.0.0.1/x.png",
        "https://avatars.githubusercontent.com/u/583231?v=4",
        strangers.as_str(),
        "/public/upload/never-uploaded.png",
        "/public/images/head10.png",
    ] {
        assert_refused(
            &user.put(&path, &json!({"photo": photo})).await,
            "1",
            "头像地址不合法",
        );
    }
    assert_eq!(
        data(&user.get("/api/v1/currentUser").await)["userInfo"]["photo"],
        me["photo"]
    );
    let mine = user.upload_png().await;
    for photo in [mine.as_str(), "/public/images/head7.png"] {
        data(&user.put(&path, &json!({"photo": photo})).await);
        assert_eq!(
            data(&user.get("/api/v1/currentUser").await)["userInfo"]["photo"],
            photo
        );
    }
}

/// A photo stored before the rules (a foreign URL) does not stop the admin from editing the
/// user's other fields with the profile sent back whole; a new foreign photo is still refused.
async fn admin_edits_keep_a_photo_from_before_the_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let member = server.logged_in("member2").await;
    let info = data(&member.get("/api/v1/currentUser").await)["userInfo"].clone();
    let old_photo = "https://old.example/from-before.png";
    let mut conn = server.app.db.get().await.expect("connection");
    im_server::store::accounts::update_user_info(
        &mut conn,
        info["id"].as_i64().expect("id") as i32,
        "member2",
        old_photo,
        None,
    )
    .await
    .expect("photo from before the rules");
    drop(conn);
    let user_id = info["userId"].clone();
    let edit = |nickname: &str, photo: &str| json!({"id": user_id, "nickname": nickname, "photo": photo, "sign": "hello"});
    data(
        &admin
            .put("/api/v1/admin/users", &edit("renamed", old_photo))
            .await,
    );
    let now = data(&member.get("/api/v1/currentUser").await)["userInfo"].clone();
    assert_eq!(now["nickname"], "renamed");
    assert_eq!(now["photo"], old_photo);
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/users",
                &edit("renamed", "https://evil.example/x.png"),
            )
            .await,
        "1",
        "参数校验失败",
    );
}

/// Two accounts from before usernames had keys, `Legacy` and `legacy`, both keep logging in by
/// their exact names after the upgrade; the older one owns the key, so `LEGACY` is it and no
/// new `LeGaCy` can be made.
async fn old_names_that_differ_in_case_keep_logging_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = data(&signup(&server, "legacy-one").await)["id"].clone();
    let second = data(&signup(&server, "legacy-two").await)["id"].clone();
    {
        let conn = &mut server.app.db.get().await.expect("connection");
        let sql = format!(
            "UPDATE users SET username = 'Legacy', username_key = NULL WHERE id = {first};
             UPDATE users SET username = 'legacy', username_key = NULL WHERE id = {second};"
        );
        im_server::db_run!(conn: { conn.batch_execute(&sql).await.expect("made legacy") });
    }
    // A restart: migrations and the key backfill run again on the same database.
    let restarted = App::start(server.app.config.clone(), Startup::default())
        .await
        .expect("restart on a database with case-duplicate names");
    drop(restarted);
    for (typed, id) in [("Legacy", &first), ("legacy", &second), ("LEGACY", &first)] {
        let reply = server.client().login(typed, "secret1").await;
        assert_eq!(&data(&reply)["id"], id, "{typed}");
    }
    assert_refused(&signup(&server, "LeGaCy").await, "1", DUPLICATE);
}

/// The `IM_SESS=...` pair an answer sets.
fn set_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned()
}

async fn post_with_cookie(
    server: &TestServer,
    path: &str,
    cookie: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(server.url(path)).json(&body);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.expect("request")
}

async fn who(server: &TestServer, cookie: &str) -> Value {
    reqwest::Client::new()
        .get(server.url("/api/v1/currentUser"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

async fn login_and_signup_end_the_session_the_browser_had(backend: Backend) {
    let server = TestServer::start(backend).await;
    let credentials = |name: &str| json!({"username": name, "password": "123456"});
    let first =
        set_cookie(&post_with_cookie(&server, "/api/v1/login", None, credentials("user")).await);
    assert_eq!(data(&who(&server, &first).await)["id"], 2);

    // A failed log-in leaves the session alone.
    let failed = post_with_cookie(
        &server,
        "/api/v1/login",
        Some(&first),
        json!({"username": "member1", "password": "wrong-password"}),
    )
    .await;
    assert_eq!(
        failed.json::<Value>().await.expect("JSON")["statusCode"],
        "1"
    );
    assert_eq!(data(&who(&server, &first).await)["id"], 2);

    let second = set_cookie(
        &post_with_cookie(
            &server,
            "/api/v1/login",
            Some(&first),
            credentials("member1"),
        )
        .await,
    );
    assert_refused(&who(&server, &first).await, "1", "请登录");
    let member = data(&who(&server, &second).await)["id"].clone();
    assert_ne!(member, 2);

    let third = set_cookie(
        &post_with_cookie(
            &server,
            "/api/v1/signup",
            Some(&second),
            json!({"username": "freshone", "password": "secret1"}),
        )
        .await,
    );
    assert_refused(&who(&server, &second).await, "1", "请登录");
    let fresh = who(&server, &third).await;
    assert_eq!(data(&fresh)["userInfo"]["nickname"], "freshone");
    assert_ne!(data(&fresh)["id"], member);
}

async fn readiness(server: &TestServer) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(server.url("/readyz"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("readyz answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// A profile change: a write, as a send is.
async fn write_something(user: &common::Client, path: &str) -> Value {
    user.put(path, &json!({"sign": "still here"})).await
}

/// A database that answers reads but refuses writes is reported unready, and writes get the
/// "try again" answer (503), not "internal error". SQLite: another process holds the write lock
/// (a `sqlite3` shell or a backup left in a transaction). PostgreSQL: the database is made
/// read-only, as a failover to a standby or an operator would.
async fn readiness_reports_a_database_that_cannot_write(backend: Backend) {
    let server = TestServer::start(backend.clone()).await;
    let user = server.logged_in("user").await;
    let me = data(&user.get("/api/v1/currentUser").await)["userInfo"].clone();
    let path = format!("/api/v1/userinfo/{}", me["id"]);
    assert_eq!(
        readiness(&server).await,
        (200, json!({"database": "ok", "status": "ok"}))
    );

    let release: Box<dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()>>>> = match &backend {
        Backend::Sqlite => {
            let path = server
                .database_url
                .trim_start_matches("sqlite://")
                .to_owned();
            let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
            let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
            let holder = std::thread::spawn(move || {
                use diesel::Connection;
                use diesel::connection::SimpleConnection;
                let mut conn = diesel::SqliteConnection::establish(&path).expect("open");
                conn.batch_execute("BEGIN IMMEDIATE").expect("write lock");
                locked_tx.send(()).expect("told");
                let _ = release_rx.recv_timeout(Duration::from_secs(60));
                conn.batch_execute("ROLLBACK").expect("released");
            });
            locked_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("lock taken");
            Box::new(move || {
                Box::pin(async move {
                    release_tx.send(()).expect("release");
                    tokio::task::spawn_blocking(move || holder.join().expect("holder"))
                        .await
                        .expect("joined");
                })
            })
        }
        Backend::Postgres(cluster) => {
            let name = server
                .database_url
                .rsplit('/')
                .next()
                .expect("name")
                .to_owned();
            let admin_url = format!("{cluster}/postgres");
            set_read_only(&admin_url, &name, true).await;
            Box::new(move || Box::pin(async move { set_read_only(&admin_url, &name, false).await }))
        }
    };
    let started = std::time::Instant::now();
    let (status, report) = readiness(&server).await;
    eprintln!(
        "{backend:?}: /readyz said unavailable in {:?}",
        started.elapsed()
    );
    assert_eq!(
        (status, &report),
        (
            503,
            &json!({"database": "unavailable", "status": "unavailable"})
        )
    );
    let started = std::time::Instant::now();
    let reply = write_something(&user, &path).await;
    eprintln!(
        "{backend:?}: a write was refused in {:?}",
        started.elapsed()
    );
    assert_refused(&reply, "1", "服务暂时不可用，请稍后再试");

    release().await;
    assert_eq!(readiness(&server).await.0, 200);
    data(&write_something(&user, &path).await);
}

/// Makes a PostgreSQL database read-only (or writable again) for every new transaction, and
/// ends the connections open on it so that the server's pool opens new ones under the setting.
async fn set_read_only(admin_url: &str, database: &str, read_only: bool) {
    let mut admin = AsyncPgConnection::establish(admin_url)
        .await
        .expect("PostgreSQL reachable");
    let setting = if read_only {
        format!("ALTER DATABASE {database} SET default_transaction_read_only = on")
    } else {
        format!("ALTER DATABASE {database} RESET default_transaction_read_only")
    };
    admin.batch_execute(&setting).await.expect("setting");
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ))
        .await
        .expect("connections ended");
}

on_both_backends!(
    look_alike_usernames_are_refused,
    nicknames_and_signs_show_as_they_are,
    photos_are_our_own_files,
    admin_edits_keep_a_photo_from_before_the_rules,
    old_names_that_differ_in_case_keep_logging_in,
    login_and_signup_end_the_session_the_browser_had,
    readiness_reports_a_database_that_cannot_write,
);
