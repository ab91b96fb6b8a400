//! Masking strategies: what a masked value becomes.
//!
//! Every strategy is a pure function of (salt, original value): the value's text goes through
//! HMAC-SHA256 keyed with the salt, and the digest decides everything else (the hex of `hash`
//! and `email`, the seed of the ChaCha8 generator that picks `fake`'s names, the `int` value,
//! the `date_shift` offset). So the same value masks the same way in every table and every run,
//! and nothing about the original can be recomputed from the output without the salt.
//!
//! Values arrive and leave in their fixture JSON form (see `format::value`): a JSON string for
//! text, dates and timestamps, a number for integers. `null` never reaches a strategy.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use fake::faker::address::en::{BuildingNumber, CityName, StreetName};
use fake::faker::lorem::en::Word;
use fake::faker::name::en::{FirstName, LastName};
use fake::faker::phone_number::en::PhoneNumber;
use fake::Fake;
use hmac::{Hmac, Mac};
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use sha2::Sha256;

use crate::format::copy_text::push_json_string;

/// The keyed hash every strategy starts from.
pub type Key = Hmac<Sha256>;

/// The fixed marker `redact` writes.
pub const REDACTED: &str = "REDACTED";

/// The reserved domain (RFC 2606) of masked email addresses.
pub const EMAIL_DOMAIN: &str = "@example.com";

/// Hex digits of the keyed hash that keep masked values unique: 64 bits. The chance that any
/// two of n distinct values collide is about n²/2⁶⁵: 3·10⁻¹⁰ for 100,000 values, 3·10⁻⁸ for a
/// million.
pub const UNIQUE_HEX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Null,
    Redact,
    Hash,
    Email,
    FirstName,
    LastName,
    FullName,
    Phone,
    Address,
    Text,
    Int { min: i64, max: i64 },
    DateShift { days: i64 },
    Keep,
}

/// The names accepted, for error messages and `--help`.
pub const NAMES: &str = "null, redact, hash, email, first_name, last_name, full_name, phone, \
                         address, text, int:MIN..MAX, date_shift:DAYS, keep";

impl FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Ok(match s {
            "null" => Strategy::Null,
            "redact" => Strategy::Redact,
            "hash" => Strategy::Hash,
            "email" => Strategy::Email,
            "first_name" => Strategy::FirstName,
            "last_name" => Strategy::LastName,
            "full_name" => Strategy::FullName,
            "phone" => Strategy::Phone,
            "address" => Strategy::Address,
            "text" => Strategy::Text,
            "keep" => Strategy::Keep,
            _ => {
                if let Some(range) = s.strip_prefix("int:") {
                    let bad =
                        || format!("bad range in {s:?}: expected int:MIN..MAX, e.g. int:18..90");
                    let (a, b) = range.split_once("..").ok_or_else(bad)?;
                    let min: i64 = a.trim().parse().map_err(|_| bad())?;
                    let max: i64 = b.trim().parse().map_err(|_| bad())?;
                    if min > max {
                        return Err(format!("empty range in {s:?}: MIN is above MAX"));
                    }
                    Strategy::Int { min, max }
                } else if let Some(days) = s.strip_prefix("date_shift:") {
                    let days: i64 = days.trim().parse().ok().filter(|d| (1..=3_650_000).contains(d))
                        .ok_or_else(|| {
                            format!("bad day count in {s:?}: expected date_shift:DAYS with DAYS from 1 to 3650000")
                        })?;
                    Strategy::DateShift { days }
                } else {
                    return Err(format!("unknown strategy {s:?} (expected one of {NAMES})"));
                }
            }
        })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Null => f.write_str("null"),
            Strategy::Redact => f.write_str("redact"),
            Strategy::Hash => f.write_str("hash"),
            Strategy::Email => f.write_str("email"),
            Strategy::FirstName => f.write_str("first_name"),
            Strategy::LastName => f.write_str("last_name"),
            Strategy::FullName => f.write_str("full_name"),
            Strategy::Phone => f.write_str("phone"),
            Strategy::Address => f.write_str("address"),
            Strategy::Text => f.write_str("text"),
            Strategy::Int { min, max } => write!(f, "int:{min}..{max}"),
            Strategy::DateShift { days } => write!(f, "date_shift:{days}"),
            Strategy::Keep => f.write_str("keep"),
        }
    }
}

impl Strategy {
    /// Writes text (a JSON string in the output).
    pub fn writes_text(self) -> bool {
        matches!(
            self,
            Strategy::Redact
                | Strategy::Hash
                | Strategy::Email
                | Strategy::FirstName
                | Strategy::LastName
                | Strategy::FullName
                | Strategy::Phone
                | Strategy::Address
                | Strategy::Text
        )
    }

