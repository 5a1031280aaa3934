//! Bytes to `&str`, the one place in the crate that needs `unsafe`.
//!
//! Every token hands out `&str`s borrowed from the caller's buffer, and safe Rust has
//! one way to make them: `str::from_utf8`, whose fixed cost per call (around a hundred
//! instructions before it looks at the first byte) is more than the rest of the work
//! on a short end tag, and most of it on a start tag, and which branches on every
//! non-ASCII character, branches that mispredict in text mixing scripts. Here ASCII is
//! proved by a plain scan of the high bits, other UTF-8 by a branch-free automaton (or
//! simdutf8, from 64 bytes on), and only input that fails goes to `str::from_utf8`, for
//! its exact error. Unescaped text is turned back into a `String` here too.
//!
//! It also holds the two SSE2 mask reads (`pmovmskb`) that the 16-byte scans use, as
//! calling those intrinsics takes `unsafe` too; other targets get portable versions.

#![allow(unsafe_code)]

use std::str::{self, Utf8Error};

/// `bytes` as UTF-8: exactly `str::from_utf8(bytes)`, faster when `bytes` is ASCII, and
/// for chat text that mixes ASCII with other scripts (see [`is_utf8`]).
#[inline]
pub(crate) fn from_utf8(bytes: &[u8]) -> Result<&str, Utf8Error> {
    if is_ascii(bytes) {
        // SAFETY: `is_ascii` just checked that every byte is below 0x80, and a sequence
        // of such bytes is valid UTF-8 (each is a one-byte character).
        Ok(unsafe { str::from_utf8_unchecked(bytes) })
    } else if is_utf8(bytes) {
        // SAFETY: `is_utf8` either had simdutf8 validate `bytes` or ran every byte
        // through the UTF-8 automaton and it ended in its accepting state, which it
        // reaches exactly on valid UTF-8 (the tests below check it against
        // `str::from_utf8` on every sequence of one or two bytes, and on all sequences
        // of up to four, alone and inside longer input, of the bytes at its class
        // boundaries).
        Ok(unsafe { str::from_utf8_unchecked(bytes) })
    } else {
        // The exact error (where, and whether the input only ends too soon).
        str::from_utf8(bytes)
    }
}

/// The first `len` bytes of `input` as UTF-8: exactly `str::from_utf8(&input[..len])`
/// (`len` must not exceed `input.len()`). Tokens are short and the input goes on past
/// them, so a token of up to 64 bytes is checked for ASCII with four fixed 16-byte
/// reads of the input and one mask for its length, without the loop and the length
/// tests of [`from_utf8`], whose outcomes vary from token to token and mispredict.
#[inline]
pub(crate) fn prefix(input: &[u8], len: usize) -> Result<&str, Utf8Error> {
    let bytes = input.get(..len).unwrap_or_default();
    if let Some(window) = input.first_chunk::<64>()
        && len <= 64
    {
        let mut high = 0u64;
        for (k, block) in window.chunks_exact(16).enumerate() {
            if let Ok(block) = <[u8; 16]>::try_from(block) {
                // The mask is 16 bits wide: no sign extension to undo.
                high |= u64::from(high_bits(block) as u16) << (16 * k);
            }
        }
        let wanted = (u64::MAX >> (64 - len.max(1))) & u64::from(len > 0).wrapping_neg();
        if high & wanted == 0 {
            // SAFETY: `high` has one bit per byte of the first 64 of `input`, set for
            // each byte at or above 0x80; none is set among the first `len`, the bytes
            // of `bytes`, and a sequence of ASCII bytes is valid UTF-8.
            return Ok(unsafe { str::from_utf8_unchecked(bytes) });
        }
    }
    from_utf8(bytes)
}

