//! PostgreSQL binary COPY values (each type's `send` form) to fixture JSON, for the dump.
//!
//! The dump reads tables with `COPY ... TO STDOUT (FORMAT binary)` because the server's binary
//! send functions cost less than its text output functions (timestamptz_out, numeric_out);
//! the text form is then rebuilt here, for the types listed in [`BinaryKind`].
//!
//! Invariants:
//! - For every value, the JSON written here is byte for byte what [`super::value::push_json`]
//!   writes from the same value's text form, as the dump's session prints it (`DateStyle` ISO,
//!   `TimeZone` UTC, `bytea_output` hex: `dump::pg::STABLE_OUTPUT`). That is what keeps the
//!   fixture bytes unchanged; the code follows PostgreSQL's own output functions
//!   (`numeric_out`/`get_str_from_var`, `timestamp2tm`/`j2date`/`EncodeDateTime`,
//!   `date_out`, `uuid_out`, `byteaout`), and a property test compares the two on a real server.
//! - Types without a client-side rendering are selected as `to_json(col)` (a `json` value, whose
//!   binary form is its text): [`BinaryKind::ServerJson`].
//! - Malformed input (a length that does not fit the type, a numeric digit above 9999, a date
//!   outside PostgreSQL's range) is an error, never a guess.

use super::bytes::{decimal_len, push_block, push_decimal, write_decimal, PAIRS};
use super::copy_text::push_json_string;
use super::value::push_json;
use crate::catalog::ValueKind;

/// How one column's binary value becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    Int2,
    Int4,
    Int8,
    Oid,
    Bool,
    /// text, varchar, char(n), name, citext: the characters, as a JSON string.
    Text,
    /// json: the document, as `push_json` writes it.
    Json,
    /// jsonb: a version byte (1), then the document's text.
    Jsonb,
    Bytea,
    Numeric,
    Timestamp,
    TimestampTz,
    Date,
    Uuid,
    /// Selected as `to_json(col)` by the server: already the fixture's JSON, but for what
    /// `push_json` adds to a structured value (the `$json` wrapper).
    ServerJson(ValueKind),
}

/// Built-in type OIDs (`pg_type.oid`, fixed since PostgreSQL 8).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

impl BinaryKind {
    /// The rendering for a column of `kind` whose base type (domains unwrapped) is `base_type`;
    /// `None` when the column cannot be read in binary (its base type is unknown: a domain over
    /// a domain over a domain, where `to_json` and the catalog could disagree on the type).
    pub fn for_column(kind: ValueKind, base_type: Option<u32>) -> Option<BinaryKind> {
        let base = base_type?;
        Some(match (kind, base) {
            (ValueKind::Structured, _) => BinaryKind::ServerJson(kind),
            (ValueKind::Integer, oid::INT2) => BinaryKind::Int2,
            (ValueKind::Integer, oid::INT4) => BinaryKind::Int4,
            (ValueKind::Integer, oid::INT8) => BinaryKind::Int8,
            (ValueKind::Integer, oid::OID) => BinaryKind::Oid,
            (ValueKind::Boolean, oid::BOOL) => BinaryKind::Bool,
            (ValueKind::Json, oid::JSON) => BinaryKind::Json,
            (ValueKind::Jsonb, oid::JSONB) => BinaryKind::Jsonb,
            (ValueKind::Bytes, oid::BYTEA) => BinaryKind::Bytea,
            (ValueKind::Number, oid::NUMERIC) => BinaryKind::Numeric,
            (ValueKind::DateTime, oid::TIMESTAMP) => BinaryKind::Timestamp,
            (ValueKind::DateTime, oid::TIMESTAMPTZ) => BinaryKind::TimestampTz,
            (ValueKind::Text, oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME) => {
                BinaryKind::Text
            }
            (ValueKind::Text, oid::DATE) => BinaryKind::Date,
            (ValueKind::Text, oid::UUID) => BinaryKind::Uuid,
            // to_json renders every other type the catalog calls text as the JSON string of its
            // output text (json.c's JSONTYPE_OTHER: output function, then escape_json, which
            // escapes exactly what push_json_string escapes), and floats as their output text,
            // quoted when it is not a JSON number (NaN, Infinity): push_json's rules.
            (ValueKind::Text, _) | (ValueKind::Number, _) => BinaryKind::ServerJson(kind),
            // A kind the catalog derived from a type this table does not know: read as text.
            _ => return None,
        })
    }

