//! The chat robot: a question from a user and the robot's answer. An optional Baidu
//! UNIT-compatible backend is asked first, within a short timeout; the built-in responder answers
//! whenever it is not configured, slow, down or makes no sense.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::DomainError;
use super::messaging::check_body;
use crate::config::RobotConfig;

/// What the user asked the robot: the `body.msg` of a `type: "robot"` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub text: String,
}

impl Question {
    pub fn from_json(payload: &Value) -> Result<Self, DomainError> {
        let body = payload.get("body").cloned().unwrap_or(Value::Null);
        check_body(&body)?;
        let text = body
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Question { text })
    }

    /// The robot's reply as the original sent it: the user's payload with `fromId` and `toId`
    /// swapped and `body.msg` replaced by the answer.
    pub fn response(&self, mut payload: Value, answer: String) -> Value {
        if let Some(fields) = payload.as_object_mut() {
            let from = fields.remove("fromId");
            let to = fields.remove("toId");
            if let Some(to) = to {
                fields.insert("fromId".into(), to);
            }
            if let Some(from) = from {
                fields.insert("toId".into(), from);
            }
            if let Some(body) = fields.get_mut("body").and_then(Value::as_object_mut) {
                body.insert("msg".into(), Value::String(answer));
            }
        }
        payload
    }
}

/// The robot, built once from the configuration.
pub struct Robot {
    backend: Option<Backend>,
}

/// A Baidu UNIT-compatible chat service.
struct Backend {
    http: reqwest::Client,
    config: RobotConfig,
    timeout: Duration,
    /// The access token and when to fetch a new one.
    token: Mutex<Option<(String, Instant)>>,
}

impl Robot {
    pub fn new(config: &RobotConfig) -> Robot {
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let backend = config.url.as_ref().and_then(|_| {
            let http = reqwest::Client::builder().timeout(timeout).build();
            match http {
                Ok(http) => Some(Backend {
                    http,
                    config: config.clone(),
                    timeout,
                    token: Mutex::new(None),
                }),
                Err(error) => {
                    tracing::warn!(%error, "robot backend unusable; the built-in robot answers");
                    None
                }
            }
        });
        Robot { backend }
    }

    /// The robot's answer to `question` from `user_id`: the backend's if it gives one in time.
    pub async fn answer(&self, user_id: i32, question: &Question) -> String {
        if let Some(backend) = &self.backend {
            match tokio::time::timeout(backend.timeout, backend.ask(user_id, &question.text)).await
            {
                Ok(Ok(Some(say))) => return say,
                Ok(Ok(None)) => tracing::debug!("robot backend gave no answer"),
                // Without the URL: its query holds the access token, or the secret key.
                Ok(Err(error)) => {
                    tracing::warn!(error = %error.without_url(), "robot backend failed")
                }
                Err(_) => tracing::warn!("robot backend timed out"),
            }
        }
        local_answer(&question.text)
    }
}

impl Backend {
    async fn ask(&self, user_id: i32, text: &str) -> Result<Option<String>, reqwest::Error> {
        let Some(url) = &self.config.url else {
            return Ok(None);
        };
        let mut request = self.http.post(url);
        if let Some(token) = self.access_token().await? {
            request = request.query(&[("access_token", token)]);
        }
        let reply: Value = request
            .json(&json!({
                "version": "2.0",
                "service_id": self.config.service_id,
                "bot_id": self.config.service_id,
                "log_id": format!("im-{}", crate::session::new_session_id()),
                "session_id": "",
                "request": { "query": text, "user_id": user_id.to_string() },
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(say(&reply))
    }

    /// A cached access token, fetched with the API and secret keys when they are configured.
    async fn access_token(&self) -> Result<Option<String>, reqwest::Error> {
        let (Some(key), Some(secret)) = (&self.config.api_key, &self.config.secret_key) else {
            return Ok(None);
        };
        let mut cached = self.token.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(Some(token.clone()));
        }
        let reply: Value = self
            .http
            .post(&self.config.token_url)
            .query(&[
                ("grant_type", "client_credentials"),
                ("client_id", key),
                ("client_secret", secret),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let Some(token) = reply.get("access_token").and_then(Value::as_str) else {
            return Ok(None);
        };
        // Renewed a minute before it expires; Baidu's tokens last 30 days.
        let lifetime = reply
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(3600)
            .saturating_sub(60);
        *cached = Some((
            token.to_owned(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(Some(token.to_owned()))
    }
}

/// The first thing the robot says in a UNIT reply: `result.response_list[0]` (service API) or
/// `result.response` (bot API), its first action's `say`.
fn say(reply: &Value) -> Option<String> {
    if reply.get("error_code").and_then(Value::as_i64).unwrap_or(0) != 0 {
        return None;
    }
    let result = reply.get("result")?;
    let response = result
        .get("response_list")
        .and_then(|list| list.get(0))
        .or_else(|| result.get("response"))?;
    let said = response
        .get("action_list")?
        .get(0)?
        .get("say")?
        .as_str()?
        .trim();
    (!said.is_empty()).then(|| said.to_owned())
}

/// The built-in responder: a few canned answers, enough for the H5 client's robot page to talk.
pub fn local_answer(text: &str) -> String {
    let text = text.trim();
    let lower = text.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|word| lower.contains(word));
    if text.is_empty() {
        "你想聊点什么呢？".into()
    } else if has(&["你好", "您好", "hello", "hi", "嗨"]) {
        "你好呀，我是机器人小 I，很高兴和你聊天~".into()
    } else if has(&["名字", "你是谁", "who are you"]) {
        "我是机器人小 I。".into()
    } else if has(&["时间", "几点", "time"]) {
        format!("现在是 {}。", crate::time::display(&crate::time::now()))
    } else if has(&["再见", "拜拜", "bye"]) {
        "再见，期待下次聊天~".into()
    } else if has(&["谢谢", "thank"]) {
        "不客气~".into()
    } else {
        format!("你说的是“{text}”吗？我还在学习中~")
    }
}
