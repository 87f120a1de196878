//! The web clients served from folders, so that a built single-page client runs on the server's
//! own origin with nothing in front: `IM_WEB_DIR` at `/` (the H5 client), `IM_ADMIN_DIR` at
//! `/admin/`. A client's files are served as they are; a GET for a path its router owns (no file
//! extension: `/chat`, `/admin/user/login`) gets its `index.html`. The server's own paths (the
//! API, `/public`, Socket.IO, metrics, the probes) and every other method keep the answers they
//! had without a client: their routes, or the JSON 404.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, VARY};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use super::envelope;
use crate::app::App;
use crate::config::Config;

/// Paths of the server, never of a client's router: a miss under them is the JSON 404.
const SERVER_PATHS: [&str; 6] = [
    "/api",
    "/public",
    crate::realtime::SOCKET_IO_PATH,
    "/metrics",
    "/healthz",
    "/readyz",
];
/// Where the admin is served, when it is.
const ADMIN_PATH: &str = "/admin";

/// A file whose name changes with its content is never stale under that name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Anything else may change at the next deployment: a browser keeps it but asks first
/// (`If-Modified-Since`, answered 304 while the file is unchanged).
const REVALIDATE: &str = "no-cache";

/// The `/` route and the answer to every path no other route takes.
pub fn router(config: &Config) -> Router<Arc<App>> {
    let clients = Arc::new(Clients {
        web: config.web_client_dir().map(|dir| Client::new(&dir)),
        admin: config.admin_client_dir().map(|dir| Client::new(&dir)),
    });
    let root = if clients.web.is_some() {
        let clients = clients.clone();
        Router::new().route("/", get(move |request| clients.clone().answer(request)))
    } else {
        super::home::router()
    };
    root.fallback(move |request| clients.clone().answer(request))
}

/// The clients being served.
struct Clients {
    web: Option<Client>,
    admin: Option<Client>,
}

impl Clients {
    async fn answer(self: Arc<Self>, request: Request) -> Response {
        let path = request.uri().path();
        let readable = request.method() == Method::GET || request.method() == Method::HEAD;
        if !readable || SERVER_PATHS.iter().any(|server| under(path, server)) {
            return envelope::not_found();
        }
        if let Some(admin) = &self.admin
            && under(path, ADMIN_PATH)
        {
            if path == ADMIN_PATH {
                // The client's relative URLs resolve against `/admin/`, not `/`.
                let query = request.uri().query().map(|q| format!("?{q}"));
                return Redirect::permanent(&format!("{ADMIN_PATH}/{}", query.unwrap_or_default()))
                    .into_response();
            }
            return match strip_prefix(request.uri(), ADMIN_PATH) {
                Some(uri) => admin.serve(request, uri).await,
                None => envelope::not_found(),
            };
        }
        match &self.web {
            Some(web) => {
                let uri = request.uri().clone();
                web.serve(request, uri).await
            }
            None => envelope::not_found(),
        }
    }
}

/// Whether `path` is `prefix` or below it (`/api/x`, not `/apiary`).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `uri` as seen from below `prefix`: `/admin/user/login?x` → `/user/login?x`.
fn strip_prefix(uri: &Uri, prefix: &str) -> Option<Uri> {
    let rest = uri.path().strip_prefix(prefix)?;
    let rest = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    rest.parse().ok()
}

/// One client's folder.
struct Client {
    /// Its files; a directory is not one (its path is a route of the client's router).
    files: ServeDir,
    /// Its `index.html`, for the routes of its router.
    index: ServeFile,
}

impl Client {
    fn new(dir: &Path) -> Client {
        // A build's `.br` and `.gz` siblings go to browsers that take them.
        Client {
            files: ServeDir::new(dir)
                .append_index_html_on_directories(false)
                .precompressed_br()
                .precompressed_gzip(),
            index: ServeFile::new(dir.join("index.html"))
                .precompressed_br()
                .precompressed_gzip(),
        }
    }

