//! Bytes to `&str`, the one place in the crate that needs `unsafe`.
//!
//! Every token hands out `&str`s borrowed from the caller's buffer, and safe Rust has
//! one way to make them: `str::from_utf8`, whose fixed cost per call (around a hundred
//! instructions before it looks at the first byte) is more than the rest of the work
//! on a short end tag, and most of it on a start tag. Names, whitespace and most
//! attribute values in XMPP are ASCII, for which a plain `is_ascii` scan is proof
//! enough; anything else still goes through `str::from_utf8`, errors included.
//!
//! It also holds the two SSE2 mask reads (`pmovmskb`) that the 16-byte scans use, as
//! calling those intrinsics takes `unsafe` too; other targets get portable versions.

#![allow(unsafe_code)]

use std::str::{self, Utf8Error};

/// `bytes` as UTF-8: exactly `str::from_utf8(bytes)`, faster when `bytes` is ASCII.
#[inline]
pub(crate) fn from_utf8(bytes: &[u8]) -> Result<&str, Utf8Error> {
    if is_ascii(bytes) {
        // SAFETY: `is_ascii` just checked that every byte is below 0x80, and a sequence
        // of such bytes is valid UTF-8 (each is a one-byte character).
        Ok(unsafe { str::from_utf8_unchecked(bytes) })
    } else {
        str::from_utf8(bytes)
    }
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
        let cases: [&[u8]; 9] = [
            b"",
            b"stream:stream",
            b"<iq type='get' id='1'>",
            "é".as_bytes(),
            "<a b='日本語 😀'>".as_bytes(),
            b"\x7f",
            b"\x80",
            b"ab\xc3",
            b"ab\xc3(",
        ];
        for bytes in cases {
            assert_eq!(from_utf8(bytes), str::from_utf8(bytes), "{bytes:?}");
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
}
