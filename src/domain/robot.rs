//! The chat robot: a question from a user and the robot's answer. A built-in responder answers
//! without any outside service.

use serde_json::Value;

use super::DomainError;
use super::messaging::check_body;
use crate::app::App;

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

/// The robot's answer to `question` from `user_id`.
pub async fn answer(_app: &App, _user_id: i32, question: &Question) -> String {
    local_answer(&question.text)
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
