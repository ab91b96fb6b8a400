//! Appending short byte runs to a buffer without a `memcpy` call per run, for the dump's row
//! rendering.
//!
//! Why: a rendered row is a dozen short runs (a key, a number's digits, a timestamp). When a
//! run's length is known only at run time, `extend_from_slice` calls libc's `memcpy`, whose
//! call and size dispatch cost more than copying a few bytes; profiles of the dump put these
//! calls at about a tenth of its CPU. Copying a whole fixed-size block (which the compiler turns
//! into a couple of vector moves) and then truncating the buffer writes the same bytes without
//! the call.
//!
//! Invariant: every function here appends exactly the bytes its documentation names; the extra
//! bytes copied past them are cut off before it returns.

/// A short run of at most `N` bytes kept in a fixed block, so that appending it is one
/// fixed-size copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortRun<const N: usize> {
    block: [u8; N],
    len: u8,
}

impl<const N: usize> ShortRun<N> {
    /// The run of `bytes`, or `None` when it is longer than `N` (or 255) bytes.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > N || bytes.len() > usize::from(u8::MAX) {
            return None;
        }
        let mut block = [0u8; N];
        block[..bytes.len()].copy_from_slice(bytes);
        Some(ShortRun {
            block,
            len: bytes.len() as u8,
        })
    }

    /// Appends the run's bytes to `out`.
    #[inline(always)]
    pub fn push_to(&self, out: &mut Vec<u8>) {
        push_block(out, &self.block, usize::from(self.len));
    }
}

/// Appends `block[..len]` to `out` with one fixed-size copy of `block`.
#[inline(always)]
pub fn push_block<const N: usize>(out: &mut Vec<u8>, block: &[u8; N], len: usize) {
    let end = out.len() + len.min(N);
    out.extend_from_slice(block);
    out.truncate(end);
}

/// "00" to "99", for writing two digits at a time.
pub const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
                                2021222324252627282930313233343536373839\
                                4041424344454647484950515253545556575859\
                                6061626364656667686970717273747576777879\
                                8081828384858687888990919293949596979899";

/// Number of decimal digits of `m` (1 for 0).
#[inline(always)]
pub fn decimal_len(m: u64) -> usize {
    m.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Writes `m`'s decimal digits to the whole of `dst`, right-aligned, two at a time; `dst` must
/// be [`decimal_len`]`(m)` bytes long.
#[inline(always)]
pub fn write_decimal(dst: &mut [u8], mut m: u64) {
    let mut at = dst.len();
    while m >= 100 {
        let pair = (m % 100) as usize * 2;
        m /= 100;
        at -= 2;
        dst[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if m >= 10 {
        let pair = m as usize * 2;
        dst[at - 2..at].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        dst[at - 1] = b'0' + m as u8;
    }
}

/// Appends `m`'s decimal digits.
#[inline(always)]
pub fn push_decimal(out: &mut Vec<u8>, m: u64) {
    let len = decimal_len(m);
    let start = out.len();
    out.extend_from_slice(&[0u8; 20]);
    write_decimal(&mut out[start..start + len], m);
    out.truncate(start + len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_match_the_standard_formatting() {
        let mut samples: Vec<u64> = vec![0, 1, 9, 10, 99, 100, 101, 999, 1000, u64::MAX];
        samples.extend((0..64).map(|s| 1u64 << s));
        samples.extend((1..20).map(|p| 10u64.pow(p)));
        samples.extend((1..20).map(|p| 10u64.pow(p) - 1));
        for m in samples {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, m);
            assert_eq!(out, format!("x{m}").into_bytes(), "{m}");
            assert_eq!(decimal_len(m), m.to_string().len());
        }
    }

    #[test]
    fn short_runs_append_exactly_their_bytes() {
        for len in 0..=16 {
            let bytes: Vec<u8> = (0..len as u8).map(|b| b'a' + b).collect();
            let run = ShortRun::<16>::new(&bytes).unwrap();
            let mut out = b"<".to_vec();
            run.push_to(&mut out);
            out.push(b'>');
            assert_eq!(out, [b"<".as_slice(), &bytes, b">"].concat());
        }
        assert_eq!(ShortRun::<16>::new(&[0; 17]), None);
    }
}
