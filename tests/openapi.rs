//! The OpenAPI document (`GET /api/openapi.json`): served to anyone, and listing exactly the
//! routes the server answers under `/api/v1`, which are also exactly those of docs/protocol.md §4.
//! That its schemas match the answers is schemathesis' part (tests/schemathesis/run.sh).

mod common;

use std::collections::BTreeSet;

use common::{Backend, TestServer, assert_refused};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    document_is_served_without_a_session,
    document_lists_exactly_the_routes_served,
);

/// A route as `(METHOD, path)`, the path as the document writes it (`/api/v1/groups/{id}`).
type Route = (String, String);

fn documented(document: &Value) -> BTreeSet<Route> {
    let paths = document["paths"].as_object().expect("paths");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// The routes of docs/protocol.md §4.1 to §4.7 (`GET /userinfo/:id` and the like).
fn in_protocol() -> BTreeSet<Route> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md"))
        .expect("docs/protocol.md");
    let start = text.find("## 4. REST routes").expect("§4");
    let end = text.find("### 4.8").expect("§4.8");
    let mut routes = BTreeSet::new();
    for piece in text[start..end].split('`').skip(1).step_by(2) {
        let Some((method, path)) = piece.split_once(' ') else {
            continue;
        };
        if !["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method) || !path.starts_with('/') {
            continue;
        }
        let path = path.split('?').next().unwrap_or_default();
        let path = path.replace(":id", "{id}");
        routes.insert((method.to_owned(), format!("/api/v1{path}")));
    }
    routes
}

async fn document_is_served_without_a_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let response = server
        .client()
        .http
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    // The session: the cookie by its configured name, or the token in either header.
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(
        schemes["IM_SESS"],
        json!({"type": "apiKey", "in": "cookie", "name": "IM_SESS",
               "description": "the session cookie set by log-in and sign-up (64 hex digits)"})
    );
    assert_eq!(schemes["token"]["in"], "header");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let login = &document["paths"]["/api/v1/login"]["post"];
    assert_eq!(login["security"], json!([{}]), "log-in needs no session");
    assert!(
        document["paths"]["/api/v1/currentUser"]["get"]
            .get("security")
            .is_none(),
        "currentUser needs the document's default: a session"
    );
    // The envelope: a refusal's statusCode is the string "1" or "2", and its data null.
    let refusal = &document["components"]["schemas"]["Refusal"];
    assert_eq!(
        refusal["properties"]["statusCode"],
        json!({"type": "string", "enum": ["1", "2"]})
    );
    assert_eq!(refusal["properties"]["data"], json!({"type": "null"}));
    let answer = &login["responses"]["200"]["content"]["application/json"]["schema"];
    let answer_name = answer["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .expect("log-in's answer is a named schema");
    let answer = &document["components"]["schemas"][answer_name];
    assert_eq!(
        answer["oneOf"][0]["properties"]["statusCode"],
        json!({"type": "string", "enum": ["0"]})
    );
    assert_eq!(
        answer["oneOf"][1],
        json!({"$ref": "#/components/schemas/Refusal"})
    );
    // 429 comes with Retry-After.
    assert_eq!(
        login["responses"]["429"]["headers"]["Retry-After"]["schema"],
        json!({"type": "integer", "minimum": 1})
    );
    // Every $ref names a schema that is there.
    let text = document.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap_or_default();
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    // Served as it was built: the same bytes twice, and the name of a configured cookie.
    let again = server.client().get("/api/openapi.json").await;
    assert_eq!(again, document);
    let renamed = TestServer::start_with(
        Backend::Sqlite,
        im_server::app::Startup::default(),
        |config| config.cookie_name = "CHAT_SID".to_owned(),
    )
    .await;
    let document = renamed.client().get("/api/openapi.json").await;
    assert_eq!(
        document["components"]["securitySchemes"]["IM_SESS"]["name"],
        "CHAT_SID"
    );
}

/// What the server answers to `method path` for a logged-in admin: `None` for "no such route"
/// (the 404 of an unknown route), else the status.
async fn answers(
    client: &common::Client,
    server: &TestServer,
    method: &str,
    path: &str,
) -> Option<u16> {
    let path = path.replace("{id}", "1");
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.http.request(method.clone(), server.url(&path));
    if method != Method::GET {
        // Malformed for every route that reads a body: nothing is changed.
        request = request.json(&json!({"malformed": true}));
    }
    let response = request.send().await.expect("request");
    if response.url().path() != path {
        // Answered with a redirect (the GitHub routes), which the client followed.
        return Some(StatusCode::SEE_OTHER.as_u16());
    }
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON answer");
    if status == 404 && body == json!({"message": "Not Found"}) {
        None
    } else {
        Some(status)
    }
}

async fn document_lists_exactly_the_routes_served(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let document = admin.get("/api/openapi.json").await;
    let documented = documented(&document);
    assert_eq!(
        documented,
        in_protocol(),
        "the document and docs/protocol.md §4 list different routes"
    );
    assert_eq!(documented.len(), 37);
    // Every documented route is served; every other method on those paths is not. Log-out,
    // which would end the admin's session, goes last.
    let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
    let mut checks = Vec::new();
    for path in paths {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            checks.push((method.to_owned(), path.clone()));
        }
    }
    let logout = ("POST".to_owned(), "/api/v1/logout".to_owned());
    checks.retain(|route| route != &logout);
    checks.push(logout);
    for (method, path) in &checks {
        let listed = documented.contains(&(method.clone(), path.clone()));
        let answer = answers(&admin, &server, method, path).await;
        match (listed, answer) {
            (true, None) => panic!("{method} {path} is documented but not served"),
            (false, Some(status)) => {
                panic!("{method} {path} is served ({status}) but not documented")
            }
            (true, Some(status)) => assert!(status < 500, "{method} {path}: {status}"),
            (false, None) => {}
        }
    }
    // The session ended with the log-out: the probes above really were the admin's.
    assert_refused(&admin.get("/api/v1/currentUser").await, "1", "请登录");
}

/// The modules under `/api/v1` register their routes only through utoipa-axum's `routes!`, which
/// takes method and path from the handler's annotation: a plain axum `.route(...)` there would
/// serve a route the document does not know (outside the paths checked above).
#[test]
fn api_modules_register_routes_only_with_their_description() {
    // Outside `/api/v1`: the probes, the files, the page at `/`, the document itself.
    const OUTSIDE: [&str; 6] = [
        "health.rs",
        "files.rs",
        "home.rs",
        "openapi.rs",
        "prometheus.rs",
        "web.rs",
    ];
    let mut files = vec![];
    let mut folders = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/http"
    ))];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("src/http") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 20, "{files:?}");
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if file.parent().is_some_and(|p| p.ends_with("http")) && OUTSIDE.contains(&name) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        for forbidden in [".route(", "axum::routing::"] {
            assert!(
                !text.contains(forbidden),
                "{} uses `{forbidden}`: register /api/v1 routes with routes!(handler) and \
                 #[utoipa::path]",
                file.display()
            );
        }
    }
}
