//! Time as the wire shows it: stored in UTC, rendered as `YYYY-MM-DD HH:mm:ss` at the display offset.
//!
//! The offset is a per-process setting (`IM_TIMEZONE`) fixed once at start-up, before anything is
//! served. It lives in a `OnceLock` rather than in `App` because every record's `Serialize` needs
//! it, and threading it through serde would mean a second "view" type for every record.

use std::sync::OnceLock;

use chrono::{Datelike, FixedOffset, NaiveDateTime, Timelike, Utc};
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
    let local = *utc + display_offset();
    match four_digit_year(&local) {
        Some(text) => text,
        None => local.format("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

/// `YYYY-MM-DD HH:mm:ss` written digit by digit, for the years every stored time has. A list of
/// 30 conversations carries about 270 times; chrono's `format` parses its format string again
/// for each, which was a tenth of the whole request.
fn four_digit_year(local: &NaiveDateTime) -> Option<String> {
    let year = u32::try_from(local.year())
        .ok()
        .filter(|year| *year <= 9999)?;
    let mut text = [0u8; 19];
    let mut put = |at: usize, value: u32, digits: u32| {
        for i in 0..digits {
            text[at + i as usize] = b'0' + (value / 10u32.pow(digits - 1 - i) % 10) as u8;
        }
    };
    put(0, year, 4);
    put(5, local.month(), 2);
    put(8, local.day(), 2);
    put(11, local.hour(), 2);
    put(14, local.minute(), 2);
    put(17, local.second(), 2);
    for (at, separator) in [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')] {
        text[at] = separator;
    }
    String::from_utf8(text.to_vec()).ok()
}

/// Reads `YYYY-MM-DD HH:MM:SS`, with an optional fraction of one to nine digits, as SQLite keeps
/// the times this server writes; `None` for anything else, which the caller parses the slow way.
pub fn parse_stored(text: &str) -> Option<NaiveDateTime> {
    let bytes = text.as_bytes();
    let (whole, fraction) = match bytes.get(19) {
        None => (bytes, &[][..]),
        Some(b'.') => (&bytes[..19], &bytes[20..]),
        Some(_) => return None,
    };
    if whole.len() != 19 || fraction.len() > 9 || (bytes.len() > 19 && fraction.is_empty()) {
        return None;
    }
    let number = |digits: &[u8]| -> Option<u32> {
        digits.iter().try_fold(0u32, |value, digit| {
            digit
                .is_ascii_digit()
                .then(|| value * 10 + u32::from(digit - b'0'))
        })
    };
    for (at, separator) in [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')] {
        if whole[at] != separator {
            return None;
        }
    }
    let nanos = number(fraction)? * 10u32.pow(9 - fraction.len() as u32);
    chrono::NaiveDate::from_ymd_opt(
        i32::try_from(number(&whole[0..4])?).ok()?,
        number(&whole[5..7])?,
        number(&whole[8..10])?,
    )?
    .and_hms_nano_opt(
        number(&whole[11..13])?,
        number(&whole[14..16])?,
        number(&whole[17..19])?,
        nanos,
    )
}

/// serde `serialize_with` for stored times.
/// The schema of a time on the wire, for the OpenAPI document: the records' time fields are
/// `NaiveDateTime`s that [`serialize`] writes as this text, which their own type cannot say.
pub struct WireTime;

impl utoipa::PartialSchema for WireTime {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some(r"^[+-]?\d{4,}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"))
            .description(Some(
                "`YYYY-MM-DD HH:mm:ss` at the server's display offset (IM_TIMEZONE, +08:00 by default)",
            ))
            .examples(["2026-11-22 08:30:06"])
            .into()
    }
}

impl utoipa::ToSchema for WireTime {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Time")
    }
}

pub fn serialize<S: Serializer>(utc: &NaiveDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&display(utc))
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    #[test]
    fn display_writes_what_chrono_would() {
        set_display_offset(parse_offset(DEFAULT_OFFSET).unwrap());
        let dates = [
            (1, 1, 1, 0, 0, 0),
            (999, 12, 31, 23, 59, 59),
            (2024, 2, 29, 15, 59, 59),
            (2026, 11, 22, 7, 5, 9),
            (9999, 12, 31, 15, 59, 59),
            (9999, 12, 31, 16, 0, 0),
        ];
        for (y, mo, d, h, mi, s) in dates {
            let utc = NaiveDate::from_ymd_opt(y, mo, d)
                .unwrap()
                .and_hms_micro_opt(h, mi, s, 123_456)
                .unwrap();
            let expected = (utc + display_offset())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            assert_eq!(display(&utc), expected);
        }
        let utc = NaiveDate::from_ymd_opt(2026, 11, 21)
            .unwrap()
            .and_hms_opt(16, 30, 0)
            .unwrap();
        assert_eq!(display(&utc), "2026-11-22 00:30:00");
    }

    #[test]
    fn parse_stored_reads_what_chrono_reads() {
        let texts = [
            "2026-11-22 07:05:09",
            "2026-11-22 07:05:09.1",
            "2026-11-22 07:05:09.123456",
            "2026-11-22 07:05:09.123456789",
            "0001-01-01 00:00:00",
            "2024-02-29 23:59:59.000001",
        ];
        for text in texts {
            let chrono = NaiveDateTime::parse_from_str(text, "%F %T%.f").unwrap();
            assert_eq!(parse_stored(text), Some(chrono), "{text}");
        }
        let others = [
            "2026-11-22T07:05:09",
            "2026-11-22 07:05:09.",
            "2026-11-22 07:05:09.1234567890",
            "2026-11-22 07:05:09Z",
            "2026-11-22 07:05",
            "2026-02-30 07:05:09",
            "2026-11-22 24:05:09",
            "2026-1a-22 07:05:09",
            "",
        ];
        for text in others {
            assert_eq!(parse_stored(text), None, "{text}");
        }
    }
}