    /// Distinct originals give distinct outputs (up to a 64-bit keyed-hash collision), given at
    /// least `min_len(true)` characters.
    pub fn keeps_unique(self) -> bool {
        matches!(
            self,
            Strategy::Hash | Strategy::Email | Strategy::Null | Strategy::Keep
        )
    }

    /// The shortest column (in characters) the strategy can write a valid value into.
    pub fn min_len(self, unique: bool) -> usize {
        match (self, unique) {
            (Strategy::Hash, true) => UNIQUE_HEX,
            (Strategy::Email, true) => UNIQUE_HEX + EMAIL_DOMAIN.len(),
            (Strategy::Email, false) => 4 + EMAIL_DOMAIN.len(),
            _ => 1,
        }
    }
}

/// The keyed hash of a value's text.
fn digest(key: &Key, text: &[u8]) -> [u8; 32] {
    let mut mac = key.clone();
    mac.update(text);
    mac.finalize().into_bytes().into()
}

/// A value's text: a JSON string's content, or the JSON text itself (numbers).
fn value_text(json: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match json {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => Ok(Cow::Borrowed(inner)),
        [b'"', ..] => serde_json::from_slice::<String>(json)
            .map(|s| Cow::Owned(s.into_bytes()))
            .map_err(|e| format!("unreadable string value: {e}")),
        other => Ok(Cow::Borrowed(other)),
    }
}

fn hex(bytes: &[u8], n: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]])
        .take(n)
        .map(char::from)
        .collect()
}