    /// Whether the COPY selects this column as `to_json(col)` rather than the column itself.
    pub fn selects_to_json(self) -> bool {
        matches!(self, BinaryKind::ServerJson(_))
    }
}

/// Why a binary value could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryValueError(pub String);

fn bad(what: &str, v: &[u8]) -> BinaryValueError {
    BinaryValueError(format!("malformed binary {what} value ({} bytes)", v.len()))
}

#[inline(always)]
fn fixed<const N: usize>(what: &str, v: &[u8]) -> Result<[u8; N], BinaryValueError> {
    v.try_into().map_err(|_| bad(what, v))
}

/// Appends the fixture JSON for one binary value (`None` = SQL NULL).
#[inline(always)]
pub fn push_binary_json(
    out: &mut Vec<u8>,
    kind: BinaryKind,
    value: Option<&[u8]>,
) -> Result<(), BinaryValueError> {
    let Some(v) = value else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    match kind {
        BinaryKind::Int2 => push_i64(out, i16::from_be_bytes(fixed("smallint", v)?).into()),
        BinaryKind::Int4 => push_i64(out, i32::from_be_bytes(fixed("integer", v)?).into()),
        BinaryKind::Int8 => push_i64(out, i64::from_be_bytes(fixed("bigint", v)?)),
        BinaryKind::Oid => push_i64(out, u32::from_be_bytes(fixed("oid", v)?).into()),
        BinaryKind::Bool => out.extend_from_slice(match fixed::<1>("boolean", v)?[0] {
            0 => b"false",
            _ => b"true",
        }),
        BinaryKind::Text => push_json_string(out, v),
        BinaryKind::Json => push_json(out, ValueKind::Json, Some(v)),
        BinaryKind::Jsonb => match v.split_first() {
            Some((1, doc)) => push_json(out, ValueKind::Jsonb, Some(doc)),
            _ => return Err(BinaryValueError("unknown binary jsonb version".into())),
        },
        BinaryKind::Bytea => push_bytea_json(out, v),
        BinaryKind::Numeric => push_numeric_json(out, v)?,
        BinaryKind::Timestamp => {
            push_timestamp_json(out, i64::from_be_bytes(fixed("timestamp", v)?), false)?
        }
        BinaryKind::TimestampTz => {
            push_timestamp_json(out, i64::from_be_bytes(fixed("timestamptz", v)?), true)?
        }
        BinaryKind::Date => {
            out.push(b'"');
            push_date_text(out, i32::from_be_bytes(fixed("date", v)?))?;
            out.push(b'"');
        }
        BinaryKind::Uuid => push_uuid_json(out, &fixed("uuid", v)?),
        BinaryKind::ServerJson(ValueKind::Structured) => {
            push_json(out, ValueKind::Structured, Some(v))
        }
        BinaryKind::ServerJson(_) => out.extend_from_slice(v),
    }
    Ok(())
}

