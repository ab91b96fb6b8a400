//! Finds where a JSON object ends, 64 bytes at a time: the structural scan of the fixture
//! reader and the Django reader (every row is moved over once by the pre-scan and once by
//! the load, so this loop is a fixed cost of every load); and line/column counting over the
//! bytes moved over.
//!
//! Each 64-byte block becomes bit masks (quote, backslash, opening and closing bracket; with
//! SSE2 on x86_64, where it is baseline, else byte by byte), and the masks answer the
//! questions a byte loop would: which quotes open or close strings (all of them in a block
//! without backslashes; else quotes and backslashes walked in order, skipping everything
//! between), which bytes are inside strings (a prefix XOR of those quotes), and where,
//! outside strings, the bracket depth returns to zero.
//!
//! Invariants: the state carried between calls (inside a string, a pending escape, the depth)
//! makes the result independent of how the input is split into calls; the scan checks
//! nesting and strings only (serde validates the object when the row is parsed); the input
//! starts at the object's opening `{`.

/// Scan state for one object, carried across buffer refills.
#[derive(Debug, Default)]
pub struct ObjectEnd {
    depth: usize,
    in_string: bool,
    /// The previous chunk ended with a backslash that escapes the next byte.
    escaped: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Masks {
    quote: u64,
    backslash: u64,
    open: u64,
    close: u64,
}

impl ObjectEnd {
    /// Continues the object with `buf`; `Some(n)` when its closing bracket is `buf[n - 1]`.
    pub fn feed(&mut self, buf: &[u8]) -> Option<usize> {
        let mut blocks = buf.chunks_exact(64);
        let mut at = 0;
        for block in blocks.by_ref() {
            let block: &[u8; 64] = block.try_into().expect("64 bytes");
            if let Some(n) = self.block(block, 64) {
                return Some(at + n);
            }
            at += 64;
        }
        let tail = blocks.remainder();
        if tail.is_empty() {
            return None;
        }
        // Zero padding matches no mask.
        let mut padded = [0u8; 64];
        padded[..tail.len()].copy_from_slice(tail);
        self.block(&padded, tail.len()).map(|n| at + n)
    }

    /// One block of which the first `len` bytes are input.
    fn block(&mut self, b: &[u8; 64], len: usize) -> Option<usize> {
        let m = masks(b);
        let valid = if len == 64 { !0 } else { (1u64 << len) - 1 };
        let quotes = if m.backslash & valid == 0 && !self.escaped {
            m.quote & valid
        } else {
            self.real_quotes(&m, len, valid)
        };
        // Bit i set: byte i is inside a string (an opening quote counts as inside, a closing
        // one as outside; neither is a bracket).
        let mut inside = prefix_xor(quotes);
        if self.in_string {
            inside = !inside;
        }
        let mut brackets = (m.open | m.close) & !inside & valid;
        while brackets != 0 {
            let i = brackets.trailing_zeros() as usize;
            brackets &= brackets - 1;
            if m.open >> i & 1 == 1 {
                self.depth += 1;
            } else {
                // The scan starts at the opening `{`, so a close always has an open before it.
                self.depth -= 1;
                if self.depth == 0 {
                    return Some(i + 1);
                }
            }
        }
        self.in_string = inside >> (len - 1) & 1 == 1;
        None
    }
}

impl ObjectEnd {
    /// The quotes that open or close strings, for a block with backslashes: quotes and
    /// backslashes walked in order (both are few), as a byte loop would see them. A
    /// backslash escapes the next byte only inside a string (outside, it is a syntax error
    /// serde reports, and must not hide a quote from this scan either).
    fn real_quotes(&mut self, m: &Masks, len: usize, valid: u64) -> u64 {
        let mut escaped = u64::from(self.escaped);
        self.escaped = false;
        let mut in_string = self.in_string;
        let mut real = 0;
        let mut bits = (m.quote | m.backslash) & valid;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if escaped >> i & 1 == 1 {
                continue;
            }
            if m.quote >> i & 1 == 1 {
                real |= 1 << i;
                in_string = !in_string;
            } else if in_string {
                if i + 1 == len {
                    self.escaped = true;
                } else {
                    escaped |= 1 << (i + 1);
                }
            }
        }
        real
    }
}

/// Moves a 1-based line and column (in characters, not bytes) over `chunk`. Both counts are
/// taken in one pass with byte-wide counters (flushed every 255 bytes), which the compiler
/// turns into vector compares.
pub fn advance_over(line: &mut usize, column: &mut usize, chunk: &[u8]) {
    let (newlines, continuations) = counts(chunk);
    if newlines == 0 {
        *column += chunk.len() - continuations;
    } else {
        let last = chunk.iter().rposition(|&c| c == b'\n').expect("counted");
        let rest = &chunk[last + 1..];
        *line += newlines;
        *column = 1 + rest.len() - counts(rest).1;
    }
}