/// Whether `bytes` is valid UTF-8, by a table-driven automaton (after Per Vognsen's
/// shift-based DFA): one load, shift and mask per byte, with no branch on the byte's
/// value. `str::from_utf8` branches on every non-ASCII character, and in text that
/// switches between ASCII and other scripts every few bytes, as chat does, those
/// branches mispredict often enough to cost more than its instruction count suggests.
/// Skipping ASCII blocks was measured slower too: in such text, whether a block can be
/// skipped is itself a branch that mispredicts.
fn is_utf8(bytes: &[u8]) -> bool {
    // From 64 bytes on, simdutf8's vector validator (which below that size hands over
    // to `str::from_utf8`) outruns the automaton, whose steps each wait for the last.
    if bytes.len() >= 64 {
        return simdutf8::basic::from_utf8(bytes).is_ok();
    }
    bytes
        .iter()
        .fold(ACCEPT, |state, &byte| next_state(state, byte))
        == ACCEPT
}

#[inline(always)]
fn next_state(state: u64, byte: u8) -> u64 {
    (UTF8_DFA[usize::from(byte)] >> state) & 63
}

/// Automaton states, each the bit offset of its 6-bit field in a [`UTF8_DFA`] entry;
/// a field holds the state that byte leads to from that state.
const ACCEPT: u64 = 0;
const REJECT: u64 = 6;
/// One, two or three continuation bytes (0x80..=0xBF) to go.
const TAIL1: u64 = 12;
const TAIL2: u64 = 18;
const TAIL3: u64 = 24;
/// After 0xE0 (no overlong form: 0xA0..=0xBF next), 0xED (no surrogate: 0x80..=0x9F),
/// 0xF0 (no overlong form: 0x90..=0xBF) and 0xF4 (nothing past U+10FFFF: 0x80..=0x8F).
const AFTER_E0: u64 = 30;
const AFTER_ED: u64 = 36;
const AFTER_F0: u64 = 42;
const AFTER_F4: u64 = 48;

static UTF8_DFA: [u64; 256] = utf8_dfa();

/// `next` if the byte may come there, else [`REJECT`].
const fn tail_state(ok: bool, next: u64) -> u64 {
    if ok { next } else { REJECT }
}

const fn utf8_dfa() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        let start = match byte {
            0x00..=0x7F => ACCEPT,
            0xC2..=0xDF => TAIL1,
            0xE0 => AFTER_E0,
            0xED => AFTER_ED,
            0xE1..=0xEF => TAIL2,
            0xF0 => AFTER_F0,
            0xF1..=0xF3 => TAIL3,
            0xF4 => AFTER_F4,
            _ => REJECT,
        };
        let continuation = matches!(byte, 0x80..=0xBF);
        table[b] = start << ACCEPT
            | REJECT << REJECT
            | tail_state(continuation, ACCEPT) << TAIL1
            | tail_state(continuation, TAIL1) << TAIL2
            | tail_state(continuation, TAIL2) << TAIL3
            | tail_state(matches!(byte, 0xA0..=0xBF), TAIL1) << AFTER_E0
            | tail_state(matches!(byte, 0x80..=0x9F), TAIL1) << AFTER_ED
            | tail_state(matches!(byte, 0x90..=0xBF), TAIL2) << AFTER_F0
            | tail_state(matches!(byte, 0x80..=0x8F), TAIL2) << AFTER_F4;
        b += 1;
    }
    table
}

/// What `escape::resolve` or `escape::expand` appended to a string's bytes, as a string
/// again.
#[inline]
pub(crate) fn resolved_string(bytes: Vec<u8>) -> String {
    debug_assert!(str::from_utf8(&bytes).is_ok());
    // SAFETY: `bytes` held a `String` before `escape::resolve` appended to it (or was
    // empty), and `resolve` appends only pieces of a `&str` cut next to ASCII bytes,
    // which are char boundaries, and whole encoded chars; its overshooting block copies
    // are cut back to such a boundary before it returns, and on an error the caller
    // cuts `bytes` back to what it held before. `expand` writes the same kind of
    // pieces, cut at bytes it has just seen to be `&` and `;`, one right after another
    // into a buffer that starts as a copy of the `&str` (each piece overwriting what
    // the one before wrote past its end; a piece that would not fit makes it give up
    // before this), and cuts it at the end of the last. The encoded chars both write
    // come from `chars::RefChar`, checked against `char::encode_utf8` for every char
    // in its tests. So `bytes` is valid UTF-8.
    unsafe { String::from_utf8_unchecked(bytes) }
}

