//! The web clients served from folders (`IM_WEB_DIR` at `/`, `IM_ADMIN_DIR` at `/admin/`): files
//! with their caching headers, `index.html` for the routes of a client's router, a 404 for a
//! missing file, nothing outside the folder, and the server's own paths (API, Socket.IO, probes)
//! answering as before. Nothing here touches the database, so SQLite alone serves.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Backend, TestServer, assert_refused, data};
use im_server::app::Startup;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LAST_MODIFIED, LOCATION};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const H5_INDEX: &str = "<!doctype html><title>H5 client</title><div id=app></div>";
const ADMIN_INDEX: &str = "<!doctype html><title>Admin</title><div id=root></div>";
const APP_JS: &str = "console.log('app');";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const WAIT: Duration = Duration::from_secs(10);

/// A built H5 client (vue-cli's layout, `assetsDir: 'static'`) and a built admin (umi's) in a
/// temporary folder, beside a file that must never be served.
fn build_clients(root: &Path) {
    let write = |path: &str, content: &[u8]| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("folder");
        std::fs::write(path, content).expect("file");
    };
    write("web/index.html", H5_INDEX.as_bytes());
    write("web/favicon.ico", b"icon");
    write("web/static/js/app.3f9a1c2b.js", APP_JS.as_bytes());
    // What a build's compression step leaves beside the file (the bytes need not be real gzip:
    // they show which file was sent).
    write("web/static/js/app.3f9a1c2b.js.gz", b"gzipped app");
    write("web/static/css/index-B7xk9a2C.css", b"body{}");
    write("admin/index.html", ADMIN_INDEX.as_bytes());
    write("admin/umi.3f9a1c2b.js", b"umi");
    write("secret.txt", b"TOP-SECRET");
}

/// A server with the H5 client at `/` and, when `admin`, the admin at `/admin/`.
async fn start(root: &Path, admin: bool) -> TestServer {
    let web = root.join("web");
    let admin = admin.then(|| root.join("admin"));
    TestServer::start_with(Backend::Sqlite, Startup { demo: true }, move |config| {
        config.web_dir = Some(web);
        config.admin_dir = Some(admin.unwrap_or_else(|| "off".into()));
    })
    .await
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .build()
        .expect("client")
}

