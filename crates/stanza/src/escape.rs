//! Lazy unescaping of raw text and attribute values, and escaping for output.

use std::borrow::Cow;

use crate::Error;
use crate::chars::{RefState, RefStep, find, numeric, predefined, scan_ref};

/// Resolve the five predefined entities and numeric character references in `raw` text,
/// and normalize its line ends (`\r\n` and a lone `\r` become `\n`, XML 1.0 section
/// 2.11). Borrowed when `raw` contains neither `&` nor `\r`. Unknown entities are
/// `RestrictedXml` errors; references to characters XML forbids are `NotWellFormed`.
#[inline]
pub fn unescape(raw: &str) -> Result<Cow<'_, str>, Error> {
    owned_if_needed(raw, next_special(raw.as_bytes(), 0, Mode::Text), Mode::Text)
}

/// [`unescape`] for an attribute value: references are resolved and each literal tab,
/// line feed, carriage return or CR LF pair becomes one space (XML 1.0 section 3.3.3),
/// while the same characters written as references are kept. Borrowed when there is
/// nothing to change. [`crate::Attribute::value`] calls this.
#[inline]
pub fn unescape_attr(raw: &str) -> Result<Cow<'_, str>, Error> {
    owned_if_needed(raw, next_special(raw.as_bytes(), 0, Mode::Attr), Mode::Attr)
}

/// Appends the unescaped attribute value `raw` to `out`, reusing the caller's storage.
pub(crate) fn unescape_attr_into(raw: &str, out: &mut String) -> Result<(), Error> {
    match next_special(raw.as_bytes(), 0, Mode::Attr) {
        None => {
            out.push_str(raw);
            Ok(())
        }
        Some(first) => resolve(raw, first, out, Mode::Attr),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    Attr,
}

fn owned_if_needed(raw: &str, first: Option<usize>, mode: Mode) -> Result<Cow<'_, str>, Error> {
    match first {
        None => Ok(Cow::Borrowed(raw)),
        Some(first) => {
            // A reference or a CR LF pair is never shorter than what replaces it.
            let mut out = String::with_capacity(raw.len());
            resolve(raw, first, &mut out, mode)?;
            Ok(Cow::Owned(out))
        }
    }
}

/// The next byte at or after `from` that unescaping must replace.
#[inline]
fn next_special(b: &[u8], from: usize, mode: Mode) -> Option<usize> {
    let k = match mode {
        Mode::Text => find(b, from, |c| (c == b'&') | (c == b'\r')),
        Mode::Attr => find(b, from, |c| {
            (c == b'&') | (c == b'\t') | (c == b'\n') | (c == b'\r')
        }),
    };
    (k < b.len()).then_some(k)
}

/// `raw` needs work at `first`: append it to `out` unescaped and normalized.
fn resolve(raw: &str, first: usize, out: &mut String, mode: Mode) -> Result<(), Error> {
    let bytes = raw.as_bytes();
    let mut done = 0;
    let mut at = first;
    while let Some(&c) = bytes.get(at) {
        out.push_str(raw.get(done..at).unwrap_or_default());
        if c == b'&' {
            let rest = bytes.get(at + 1..).unwrap_or_default();
            // The predefined entities and complete numeric references inline;
            // everything else through the scanner.
            let (len, ch) = match predefined(rest).or_else(|| numeric(rest)) {
                Some(found) => found,
                None => match scan_ref(bytes, at + 1, RefState::Amp, usize::MAX) {
                    RefStep::Done { end, ch } => (end - at - 1, ch),
                    RefStep::Incomplete(_) => return Err(Error::MalformedReference),
                    RefStep::Invalid(e) => return Err(e),
                },
            };
            out.push(ch);
            done = at + 1 + len;
        } else {
            out.push(if mode == Mode::Attr { ' ' } else { '\n' });
            done = at + 1;
            if c == b'\r' && bytes.get(done) == Some(&b'\n') {
                done += 1;
            }
        }
        at = next_special(bytes, done, mode).unwrap_or(bytes.len());
    }
    out.push_str(raw.get(done..).unwrap_or_default());
    Ok(())
}

/// Append `text` to `out`, escaped for use as element content: `&`, `<` and `>`, and
/// `\r` as a reference so that line-end normalization keeps it.
pub fn escape_text(text: &str, out: &mut Vec<u8>) {
    escape(text, out, &TEXT_SPECIAL);
}

/// Append `value` to `out`, escaped for use inside a single- or double-quoted attribute:
/// `&`, `<`, `>`, both quotes, and tab, line feed and carriage return as references so
/// that attribute-value normalization keeps them.
pub fn escape_attr(value: &str, out: &mut Vec<u8>) {
    escape(value, out, &ATTR_SPECIAL);
}

