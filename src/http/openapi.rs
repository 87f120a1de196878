//! The OpenAPI 3.1 document of the REST API, and `GET /api/openapi.json` that serves it.
//!
//! The document is not written by hand: every route under `/api/v1` is registered with
//! utoipa-axum's `routes!`, which takes the route's method and path from the handler's
//! `#[utoipa::path]` annotation, so a route is served exactly where it is described, and the
//! records' schemas are derived from the types that serialise them. What this module adds is what
//! no single handler says: the envelope (docs/protocol.md §2) around each route's `data`, the
//! answers every route may give (403, 429, 500, 503), the session's security schemes, and the
//! document's own title. The JSON is built once, when the router is, and served as bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, Ref, RefOr, SecurityRequirement,
};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

use crate::app::App;

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/openapi.json";

/// The answer of a route: the success envelope around `T`, or a refusal (HTTP 200 both).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Answer<T> {
    Done(#[schema(inline)] Done<T>),
    Refused(Refusal),
}

/// `{"statusCode": "0", "errorMessage": null, "data": ...}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Done<T> {
    #[schema(inline)]
    status_code: DoneCode,
    #[schema(inline)]
    error_message: Null,
    data: T,
}

/// A refusal: `statusCode` "1" (refused, failed, not logged in) or "2" (someone else's to act
/// on), the reason in `errorMessage`, and `data` null.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"statusCode": "1", "errorMessage": "请登录", "data": null})))]
pub struct Refusal {
    #[schema(inline)]
    status_code: RefusalCode,
    /// A sentence in Chinese that clients show as it is.
    error_message: String,
    #[schema(inline)]
    data: Null,
}

/// The framework's answer to an unknown path, kept from the original server.
#[derive(Serialize, ToSchema)]
pub struct NotFound {
    #[schema(inline)]
    message: NotFoundText,
}

/// `"0"`.
#[derive(Serialize)]
pub struct DoneCode;

/// `"1"` or `"2"`.
#[derive(Serialize)]
pub struct RefusalCode;

/// `"Not Found"`.
#[derive(Serialize)]
pub struct NotFoundText;

/// JSON `null`: `data` of routes that answer nothing, `errorMessage` of a success.
#[derive(Serialize)]
pub struct Null;

fn string_of(values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .into()
}

impl PartialSchema for DoneCode {
    fn schema() -> RefOr<Schema> {
        string_of(&["0"])
    }
}
impl ToSchema for DoneCode {}

impl PartialSchema for RefusalCode {
    fn schema() -> RefOr<Schema> {
        string_of(&["1", "2"])
    }
}
impl ToSchema for RefusalCode {}

impl PartialSchema for NotFoundText {
    fn schema() -> RefOr<Schema> {
        string_of(&["Not Found"])
    }
}
impl ToSchema for NotFoundText {}

impl PartialSchema for Null {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Null).into()
    }
}
impl ToSchema for Null {}

/// The multipart form of `POST /upload`: any number of file parts (the H5 client names each
/// after its file); text parts are read and ignored.
pub struct UploadForm;

impl PartialSchema for UploadForm {
    fn schema() -> RefOr<Schema> {
        let file = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/octet-stream")
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("file", file())
            .additional_properties(Some(file()))
            .into()
    }
}
impl ToSchema for UploadForm {}

// ---- answers every route of a kind may give, besides its own 200 ----

fn refusal(description: &str) -> RefOr<ApiResponse> {
    refusal_builder(description).into()
}

fn refusal_builder(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(Refusal::name())))
            .build(),
    )
}

const ORIGIN_403: &str = "`请求来源不被允许`: the request carries an `Origin` header of another site (docs/protocol.md §1.6)";
const ADMIN_403: &str = "`无此权限`: the session's user lacks the `admin` right";
const ADMIN_WRITE_403: &str = "`无此权限` (the session's user lacks the `admin` right), or \
                               `请求来源不被允许` (an `Origin` header of another site)";

/// 500 and 503, which any route that reads the database or the session store may answer.
fn faults() -> BTreeMap<String, RefOr<ApiResponse>> {
    BTreeMap::from([
        (
            "500".to_owned(),
            refusal("`服务器内部错误`: a fault of the server, logged with its cause"),
        ),
        (
            "503".to_owned(),
            refusal(
                "`服务暂时不可用，请稍后再试`: the database or Redis cannot be reached, or the \
                 database cannot write",
            ),
        ),
    ])
}

fn with(
    mut responses: BTreeMap<String, RefOr<ApiResponse>>,
    status: &str,
    response: RefOr<ApiResponse>,
) -> BTreeMap<String, RefOr<ApiResponse>> {
    responses.insert(status.to_owned(), response);
    responses
}

/// 429 with `Retry-After`: docs/protocol.md §1.8.
fn too_many() -> RefOr<ApiResponse> {
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1));
    refusal_builder(
        "`操作过于频繁，请稍后再试`: too many attempts lately; `Retry-After` says how many seconds \
         to wait",
    )
    .header(
        "Retry-After",
        HeaderBuilder::new()
            .schema(seconds)
            .description(Some("whole seconds, at least 1"))
            .build(),
    )
    .into()
}

/// A route that reads: the faults only.
pub struct Reads;
impl IntoResponses for Reads {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        faults()
    }
}