/// GET `path`: status, `Cache-Control`, `Content-Type` and body.
async fn fetch(server: &TestServer, path: &str) -> (StatusCode, String, String, String) {
    let response = browser().get(server.url(path)).send().await.expect("GET");
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (cache, kind) = (header(CACHE_CONTROL), header(CONTENT_TYPE));
    let status = response.status();
    (status, cache, kind, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_h5_client_its_assets_and_its_routes() {
    let root = tempfile::tempdir().expect("temp dir");
    build_clients(root.path());
    let server = start(root.path(), false).await;

    for path in ["/", "/index.html"] {
        let (status, cache, kind, body) = fetch(&server, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            cache, "no-cache",
            "{path}: revalidated, for a new build shows at once"
        );
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        assert_eq!(body, H5_INDEX, "{path}");
    }

    let (status, cache, kind, body) = fetch(&server, "/static/js/app.3f9a1c2b.js").await;
    assert_eq!(
        (status, cache.as_str(), body.as_str()),
        (StatusCode::OK, IMMUTABLE, APP_JS)
    );
    assert!(kind.contains("javascript"), "{kind}");
    let (status, cache, kind, _) = fetch(&server, "/static/css/index-B7xk9a2C.css").await;
    assert_eq!((status, cache.as_str()), (StatusCode::OK, IMMUTABLE));
    assert!(kind.starts_with("text/css"), "{kind}");
    let (status, cache, _, body) = fetch(&server, "/favicon.ico").await;
    assert_eq!(
        (status, cache.as_str(), body.as_str()),
        (StatusCode::OK, "no-cache", "icon")
    );

    // The client's router owns these paths (history mode): its index.html, never cached as is.
    for route in [
        "/login",
        "/chat",
        "/chat/123",
        "/mine/edit-avatar",
        "/admin/welcome",
    ] {
        let (status, cache, kind, body) = fetch(&server, route).await;
        assert_eq!(status, 200, "{route}");
        assert_eq!(cache, "no-cache", "{route}");
        assert!(kind.starts_with("text/html"), "{route}: {kind}");
        assert_eq!(body, H5_INDEX, "{route}");
    }

    // A missing file is a 404, so that a broken build shows instead of loading a page as script.
    for missing in [
        "/static/js/missing.js",
        "/static/js/app.00000000.js",
        "/robots.txt",
    ] {
        let (status, cache, _, body) = fetch(&server, missing).await;
        assert_eq!(status, 404, "{missing}");
        assert_eq!(cache, "no-cache", "{missing}: a 404 is not kept for a year");
        assert_eq!(
            serde_json::from_str::<Value>(&body).expect("JSON"),
            json!({"message": "Not Found"})
        );
    }

    // HEAD, and revalidation by date.
    let head = browser()
        .head(server.url("/chat/123"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    assert!(
        head.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let modified = head.headers()[LAST_MODIFIED].clone();
    assert!(head.bytes().await.expect("body").is_empty());
    let again = browser()
        .get(server.url("/"))
        .header("if-modified-since", modified)
        .send()
        .await
        .expect("conditional GET");
    assert_eq!(again.status(), 304);

    // A precompressed sibling goes to a browser that takes it.
    let gzipped = browser()
        .get(server.url("/static/js/app.3f9a1c2b.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET gzip");
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(gzipped.headers()["vary"], "accept-encoding");
    assert_eq!(gzipped.headers()[CACHE_CONTROL], IMMUTABLE);
    assert_eq!(gzipped.text().await.expect("body"), "gzipped app");
}

/// One raw HTTP/1.1 request, so that the path reaches the server exactly as written.
async fn raw_get(server: &TestServer, path: &str) -> String {
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_folder_is_served() {
    let root = tempfile::tempdir().expect("temp dir");
    build_clients(root.path());
    let server = start(root.path(), true).await;
    for path in [
        "/../secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e/secret.txt",
        "/static/..%2f..%2fsecret.txt",
        "/admin/../secret.txt",
        "/admin/..%2fsecret.txt",
        "/admin/%2e%2e/index.html",
    ] {
        let answer = raw_get(&server, path).await;
        assert!(!answer.contains("TOP-SECRET"), "{path}: {answer}");
        let status = answer.split_whitespace().nth(1).unwrap_or_default();
        assert!(status == "404" || status == "400", "{path}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_under_its_path() {
    let root = tempfile::tempdir().expect("temp dir");
    build_clients(root.path());
    let server = start(root.path(), true).await;

    let bare = browser()
        .get(server.url("/admin?tab=1"))
        .send()
        .await
        .expect("GET /admin");
    assert_eq!(bare.status(), 308, "its relative URLs need the slash");
    assert_eq!(bare.headers()[LOCATION], "/admin/?tab=1");

    for route in ["/admin/", "/admin/user/login", "/admin/admin/welcome"] {
        let (status, cache, kind, body) = fetch(&server, route).await;
        assert_eq!(status, 200, "{route}");
        assert_eq!(cache, "no-cache", "{route}");
        assert!(kind.starts_with("text/html"), "{route}: {kind}");
        assert_eq!(body, ADMIN_INDEX, "{route}");
    }
    let (status, cache, _, body) = fetch(&server, "/admin/umi.3f9a1c2b.js").await;
    assert_eq!(
        (status, cache.as_str(), body.as_str()),
        (StatusCode::OK, IMMUTABLE, "umi")
    );
    let (status, _, _, _) = fetch(&server, "/admin/missing.js").await;
    assert_eq!(status, 404);
    // The H5 client's files are not the admin's, nor the other way round.
    let (status, _, _, _) = fetch(&server, "/admin/static/js/app.3f9a1c2b.js").await;
    assert_eq!(status, 404);
    let (status, _, _, _) = fetch(&server, "/umi.3f9a1c2b.js").await;
    assert_eq!(status, 404);
    let (_, _, _, body) = fetch(&server, "/chat/123").await;
    assert_eq!(body, H5_INDEX);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_paths_answer_as_before_and_the_client_works_from_its_own_origin() {
    let root = tempfile::tempdir().expect("temp dir");
    build_clients(root.path());
    let server = start(root.path(), true).await;
    let origin = server.base.clone();
    let client = browser();

    // Unknown API routes: the envelope of the API's own fallback, or the framework's 404.
    let reply: Value = client
        .get(server.url("/api/v1/unknown"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("the envelope");
    assert_refused(&reply, "1", "请登录");
    for path in [
        "/api/unknown",
        "/api",
        "/public/nothing.png",
        "/metrics/unknown",
    ] {
        let (status, _, _, body) = fetch(&server, path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap_or_default(),
            json!({"message": "Not Found"}),
            "{path}"
        );
    }
    let (status, _, _, body) = fetch(&server, "/healthz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"ok"}"#)
    );
    let (status, _, _, _) = fetch(&server, "/public/images/head1.png").await;
    assert_eq!(status, 200);
    let (status, _, kind, _) = fetch(&server, "/public/upload/none.png").await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::NOT_FOUND, ""),
        "the uploads' own 404"
    );

    // Other methods than GET and HEAD outside the API keep their answers.
    let post = client
        .post(server.url("/chat/123"))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), 404);
    let post = client.post(server.url("/")).send().await.expect("POST /");
    assert_eq!(post.status(), 405);

    // The page's own origin may log in and open a socket: the browser sends that Origin.
    let login: Value = client
        .post(server.url("/api/v1/login"))
        .header("origin", &origin)
        .json(&json!({"username": "user", "password": "123456"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("envelope");
    let user_id = data(&login)["id"].clone();
    let handshake = client
        .get(server.url("/socket.io/?EIO=4&transport=polling"))
        .header("origin", &origin)
        .send()
        .await
        .expect("handshake");
    assert_eq!(handshake.status(), 200);
    let open = handshake.text().await.expect("open packet");
    let open: Value = serde_json::from_str(open.trim_start_matches('0')).expect("open JSON");
    let sid = open["sid"].as_str().expect("sid");
    let session = server.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"));
    let connect = client
        .post(&session)
        .header("origin", &origin)
        .body("40")
        .send()
        .await
        .expect("connect");
    assert_eq!(connect.status(), 200);
    // Engine.IO 4 separates packets with U+001E; pings may come before the connect answer.
    let mut packets = Vec::new();
    for _ in 0..5 {
        let body = client
            .get(&session)
            .header("origin", &origin)
            .send()
            .await
            .expect("poll")
            .text()
            .await
            .expect("packets");
        packets.extend(body.split('\u{1e}').map(str::to_owned));
        if packets.iter().any(|packet| packet.starts_with("40{")) {
            break;
        }
    }
    assert!(
        packets.iter().any(|packet| packet.starts_with("40{")),
        "connected to /: {packets:?}"
    );
    let me: Value = client
        .get(server.url("/api/v1/currentUser"))
        .send()
        .await
        .expect("currentUser")
        .json()
        .await
        .expect("envelope");
    assert_eq!(data(&me)["id"], user_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_web_folder_the_built_in_page_stays() {
    let server = TestServer::start_with(Backend::Sqlite, Startup { demo: true }, |config| {
        config.web_dir = Some("off".into());
        config.admin_dir = Some("off".into());
    })
    .await;
    let (status, _, kind, body) = fetch(&server, "/").await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(
        body.contains("IM_WEB_DIR"),
        "the page says how to serve a client"
    );
    for path in ["/chat/123", "/admin/", "/static/js/app.3f9a1c2b.js"] {
        let (status, _, _, body) = fetch(&server, path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body, r#"{"message":"Not Found"}"#, "{path}");
    }
}
