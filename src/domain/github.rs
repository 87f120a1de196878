//! Log-in with GitHub: the OAuth2 authorization-code flow with `state` and PKCE (oauth2 crate),
//! the GitHub user read with the access token, and the link from a GitHub account (by its numeric
//! id, never by name) to a local user, created on first log-in with provider `github`.

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse,
    TokenUrl,
};
use serde::Deserialize;

use crate::app::App;
use crate::config::Config;
use crate::store::models::User;
use crate::store::{self, DbConn, StoreError};

use super::accounts::{self, Identity, random_photo};
use super::rbac::role;
use super::{DomainError, names};

pub const NOT_CONFIGURED: &str = "未配置 GitHub 登录";
pub const BAD_STATE: &str = "GitHub 登录校验失败，请重新登录";
pub const DENIED: &str = "GitHub 授权失败";
/// The user turned the request down on GitHub's page (`error=access_denied`).
pub const CANCELLED: &str = "GitHub 授权已取消";
/// How long GitHub may take to answer one request.
const GITHUB_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a started log-in may take to come back from GitHub.
pub const PENDING_TTL: Duration = Duration::from_secs(600);

/// A log-in on its way through GitHub: the `state` sent there and the PKCE verifier whose
/// challenge was sent. The browser keeps it in a short-lived HttpOnly cookie, so any process
/// can finish the log-in and nothing piles up on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub state: String,
    pub verifier: String,
}

impl Pending {
    /// The cookie value: both parts are URL-safe base64, so `.` separates them.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.state, self.verifier)
    }

    pub fn decode(text: &str) -> Option<Pending> {
        let (state, verifier) = text.split_once('.')?;
        let url_safe = |s: &str| {
            !s.is_empty()
                && s.len() <= 256
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        (url_safe(state) && url_safe(verifier)).then(|| Pending {
            state: state.to_owned(),
            verifier: verifier.to_owned(),
        })
    }
}

/// Where to send the browser, and what to remember until it comes back.
#[derive(Debug)]
pub struct Authorization {
    pub url: String,
    pub pending: Pending,
}

/// The OAuth client with its authorize and token endpoints set.
type GithubClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The OAuth client from the configuration, or a clear refusal when GitHub log-in is not set up.
fn oauth_client(config: &Config) -> Result<GithubClient, DomainError> {
    let configured = |value: &Option<String>| value.clone().filter(|s| !s.is_empty());
    let (Some(id), Some(secret)) = (
        configured(&config.github_client_id),
        configured(&config.github_client_secret),
    ) else {
        return Err(DomainError::rejected(NOT_CONFIGURED));
    };
    let bad_url = |what: &'static str| {
        move |error: oauth2::url::ParseError| {
            DomainError::Internal(format!("the GitHub {what} URL is invalid: {error}"))
        }
    };
    let client = BasicClient::new(ClientId::new(id))
        .set_client_secret(ClientSecret::new(secret))
        .set_auth_uri(
            AuthUrl::new(config.github_authorize_url.clone()).map_err(bad_url("authorize"))?,
        )
        .set_token_uri(TokenUrl::new(config.github_token_url.clone()).map_err(bad_url("token"))?);
    Ok(match configured(&config.github_callback_url) {
        Some(callback) => {
            client.set_redirect_uri(RedirectUrl::new(callback).map_err(bad_url("callback"))?)
        }
        None => client,
    })
}