/// The first `limit` characters of `s`.
fn fit(s: &str, limit: Option<usize>) -> &str {
    match limit.and_then(|n| s.char_indices().nth(n)) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Lower-case ASCII letters and digits only: a name as an email's local part.
fn local_part(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What a masked value must fit into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fit {
    /// The column's length limit in characters (`varchar(n)`), when it has one.
    pub chars: Option<usize>,
    /// Decimal places of a `numeric(p,s)` column: `int` writes them (`12.00`) so the value reads
    /// back exactly as written.
    pub scale: u32,
}

/// Appends the masked JSON for `value` (a non-null fixture JSON value) to `out`. The caller has
/// checked that the strategy suits the column (see `mask::check_column`).
pub fn apply(
    strategy: Strategy,
    key: &Key,
    value: &[u8],
    fit_to: Fit,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let limit = fit_to.chars;
    let text = value_text(value)?;
    let d = digest(key, &text);
    let rng = || ChaCha8Rng::from_seed(d);
    let s: String = match strategy {
        Strategy::Keep => {
            out.extend_from_slice(value);
            return Ok(());
        }
        Strategy::Null => {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        Strategy::Int { min, max } => {
            let width = (max as i128 - min as i128 + 1) as u128;
            let n = u128::from_le_bytes(d[..16].try_into().expect("16 bytes")) % width;
            let _ = std::io::Write::write_fmt(out, format_args!("{}", min as i128 + n as i128));
            if fit_to.scale > 0 {
                out.push(b'.');
                out.resize(out.len() + fit_to.scale as usize, b'0');
            }
            return Ok(());
        }
        Strategy::DateShift { days } => {
            let r = (u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) % (2 * days as u64))
                as i64;
            // Never 0: a shifted date always differs from the original.
            let offset = if r < days { r - days } else { r - days + 1 };
            return shift_json(value, &text, offset, out);
        }
        Strategy::Redact => REDACTED.to_string(),
        Strategy::Hash => hex(&d, 64),
        Strategy::Email => {
            let mut r = rng();
            let first: &str = FirstName().fake_with_rng(&mut r);
            let last: &str = LastName().fake_with_rng(&mut r);
            let long = format!(
                "{}.{}.{}{EMAIL_DOMAIN}",
                local_part(first),
                local_part(last),
                hex(&d, UNIQUE_HEX)
            );
            match limit {
                Some(n) if long.len() > n => {
                    let digits = n.saturating_sub(EMAIL_DOMAIN.len()).min(UNIQUE_HEX);
                    format!("{}{EMAIL_DOMAIN}", hex(&d, digits))
                }
                _ => long,
            }
        }
        Strategy::FirstName => FirstName().fake_with_rng::<&str, _>(&mut rng()).to_string(),
        Strategy::LastName => LastName().fake_with_rng::<&str, _>(&mut rng()).to_string(),
        Strategy::FullName => {
            // fake's Name() formats a template; two picks are the same names, cheaper.
            let mut r = rng();
            let first: &str = FirstName().fake_with_rng(&mut r);
            let last: &str = LastName().fake_with_rng(&mut r);
            format!("{first} {last}")
        }
        Strategy::Phone => PhoneNumber().fake_with_rng(&mut rng()),
        Strategy::Address => {
            let mut r = rng();
            let number: String = BuildingNumber().fake_with_rng(&mut r);
            let street: String = StreetName().fake_with_rng(&mut r);
            let city: String = CityName().fake_with_rng(&mut r);
            format!("{number} {street}, {city}")
        }
        Strategy::Text => {
            let len = String::from_utf8_lossy(&text).chars().count();
            let mut r = rng();
            let mut s = String::with_capacity(len + 16);
            while s.len() < len {
                if !s.is_empty() {
                    s.push(' ');
                }
                s.push_str(Word().fake_with_rng::<&str, _>(&mut r));
            }
            s.truncate(len); // lorem words are ASCII
            s.truncate(s.trim_end().len());
            s
        }
    };
    push_json_string(out, fit(&s, limit).as_bytes());
    Ok(())
}

/// `date_shift` on one value: a date or timestamp string (`YYYY-MM-DD...`, the rest kept as it
/// is, ` BC` understood), or an integer (SQLite Unix time, shifted by whole days of seconds).
fn shift_json(value: &[u8], text: &[u8], offset: i64, out: &mut Vec<u8>) -> Result<(), String> {
    let not_a_date = || {
        "the value is not a date or timestamp (YYYY-MM-DD..., or Unix seconds); \
         date_shift cannot shift it"
            .to_string()
    };
    if value.first() != Some(&b'"') {
        let secs: i64 = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(not_a_date)?;
        let shifted = secs.checked_add(offset * 86_400).ok_or_else(not_a_date)?;
        out.extend_from_slice(shifted.to_string().as_bytes());
        return Ok(());
    }
    let t = std::str::from_utf8(text).map_err(|_| not_a_date())?;
    if t == "infinity" || t == "-infinity" {
        out.extend_from_slice(value);
        return Ok(());
    }
    let start = out.len();
    out.push(b'"');
    if shift_date_text(t, offset, out).is_none() {
        out.truncate(start);
        return Err(not_a_date());
    }
    if out[start + 1..]
        .iter()
        .any(|&b| b == b'"' || b == b'\\' || b < 0x20)
    {
        // Text after the date that JSON must escape (SQLite stores any text): the slow path.
        let shifted = out.split_off(start + 1);
        out.truncate(start);
        push_json_string(out, &shifted);
    } else {
        out.push(b'"');
    }
    Ok(())
}

/// Appends `t` with the date at its start shifted by `offset` days, everything after it kept.
/// (Hot: one call per masked value, so it writes into `out` instead of allocating.)
fn shift_date_text(t: &str, offset: i64, out: &mut Vec<u8>) -> Option<()> {
    use chrono::{Datelike, NaiveDate, TimeDelta};
    use std::io::Write;
    let year_len = t.find('-')?;
    if year_len < 4 || !t[..year_len].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = t.get(year_len..)?;
    let b = rest.as_bytes();
    if b.len() < 6 || b[0] != b'-' || b[3] != b'-' {
        return None;
    }
    let two = |i: usize| -> Option<u32> {
        let (a, b) = (b[i], b[i + 1]);
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| u32::from((a - b'0') * 10 + (b - b'0')))
    };
    let (month, day) = (two(1)?, two(4)?);
    let tail = &rest[6..];
    let (tail, bc) = match tail.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (tail, false),
    };
    let year: i32 = t[..year_len].parse().ok()?;
    // Astronomical years: 1 BC is year 0.
    let astro = if bc { 1 - year } else { year };
    let date = NaiveDate::from_ymd_opt(astro, month, day)?
        .checked_add_signed(TimeDelta::try_days(offset)?)?;
    let (y, suffix) = if date.year() <= 0 {
        (1 - date.year(), " BC")
    } else {
        (date.year(), "")
    };
    write!(out, "{y:04}-{:02}-{:02}", date.month(), date.day()).ok()?;
    out.extend_from_slice(tail.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(salt: &str) -> Key {
        Key::new_from_slice(salt.as_bytes()).unwrap()
    }

    fn m(strategy: &str, value: &str, limit: Option<usize>) -> String {
        let mut out = Vec::new();
        let fit_to = Fit {
            chars: limit,
            scale: 0,
        };
        apply(
            strategy.parse().unwrap(),
            &key("s"),
            value.as_bytes(),
            fit_to,
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_and_prints_every_strategy() {
        for s in [
            "null",
            "redact",
            "hash",
            "email",
            "first_name",
            "last_name",
            "full_name",
            "phone",
            "address",
            "text",
            "int:-5..5",
            "date_shift:30",
            "keep",
        ] {
            assert_eq!(s.parse::<Strategy>().unwrap().to_string(), s);
        }
        assert!("int:5..1".parse::<Strategy>().unwrap_err().contains("MIN"));
        assert!("int:a..1".parse::<Strategy>().is_err());
        assert!("date_shift:0".parse::<Strategy>().is_err());
        let e = "emial".parse::<Strategy>().unwrap_err();
        assert!(e.contains("emial") && e.contains("first_name"), "{e}");
    }

    #[test]
    fn deterministic_and_keyed() {
        let a = m("full_name", "\"Ana Lima\"", None);
        assert_eq!(a, m("full_name", "\"Ana Lima\"", None));
        let mut other = Vec::new();
        apply(
            Strategy::Hash,
            &key("t"),
            b"\"Ana Lima\"",
            Fit::default(),
            &mut other,
        )
        .unwrap();
        assert_ne!(m("hash", "\"Ana Lima\"", None).as_bytes(), other.as_slice());
        // An escaped string hashes as its text.
        assert_eq!(m("hash", "\"a\\u0062\"", None), m("hash", "\"ab\"", None));
    }

    #[test]
    fn values_fit_and_look_right() {
        let e = m("email", "\"ana@corp.com\"", None);
        assert!(
            e.ends_with("@example.com\"") && e.matches('@').count() == 1,
            "{e}"
        );
        let short = m("email", "\"ana@corp.com\"", Some(20));
        assert_eq!(short.len(), 22, "{short}");
        let h = m("hash", "\"x\"", None);
        assert_eq!(h.len(), 66);
        assert_eq!(m("hash", "\"x\"", Some(10)).len(), 12);
        assert_eq!(m("redact", "\"secret\"", Some(3)), "\"RED\"");
        let t = m("text", "\"twenty-one characters\"", None);
        assert!((20..=21).contains(&(t.len() - 2)), "{t}");
        let n: i64 = m("int:10..12", "12345", None).parse().unwrap();
        assert!((10..=12).contains(&n));
        assert_eq!(m("int:7..7", "\"x\"", None), "7");
        let mut out = Vec::new();
        let two = Fit {
            chars: None,
            scale: 2,
        };
        apply(
            Strategy::Int { min: -3, max: -3 },
            &key("s"),
            b"1",
            two,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"-3.00");
        assert_eq!(m("null", "\"x\"", None), "null");
        assert_eq!(m("keep", "\"x\"", None), "\"x\"");
    }

    #[test]
    fn date_shift_moves_the_date_within_range_and_keeps_the_rest() {
        use chrono::NaiveDate;
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        for v in ["2024-02-29", "1999-12-31", "2000-01-01"] {
            let out = m("date_shift:10", &format!("\"{v}\""), None);
            let shifted = d(out.trim_matches('"'));
            let delta = (shifted - d(v)).num_days();
            assert!(delta != 0 && delta.abs() <= 10, "{v} -> {out}");
        }
        let ts = m("date_shift:3", "\"2024-01-02T03:04:05.123+00:00\"", None);
        assert!(ts.ends_with("T03:04:05.123+00:00\""), "{ts}");
        let shift = |t: &str, days: i64| {
            let mut out = Vec::new();
            shift_date_text(t, days, &mut out).map(|()| String::from_utf8(out).unwrap())
        };
        assert_eq!(shift("0001-01-01 BC", 1).as_deref(), Some("0001-01-02 BC"));
        assert_eq!(shift("0001-12-31 BC", 1).as_deref(), Some("0001-01-01"));
        assert_eq!(
            shift("2024-01-02 10:00:00", -2).as_deref(),
            Some("2023-12-31 10:00:00")
        );
        assert_eq!(shift("2024-1-02", 1), None);
        assert_eq!(
            m("date_shift:3", "\"2024-01-02 \\\"x\\\"\"", None)[11..],
            *" \\\"x\\\"\""
        );
        assert_eq!(m("date_shift:3", "\"infinity\"", None), "\"infinity\"");
        let secs: i64 = m("date_shift:1", "1700000000", None).parse().unwrap();
        assert_eq!((secs - 1_700_000_000).abs(), 86_400);
        let mut out = Vec::new();
        let e = apply(
            "date_shift:3".parse().unwrap(),
            &key("s"),
            b"\"not a date\"",
            Fit::default(),
            &mut out,
        )
        .unwrap_err();
        assert!(e.contains("not a date or timestamp"), "{e}");
    }
}