/// A route that changes something: also refused for a foreign `Origin`.
pub struct Writes;
impl IntoResponses for Writes {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        with(faults(), "403", refusal(ORIGIN_403))
    }
}

/// A rate-limited route that changes something (log-in, sign-up, upload).
pub struct LimitedWrites;
impl IntoResponses for LimitedWrites {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        with(Writes::responses(), "429", too_many())
    }
}

/// An admin route that reads.
pub struct AdminReads;
impl IntoResponses for AdminReads {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        with(faults(), "403", refusal(ADMIN_403))
    }
}

/// An admin route that changes something.
pub struct AdminWrites;
impl IntoResponses for AdminWrites {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        with(faults(), "403", refusal(ADMIN_WRITE_403))
    }
}

/// A route with an id in its path: an empty id is no route (the 404 of an unknown path).
pub struct ReadsById;
impl IntoResponses for ReadsById {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        with(faults(), "404", not_found())
    }
}

/// [`ReadsById`] for a route that changes something.
pub struct WritesById;
impl IntoResponses for WritesById {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        with(Writes::responses(), "404", not_found())
    }
}

fn not_found() -> RefOr<ApiResponse> {
    ResponseBuilder::new()
        .description(
            "no such route: a path id left empty, for a logged-in user (without a session the \
             answer is `请登录`)",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(NotFound::name())))
                .build(),
        )
        .into()
}

// ---- the document ----

/// The security schemes' names, as the annotations' `security(...)` name them.
pub const COOKIE: &str = "IM_SESS";
const TOKEN: &str = "token";
const BEARER: &str = "bearer";

/// Completes the document the router collected: title, security schemes, the schemas the
/// shared answers refer to. `cookie_name` is the configured session cookie (`IM_COOKIE_NAME`).
pub fn finish(mut document: OpenApi, cookie_name: &str) -> OpenApi {
    document.info = InfoBuilder::new()
        .title("im-server REST API")
        .version(env!("CARGO_PKG_VERSION"))
        .license(Some(LicenseBuilder::new().name("MIT").build()))
        .description(Some(
            "The REST routes of im-server under /api/v1, generated from the server's code. \
             Every answer is the envelope {statusCode, errorMessage, data}: statusCode is a \
             string, \"0\" for success (data holds the answer), \"1\" for a refusal and \"2\" \
             for acting on something that is someone else's (errorMessage holds the reason, data \
             is null). Refusals are HTTP 200 except where a route lists another status. Routes \
             that need a session accept the session cookie, or the session id as a `token` \
             header or an `Authorization: Bearer` header; without one they answer 200 with \
             `请登录`. Socket.IO events and the prose behind every rule are in docs/protocol.md.",
        ))
        .build();
    let components = document.components.get_or_insert_with(Default::default);
    for (name, schema) in [
        (Refusal::name(), Refusal::schema()),
        (NotFound::name(), NotFound::schema()),
    ] {
        components.schemas.insert(name.into_owned(), schema);
    }
    components.security_schemes.insert(
        COOKIE.to_owned(),
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            cookie_name,
            "the session cookie set by log-in and sign-up (64 hex digits)",
        ))),
    );
    components.security_schemes.insert(
        TOKEN.to_owned(),
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "token",
            "the session id answered as data.token by log-in and sign-up",
        ))),
    );
    components.security_schemes.insert(
        BEARER.to_owned(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("the session id answered as data.token"))
                .build(),
        ),
    );
    drop_unreferenced_schemas(&mut document);
    // Every route needs a session but those whose annotation says `security(())`.
    document.security = Some(
        [COOKIE, TOKEN, BEARER]
            .into_iter()
            .map(|scheme| SecurityRequirement::new(scheme, Vec::<String>::new()))
            .collect(),
    );
    document
}

/// Removes the schemas nothing refers to. utoipa registers, besides the schemas it refers to,
/// one under the bare name of each generic argument (`Vec`, `Option`, `Listing`), which is
/// ambiguous and used nowhere: only what the paths reach, directly or through other schemas,
/// stays.
fn drop_unreferenced_schemas(document: &mut OpenApi) {
    fn refs(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", serde_json::Value::String(target)) => {
                            if let Some(name) = target.strip_prefix("#/components/schemas/") {
                                found.push(name.to_owned());
                            }
                        }
                        _ => refs(value, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }
    let Some(components) = document.components.as_mut() else {
        return;
    };
    let mut pending = Vec::new();
    refs(
        &serde_json::to_value(&document.paths).unwrap_or_default(),
        &mut pending,
    );
    let mut reached = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if reached.insert(name.clone())
            && let Some(schema) = components.schemas.get(&name)
        {
            refs(
                &serde_json::to_value(schema).unwrap_or_default(),
                &mut pending,
            );
        }
    }
    components.schemas.retain(|name, _| reached.contains(name));
}

/// `GET /api/openapi.json`: the document, serialised once here.
pub fn router(document: &OpenApi) -> anyhow::Result<Router<Arc<App>>> {
    let body = Bytes::from(serde_json::to_vec(document)?);
    Ok(Router::new().route(
        DOCUMENT_PATH,
        get(move || {
            let body = body.clone();
            async move { serve(body) }
        }),
    ))
}

fn serve(body: Bytes) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}
