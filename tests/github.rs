//! Log-in with GitHub (docs/protocol.md §4.7, `/passport/github`) against a stand-in for GitHub's
//! authorize, token and user endpoints on 127.0.0.1, on SQLite and on PostgreSQL: `state` and PKCE
//! checked, accounts linked by GitHub id and never by a local username, and every failure sent
//! back to the web client's log-in page with its reason.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Backend, TestServer, assert_refused, data, mask_times};
use im_server::app::Startup;
use im_server::config::Config;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

on_both_backends!(
    first_login_creates_the_user_and_the_next_finds_it,
    state_is_checked,
    local_user_of_the_same_name_is_not_taken_over,
    banned_github_user_cannot_log_in,
    refused_code_sends_the_browser_back_to_log_in,
    denied_access_sends_the_browser_back_to_log_in,
    unreachable_github_sends_the_browser_back_to_log_in,
    slow_github_sends_the_browser_back_to_log_in,
    not_configured_sends_the_browser_back_to_log_in,
    the_log_in_page_is_configurable,
);

const CLIENT_ID: &str = "test-client";
const CLIENT_SECRET: &str = "test-secret";
const BAD_STATE: &str = "GitHub 登录校验失败，请重新登录";

/// Asserts that `response` sends the browser to the log-in page `page` with `reason` and
/// `message` in the query, and logs nobody in.
#[track_caller]
fn assert_back_to_log_in(response: &reqwest::Response, page: &str, reason: &str, message: &str) {
    assert_eq!(response.status(), 303, "a redirect, not an envelope");
    let location = response.headers()["location"].to_str().unwrap();
    let (path, query) = location.split_once('?').expect("a query");
    assert_eq!(path, page, "{location}");
    let query: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x/?{query}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(
        query,
        [
            ("error".to_owned(), reason.to_owned()),
            ("message".to_owned(), message.to_owned())
        ],
        "{location}"
    );
    assert!(
        !response
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("IM_SESS=")),
        "no session"
    );
}

/// What the stand-in expects for one authorization code.
struct Grant {
    challenge: String,
    user: Value,
}

#[derive(Default)]
struct MockState {
    grants: HashMap<String, Grant>,
    /// access token → GitHub user
    tokens: HashMap<String, Value>,
    token_requests: usize,
    /// How long the token and user endpoints take to answer: a slow GitHub.
    delay: Duration,
}

/// A stand-in for GitHub's OAuth and API endpoints.
struct MockGithub {
    base: String,
    state: Arc<Mutex<MockState>>,
}

impl MockGithub {
    async fn start() -> MockGithub {
        let state = Arc::new(Mutex::new(MockState::default()));
        let router = Router::new()
            .route("/login/oauth/authorize", get(|| async { "not used" }))
            .route("/login/oauth/access_token", post(exchange_code))
            .route("/user", get(show_user))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        MockGithub { base, state }
    }

    fn grant(&self, code: &str, challenge: &str, user: Value) {
        self.state.lock().unwrap().grants.insert(
            code.to_owned(),
            Grant {
                challenge: challenge.to_owned(),
                user,
            },
        );
    }

    fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }

    /// Makes the token and user endpoints wait `delay` before they answer.
    fn slow_down(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }
}

/// Waits as long as the stand-in was told to.
async fn lag(state: &Mutex<MockState>) {
    let delay = state.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
}

/// The token endpoint: the client must authenticate, and the PKCE verifier must match the
/// challenge sent with the authorize redirect.
async fn exchange_code(
    State(state): State<Arc<Mutex<MockState>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    lag(&state).await;
    let mut state = state.lock().unwrap();
    state.token_requests += 1;
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let authenticated = headers
        .get("authorization")
        .is_some_and(|value| value.to_str().unwrap_or_default() == expected_auth);
    let code = form.get("code").cloned().unwrap_or_default();
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let grant = state.grants.remove(&code);
    match grant {
        Some(grant)
            if authenticated
                && form.get("grant_type").map(String::as_str) == Some("authorization_code")
                && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
                    == grant.challenge =>
        {
            let token = format!("token-{code}");
            state.tokens.insert(token.clone(), grant.user);
            (
                StatusCode::OK,
                Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:user"})),
            )
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "bad_verification_code"})),
        ),
    }
}

async fn show_user(
    State(state): State<Arc<Mutex<MockState>>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    lag(&state).await;
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    match state.lock().unwrap().tokens.get(&token) {
        Some(user) => (StatusCode::OK, Json(user.clone())),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        ),
    }
}

async fn start_server(backend: Backend, mock: &MockGithub) -> TestServer {
    start_server_with(backend, mock, |_| {}).await
}

