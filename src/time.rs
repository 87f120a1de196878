//! Time as the wire shows it: stored in UTC, rendered as `YYYY-MM-DD HH:mm:ss` at the display offset.
//!
//! The offset is a per-process setting (`IM_TIMEZONE`) fixed once at start-up, before anything is
//! served. It lives in a `OnceLock` rather than in `App` because every record's `Serialize` needs
//! it, and threading it through serde would mean a second "view" type for every record.

use std::sync::OnceLock;

use chrono::{FixedOffset, NaiveDateTime, Timelike, Utc};
use serde::Serializer;

static DISPLAY_OFFSET: OnceLock<FixedOffset> = OnceLock::new();

/// The display offset of the original server.
pub const DEFAULT_OFFSET: &str = "+08:00";

/// Parses `+08:00`, `-05:30`, `Z` or `UTC`.
pub fn parse_offset(text: &str) -> Result<FixedOffset, String> {
    match text.trim() {
        "Z" | "z" | "UTC" | "utc" => Ok(FixedOffset::east_opt(0).expect("zero offset is valid")),
        other => other
            .parse::<FixedOffset>()
            .map_err(|_| format!("not a UTC offset like +08:00: {other:?}")),
    }
}

/// Fixes the display offset. Later calls with another offset are ignored and reported, so that
/// two servers in one test process cannot silently disagree.
pub fn set_display_offset(offset: FixedOffset) {
    if DISPLAY_OFFSET.get_or_init(|| offset) != &offset {
        tracing::warn!(%offset, "display offset already fixed for this process; keeping the first");
    }
}

fn display_offset() -> FixedOffset {
    *DISPLAY_OFFSET.get_or_init(|| parse_offset(DEFAULT_OFFSET).expect("default offset parses"))
}

/// Now, in UTC, cut to the microsecond that both backends keep, so a value reads back as written.
pub fn now() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    now.with_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Renders a stored UTC time for the wire.
pub fn display(utc: &NaiveDateTime) -> String {
    (*utc + display_offset())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// serde `serialize_with` for stored times.
pub fn serialize<S: Serializer>(utc: &NaiveDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&display(utc))
}