/// Decimal digits of an integer, as int8out/int4out/int2out/oidout print them.
#[inline(always)]
fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_decimal(out, n.unsigned_abs());
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `"\\x0a1b"`: byteaout's hex form (lower case) as a JSON string (its backslash escaped).
fn push_bytea_json(out: &mut Vec<u8>, v: &[u8]) {
    out.reserve(v.len() * 2 + 6);
    out.extend_from_slice(b"\"\\\\x");
    for &b in v {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
    out.push(b'"');
}

/// uuid_out: 8-4-4-4-12 lower-case hex digits, as a JSON string.
fn push_uuid_json(out: &mut Vec<u8>, v: &[u8; 16]) {
    out.push(b'"');
    for (i, &b) in v.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
    out.push(b'"');
}

/// numeric's sign word in the binary form.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// The `i`th 16-bit word of numeric_send's form, if there is one.
fn numeric_word(v: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*v.get(2 * i)?, *v.get(2 * i + 1)?]))
}

/// numeric_send's form (ndigits, weight, sign, dscale, then base-10000 digits, all 16-bit) to
/// numeric_out's text, as `push_json` writes it for a number: the digits bare, `"NaN"`,
/// `"Infinity"` and `"-Infinity"` quoted.
fn push_numeric_json(out: &mut Vec<u8>, v: &[u8]) -> Result<(), BinaryValueError> {
    let word = |i: usize| numeric_word(v, i);
    let (Some(ndigits), Some(weight), Some(sign), Some(dscale)) =
        (word(0), word(1), word(2), word(3))
    else {
        return Err(bad("numeric", v));
    };
    let (ndigits, weight, dscale) = (ndigits as i16, weight as i16, dscale as i16);
    if ndigits < 0 || dscale < 0 || v.len() != 8 + 2 * ndigits as usize {
        return Err(bad("numeric", v));
    }
    match sign {
        NUMERIC_NAN => {
            out.extend_from_slice(b"\"NaN\"");
            return Ok(());
        }
        NUMERIC_PINF => {
            out.extend_from_slice(b"\"Infinity\"");
            return Ok(());
        }
        NUMERIC_NINF => {
            out.extend_from_slice(b"\"-Infinity\"");
            return Ok(());
        }
        NUMERIC_POS | NUMERIC_NEG => {}
        _ => return Err(bad("numeric", v)),
    }
    if push_short_numeric(out, v, weight, sign == NUMERIC_NEG, dscale).is_some() {
        return Ok(());
    }
    push_any_numeric(out, v, ndigits, weight, sign, dscale)
}

/// [`push_numeric_json`] for any finite number (header checked), a base-10000 digit at a time.
fn push_any_numeric(
    out: &mut Vec<u8>,
    v: &[u8],
    ndigits: i16,
    weight: i16,
    sign: u16,
    dscale: i16,
) -> Result<(), BinaryValueError> {
    let word = |i: usize| numeric_word(v, i);
    let ndigits = ndigits as i32;
    let digit = |d: i32| -> Result<u16, BinaryValueError> {
        if d < 0 || d >= ndigits {
            return Ok(0);
        }
        match word(4 + d as usize) {
            Some(x) if x <= 9999 => Ok(x),
            _ => Err(bad("numeric", v)),
        }
    };
    // get_str_from_var, step by step.
    if sign == NUMERIC_NEG {
        out.push(b'-');
    }
    let weight = i32::from(weight);
    let mut d: i32;
    if weight < 0 {
        d = weight + 1;
        out.push(b'0');
    } else {
        d = 0;
        while d <= weight {
            let dig = digit(d)?;
            let digits = four_digits(dig);
            if d == 0 {
                // The first group: no leading zeros (but its last digit always).
                let skip = digits[..3].iter().take_while(|&&c| c == b'0').count();
                let shifted = (u32::from_be_bytes(digits) << (8 * skip)).to_be_bytes();
                push_block(out, &shifted, 4 - skip);
            } else {
                out.extend_from_slice(&digits);
            }
            d += 1;
        }
    }
    let dscale = dscale as usize;
    if dscale > 0 {
        out.push(b'.');
        let mut written = 0;
        while written < dscale {
            let digits = four_digits(digit(d)?);
            let take = (dscale - written).min(4);
            push_block(out, &digits, take);
            written += take;
            d += 1;
        }
    }
    Ok(())
}