/// `name` as `&str` if it equals `open` and is ASCII, checked in the one pass that an
/// end tag needs anyway (comparing its name with the open element's); `None` otherwise.
#[inline]
pub(crate) fn same_ascii<'a>(name: &'a [u8], open: &[u8]) -> Option<&'a str> {
    if name.len() != open.len() {
        return None;
    }
    let mut high = 0;
    for (&a, &b) in name.iter().zip(open) {
        if a != b {
            return None;
        }
        high |= a;
    }
    if high >= 0x80 {
        return None;
    }
    // SAFETY: the loop above saw every byte of `name` and found none at or above 0x80,
    // and a sequence of ASCII bytes is valid UTF-8.
    Some(unsafe { str::from_utf8_unchecked(name) })
}

/// [`same_ascii`] for a name of `len` bytes, `1..=16`, given the 16 bytes from where each
/// copy of it starts: one compare of two 16-byte words and no loop, whose exit would
/// mispredict on most end tags (the names of successive tags differ in length). `None`
/// for a mismatch, a byte at or above 0x80, or `len` outside `1..=16`.
#[inline(always)]
pub(crate) fn same_ascii_16<'a>(
    name: &'a [u8; 16],
    open: &[u8; 16],
    len: usize,
) -> Option<&'a str> {
    let mask = u128::MAX.checked_shr(8 * 16usize.checked_sub(len)? as u32)?;
    let (x, y) = (u128::from_le_bytes(*name), u128::from_le_bytes(*open));
    if ((x ^ y) | x & u128::from_le_bytes([0x80; 16])) & mask != 0 {
        return None;
    }
    let name = name.get(..len)?;
    // SAFETY: the masked compare above saw every byte of `name` and found none at or
    // above 0x80, and a sequence of ASCII bytes is valid UTF-8.
    Some(unsafe { str::from_utf8_unchecked(name) })
}

/// `bytes.is_ascii()`, 16 bytes per step (the last step overlapping the one before).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn is_ascii(bytes: &[u8]) -> bool {
    let Some(last) = bytes.last_chunk::<16>() else {
        return short_is_ascii(bytes);
    };
    bytes
        .chunks_exact(16)
        .all(|block| <[u8; 16]>::try_from(block).is_ok_and(|b| high_bits(b) == 0))
        && high_bits(*last) == 0
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
fn is_ascii(bytes: &[u8]) -> bool {
    if bytes.len() < 16 {
        short_is_ascii(bytes)
    } else {
        bytes.is_ascii()
    }
}

/// `bytes.is_ascii()` for fewer than 16 bytes (names, short text): two overlapping
/// word reads instead of a byte loop.
#[inline]
fn short_is_ascii(bytes: &[u8]) -> bool {
    if let (Some(a), Some(b)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        return (u64::from_le_bytes(*a) | u64::from_le_bytes(*b)) & 0x8080_8080_8080_8080 == 0;
    }
    if let (Some(a), Some(b)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        return (u32::from_le_bytes(*a) | u32::from_le_bytes(*b)) & 0x8080_8080 == 0;
    }
    bytes.iter().fold(0, |high, &b| high | b) < 0x80
}

