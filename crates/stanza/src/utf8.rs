//! Bytes to `&str`, the one place in the crate that needs `unsafe`.
//!
//! Every token hands out `&str`s borrowed from the caller's buffer, and safe Rust has
//! one way to make them: `str::from_utf8`, whose fixed cost per call (around a hundred
//! instructions before it looks at the first byte) is more than the rest of the work
//! on a short end tag, and most of it on a start tag. Names, whitespace and most
//! attribute values in XMPP are ASCII, for which a plain `is_ascii` scan is proof
//! enough; anything else still goes through `str::from_utf8`, errors included.

#![allow(unsafe_code)]

use std::str::{self, Utf8Error};

/// `bytes` as UTF-8: exactly `str::from_utf8(bytes)`, faster when `bytes` is ASCII.
#[inline]
pub(crate) fn from_utf8(bytes: &[u8]) -> Result<&str, Utf8Error> {
    if bytes.is_ascii() {
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
