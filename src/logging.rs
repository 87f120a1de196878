//! What keeps credentials out of logs at every level: the filter and the redacting line format
//! that the command line (`cli.rs`) installs.
//!
//! Logs are shipped and kept, often where more people can read them than could log in. Two
//! guards: the packet-level output of the Socket.IO and WebSocket libraries (every message body,
//! the handshake's `auth` with its token) stays off unless `RUST_LOG` names those libraries, so
//! `RUST_LOG=debug` or `trace` alone never turns it on; and every line, whoever wrote it, has
//! session ids and `token`/`password`/`secret` values replaced by `[redacted]` before it is
//! written.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Libraries that log whole packets at debug and trace: Socket.IO, Engine.IO, the WebSocket
/// codec and the HTTP codec. They log at `info` at most unless `RUST_LOG` names them.
const PACKET_LEVEL: &[&str] = &[
    "socketioxide",
    "engineioxide",
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "h2",
];

/// What stands in for a credential.
pub const REDACTED: &str = "[redacted]";

/// The filter of `spec` (`RUST_LOG`'s syntax), with the packet-level libraries held at `info`
/// unless the spec names them.
pub fn filter(spec: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(spec).unwrap_or_else(|error| {
        eprintln!("RUST_LOG {spec:?} not understood ({error}); logging at info");
        EnvFilter::new("info")
    });
    for target in PACKET_LEVEL {
        if !spec.contains(target)
            && let Ok(directive) = format!("{target}=info").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// An event format that writes `F`'s line with its credentials redacted.
pub struct Redacting<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for Redacting<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&redact(&line))
    }
}

/// Keys whose values are credentials wherever they appear: JSON (`"token":"…"`, escaped or
/// not), query strings (`token=…`), Rust debug output (`token: "…"`).
const SECRET_KEYS: &[&str] = &["token", "password", "secret"];

/// A session id is 64 hex digits (`session::new_session_id`): any run of 64 or more is taken
/// for one, whatever surrounds it (a cookie, a query, a packet printed as bytes).
const SESSION_ID_DIGITS: usize = 64;

/// `text` with every session id and every value of a [`SECRET_KEYS`] key replaced.
pub fn redact(text: &str) -> String {
    redact_keyed(&redact_hex_runs(text))
}

fn redact_hex_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run_start = None;
    for (at, c) in text.char_indices() {
        match (c.is_ascii_hexdigit(), run_start) {
            (true, None) => run_start = Some(at),
            (true, Some(_)) => {}
            (false, Some(start)) => {
                push_run(&mut out, &text[start..at]);
                run_start = None;
                out.push(c);
            }
            (false, None) => out.push(c),
        }
    }
    if let Some(start) = run_start {
        push_run(&mut out, &text[start..]);
    }
    out
}

fn push_run(out: &mut String, run: &str) {
    out.push_str(if run.len() >= SESSION_ID_DIGITS {
        REDACTED
    } else {
        run
    });
}

fn redact_keyed(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for key in SECRET_KEYS {
            if let Some(after_key) = rest.strip_prefix(key)
                && let Some(value_start) = value_start(after_key)
            {
                let before_value = after_key.len() - value_start.len();
                out.push_str(&rest[..key.len() + before_value]);
                let value_len = value_start
                    .find(|c: char| {
                        matches!(
                            c,
                            '"' | '\\' | '&' | ' ' | ',' | '}' | ')' | ']' | ';' | '\n'
                        )
                    })
                    .unwrap_or(value_start.len());
                if value_len > 0 {
                    out.push_str(REDACTED);
                }
                rest = &value_start[value_len..];
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// Where the value after a key begins: past closing quotes, one `:` or `=`, spaces and opening
/// quotes. `None` when no separator follows (the word in prose, `tokens`, `access_token_url`).
fn value_start(after_key: &str) -> Option<&str> {
    let rest = after_key.trim_start_matches(['"', '\\']);
    let rest = rest.strip_prefix([':', '='])?;
    Some(rest.trim_start_matches([' ', '"', '\\']))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn session_ids_are_redacted_anywhere() {
        let line =
            format!("uri=/socket.io/?EIO=4&transport=polling&sid=abc&x={ID}&y=1 IM_SESS={ID};");
        let redacted = redact(&line);
        assert!(!redacted.contains(ID), "{redacted}");
        assert!(redacted.contains("sid=abc"), "{redacted}");
        // Shorter hex (message ids, 32-digit room digests) stays.
        assert_eq!(
            redact("session:0123456789abcdef0123456789abcdef"),
            "session:0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn keyed_values_are_redacted_in_every_spelling() {
        for line in [
            r#"auth: Some(Str(b"{\"token\":\"not-a-session-id\"}"))"#,
            r#"{"fields":{"message":"auth: {\"token\": \"not-a-session-id\"}"}}"#,
            "GET /socket.io/?token=not-a-session-id&EIO=3",
            r#"Config { password: "not-a-session-id" }"#,
            "client_secret=not-a-session-id",
        ] {
            let redacted = redact(line);
            assert!(
                !redacted.contains("not-a-session-id"),
                "{line} → {redacted}"
            );
            assert!(redacted.contains(REDACTED), "{redacted}");
        }
        for prose in [
            "the tokens were counted",
            "access_token_url",
            "password hash upgraded",
        ] {
            assert_eq!(redact(prose), prose);
        }
    }

    #[test]
    fn packet_libraries_stay_quiet_unless_named() {
        let quiet = filter("trace").to_string();
        assert!(quiet.contains("socketioxide=info"), "{quiet}");
        let asked = filter("trace,socketioxide=trace").to_string();
        assert!(!asked.contains("socketioxide=info"), "{asked}");
        assert!(asked.contains("engineioxide=info"), "{asked}");
    }
}