/// Newlines and UTF-8 continuation bytes (`10xxxxxx`) in `s`.
fn counts(s: &[u8]) -> (usize, usize) {
    let (mut newlines, mut continuations) = (0, 0);
    for block in s.chunks(255) {
        let (mut n, mut c) = (0u8, 0u8);
        for &b in block {
            n += u8::from(b == b'\n');
            // 0x80..=0xBF are exactly the bytes below -64 as i8.
            c += u8::from((b as i8) < -64);
        }
        newlines += usize::from(n);
        continuations += usize::from(c);
    }
    (newlines, continuations)
}

/// Bit i = XOR of bits 0..=i.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

#[cfg(target_arch = "x86_64")]
fn masks(b: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut m = Masks::default();
    // SAFETY: SSE2 is part of the x86_64 baseline (always available), and each unaligned load
    // reads 16 bytes at offsets 0, 16, 32, 48 of the 64-byte array.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        // `[` and `{` differ only in bit 0x20, as do `]` and `}`.
        let case = _mm_set1_epi8(0x20);
        let open = _mm_set1_epi8(b'{' as i8);
        let close = _mm_set1_epi8(b'}' as i8);
        for k in 0..4 {
            let v = _mm_loadu_si128(b.as_ptr().add(16 * k).cast::<__m128i>());
            let folded = _mm_or_si128(v, case);
            let bits = |x| u64::from(_mm_movemask_epi8(x) as u16) << (16 * k);
            m.quote |= bits(_mm_cmpeq_epi8(v, quote));
            m.backslash |= bits(_mm_cmpeq_epi8(v, backslash));
            m.open |= bits(_mm_cmpeq_epi8(folded, open));
            m.close |= bits(_mm_cmpeq_epi8(folded, close));
        }
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
fn masks(b: &[u8; 64]) -> Masks {
    masks_bytewise(b)
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn masks_bytewise(b: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &c) in b.iter().enumerate() {
        let bit = 1u64 << i;
        match c {
            b'"' => m.quote |= bit,
            b'\\' => m.backslash |= bit,
            b'{' | b'[' => m.open |= bit,
            b'}' | b']' => m.close |= bit,
            _ => {}
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The byte loop this replaces: where the object starting at `s[0]` ends.
    fn reference(s: &[u8]) -> Option<usize> {
        let (mut depth, mut in_string, mut i) = (0usize, false, 0);
        while i < s.len() {
            let c = s[i];
            if in_string {
                match c {
                    b'\\' => i += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else {
                match c {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        None
    }

    fn fed_in(s: &[u8], cuts: &[usize]) -> Option<usize> {
        let mut e = ObjectEnd::default();
        let mut at = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (s.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(s.len());
        for cut in cuts {
            if cut < at {
                continue;
            }
            if let Some(n) = e.feed(&s[at..cut]) {
                return Some(at + n);
            }
            at = cut;
        }
        None
    }

    #[test]
    fn ends_at_the_matching_brace() {
        let s = br#"{"a": "}\"]", "b": [1, {"c": "\\"}], "d": "\\\""}, {"next": 1}"#;
        let end = fed_in(s, &[]).unwrap();
        assert_eq!(
            &s[..end],
            &br#"{"a": "}\"]", "b": [1, {"c": "\\"}], "d": "\\\""}"#[..]
        );
        assert_eq!(Some(end), reference(s));
        // Long strings and backslash runs across block and chunk boundaries.
        let long = format!(
            "{{\"k\": \"{}\\\\\\\"{}\"}} tail",
            "x".repeat(70),
            "}".repeat(64)
        );
        for cut in [0, 1, 63, 64, 65, 77, 78, 79, 80] {
            assert_eq!(
                fed_in(long.as_bytes(), &[cut]),
                reference(long.as_bytes()),
                "{cut}"
            );
        }
        assert_eq!(fed_in(b"{\"open", &[]), None);
    }

    #[cfg(target_arch = "x86_64")]
    proptest! {
        #[test]
        fn simd_masks_match_the_byte_loop(v in proptest::collection::vec(any::<u8>(), 64)) {
            let b: [u8; 64] = v.try_into().unwrap();
            prop_assert_eq!(masks(&b), masks_bytewise(&b));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn same_end_as_the_byte_loop_however_the_input_is_split(
            body in proptest::collection::vec(
                prop_oneof![
                    Just(b'"'), Just(b'\\'), Just(b'{'), Just(b'}'), Just(b'['), Just(b']'),
                    Just(b'a'), Just(b' '), Just(b','), Just(0xC3u8),
                ],
                0..300,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            let mut s = vec![b'{'];
            s.extend(body);
            prop_assert_eq!(fed_in(&s, &cuts), reference(&s));
        }
    }
}