/// Starts a log-in: the authorize URL with a fresh `state` and PKCE challenge (S256).
pub fn authorize(app: &App) -> Result<Authorization, DomainError> {
    let client = oauth_client(&app.config)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("read:user".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    Ok(Authorization {
        url: url.to_string(),
        pending: Pending {
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
        },
    })
}

/// The GitHub user, as `GET {api}/user` describes them.
#[derive(Debug, Clone, Deserialize)]
pub struct GithubUser {
    pub id: i64,
    pub login: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
}

/// An HTTP client for GitHub: no redirects followed (a token must never be sent elsewhere), and
/// a timeout so that a slow GitHub cannot hold a request forever.
fn http_client() -> Result<reqwest::Client, DomainError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(GITHUB_TIMEOUT)
        .user_agent(concat!("im-server/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| DomainError::Internal(format!("HTTP client: {error}")))
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What GitHub sent the browser back with: `code` and `state`, or `error` and `state` when it
/// did not authorize.
#[derive(Debug, Default)]
pub struct Callback<'a> {
    pub code: Option<&'a str>,
    pub state: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// Finishes a log-in coming back from GitHub: checks `state` against the pending log-in,
/// exchanges the code with the PKCE verifier, reads the GitHub user, finds or creates the linked
/// local user, and opens a session if they may log in.
pub async fn complete(
    app: &App,
    callback: Callback<'_>,
    pending: Option<Pending>,
) -> Result<Identity, DomainError> {
    let Callback { code, state, error } = callback;
    let client = oauth_client(&app.config)?;
    let (Some(state), Some(pending)) = (state, pending) else {
        return Err(DomainError::rejected(BAD_STATE));
    };
    if !same_secret(state, &pending.state) {
        return Err(DomainError::rejected(BAD_STATE));
    }
    if let Some(error) = error {
        return Err(DomainError::rejected(if error == "access_denied" {
            CANCELLED
        } else {
            DENIED
        }));
    }
    let Some(code) = code.filter(|code| !code.is_empty()) else {
        return Err(DomainError::rejected(DENIED));
    };
    let http = http_client()?;
    let token = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
        .request_async(&http)
        .await
        .map_err(|error| match error {
            RequestTokenError::Request(cause) => {
                DomainError::Unavailable(format!("GitHub token endpoint: {cause}"))
            }
            other => {
                tracing::warn!(error = %other, "GitHub refused the authorization code");
                DomainError::rejected(DENIED)
            }
        })?;
    let user_url = format!("{}/user", app.config.github_api_url.trim_end_matches('/'));
    let response = http
        .get(&user_url)
        .bearer_auth(token.access_token().secret())
        .header(reqwest::header::ACCEPT, "application/vnd.github+json")
        .send()
        .await
        .map_err(|error| DomainError::Unavailable(format!("GitHub user endpoint: {error}")))?;
    if !response.status().is_success() {
        tracing::warn!(status = %response.status(), "GitHub user endpoint refused the token");
        return Err(DomainError::rejected(DENIED));
    }
    let github_user: GithubUser = response.json().await.map_err(|error| {
        tracing::warn!(%error, "GitHub user endpoint answered an unexpected shape");
        DomainError::rejected(DENIED)
    })?;
    let mut conn = app.db.get().await?;
    let user = find_or_create(&mut conn, &github_user).await?;
    accounts::open_session(app, &mut conn, &user).await
}

/// Why creating a linked user failed: a race lost to a concurrent first log-in (or sign-up of
/// the same name), worth one more try, or anything else.
enum LinkError {
    Raced,
    Failed(DomainError),
}

impl From<StoreError> for LinkError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UniqueViolation(_) => LinkError::Raced,
            other => LinkError::Failed(other.into()),
        }
    }
}

impl From<DomainError> for LinkError {
    fn from(error: DomainError) -> Self {
        LinkError::Failed(error)
    }
}

/// The local user linked to the GitHub account; on its first log-in, a new one. Two first
/// log-ins at once both try to link: the loser of the race reads the winner's link.
async fn find_or_create(conn: &mut DbConn, github: &GithubUser) -> Result<User, DomainError> {
    for _ in 0..2 {
        if let Some(user_id) = store::github::find_linked_user(conn, github.id).await? {
            return store::accounts::find_user(conn, user_id)
                .await?
                .ok_or_else(|| DomainError::Internal("GitHub link to a missing user".into()));
        }
        let github = github.clone();
        match conn
            .transaction(move |tx| Box::pin(async move { create_linked(tx, &github).await }))
            .await
        {
            Ok(user) => return Ok(user),
            Err(LinkError::Raced) => continue,
            Err(LinkError::Failed(error)) => return Err(error),
        }
    }
    Err(DomainError::Internal("GitHub link kept colliding".into()))
}

/// The usernames a new GitHub user may get, in order of preference: the login itself, then
/// with `_github` and a number, so that a local user of the same name is never taken over.
fn username_candidates(login: &str) -> impl Iterator<Item = String> {
    let base: String = login
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    let base = if base.chars().count() < 4 {
        format!("{base}_github")
    } else {
        base
    };
    std::iter::once(base.clone())
        .chain(std::iter::once(format!("{base}_github")))
        .chain((2..).map(move |n| format!("{base}_github{n}")))
}

async fn create_linked(tx: &mut DbConn, github: &GithubUser) -> Result<User, LinkError> {
    let mut username = None;
    for candidate in username_candidates(&github.login).take(50) {
        if accounts::find_user(tx, &candidate).await?.is_none() {
            username = Some(candidate);
            break;
        }
    }
    let username = username.unwrap_or_else(|| format!("github{}", github.id));
    // GitHub's display name is free text: what cannot show is dropped (names::nickname_from).
    let nickname = github
        .name
        .as_deref()
        .and_then(names::nickname_from)
        .or_else(|| names::nickname_from(&github.login))
        .unwrap_or_else(|| names::default_nickname(&username));
    // Only the account's own avatar on GitHub's avatar host: any other address would make
    // every viewer's browser call a host of the GitHub user's choosing.
    let photo = github
        .avatar_url
        .clone()
        .filter(|url| names::is_github_avatar(url, github.id))
        .unwrap_or_else(random_photo);
    let account = accounts::NewAccount {
        provider: "github",
        username: &username,
        password_hash: None,
        nickname: &nickname,
        photo: &photo,
        role_key: role::USER,
        join_first_group: true,
    };
    // A concurrent first log-in may take the name between the check and the insert: retry then.
    let user = accounts::insert_account(tx, &account)
        .await
        .map_err(|error| match error {
            DomainError::Rejected(message) if message == accounts::DUPLICATE_USERNAME => {
                LinkError::Raced
            }
            other => LinkError::Failed(other),
        })?;
    store::github::link(tx, github.id, user.id, &github.login).await?;
    Ok(user)
}