/// A server using the stand-in, whose configuration `tweak` may change further.
async fn start_server_with(
    backend: Backend,
    mock: &MockGithub,
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    let base = mock.base.clone();
    TestServer::start_with(backend, Startup { demo: true }, move |config| {
        config.github_client_id = Some(CLIENT_ID.into());
        config.github_client_secret = Some(CLIENT_SECRET.into());
        config.github_callback_url =
            Some("http://im.example/api/v1/passport/github/callback".into());
        config.github_authorize_url = format!("{base}/login/oauth/authorize");
        config.github_token_url = format!("{base}/login/oauth/access_token");
        config.github_api_url = base.clone();
        tweak(config);
    })
    .await
}

/// A browser that does not follow redirects, so each step can be looked at.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Starts a log-in and returns the `state` and PKCE challenge sent to GitHub.
async fn start_login(
    server: &TestServer,
    mock: &MockGithub,
    browser: &reqwest::Client,
) -> (String, String) {
    let response = browser
        .get(server.url("/api/v1/passport/github"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in [
        "IM_GITHUB_OAUTH=",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/api/v1/passport/github/callback",
        "Max-Age=600",
    ] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing in {cookie}"
        );
    }
    let location = response.headers()["location"].to_str().unwrap();
    let url = reqwest::Url::parse(location).unwrap();
    assert_eq!(
        url.as_str().split('?').next().unwrap(),
        format!("{}/login/oauth/authorize", mock.base)
    );
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(
        query["redirect_uri"],
        "http://im.example/api/v1/passport/github/callback"
    );
    assert!(!query.contains_key("client_secret"));
    assert!(query["state"].len() >= 16, "state too short");
    (query["state"].clone(), query["code_challenge"].clone())
}

async fn callback(
    server: &TestServer,
    browser: &reqwest::Client,
    query: &str,
) -> reqwest::Response {
    browser
        .get(server.url(&format!("/api/v1/passport/github/callback{query}")))
        .send()
        .await
        .unwrap()
}

/// A whole successful log-in as the GitHub user `user`; returns the callback's answer.
async fn log_in(
    server: &TestServer,
    mock: &MockGithub,
    browser: &reqwest::Client,
    code: &str,
    user: Value,
) -> reqwest::Response {
    let (state, challenge) = start_login(server, mock, browser).await;
    mock.grant(code, &challenge, user);
    callback(server, browser, &format!("?code={code}&state={state}")).await
}

