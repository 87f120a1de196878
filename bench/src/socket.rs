//! A Socket.IO client socket over a bare WebSocket, speaking Engine.IO v4 / Socket.IO v5 or
//! Engine.IO v3 / Socket.IO v4, with just what the benchmark needs: the namespace connect, the
//! heartbeat, events with and without acks, and incoming events handed to a callback.
//!
//! Engine.IO packets are one text frame each: `0` open, `2` ping, `3` pong, `4` message. Socket.IO
//! packets ride in messages: `40` connect, `41` disconnect, `42[..]` event, `43<id>[..]` ack,
//! `44` connect error. v4 servers ping and the client answers; v3 clients ping the server.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Eio;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the handshake and each join ack may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Called with the name of every event the server emits to this socket, and the stamp of the
/// message it carries if im-bench sent it.
pub type OnEvent = Arc<dyn Fn(&str, Option<Stamp>) + Send + Sync>;

/// What im-bench puts in the body of each message it sends (`body.bench`): the step and the
/// intended send time, in nanoseconds since the run's epoch.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Stamp {
    pub s: usize,
    pub t: u64,
}

/// An event frame, `["name", payload]`, read for what the generator needs and no more: whole
/// payloads parsed into `Value`s (maps of owned strings) were a tenth of its CPU under fan-out.
#[derive(Deserialize)]
struct Frame<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(default)] Option<Payload>,
);

#[derive(Deserialize)]
#[serde(untagged)]
enum Payload {
    Message {
        body: Body,
    },
    #[allow(dead_code, reason = "any other payload, read only to be skipped")]
    Other(IgnoredAny),
}

#[derive(Deserialize)]
struct Body {
    bench: Option<Stamp>,
}

/// A connected socket; its reader and writer run in their own task.
pub struct Socket {
    out: mpsc::UnboundedSender<String>,
    alive: Arc<AtomicBool>,
    task: JoinHandle<Option<String>>,
}

impl Socket {
    /// Connects with `cookie`, joins the namespace, joins each conversation of `joins` (waiting
    /// for each ack), then hands every later event to `on_event` until `stop` turns true.
    pub async fn connect(
        url: &str,
        eio: Eio,
        cookie: &str,
        joins: &[i64],
        on_event: OnEvent,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Socket> {
        let (ws, ping_interval) = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let mut ws = open(url, cookie).await?;
            let ping_interval = handshake(&mut ws, eio).await?;
            for (n, conversation_id) in joins.iter().enumerate() {
                join(&mut ws, eio, n as u64 + 1, *conversation_id).await?;
            }
            anyhow::Ok((ws, ping_interval))
        })
        .await
        .context("handshake timed out")??;
        let (out, queue) = mpsc::unbounded_channel();
        let alive = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(run(
            ws,
            eio,
            ping_interval,
            queue,
            on_event,
            stop,
            alive.clone(),
        ));
        Ok(Socket { out, alive, task })
    }

    /// Emits `event` with `payload`, without asking for an ack.
    pub fn emit(&self, event: &str, payload: &Value) -> bool {
        let packet = format!(
            "42{}",
            Value::from(vec![Value::from(event), payload.clone()])
        );
        self.out.send(packet).is_ok()
    }

    /// Whether the socket is still connected.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Waits for the socket's task to end (after `stop`); returns why it ended early, if it did.
    pub async fn finish(self) -> Option<String> {
        match self.task.await {
            Ok(reason) => reason,
            Err(error) => Some(format!("socket task failed: {error}")),
        }
    }
}

/// What a socket of the generator reads into at a time.
const READ_BUFFER: usize = 4096;

async fn open(url: &str, cookie: &str) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Cookie", HeaderValue::from_str(cookie)?);
    // TCP_NODELAY, as browsers set it for WebSockets: otherwise Nagle's algorithm holds each
    // send for the previous one's acknowledgement and the latencies measure that.
    // tungstenite's default read buffer is 128 KiB and it zeroes the free part before each
    // read: a fifth of the generator's CPU went to memset under fan-out, taken from the server
    // it shares the cores with. Frames here are a few hundred bytes.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .with_context(|| format!("WebSocket connect to {url}"))?;
    Ok(ws)
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                anyhow::bail!("server closed the WebSocket: {frame:?}")
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.into()),
            None => anyhow::bail!("server closed the WebSocket"),
        }
    }
}

async fn send(ws: &mut Ws, text: &str) -> anyhow::Result<()> {
    ws.send(Message::text(text)).await?;
    Ok(())
}

/// The open packet, then the namespace connect; returns the ping interval.
async fn handshake(ws: &mut Ws, eio: Eio) -> anyhow::Result<Duration> {
    let open = next_text(ws).await?;
    let handshake: Value = open
        .strip_prefix('0')
        .and_then(|json| serde_json::from_str(json).ok())
        .with_context(|| format!("expected an Engine.IO open packet, got {open:?}"))?;
    let ping_interval = Duration::from_millis(handshake["pingInterval"].as_u64().unwrap_or(25_000));
    if eio == Eio::V4 {
        // Socket.IO v5: the client asks to join the namespace; v4 joins "/" on its own.
        send(ws, "40").await?;
    }
    loop {
        let packet = next_text(ws).await?;
        match packet.as_str() {
            "2" => send(ws, "3").await?,
            p if p.starts_with("40") => return Ok(ping_interval),
            p if p.starts_with("44") => anyhow::bail!("connection refused: {}", &p[2..]),
            p if p.starts_with("41") || p == "1" => anyhow::bail!("disconnected at connect"),
            _ => {}
        }
    }
}