fn escape(s: &str, out: &mut Vec<u8>, special: &[bool; 256]) {
    let bytes = s.as_bytes();
    let mut done = 0;
    while let Some(k) = bytes
        .get(done..)
        .and_then(|rest| rest.iter().position(|&b| special[usize::from(b)]))
    {
        let at = done + k;
        out.extend_from_slice(bytes.get(done..at).unwrap_or_default());
        out.extend_from_slice(entity(bytes.get(at).copied()));
        done = at + 1;
    }
    out.extend_from_slice(bytes.get(done..).unwrap_or_default());
}

/// The bytes each escape function replaces; a table test per byte beats a chain of
/// comparisons.
static TEXT_SPECIAL: [bool; 256] = table(b"&<>\r");
static ATTR_SPECIAL: [bool; 256] = table(b"&<>\"'\t\n\r");

const fn table(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

fn entity(b: Option<u8>) -> &'static [u8] {
    match b {
        Some(b'&') => b"&amp;",
        Some(b'<') => b"&lt;",
        Some(b'>') => b"&gt;",
        Some(b'"') => b"&quot;",
        Some(b'\'') => b"&apos;",
        Some(b'\t') => b"&#9;",
        Some(b'\n') => b"&#10;",
        Some(b'\r') => b"&#13;",
        _ => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_borrows_without_references() {
        assert!(matches!(
            unescape("plain <> text"),
            Ok(Cow::Borrowed("plain <> text"))
        ));
    }

    #[test]
    fn unescape_resolves_references() {
        assert_eq!(
            unescape("a&lt;b&gt;c&amp;d&quot;e&apos;f").unwrap(),
            "a<b>c&d\"e'f"
        );
        assert_eq!(unescape("&#65;&#x42;&#x1f600;é").unwrap(), "AB\u{1F600}é");
        assert_eq!(unescape("&amp;&amp;").unwrap(), "&&");
    }

    #[test]
    fn unescape_rejects() {
        assert_eq!(unescape("&nbsp;"), Err(Error::UnknownEntity));
        assert_eq!(unescape("a & b"), Err(Error::MalformedReference));
        assert_eq!(unescape("&amp"), Err(Error::MalformedReference));
        assert_eq!(unescape("&#1;"), Err(Error::ForbiddenCharRef));
        assert_eq!(unescape("&#xDFFF;"), Err(Error::ForbiddenCharRef));
        assert_eq!(Error::UnknownEntity.condition().as_str(), "restricted-xml");
        assert_eq!(
            Error::ForbiddenCharRef.condition().as_str(),
            "not-well-formed"
        );
    }

    #[test]
    fn normalizes_line_ends_and_attribute_whitespace() {
        assert_eq!(unescape("a\r\nb\rc\nd").unwrap(), "a\nb\nc\nd");
        assert_eq!(unescape("a&#13;\r\n").unwrap(), "a\r\n");
        assert_eq!(unescape_attr("x\ty\nz\r\nw\r").unwrap(), "x y z w ");
        assert_eq!(unescape_attr("&#9;&#10;&#13;&amp;").unwrap(), "\t\n\r&");
        assert!(matches!(
            unescape_attr("plain value"),
            Ok(Cow::Borrowed("plain value"))
        ));
        let mut out = String::from("x");
        unescape_attr_into("a&lt;\tb", &mut out).unwrap();
        assert_eq!(out, "xa< b");
    }

    #[test]
    fn escaping() {
        let mut out = Vec::new();
        escape_text("a<b>&'\"é", &mut out);
        assert_eq!(out, "a&lt;b&gt;&amp;'\"é".as_bytes());
        out.clear();
        escape_attr("a<b>&'\"é", &mut out);
        assert_eq!(out, "a&lt;b&gt;&amp;&apos;&quot;é".as_bytes());
        out.clear();
        escape_attr("plain", &mut out);
        assert_eq!(out, b"plain");
    }

    #[test]
    fn escape_round_trips() {
        for s in [
            "",
            "x",
            "<&>\"'",
            "mixed & <tags> 'q' \"dq\" ü",
            "tab\tlf\ncr\rcrlf\r\n",
        ] {
            let mut out = Vec::new();
            escape_attr(s, &mut out);
            assert_eq!(
                unescape_attr(std::str::from_utf8(&out).unwrap()).unwrap(),
                s
            );
            out.clear();
            escape_text(s, &mut out);
            assert_eq!(unescape(std::str::from_utf8(&out).unwrap()).unwrap(), s);
        }
    }
}
