//! Accounts over HTTP (docs/protocol.md §1.3–§1.5, §2 and §4.1): log-in, sign-up, sessions, tokens,
//! the envelope, and the start-up data, on SQLite and on PostgreSQL.

mod common;

use common::{Backend, TestServer, assert_no_password, assert_refused, data, mask_times};
use im_server::app::Startup;
use im_server::domain::events::DomainEvent;
use im_server::domain::{accounts, rbac, seed};
use im_server::session::password;
use im_server::store;
use serde_json::{Value, json};

on_both_backends!(
    login_answers_identity_and_sets_session_cookie,
    login_refusals_have_the_original_messages,
    malformed_bodies_get_an_envelope_error,
    signup_creates_user_and_session,
    signup_refusals,
    routes_need_a_session,
    token_auth_by_header_and_bearer,
    logout_ends_the_session_for_cookie_and_token,
    legacy_hash_logs_in_and_is_rehashed,
    losing_the_login_right_acts_on_the_next_request,
    demo_seeding_twice_changes_nothing,
    start_without_demo_bootstraps_admin,
);

async fn login_answers_identity_and_sets_session_cookie(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = server
        .client()
        .http
        .post(server.url("/api/v1/login"))
        .json(&json!({"username": "user", "password": "123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    for (name, value) in [
        ("x-frame-options", "SAMEORIGIN"),
        ("x-content-type-options", "nosniff"),
        ("x-xss-protection", "1; mode=block"),
        ("x-download-options", "noopen"),
    ] {
        assert_eq!(headers[name], value, "{name}");
    }
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    let reply: Value = response.json().await.unwrap();
    let token = reply["data"]["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 64, "256-bit hex session id");
    assert!(cookie.starts_with(&format!("IM_SESS={token};")), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing in {cookie}"
        );
    }
    assert!(
        !cookie.contains("Secure"),
        "Secure only when configured: {cookie}"
    );

    let mut expected = json!({
        "statusCode": "0",
        "errorMessage": null,
        "data": {
            "userInfo": {"id": 2, "userId": 2, "nickname": "user", "photo": "/public/images/head2.png",
                         "sign": "念念不忘，必有回响~", "createdAt": "<time>", "updatedAt": "<time>"},
            "rights": [
                {"id": 2, "name": "登录", "keyName": "login", "desc": "登录系统", "createdAt": "<time>", "updatedAt": "<time>"},
                {"id": 3, "name": "发言", "keyName": "speak", "desc": "发送消息", "createdAt": "<time>", "updatedAt": "<time>"}
            ],
            "roles": [
                {"id": 2, "name": "用户", "keyName": "user", "desc": "普通用户", "createdAt": "<time>", "updatedAt": "<time>"}
            ],
            "id": 2,
            "token": token,
        }
    });
    assert_eq!(mask_times(&reply), expected);

    // currentUser with the cookie: the same identity, without a new token.
    let client = server.client();
    client.login("user", "123456").await;
    let current = client.get("/api/v1/currentUser").await;
    expected["data"].as_object_mut().unwrap().remove("token");
    assert_eq!(mask_times(&current), expected);
    assert_no_password(&current);
}

async fn login_refusals_have_the_original_messages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    assert_refused(&client.login("nobody", "123456").await, "1", "用户名错误");
    assert_refused(&client.login("user", "1234567").await, "1", "密码错误");
    assert_refused(&client.login("user", "").await, "1", "密码错误");
    // `disabled` holds the role without the login right.
    assert_refused(
        &client.login("disabled", "123456").await,
        "1",
        "不具备登录权限",
    );
    // None of them opened a session.
    assert_refused(&client.get("/api/v1/currentUser").await, "1", "请登录");
}

async fn malformed_bodies_get_an_envelope_error(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    for body in [
        json!({}),
        json!({"username": "user"}),
        json!({"username": 1, "password": 2}),
        json!([1]),
    ] {
        assert_refused(
            &client.post("/api/v1/login", &body).await,
            "1",
            "参数校验失败",
        );
    }
    let raw = client
        .http
        .post(server.url("/api/v1/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_refused(&raw.json().await.unwrap(), "1", "参数校验失败");
    let untyped = client
        .http
        .post(server.url("/api/v1/signup"))
        .body("username=x")
        .send()
        .await
        .unwrap();
    assert_eq!(untyped.status(), 200);
    assert_refused(&untyped.json().await.unwrap(), "1", "参数校验失败");
}

async fn signup_creates_user_and_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let reply = client
        .post(
            "/api/v1/signup",
            &json!({"username": "newbie", "password": "secret1"}),
        )
        .await;
    let identity = data(&reply);
    assert_no_password(&reply);
    let id = identity["id"].as_i64().unwrap();
    assert_eq!(id, 35, "after the 34 demo users");
    assert_eq!(identity["userInfo"]["nickname"], "newbie");
    assert_eq!(identity["userInfo"]["userId"], id);
    let photo = identity["userInfo"]["photo"].as_str().unwrap();
    assert!(
        (1..=9).any(|n| photo == format!("/public/images/head{n}.png")),
        "default photo: {photo}"
    );
    let roles: Vec<&str> = identity["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["keyName"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user"]);
    // The session is open.
    assert_eq!(data(&client.get("/api/v1/currentUser").await)["id"], id);
    // And the new user can log in from elsewhere.
    assert_eq!(
        data(&server.client().login("newbie", "secret1").await)["id"],
        id
    );
    // Placed in the first open group, like the original.
    let mut conn = server.app.db.get().await.unwrap();
    let group = store::groups::first_open_group(&mut conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(group.name, seed::DEMO_GROUPS[0]);
    assert!(
        store::groups::is_member(&mut conn, group.id, id as i32)
            .await
            .unwrap()
    );
}

async fn signup_refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    assert_refused(
        &client
            .post(
                "/api/v1/signup",
                &json!({"username": "user", "password": "123456"}),
            )
            .await,
        "1",
        "用户名重复",
    );
    for (username, password) in [
        ("abc", "123456"),
        ("abcd", "12345"),
        ("", ""),
        (&"x".repeat(65) as &str, "123456"),
    ] {
        let reply = client
            .post(
                "/api/v1/signup",
                &json!({"username": username, "password": password}),
            )
            .await;
        assert_refused(&reply, "1", "参数校验失败");
    }
    assert_refused(&client.get("/api/v1/currentUser").await, "1", "请登录");
    let mut conn = server.app.db.get().await.unwrap();
    assert_eq!(
        store::accounts::count_users(&mut conn).await.unwrap(),
        34,
        "nothing half-written"
    );
}

async fn routes_need_a_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let stranger = server.client();
    for path in [
        "/api/v1/currentUser",
        "/api/v1/no-such-route",
        "/api/v1/friend",
    ] {
        assert_refused(&stranger.get(path).await, "1", "请登录");
    }
    assert_refused(
        &stranger.post("/api/v1/logout", &json!({})).await,
        "1",
        "请登录",
    );
    let user = server.logged_in("user").await;
    let response = user
        .http
        .get(server.url("/api/v1/no-such-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"message": "Not Found"})
    );
    // Health probes need no session.
    let health = stranger
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = stranger
        .http
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["database"], "ok");
}