/// [`push_numeric_json`] for a finite number of at most 16 integer and 16 fraction digits
/// whose base-10000 digits are all valid (else `None`, and nothing is written): rendered in one
/// block of fixed size, two decimal digits at a time, and appended with one fixed-size copy.
/// Same bytes as the general path (get_str_from_var).
#[inline(always)]
fn push_short_numeric(
    out: &mut Vec<u8>,
    v: &[u8],
    weight: i16,
    negative: bool,
    dscale: i16,
) -> Option<()> {
    let groups = &v[8..];
    if !(-1..=3).contains(&weight) || dscale > 16 || groups.len() > 16 {
        return None;
    }
    // The base-10000 digits, zero past the last one given.
    let mut digit = [0u16; 9];
    for (d, pair) in digit.iter_mut().zip(groups.chunks_exact(2)) {
        *d = u16::from_be_bytes([pair[0], pair[1]]);
        if *d > 9999 {
            return None;
        }
    }
    let mut b = [0u8; 48];
    let mut at = 0;
    if negative {
        b[0] = b'-';
        at = 1;
    }
    let four = |b: &mut [u8; 48], at: usize, n: u16| {
        let (hi, lo) = (usize::from(n / 100) * 2, usize::from(n % 100) * 2);
        b[at..at + 4].copy_from_slice(&[PAIRS[hi], PAIRS[hi + 1], PAIRS[lo], PAIRS[lo + 1]]);
    };
    // The integer part: the first group without its leading zeros (but its last digit), then
    // four digits a group; "0" when the number is below 1.
    let int_groups = (weight + 1) as usize;
    if int_groups == 0 {
        b[at] = b'0';
        at += 1;
    } else {
        let first = digit[0];
        let len = decimal_len(first.into());
        let mut digits = [0u8; 4];
        write_decimal(&mut digits[..len], first.into());
        b[at..at + 4].copy_from_slice(&digits);
        at += len;
        for &g in &digit[1..int_groups] {
            four(&mut b, at, g);
            at += 4;
        }
    }
    // The fraction: dscale digits from the groups after the integer part.
    let dscale = dscale as usize;
    if dscale > 0 {
        b[at] = b'.';
        for (k, &g) in digit[int_groups..]
            .iter()
            .take(dscale.div_ceil(4))
            .enumerate()
        {
            four(&mut b, at + 1 + 4 * k, g);
        }
        at += 1 + dscale;
    }
    push_block(out, &b, at);
    Some(())
}

fn four_digits(n: u16) -> [u8; 4] {
    [
        b'0' + (n / 1000) as u8,
        b'0' + (n / 100 % 10) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]
}

/// Julian day of 2000-01-01, PostgreSQL's epoch for dates and timestamps.
const POSTGRES_EPOCH_JDATE: i64 = 2_451_545;
const USECS_PER_DAY: i64 = 86_400_000_000;

/// PostgreSQL's j2date: a Julian day number to (year, month, day), proleptic Gregorian, year 0
/// being 1 BC. Done in unsigned 32-bit arithmetic, as the C code does.
fn j2date(jd: u32) -> (i32, u32, u32) {
    let mut julian = jd.wrapping_add(32044);
    let mut quad = julian / 146_097;
    let extra = (julian - quad * 146_097) * 4 + 3;
    julian += 60 + quad * 3 + extra / 146_097;
    quad = julian / 1461;
    julian -= quad * 1461;
    let mut y = julian * 4 / 1461;
    julian = if y != 0 {
        (julian + 305) % 365
    } else {
        (julian + 306) % 366
    } + 123;
    y += quad * 4;
    let year = y as i32 - 4800;
    let quad = julian * 2141 / 65536;
    let day = julian - 7834 * quad / 256;
    let month = (quad + 10) % 12 + 1;
    (year, month, day)
}