/// One bit per byte of `block`: its top bit.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn high_bits(block: [u8; 16]) -> i32 {
    use std::arch::x86_64::{_mm_movemask_epi8, _mm_set_epi8};
    let [
        b0,
        b1,
        b2,
        b3,
        b4,
        b5,
        b6,
        b7,
        b8,
        b9,
        b10,
        b11,
        b12,
        b13,
        b14,
        b15,
    ] = block.map(|b| b as i8);
    // SAFETY: both intrinsics only need SSE2, which this function is compiled for
    // (the `cfg` above requires it to be enabled for the whole build); neither
    // touches memory.
    unsafe {
        _mm_movemask_epi8(_mm_set_epi8(
            b15, b14, b13, b12, b11, b10, b9, b8, b7, b6, b5, b4, b3, b2, b1, b0,
        ))
    }
}

/// One bit per byte of `block`: its top bit.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn high_bits(block: [u8; 16]) -> i32 {
    block
        .iter()
        .enumerate()
        .fold(0, |mask, (k, &b)| mask | i32::from(b >> 7) << k)
}

/// The first lane of a 16-byte block of lane flags (each 0xFF or 0, as
/// `chars::find` computes them) that is 0xFF, if any. On x86-64 this is one `pmovmskb`
/// and one `tzcnt`, where reading the flags as a `u128` costs a round trip through
/// memory and two `tzcnt`s; it runs once per block of every scan.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(crate) fn first_lane(lanes: [u8; 16]) -> Option<usize> {
    use std::arch::x86_64::{_mm_movemask_epi8, _mm_set_epi8};
    let [
        l0,
        l1,
        l2,
        l3,
        l4,
        l5,
        l6,
        l7,
        l8,
        l9,
        l10,
        l11,
        l12,
        l13,
        l14,
        l15,
    ] = lanes.map(|l| l as i8);
    // SAFETY: both intrinsics only need SSE2, which this function is compiled for
    // (the `cfg` above requires it to be enabled for the whole build); neither
    // touches memory.
    let mask = unsafe {
        _mm_movemask_epi8(_mm_set_epi8(
            l15, l14, l13, l12, l11, l10, l9, l8, l7, l6, l5, l4, l3, l2, l1, l0,
        ))
    };
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

