//! The page at `/`: what this server is and how to attach its clients, for whoever opens it in a
//! browser while no web client is served from here.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::app::App;

pub fn router() -> Router<Arc<App>> {
    Router::new().route("/", get(show_home))
}

/// The page to a browser; to a client that asks only for JSON, the JSON 404 it always had.
async fn show_home(headers: HeaderMap) -> Response {
    if wants_json(&headers) {
        return super::envelope::not_found();
    }
    Html(HOME.replace("{version}", crate::telemetry::VERSION)).into_response()
}

/// Whether the client names JSON and not HTML among what it accepts (`*/*` or nothing: a browser
/// or a person with curl, who get the page).
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("text/html")
}

const HOME: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>im-server {version}</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
code { background: #f2f2f2; padding: 0 .2em; border-radius: 3px; }
h1 small { font-weight: normal; color: #777; font-size: .6em; }
</style>
</head>
<body>
<h1>im-server <small>{version}</small></h1>
<p>An instant-messaging server for the clients of the egg.js IM application: the Vue H5 web
client, the Ant Design Pro admin and WeChat mini-programs. It serves them unchanged on this one
port: REST under <code>/api/v1</code> (the <code>{statusCode, errorMessage, data}</code>
envelope), uploaded and built-in files under <code>/public/</code>, and Socket.IO under
<code>/socket.io/</code> (Engine.IO 3 and 4, WebSocket and long-polling).</p>
<p>No web client is served from here: this page stands in for one. To serve the built H5
client at <code>/</code> (and the built admin at <code>/admin/</code>), set
<code>IM_WEB_DIR</code> (and <code>IM_ADMIN_DIR</code>) to its folder, or put it in
<code>static/web</code> (and <code>static/admin</code>) beside where the server starts.</p>

<h2>Probes</h2>
<ul>
<li><a href="/healthz"><code>/healthz</code></a>: 200 while the process is up.</li>
<li><a href="/readyz"><code>/readyz</code></a>: 200 when the database (and Redis, when configured)
answer, 503 naming what is down.</li>
<li><code>/metrics</code>: counters and timings in Prometheus' text format (here, or on the port
of <code>IM_METRICS_BIND</code> when it is set).</li>
</ul>

<h2>Attaching the clients</h2>
<ul>
<li><b>H5 client</b> (Vue, axios, socket.io-client 2): point its development proxy, or the
reverse proxy in front of its built files, at this server for <code>/api</code>,
<code>/public</code> and <code>/socket.io</code> (WebSocket upgrades included), so that the browser
sees one origin and sends the session cookie with REST calls and the Socket.IO handshake.</li>
<li><b>Admin</b> (Ant Design Pro, umi-request): the same, with its proxy sending <code>/api</code>
and <code>/public</code> here. Log in as a user holding the <code>admin</code> right.</li>
<li><b>Mini-programs</b> (weapp.socket.io): set the server address to this server's HTTPS origin
(WeChat requires HTTPS and WSS on a registered domain, so put a TLS proxy in front). They have no
cookie jar: log-in returns <code>data.token</code>, sent back as header <code>token</code> on REST
and as the <code>token</code> query of the Socket.IO handshake.</li>
</ul>
<p>Several processes go behind the repository's <code>nginx.conf</code>, which keeps each client on
one process. The routes, records and events are described in the repository's
<code>docs/protocol.md</code>, the limits that face the internet in <code>SECURITY.md</code>; the
server's settings are listed by <code>im-server serve --help</code>. A web client served from
another origin than this server's needs that origin in <code>IM_ALLOWED_ORIGINS</code>.</p>
</body>
</html>
"#;