/// A small stack buffer for one rendered date or timestamp.
struct Stamp {
    buf: [u8; 48],
    len: usize,
}

impl Stamp {
    fn new() -> Stamp {
        Stamp {
            buf: [0; 48],
            len: 0,
        }
    }

    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    /// Two digits (`n` < 100).
    fn two(&mut self, n: u32) {
        let pair = n as usize * 2;
        self.bytes(&PAIRS[pair..pair + 2]);
    }

    /// At least four digits, zero-padded (pg_ultostr_zeropad).
    fn year(&mut self, n: u32) {
        if n < 10_000 {
            self.two(n / 100);
            self.two(n % 100);
        } else {
            let len = decimal_len(n.into());
            write_decimal(&mut self.buf[self.len..self.len + len], n.into());
            self.len += len;
        }
    }

    /// `YYYY-MM-DD` for an astronomical year (0 = 1 BC); returns whether the date is BC, whose
    /// ` BC` suffix goes at the very end of the value.
    fn ymd(&mut self, year: i32, month: u32, day: u32) -> bool {
        let bc = year <= 0;
        let shown = if bc { 1 - i64::from(year) } else { year.into() };
        self.year(shown as u32);
        self.byte(b'-');
        self.two(month);
        self.byte(b'-');
        self.two(day);
        bc
    }

    /// Appends the rendered bytes to `out`.
    fn push_to(&self, out: &mut Vec<u8>) {
        push_block(out, &self.buf, self.len);
    }
}

/// date_out under DateStyle ISO: `2024-01-02`, `4713-01-01 BC`, `infinity`, `-infinity`.
fn push_date_text(out: &mut Vec<u8>, days: i32) -> Result<(), BinaryValueError> {
    match days {
        i32::MIN => out.extend_from_slice(b"-infinity"),
        i32::MAX => out.extend_from_slice(b"infinity"),
        _ => {
            let jd = i64::from(days) + POSTGRES_EPOCH_JDATE;
            let jd = u32::try_from(jd)
                .map_err(|_| BinaryValueError(format!("date out of range: {days}")))?;
            let (y, m, d) = j2date(jd);
            let mut s = Stamp::new();
            if s.ymd(y, m, d) {
                s.bytes(b" BC");
            }
            s.push_to(out);
        }
    }
    Ok(())
}

/// A timestamp (microseconds since 2000-01-01 00:00, UTC for timestamptz) as
/// `value::timestamp_json` writes the text timestamp_out/timestamptz_out print under DateStyle
/// ISO and TimeZone UTC: `"2024-01-02T03:04:05.5+00:00"`, `"0044-03-15T10:00:00 BC"`,
/// `"infinity"`.
fn push_timestamp_json(out: &mut Vec<u8>, us: i64, tz: bool) -> Result<(), BinaryValueError> {
    match us {
        i64::MIN => out.extend_from_slice(b"\"-infinity\""),
        i64::MAX => out.extend_from_slice(b"\"infinity\""),
        _ => {
            // timestamp2tm: whole days (floor), then the time of day.
            let (days, time) = (us.div_euclid(USECS_PER_DAY), us.rem_euclid(USECS_PER_DAY));
            let jd = u32::try_from(days + POSTGRES_EPOCH_JDATE)
                .ok()
                .filter(|&jd| jd <= i32::MAX as u32)
                .ok_or_else(|| BinaryValueError(format!("timestamp out of range: {us}")))?;
            let (y, m, d) = j2date(jd);
            let secs = (time / 1_000_000) as u32;
            let fsec = (time % 1_000_000) as u32;
            if (1..=9999).contains(&y) {
                push_common_timestamp(out, [y as u32, m, d], secs, fsec, tz);
                return Ok(());
            }
            push_any_timestamp(out, (y, m, d), secs, fsec, tz);
        }
    }
    Ok(())
}