/// The first lane of a 16-byte block of lane flags that is 0xFF, if any.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(crate) fn first_lane(lanes: [u8; 16]) -> Option<usize> {
    let mask = u128::from_le_bytes(lanes);
    (mask != 0).then(|| (mask.trailing_zeros() / 8) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_std() {
        let cases: [&[u8]; 12] = [
            b"",
            b"stream:stream",
            b"<iq type='get' id='1'>",
            "é".as_bytes(),
            "<a b='日本語 😀'>".as_bytes(),
            b"\x7f",
            b"\x80",
            b"ab\xc3",
            b"ab\xc3(",
            "Привет, мир! 日本語 😀 and some ASCII after it".as_bytes(),
            b"sixteen ascii b.\xed\xa0\x80 a surrogate",
            b"sixteen ascii b.\xf0\x9f\x98",
        ];
        for bytes in cases {
            assert_eq!(from_utf8(bytes), str::from_utf8(bytes), "{bytes:?}");
        }
    }

    /// Every byte value that starts or ends a range the automaton treats alike, so
    /// that sequences of these stand for all sequences.
    const CLASS_EDGES: [u8; 24] = [
        0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC,
        0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
    ];

    #[test]
    fn automaton_agrees_with_std_on_every_short_sequence() {
        for a in 0..=255u8 {
            assert_eq!(is_utf8(&[a]), str::from_utf8(&[a]).is_ok(), "{a:x}");
            for b in 0..=255u8 {
                let two = [a, b];
                assert_eq!(is_utf8(&two), str::from_utf8(&two).is_ok(), "{two:x?}");
                for c in CLASS_EDGES {
                    let three = [a, b, c];
                    assert_eq!(
                        is_utf8(&three),
                        str::from_utf8(&three).is_ok(),
                        "{three:x?}"
                    );
                }
            }
        }
    }

    #[test]
    fn automaton_agrees_with_std_on_class_edges() {
        for a in CLASS_EDGES {
            for b in CLASS_EDGES {
                for c in CLASS_EDGES {
                    for d in CLASS_EDGES {
                        let four = [a, b, c, d];
                        assert_eq!(is_utf8(&four), str::from_utf8(&four).is_ok(), "{four:x?}");
                        // The same after a block of ASCII, so that the sequence straddles
                        // the end of a 16-byte block, or falls in the remainder.
                        // (60: the whole is long enough for simdutf8.)
                        for pad in [13, 14, 15, 16, 60] {
                            let mut long = vec![b'a'; pad];
                            long.extend_from_slice(&four);
                            long.extend_from_slice(&[b'z'; 16]);
                            assert_eq!(is_utf8(&long), str::from_utf8(&long).is_ok());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn prefix_agrees_with_std() {
        for total in [0, 10, 63, 64, 65, 100] {
            let mut input = vec![b'a'; total];
            for len in 0..=total {
                assert_eq!(prefix(&input, len), str::from_utf8(&input[..len]));
            }
            for at in 0..total {
                input[at] = 0x80;
                for len in 0..=total {
                    assert_eq!(
                        prefix(&input, len),
                        str::from_utf8(&input[..len]),
                        "{total} {at} {len}"
                    );
                }
                input[at] = 0xC3;
                for len in 0..=total {
                    assert_eq!(prefix(&input, len), str::from_utf8(&input[..len]));
                }
                input[at] = b'a';
            }
        }
    }

    #[test]
    fn is_ascii_agrees_with_std() {
        for len in 0..70 {
            let mut bytes = vec![b'a'; len];
            assert!(is_ascii(&bytes));
            for at in 0..len {
                bytes[at] = 0x80;
                assert!(!is_ascii(&bytes), "{len} {at}");
                bytes[at] = b'a';
            }
        }
    }

    #[test]
    fn first_lane_finds_the_first_flag() {
        assert_eq!(first_lane([0; 16]), None);
        for at in 0..16 {
            let mut lanes = [0; 16];
            lanes[at] = 0xFF;
            assert_eq!(first_lane(lanes), Some(at));
            lanes[15] = 0xFF;
            assert_eq!(first_lane(lanes), Some(at));
        }
    }

    #[test]
    fn same_ascii_needs_both() {
        assert_eq!(
            same_ascii(b"stream:stream", b"stream:stream"),
            Some("stream:stream")
        );
        assert_eq!(same_ascii(b"", b""), Some(""));
        assert_eq!(same_ascii(b"iq", b"iQ"), None);
        assert_eq!(same_ascii(b"iq", b"iqq"), None);
        assert_eq!(same_ascii("é".as_bytes(), "é".as_bytes()), None);
    }

    #[test]
    fn same_ascii_16_compares_only_the_name() {
        let window = |s: &[u8]| {
            let mut w = [b'x'; 16];
            w[..s.len()].copy_from_slice(s);
            w
        };
        let message = window(b"message>tail");
        assert_eq!(
            same_ascii_16(&message, &window(b"message to="), 7),
            Some("message")
        );
        assert_eq!(same_ascii_16(&message, &window(b"messagf"), 7), None);
        assert_eq!(same_ascii_16(&message, &window(b"Message"), 7), None);
        assert_eq!(same_ascii_16(&message, &window(b"message"), 0), None);
        assert_eq!(same_ascii_16(&message, &window(b"message"), 17), None);
        let full = *b"abcdefghijklmnop";
        assert_eq!(same_ascii_16(&full, &full, 16), Some("abcdefghijklmnop"));
        let mut last = full;
        last[15] = b'q';
        assert_eq!(same_ascii_16(&full, &last, 16), None);
        assert_eq!(same_ascii_16(&full, &last, 15), Some("abcdefghijklmno"));
        let high = window("é".as_bytes());
        assert_eq!(same_ascii_16(&high, &high, 2), None);
    }
}