/// Joins a conversation's room and waits for the ack; a refusal is an error.
async fn join(ws: &mut Ws, eio: Eio, ack_id: u64, conversation_id: i64) -> anyhow::Result<()> {
    send(
        ws,
        &format!("42{ack_id}[\"/v1/im/join\",{{\"conversationId\":{conversation_id}}}]"),
    )
    .await?;
    let prefix = format!("43{ack_id}[");
    loop {
        let packet = next_text(ws).await?;
        if packet == "2" && eio == Eio::V4 {
            send(ws, "3").await?;
        } else if let Some(rest) = packet.strip_prefix(&prefix[..prefix.len() - 1]) {
            let answer: Value = serde_json::from_str(rest).unwrap_or(Value::Null);
            let refused = answer[0].get("statusCode").is_some_and(|code| code != "0");
            anyhow::ensure!(!refused, "join of {conversation_id} refused: {answer}");
            return Ok(());
        } else if packet.starts_with("41") || packet == "1" {
            anyhow::bail!("disconnected while joining {conversation_id}");
        }
    }
}

/// Reads and writes until `stop`; returns why the socket ended early, if it did.
async fn run(
    mut ws: Ws,
    eio: Eio,
    ping_interval: Duration,
    mut queue: mpsc::UnboundedReceiver<String>,
    on_event: OnEvent,
    mut stop: watch::Receiver<bool>,
    alive: Arc<AtomicBool>,
) -> Option<String> {
    let mut pings = tokio::time::interval(ping_interval);
    pings.tick().await;
    let ended = loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    let _ = ws.close(None).await;
                    break None;
                }
            }
            Some(packet) = queue.recv() => {
                if let Err(error) = send(&mut ws, &packet).await {
                    break Some(format!("send failed: {error}"));
                }
            }
            _ = pings.tick(), if eio == Eio::V3 => {
                if let Err(error) = send(&mut ws, "2").await {
                    break Some(format!("ping failed: {error}"));
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let packet = text.as_str();
                    if packet == "2" {
                        if let Err(error) = send(&mut ws, "3").await {
                            break Some(format!("pong failed: {error}"));
                        }
                    } else if let Some(event) = packet.strip_prefix("42") {
                        dispatch(event, &on_event);
                    } else if packet.starts_with("41") || packet == "1" {
                        break Some("disconnected by the server".to_owned());
                    }
                }
                Some(Ok(Message::Close(_))) | None => break Some("WebSocket closed by the server".to_owned()),
                Some(Ok(_)) => {}
                Some(Err(error)) => break Some(format!("WebSocket error: {error}")),
            }
        }
    };
    alive.store(false, Ordering::Relaxed);
    ended
}

/// `["name", payload]` to the callback; anything else is ignored.
fn dispatch(event: &str, on_event: &OnEvent) {
    if let Ok(Frame(name, payload)) = serde_json::from_str::<Frame>(event) {
        let stamp = match payload {
            Some(Payload::Message { body }) => body.bench,
            _ => None,
        };
        on_event(&name, stamp);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What `dispatch` hands the callback for each frame.
    fn seen(frames: &[&str]) -> Vec<(String, Option<(usize, u64)>)> {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let on_event: OnEvent = {
            let calls = calls.clone();
            Arc::new(move |name: &str, stamp: Option<Stamp>| {
                let stamp = stamp.map(|stamp| (stamp.s, stamp.t));
                calls.lock().unwrap().push((name.to_owned(), stamp));
            })
        };
        for frame in frames {
            dispatch(frame, &on_event);
        }
        calls.lock().unwrap().clone()
    }

    #[test]
    fn dispatch_reads_names_and_stamps() {
        let frames = [
            r#"["/v1/im/new-message",{"id":1,"body":{"type":"text","msg":"bench","bench":{"t":1500,"n":3,"s":2}},"fromId":2}]"#,
            r#"["/v1/im/new-message",{"id":2,"body":{"type":"text","msg":"hi"}}]"#,
            r#"["/v1/im/error","请登录"]"#,
            r#"["/v1/im/online"]"#,
            r#"["/v1/im/new-message",{"id":1,"body":{"bench":{"t":"soon","s":2}}}]"#,
            r#"not json"#,
            r#"[7,{}]"#,
        ];
        assert_eq!(
            seen(&frames),
            [
                ("/v1/im/new-message".to_owned(), Some((2, 1500))),
                ("/v1/im/new-message".to_owned(), None),
                ("/v1/im/error".to_owned(), None),
                ("/v1/im/online".to_owned(), None),
                ("/v1/im/new-message".to_owned(), None),
            ]
        );
    }
}