/// [`push_timestamp_json`] for any year, era included, a byte at a time.
fn push_any_timestamp(
    out: &mut Vec<u8>,
    (y, m, d): (i32, u32, u32),
    secs: u32,
    fsec: u32,
    tz: bool,
) {
    let mut s = Stamp::new();
    s.byte(b'"');
    let bc = s.ymd(y, m, d);
    s.byte(b'T');
    s.two(secs / 3600);
    s.byte(b':');
    s.two(secs / 60 % 60);
    s.byte(b':');
    s.two(secs % 60);
    if fsec != 0 {
        // AppendSeconds: six digits, trailing zeros dropped (there is a non-zero one).
        s.byte(b'.');
        s.two(fsec / 10_000);
        s.two(fsec / 100 % 100);
        s.two(fsec % 100);
        while s.buf[s.len - 1] == b'0' {
            s.len -= 1;
        }
    }
    if tz {
        s.bytes(b"+00:00");
    }
    if bc {
        s.bytes(b" BC");
    }
    s.byte(b'"');
    s.push_to(out);
}

/// [`push_timestamp_json`] for years 1 to 9999 (four digits, no era): every part has its
/// fixed place, so the value is written into one block without a length to keep and no bounds
/// to check, and appended with one fixed-size copy. Same bytes as the general path.
#[inline(always)]
fn push_common_timestamp(out: &mut Vec<u8>, [y, m, d]: [u32; 3], secs: u32, fsec: u32, tz: bool) {
    #[inline(always)]
    fn two(b: &mut [u8; 40], at: usize, n: u32) {
        let pair = (n % 100) as usize * 2;
        b[at] = PAIRS[pair];
        b[at + 1] = PAIRS[pair + 1];
    }
    let mut b = [0u8; 40];
    b[0] = b'"';
    two(&mut b, 1, y / 100);
    two(&mut b, 3, y);
    b[5] = b'-';
    two(&mut b, 6, m);
    b[8] = b'-';
    two(&mut b, 9, d);
    b[11] = b'T';
    two(&mut b, 12, secs / 3600);
    b[14] = b':';
    two(&mut b, 15, secs / 60 % 60);
    b[17] = b':';
    two(&mut b, 18, secs % 60);
    let mut len = 20;
    if fsec != 0 {
        // AppendSeconds: six digits, trailing zeros dropped (there is a non-zero one).
        b[20] = b'.';
        two(&mut b, 21, fsec / 10_000);
        two(&mut b, 23, fsec / 100);
        two(&mut b, 25, fsec);
        len = 27;
        while b[len - 1] == b'0' {
            len -= 1;
        }
    }
    if tz {
        b[len..len + 6].copy_from_slice(b"+00:00");
        len += 6;
    }
    b[len] = b'"';
    push_block(out, &b, len + 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::value::timestamp_json;

    fn render(kind: BinaryKind, v: &[u8]) -> String {
        let mut out = Vec::new();
        push_binary_json(&mut out, kind, Some(v)).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// numeric_send's bytes for (weight, sign, dscale, digits).
    fn numeric(weight: i16, sign: u16, dscale: i16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn integers_and_booleans() {
        assert_eq!(render(BinaryKind::Int2, &i16::MIN.to_be_bytes()), "-32768");
        assert_eq!(render(BinaryKind::Int4, &0i32.to_be_bytes()), "0");
        assert_eq!(
            render(BinaryKind::Int8, &i64::MIN.to_be_bytes()),
            "-9223372036854775808"
        );
        assert_eq!(
            render(BinaryKind::Oid, &u32::MAX.to_be_bytes()),
            "4294967295"
        );
        assert_eq!(render(BinaryKind::Bool, &[1]), "true");
        assert_eq!(render(BinaryKind::Bool, &[0]), "false");
        let mut out = Vec::new();
        assert!(push_binary_json(&mut out, BinaryKind::Int8, Some(&[0; 4])).is_err());
    }

    #[test]
    fn numerics_follow_get_str_from_var() {
        let n = |w, s, sc, d: &[u16]| render(BinaryKind::Numeric, &numeric(w, s, sc, d));
        assert_eq!(n(0, NUMERIC_POS, 0, &[]), "0");
        assert_eq!(n(0, NUMERIC_POS, 3, &[]), "0.000");
        assert_eq!(n(0, NUMERIC_NEG, 2, &[12, 3400]), "-12.34");
        assert_eq!(n(1, NUMERIC_POS, 0, &[1, 0]), "10000");
        assert_eq!(n(-2, NUMERIC_POS, 9, &[1]), "0.000000010");
        assert_eq!(n(-1, NUMERIC_POS, 1, &[5000]), "0.5");
        assert_eq!(n(0, NUMERIC_POS, 6, &[7, 1234, 5678]), "7.123456");
        assert_eq!(n(2, NUMERIC_POS, 0, &[9999]), "999900000000");
        assert_eq!(n(0, NUMERIC_NAN, 0, &[]), "\"NaN\"");
        assert_eq!(n(0, NUMERIC_PINF, 0, &[]), "\"Infinity\"");
        assert_eq!(n(0, NUMERIC_NINF, 0, &[]), "\"-Infinity\"");
        let mut out = Vec::new();
        let bad = numeric(0, NUMERIC_POS, 0, &[10000]);
        assert!(push_binary_json(&mut out, BinaryKind::Numeric, Some(&bad)).is_err());
        assert!(push_binary_json(&mut out, BinaryKind::Numeric, Some(&bad[..9])).is_err());
    }

    /// The fixed-block rendering of short numbers writes what the general one does, for random
    /// numbers around its limits (weights -2 to 4, scales 0 to 17, up to 9 digits, both signs).
    #[test]
    fn short_numerics_match_the_general_rendering() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut short = 0;
        for _ in 0..200_000 {
            let weight = next(7) as i16 - 2;
            let dscale = next(18) as i16;
            let digits: Vec<u16> = (0..next(10))
                .map(|_| match next(4) {
                    0 => 0,
                    1 => 9999,
                    _ => next(10_000) as u16,
                })
                .collect();
            let sign = if next(2) == 0 {
                NUMERIC_POS
            } else {
                NUMERIC_NEG
            };
            let v = numeric(weight, sign, dscale, &digits);
            let mut fast = b"x".to_vec();
            push_binary_json(&mut fast, BinaryKind::Numeric, Some(&v)).unwrap();
            let mut slow = b"x".to_vec();
            push_any_numeric(&mut slow, &v, digits.len() as i16, weight, sign, dscale).unwrap();
            assert_eq!(fast, slow, "{weight} {dscale} {digits:?}");
            short += usize::from(
                push_short_numeric(&mut Vec::new(), &v, weight, false, dscale).is_some(),
            );
        }
        assert!(short > 50_000, "the short path was taken {short} times");
    }

    #[test]
    fn timestamps_match_the_text_path() {
        let ts = |us: i64, tz: bool| {
            render(
                if tz {
                    BinaryKind::TimestampTz
                } else {
                    BinaryKind::Timestamp
                },
                &us.to_be_bytes(),
            )
        };
        let text = |s: &str| {
            let mut out = Vec::new();
            push_json_string(&mut out, &timestamp_json(s.as_bytes()));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(ts(0, true), text("2000-01-01 00:00:00+00"));
        assert_eq!(ts(-1, false), text("1999-12-31 23:59:59.999999"));
        assert_eq!(ts(1_500_000, true), text("2000-01-01 00:00:01.5+00"));
        assert_eq!(ts(i64::MAX, true), "\"infinity\"");
        assert_eq!(ts(i64::MIN, false), "\"-infinity\"");
        // 0044-03-15 12:00:00 BC and 294276-12-31 23:59:59.999999, as the server stores them.
        assert_eq!(
            ts(-64_464_465_600_000_000, true),
            text("0044-03-15 12:00:00+00 BC")
        );
        assert_eq!(
            ts(9_223_371_331_199_999_999, false),
            text("294276-12-31 23:59:59.999999")
        );
    }

    /// The fixed-place rendering of years 1 to 9999 writes what the general one does, for
    /// every day of those years at some time of day, fractions with 0 to 6 digits included.
    #[test]
    fn common_timestamps_match_the_general_rendering() {
        let first = -730_119i64; // 0001-01-01, in days from 2000-01-01
        let last = 2_921_939i64; // 9999-12-31
                                 // Fractions of 0 to 6 digits, the day's ends, and one time that moves from day to day.
        let fixed = [
            0u64,
            1,
            10,
            120_000,
            999_999,
            1_000_000,
            86_399_999_999,
            45_296_789_000,
        ];
        let mut moving = 0u64;
        for day in (first..=last).step_by(13).chain([last]) {
            moving = (moving + 7_919_777_123) % 86_400_000_000;
            for t in fixed.iter().chain([&moving]) {
                let us = day * USECS_PER_DAY + *t as i64;
                let (days, time) = (us.div_euclid(USECS_PER_DAY), us.rem_euclid(USECS_PER_DAY));
                let (y, m, d) = j2date((days + POSTGRES_EPOCH_JDATE) as u32);
                assert!((1..=9999).contains(&y), "{us}");
                let (secs, fsec) = ((time / 1_000_000) as u32, (time % 1_000_000) as u32);
                for tz in [false, true] {
                    let mut fast = b"x".to_vec();
                    push_timestamp_json(&mut fast, us, tz).unwrap();
                    let mut slow = b"x".to_vec();
                    push_any_timestamp(&mut slow, (y, m, d), secs, fsec, tz);
                    assert_eq!(fast, slow, "{us}");
                }
            }
        }
    }

    #[test]
    fn dates_uuids_bytes_and_text() {
        let date = |d: i32| render(BinaryKind::Date, &d.to_be_bytes());
        assert_eq!(date(0), "\"2000-01-01\"");
        assert_eq!(date(-2_451_545), "\"4714-11-24 BC\"");
        assert_eq!(date(i32::MAX), "\"infinity\"");
        assert_eq!(date(i32::MIN), "\"-infinity\"");
        assert_eq!(date(2_145_031_948), "\"5874897-12-31\"");
        let mut u = [0u8; 16];
        u[0] = 0xab;
        u[15] = 0x01;
        assert_eq!(
            render(BinaryKind::Uuid, &u),
            "\"ab000000-0000-0000-0000-000000000001\""
        );
        assert_eq!(render(BinaryKind::Bytea, &[0, 0xff]), "\"\\\\x00ff\"");
        assert_eq!(render(BinaryKind::Bytea, &[]), "\"\\\\x\"");
        assert_eq!(render(BinaryKind::Text, b"a\"\n"), "\"a\\\"\\n\"");
        assert_eq!(render(BinaryKind::Jsonb, b"\x01null"), "{\"$json\":null}");
        assert_eq!(
            render(BinaryKind::ServerJson(ValueKind::Text), b"\"x\""),
            "\"x\""
        );
        assert_eq!(
            render(BinaryKind::ServerJson(ValueKind::Structured), b"null"),
            "{\"$json\":null}"
        );
    }

    #[test]
    fn column_kinds() {
        assert_eq!(BinaryKind::for_column(ValueKind::Text, None), None);
        assert_eq!(
            BinaryKind::for_column(ValueKind::Text, Some(oid::UUID)),
            Some(BinaryKind::Uuid)
        );
        assert_eq!(
            BinaryKind::for_column(ValueKind::Number, Some(701)),
            Some(BinaryKind::ServerJson(ValueKind::Number))
        );
        assert_eq!(BinaryKind::for_column(ValueKind::Integer, Some(701)), None);
    }
}