async fn current_user(server: &TestServer, browser: &reqwest::Client) -> Value {
    browser
        .get(server.url("/api/v1/currentUser"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn octocat() -> Value {
    json!({"id": 583231, "login": "octocat", "name": "The Octocat",
           "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4"})
}

async fn first_login_creates_the_user_and_the_next_finds_it(backend: Backend) {
    let mock = MockGithub::start().await;
    let server = start_server(backend, &mock).await;
    let first = browser();
    let response = log_in(&server, &mock, &first, "code-1", octocat()).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/");
    let cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("IM_SESS=") && c.contains("HttpOnly")),
        "session cookie set: {cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("IM_GITHUB_OAUTH=;") && c.contains("Max-Age=0")),
        "pending log-in cookie cleared: {cookies:?}"
    );
    let me = current_user(&server, &first).await;
    let id = data(&me)["id"].as_i64().unwrap();
    assert_eq!(id, 35);
    assert_eq!(
        mask_times(&data(&me)["userInfo"]),
        json!({"id": 35, "userId": 35, "nickname": "The Octocat",
               "photo": "https://avatars.githubusercontent.com/u/583231?v=4", "sign": null,
               "createdAt": "<time>", "updatedAt": "<time>"})
    );
    assert_eq!(data(&me)["roles"][0]["keyName"], "user");

    let admin = server.logged_in("admin").await;
    let listed = admin.get("/api/v1/admin/users?provider=github").await;
    assert_eq!(data(&listed)["count"], 1);
    let row = &data(&listed)["rows"][0];
    assert_eq!(
        (&row["id"], &row["provider"], &row["username"]),
        (&json!(35), &json!("github"), &json!("octocat"))
    );

    // Another browser, a later day, the GitHub account renamed: the same local user.
    let second = browser();
    let mut renamed = octocat();
    renamed["login"] = json!("octo-renamed");
    let response = log_in(&server, &mock, &second, "code-2", renamed).await;
    assert_eq!(response.status(), 303);
    assert_eq!(data(&current_user(&server, &second).await)["id"], 35);
    assert_eq!(
        data(&admin.get("/api/v1/admin/users?provider=github").await)["count"],
        1
    );
    // The first browser's session is untouched.
    assert_eq!(data(&current_user(&server, &first).await)["id"], 35);
}

async fn state_is_checked(backend: Backend) {
    let mock = MockGithub::start().await;
    let server = start_server(backend, &mock).await;
    let refused = |response: reqwest::Response| async move {
        assert_back_to_log_in(&response, "/login", "bad_state", BAD_STATE);
    };

    // A forged state (the login CSRF the original allowed).
    let victim = browser();
    let (state, challenge) = start_login(&server, &mock, &victim).await;
    mock.grant("code-a", &challenge, octocat());
    refused(callback(&server, &victim, "?code=code-a&state=forged").await).await;
    // The pending log-in is used up by any callback: the genuine state no longer works either.
    refused(callback(&server, &victim, &format!("?code=code-a&state={state}")).await).await;

    // No state at all.
    let (_, challenge) = start_login(&server, &mock, &victim).await;
    mock.grant("code-b", &challenge, octocat());
    refused(callback(&server, &victim, "?code=code-b").await).await;

    // The right state from a browser that never started the log-in (no cookie).
    let (state, challenge) = start_login(&server, &mock, &victim).await;
    mock.grant("code-c", &challenge, octocat());
    let stranger = browser();
    refused(callback(&server, &stranger, &format!("?code=code-c&state={state}")).await).await;

    assert_eq!(mock.token_requests(), 0, "no code was ever exchanged");
    assert_refused(&current_user(&server, &victim).await, "1", "请登录");
    assert_refused(&current_user(&server, &stranger).await, "1", "请登录");
    let admin = server.logged_in("admin").await;
    assert_eq!(
        data(&admin.get("/api/v1/admin/users?provider=github").await)["count"],
        0
    );
}

async fn local_user_of_the_same_name_is_not_taken_over(backend: Backend) {
    let mock = MockGithub::start().await;
    let server = start_server(backend, &mock).await;
    let browser = browser();
    let github_user = json!({"id": 1001, "login": "user", "name": null, "avatar_url": null});
    let response = log_in(&server, &mock, &browser, "code-1", github_user).await;
    assert_eq!(response.status(), 303);
    let me = current_user(&server, &browser).await;
    assert_eq!(
        data(&me)["id"],
        35,
        "a new user, not the local `user` (id 2)"
    );
    assert_eq!(data(&me)["userInfo"]["nickname"], "user");
    let photo = data(&me)["userInfo"]["photo"].as_str().unwrap();
    assert!(photo.starts_with("/public/images/head"), "{photo}");

    let admin = server.logged_in("admin").await;
    let github_users = admin.get("/api/v1/admin/users?provider=github").await;
    assert_eq!(data(&github_users)["rows"][0]["username"], "user_github");
    // The local `user` is as before and still logs in with their password.
    let local = server.logged_in("user").await;
    let local_me = local.get("/api/v1/currentUser").await;
    assert_eq!(data(&local_me)["id"], 2);
    assert_eq!(
        data(&local_me)["userInfo"]["photo"],
        "/public/images/head2.png"
    );
    // A second GitHub account called `user_github`-like names gets yet another name.
    let other = json!({"id": 1002, "login": "user", "name": "Another", "avatar_url": null});
    let response = log_in(&server, &mock, &self::browser(), "code-2", other).await;
    assert_eq!(response.status(), 303);
    let names: Vec<Value> = data(&admin.get("/api/v1/admin/users?provider=github").await)["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["username"].clone())
        .collect();
    assert_eq!(names, [json!("user_github"), json!("user_github2")]);
}

async fn banned_github_user_cannot_log_in(backend: Backend) {
    let mock = MockGithub::start().await;
    let server = start_server(backend, &mock).await;
    let browser = browser();
    log_in(&server, &mock, &browser, "code-1", octocat()).await;
    let id = data(&current_user(&server, &browser).await)["id"].clone();
    let admin = server.logged_in("admin").await;
    data(
        &admin
            .put(
                "/api/v1/admin/users/disabled",
                &json!({"id": id, "disabled": true}),
            )
            .await,
    );
    assert_refused(&current_user(&server, &browser).await, "1", "请登录");
    let response = log_in(&server, &mock, &browser, "code-2", octocat()).await;
    assert_back_to_log_in(&response, "/login", "not_permitted", "不具备登录权限");
    assert_refused(&current_user(&server, &browser).await, "1", "请登录");
}

async fn refused_code_sends_the_browser_back_to_log_in(backend: Backend) {
    let mock = MockGithub::start().await;
    let server = start_server(backend, &mock).await;
    let browser = browser();
    let (state, _) = start_login(&server, &mock, &browser).await;
    // GitHub does not know this code (or the verifier would not match).
    let response = callback(&server, &browser, &format!("?code=unknown&state={state}")).await;
    assert_back_to_log_in(&response, "/login", "github_refused", "GitHub 授权失败");
    assert_eq!(mock.token_requests(), 1);
    assert_refused(&current_user(&server, &browser).await, "1", "请登录");
}

async fn denied_access_sends_the_browser_back_to_log_in(backend: Backend) {
    let mock = MockGithub::start().await;
    let server = start_server(backend, &mock).await;
    let browser = browser();
    // The user pressed "Cancel" on GitHub's page: GitHub comes back with `error` and the state.
    let (state, _) = start_login(&server, &mock, &browser).await;
    let response = callback(
        &server,
        &browser,
        &format!(
            "?error=access_denied&error_description=The+user+has+denied+your+application+access.\
             &state={state}"
        ),
    )
    .await;
    assert_back_to_log_in(&response, "/login", "access_denied", "GitHub 授权已取消");
    // Any other error of GitHub's (a misconfigured app).
    let (state, _) = start_login(&server, &mock, &browser).await;
    let response = callback(
        &server,
        &browser,
        &format!("?error=redirect_uri_mismatch&state={state}"),
    )
    .await;
    assert_back_to_log_in(&response, "/login", "github_refused", "GitHub 授权失败");
    // A forged "denied" answer is first of all a foreign state.
    let response = callback(&server, &browser, "?error=access_denied&state=forged").await;
    assert_back_to_log_in(&response, "/login", "bad_state", BAD_STATE);
    // A query that cannot be read (NUL) is a failed log-in too, and uses up the pending one.
    let (state, _) = start_login(&server, &mock, &browser).await;
    let response = callback(&server, &browser, &format!("?code=%00&state={state}")).await;
    assert_back_to_log_in(&response, "/login", "failed", "参数校验失败");
    let response = callback(&server, &browser, &format!("?code=any&state={state}")).await;
    assert_back_to_log_in(&response, "/login", "bad_state", BAD_STATE);
    assert_eq!(mock.token_requests(), 0);
    assert_refused(&current_user(&server, &browser).await, "1", "请登录");
}

async fn the_log_in_page_is_configurable(backend: Backend) {
    let mock = MockGithub::start().await;
    // A hash-mode client reads its query inside the fragment.
    let server = start_server_with(backend, &mock, |config| {
        config.github_failure_url = "/#/login".into();
    })
    .await;
    let response = callback(&server, &browser(), "?code=x&state=y").await;
    assert_back_to_log_in(&response, "/#/login", "bad_state", BAD_STATE);
    // A success still goes to `/`.
    let browser = browser();
    let response = log_in(&server, &mock, &browser, "code-1", octocat()).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/");
    assert_eq!(data(&current_user(&server, &browser).await)["id"], 35);
}

async fn unreachable_github_sends_the_browser_back_to_log_in(backend: Backend) {
    // A port that was just free: nothing answers there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let server = TestServer::start_with(backend, Startup { demo: true }, move |config| {
        config.github_client_id = Some(CLIENT_ID.into());
        config.github_client_secret = Some(CLIENT_SECRET.into());
        config.github_token_url = format!("{closed}/login/oauth/access_token");
    })
    .await;
    let browser = browser();
    let response = browser
        .get(server.url("/api/v1/passport/github"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("https://github.com/login/oauth/authorize?"),
        "GitHub's real URL by default: {location}"
    );
    let url = reqwest::Url::parse(location).unwrap();
    let state = url
        .query_pairs()
        .find(|(key, _)| key == "state")
        .map(|(_, value)| value.into_owned())
        .unwrap();
    let response = callback(&server, &browser, &format!("?code=any&state={state}")).await;
    assert_back_to_log_in(
        &response,
        "/login",
        "unavailable",
        "服务暂时不可用，请稍后再试",
    );
}

/// GitHub answering each call within its own 10 s, but the two together past the request's
/// limit (3 s here): the callback still sends the browser back to log in, where that limit
/// would have answered with the 503 envelope, and nobody is logged in.
async fn slow_github_sends_the_browser_back_to_log_in(backend: Backend) {
    let mock = MockGithub::start().await;
    let server = start_server_with(backend, &mock, |config| {
        config.request_timeout_secs = 3;
    })
    .await;
    mock.slow_down(Duration::from_secs(2));
    let browser = browser();
    let response = log_in(&server, &mock, &browser, "code-slow", octocat()).await;
    assert_back_to_log_in(
        &response,
        "/login",
        "unavailable",
        "服务暂时不可用，请稍后再试",
    );
    assert_eq!(mock.token_requests(), 1, "the code was exchanged");
    assert_refused(&current_user(&server, &browser).await, "1", "请登录");
}

async fn not_configured_sends_the_browser_back_to_log_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    let browser = browser();
    for path in [
        "/api/v1/passport/github",
        "/api/v1/passport/github/callback?code=x&state=y",
    ] {
        let response = browser.get(server.url(path)).send().await.unwrap();
        assert_back_to_log_in(&response, "/login", "not_configured", "未配置 GitHub 登录");
    }
}