async fn token_auth_by_header_and_bearer(backend: Backend) {
    let server = TestServer::start(backend).await;
    // A client without a cookie jar, like a mini-program.
    let http = reqwest::Client::new();
    let reply: Value = http
        .post(server.url("/api/v1/login"))
        .json(&json!({"username": "member1", "password": "123456"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = data(&reply)["token"].as_str().unwrap().to_owned();
    let current = |name: &'static str, value: String| {
        let request = http
            .get(server.url("/api/v1/currentUser"))
            .header(name, value);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(data(&current("token", token.clone()).await)["id"], 5);
    assert_eq!(
        data(&current("authorization", format!("Bearer {token}")).await)["id"],
        5
    );
    assert_refused(&current("token", "0".repeat(64)).await, "1", "请登录");
    assert_refused(&current("token", "not-a-token".into()).await, "1", "请登录");
    assert_refused(
        &current("authorization", format!("Basic {token}")).await,
        "1",
        "请登录",
    );
}

async fn logout_ends_the_session_for_cookie_and_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();
    let token = data(&client.login("user", "123456").await)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_device = server.logged_in("user").await;
    assert_eq!(
        data(&client.post("/api/v1/logout", &json!({})).await),
        &Value::Null
    );
    assert_refused(&client.get("/api/v1/currentUser").await, "1", "请登录");
    let by_token: Value = reqwest::Client::new()
        .get(server.url("/api/v1/currentUser"))
        .header("token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_refused(&by_token, "1", "请登录");
    // Another device's session is its own.
    assert_eq!(
        data(&other_device.get("/api/v1/currentUser").await)["id"],
        2
    );
}

async fn legacy_hash_logs_in_and_is_rehashed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut conn = server.app.db.get().await.unwrap();
    let legacy = password::legacy_hash("oldpass1", "im-server");
    accounts::create_local_user(&mut conn, "imported", &legacy, "user", false)
        .await
        .unwrap();
    let client = server.client();
    assert_refused(
        &client.login("imported", "wrongpass").await,
        "1",
        "密码错误",
    );
    let stored = store::accounts::find_user_by_username(&mut conn, "imported")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.password.as_deref(),
        Some(legacy.as_str()),
        "a failed login changes nothing"
    );

    data(&client.login("imported", "oldpass1").await);
    let stored = store::accounts::find_user_by_username(&mut conn, "imported")
        .await
        .unwrap()
        .unwrap();
    let rehashed = stored.password.unwrap();
    assert!(rehashed.starts_with("$argon2id$"), "rehashed: {rehashed}");
    data(&server.client().login("imported", "oldpass1").await);
    assert_refused(
        &server.client().login("imported", "oldpass2").await,
        "1",
        "密码错误",
    );
}

async fn losing_the_login_right_acts_on_the_next_request(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut conn = server.app.db.get().await.unwrap();
    let disabled = store::rbac::find_role_by_key(&mut conn, "disabled")
        .await
        .unwrap()
        .unwrap();
    // Changed on this process, which announces it as the admin routes do: the very next request.
    let client = server.logged_in("member3").await;
    let id = data(&client.get("/api/v1/currentUser").await)["id"]
        .as_i64()
        .unwrap() as i32;
    store::rbac::set_user_roles(&mut conn, id, &[disabled.id])
        .await
        .unwrap();
    let _ = server
        .app
        .events
        .send(DomainEvent::AccessChanged { user_id: id });
    assert_refused(&client.get("/api/v1/currentUser").await, "1", "请登录");
    // Changed elsewhere (another process; here, behind the server's back): rights are kept for
    // at most RIGHTS_TTL, so the change acts on the first request after that.
    let client = server.logged_in("member4").await;
    let id = data(&client.get("/api/v1/currentUser").await)["id"]
        .as_i64()
        .unwrap() as i32;
    store::rbac::set_user_roles(&mut conn, id, &[disabled.id])
        .await
        .unwrap();
    tokio::time::sleep(rbac::RIGHTS_TTL + std::time::Duration::from_millis(50)).await;
    assert_refused(&client.get("/api/v1/currentUser").await, "1", "请登录");
}

async fn demo_seeding_twice_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut conn = server.app.db.get().await.unwrap();
    let before = store::stats::table_counts(&mut conn).await.unwrap();
    assert_eq!(before.users, 34);
    assert_eq!(before.friends, 26);
    assert_eq!(before.conversations, 28);
    assert_eq!(before.groups, 2);
    assert_eq!(before.applies, 3);
    assert_eq!(before.roles, 4);
    assert_eq!(before.rights, 5);
    assert_eq!(
        seed::demo(&mut conn).await.unwrap(),
        seed::DemoOutcome::SkippedNotEmpty
    );
    // A second start with --demo, as an operator would do.
    drop(conn);
    let again = TestServer::start_with(server.backend.clone(), Startup { demo: true }, |config| {
        config.database_url = server.database_url.clone();
    })
    .await;
    let mut conn = again.app.db.get().await.unwrap();
    assert_eq!(store::stats::table_counts(&mut conn).await.unwrap(), before);

    // The original's ids, which scripts written against its demo hard-code.
    for (username, id) in [
        ("admin", 1),
        ("user", 2),
        ("disabled", 3),
        ("muteuser", 4),
        ("member1", 5),
        ("member30", 34),
    ] {
        let user = store::accounts::find_user_by_username(&mut conn, username)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.id, id, "{username}");
    }
    let roles: Vec<(i32, String)> = ["admin", "user", "disabled", "mute"]
        .iter()
        .map(|key| key.to_string())
        .zip(1..)
        .map(|(key, id)| (id, key))
        .collect();
    for (id, key) in roles {
        assert_eq!(
            store::rbac::find_role_by_key(&mut conn, &key)
                .await
                .unwrap()
                .unwrap()
                .id,
            id
        );
    }
    let (first, second) = (seed::DEMO_GROUPS[0], seed::DEMO_GROUPS[1]);
    let first = store::groups::find_group_by_name(&mut conn, first)
        .await
        .unwrap()
        .unwrap();
    let second = store::groups::find_group_by_name(&mut conn, second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.id, first.conversation_id, first.owner_id),
        (1, 27, 2)
    );
    assert_eq!((second.id, second.conversation_id), (2, 28));
    assert!(
        store::groups::is_member(&mut conn, 1, 14).await.unwrap(),
        "member10 is in"
    );
    assert!(
        !store::groups::is_member(&mut conn, 1, 15).await.unwrap(),
        "member11 applied"
    );
}

async fn start_without_demo_bootstraps_admin(backend: Backend) {
    let server = TestServer::start_with(backend, Startup::default(), |_| {}).await;
    let mut conn = server.app.db.get().await.unwrap();
    assert_eq!(store::accounts::count_users(&mut conn).await.unwrap(), 1);
    let admin = server.client();
    let identity = admin.login("admin", "admin-password").await;
    let rights: Vec<&str> = data(&identity)["rights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["keyName"].as_str().unwrap())
        .collect();
    assert_eq!(rights, ["admin", "login"]);
    // The demo password is not the admin's.
    assert_refused(
        &server.client().login("admin", "123456").await,
        "1",
        "密码错误",
    );
    // Demo data is refused on a database that has users.
    assert_eq!(
        seed::demo(&mut conn).await.unwrap(),
        seed::DemoOutcome::SkippedNotEmpty
    );
    assert_eq!(store::accounts::count_users(&mut conn).await.unwrap(), 1);
}