    /// Answers a GET or HEAD for `uri` (the request's, less the client's mount path): the file,
    /// else `index.html` for a route, else a 404 for a missing file (a broken build shows).
    async fn serve(&self, request: Request, uri: Uri) -> Response {
        let (parts, _) = request.into_parts();
        // GET and HEAD have no body to keep; the request is sent twice at most.
        let again = || {
            let mut request = Request::new(Body::empty());
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = parts.headers.clone();
            request
        };
        let name = uri.path().rsplit('/').next().unwrap_or_default();
        let response = match self.files.clone().oneshot(again()).await {
            Ok(response) => response.into_response(),
            Err(never) => match never {},
        };
        let response = if response.status() != StatusCode::NOT_FOUND {
            response
        } else if name.contains('.') {
            envelope::not_found()
        } else {
            match self.index.clone().oneshot(again()).await {
                Ok(response) => response.into_response(),
                Err(never) => match never {},
            }
        };
        with_cache_policy(response, name)
    }
}

/// Sets how long browsers and proxies may keep what was served under the file name `name`.
fn with_cache_policy(mut response: Response, name: &str) -> Response {
    let status = response.status();
    let served = status.is_success() || status == StatusCode::NOT_MODIFIED;
    let policy = if served && is_hashed(name) {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(policy));
    if served {
        // The body depends on Accept-Encoding when a precompressed sibling exists.
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// Whether a file name carries a hash of the file's content, as bundlers name their output:
/// `app.3f9a1c2b.js` (webpack, vue-cli), `p__user.3f9a1c2b.async.js` (umi),
/// `index-B7xk9a2C.css` (vite). The hash is a dot-separated part, or what follows the last `-` of
/// the name's first part: 8 to 64 letters, digits or `_`, with at least one digit and one letter,
/// and not a size like `1920x1080`. Other names (`favicon.ico`, `android-chrome-192x192.png`,
/// `sw.js`, `index.html`) may change in place. A hash that this misses only costs a revalidation;
/// a name wrongly taken for one would keep a stale file for a year, so the rule leans to missing.
fn is_hashed(name: &str) -> bool {
    let mut parts: Vec<&str> = name.split('.').collect();
    if parts.len() < 2 {
        return false;
    }
    parts.pop();
    let dashed = parts[0].rsplit_once('-').map(|(_, tail)| tail);
    parts[1..]
        .iter()
        .copied()
        .chain(dashed)
        .any(looks_like_hash)
}

fn looks_like_hash(part: &str) -> bool {
    let size = part
        .split_once(['x', 'X'])
        .is_some_and(|(w, h)| digits(w) && digits(h));
    (8..=64).contains(&part.len())
        && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && part.bytes().any(|b| b.is_ascii_digit())
        && part.bytes().any(|b| b.is_ascii_alphabetic())
        && !size
}

fn digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundler_names_are_hashed_and_others_are_not() {
        for hashed in [
            "app.3f9a1c2b.js",
            "chunk-vendors.3f9a1c2b.js",
            "chunk-2d0e4c.1a2b3c4d.js",
            "app.3f9a1c2b.css",
            "umi.3f9a1c2b.js",
            "p__user__login.3f9a1c2b.async.js",
            "index-B7xk9a2C.css",
            "vendor-react-Cq9_x1Zk.js",
            "logo.82b9c7a5.png",
            "main.8f2e6c1d9b0a4f3e7c2d.js",
        ] {
            assert!(is_hashed(hashed), "{hashed}");
        }
        for plain in [
            "index.html",
            "favicon.ico",
            "sw.js",
            "service-worker.js",
            "manifest.json",
            "android-chrome-192x192.png",
            "bg-1920x1080.jpg",
            "jquery-3.6.0.min.js",
            "font-awesome-webfont.woff2",
            "deadbeefcafe.js",
            "3f9a1c2b",
            "chat",
            "",
        ] {
            assert!(!is_hashed(plain), "{plain}");
        }
    }

    #[test]
    fn paths_under_a_prefix() {
        assert!(under("/api", "/api"));
        assert!(under("/api/v1/x", "/api"));
        assert!(!under("/apiary", "/api"));
        assert!(!under("/", "/api"));
        let uri: Uri = "/admin/user/login?redirect=%2F".parse().unwrap();
        assert_eq!(
            strip_prefix(&uri, ADMIN_PATH).unwrap().to_string(),
            "/user/login?redirect=%2F"
        );
        let uri: Uri = "/admin/".parse().unwrap();
        assert_eq!(strip_prefix(&uri, ADMIN_PATH).unwrap().to_string(), "/");
    }
}
