//! Lazy unescaping of raw text and attribute values, and escaping for output.

use std::borrow::Cow;

use crate::Error;
use crate::chars::{RefChar, RefState, RefStep, find, reference, scan_ref};
use crate::utf8;

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
        Some(first) => {
            let mut bytes = std::mem::take(out).into_bytes();
            let kept = bytes.len();
            let resolved = resolve(raw, first, &mut bytes, Mode::Attr);
            if resolved.is_err() {
                bytes.truncate(kept);
            }
            *out = utf8::resolved_string(bytes);
            resolved
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    Attr,
}

#[inline]
fn owned_if_needed(raw: &str, first: Option<usize>, mode: Mode) -> Result<Cow<'_, str>, Error> {
    match first {
        None => Ok(Cow::Borrowed(raw)),
        Some(first) => owned(raw, first, mode).map(Cow::Owned),
    }
}

/// `raw`, which needs work at `first`, unescaped into a new string.
fn owned(raw: &str, first: usize, mode: Mode) -> Result<String, Error> {
    // A reference or a CR LF pair is never shorter than what replaces it; the slack
    // is for `copy_run`'s last block, which may overshoot the run before it is cut back.
    let mut out = Vec::with_capacity(raw.len() + BLOCK);
    resolve(raw, first, &mut out, mode)?;
    Ok(utf8::resolved_string(out))
}

/// A character or entity reference in a text token, as the tokenizer read it: `&` at
/// `at`, `;` just before `end`, standing for `ch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reference {
    pub(crate) at: usize,
    pub(crate) end: usize,
    pub(crate) ch: RefChar,
}

/// `raw` with its references `refs` (all of them, in order, and no CR in `raw`)
/// replaced by their characters. Each reference is checked to begin with `&` and end
/// with `;` where `refs` says, so that `raw` is only ever cut next to ASCII bytes (see
/// [`utf8::resolved_string`]); `refs` that do not fit `raw` so (which the tokenizer
/// never hands out) fall back to unescaping `raw` from scratch.
///
/// The output is written into a buffer sized up front, with fixed-size copies that
/// may run past each piece (the next piece overwrites the excess, and the end is cut
/// off): no growth checks, no `memcpy` call per run, and no branch on how long a run
/// is or how many bytes a character takes, which in chat text vary at random.
pub(crate) fn expand(raw: &str, refs: &[Reference]) -> String {
    let bytes = raw.as_bytes();
    // Output never outgrows the input it came from (a reference is at least as long as
    // its character's encoding), so every write below lands within `SLACK` of it. The
    // buffer starts as a copy of the input (one `memcpy`, where zeroing it would take
    // a `calloc`), which the pieces then overwrite from the front.
    let mut out = Vec::with_capacity(bytes.len() + SLACK);
    out.extend_from_slice(bytes);
    out.extend_from_slice(&[0; SLACK]);
    let from_scratch = || unescape(raw).map_or_else(|_| raw.to_owned(), Cow::into_owned);
    let mut written = 0;
    let mut done = 0;
    for r in refs {
        let fits = r.at >= done
            && bytes.get(r.at) == Some(&b'&')
            && r.end > r.at
            && bytes.get(r.end - 1) == Some(&b';');
        let Some(end) = fits
            .then(|| copy_piece(bytes, done, r.at, &mut out, written))
            .flatten()
            .and_then(|at| put_char(&mut out, at, r.ch))
            // The output stays behind the input, which keeps every write in bounds.
            .filter(|&end| end <= r.end)
        else {
            return from_scratch();
        };
        written = end;
        done = r.end;
    }
    match copy_piece(bytes, done, bytes.len(), &mut out, written) {
        Some(end) => {
            out.truncate(end);
            utf8::resolved_string(out)
        }
        None => from_scratch(),
    }
}

/// How far [`expand`]'s fixed-size writes may run past the output so far.
const SLACK: usize = 32;

/// Copies `src[from..to]` to `out` at `at` and returns where it ends: a run of up to
/// [`SLACK`] bytes as one fixed-size copy of that many, when `src` goes on that far.
/// `None` (nothing written) if `out` cannot hold it.
#[inline(always)]
fn copy_piece(src: &[u8], from: usize, to: usize, out: &mut [u8], at: usize) -> Option<usize> {
    let len = to.checked_sub(from)?;
    let whole = src.get(from..from + SLACK);
    match (whole, out.get_mut(at..at + SLACK)) {
        (Some(piece), Some(dst)) if len <= SLACK => dst.copy_from_slice(piece),
        _ => out
            .get_mut(at..at + len)?
            .copy_from_slice(src.get(from..to)?),
    }
    Some(at + len)
}

/// Writes `ch` to `out` at `at` and returns where it ends. All four bytes are written
/// whatever the length, which only moves the end. `None` (nothing written) if `out`
/// cannot hold them.
#[inline(always)]
fn put_char(out: &mut [u8], at: usize, ch: RefChar) -> Option<usize> {
    out.get_mut(at..at + 4)?.copy_from_slice(&ch.bytes());
    Some(at + ch.len())
}

/// Appends `ch`.
#[inline(always)]
fn push_char(out: &mut Vec<u8>, ch: RefChar) {
    out.extend_from_slice(ch.bytes().get(..ch.len()).unwrap_or_default());
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

/// Bytes [`copy_run`] moves per step.
const BLOCK: usize = 16;

/// Appends `raw[from..to]` to `out`. Runs between references are short, and a `memcpy`
/// call per run costs more than the copy: whole 16-byte blocks are copied instead (a
/// fixed-size copy is two instructions), the last one overshooting the run where `raw`
/// goes on, and `out` is cut back to the run's end.
#[inline(always)]
fn copy_run(raw: &[u8], from: usize, to: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let Some(run) = raw.get(from..to) else {
        return;
    };
    let end = start + run.len();
    let mut i = from;
    while i < to {
        match raw
            .get(i..i + BLOCK)
            .and_then(|s| <&[u8; BLOCK]>::try_from(s).ok())
        {
            Some(block) => out.extend_from_slice(block),
            None => {
                out.extend_from_slice(run.get(i - from..).unwrap_or_default());
                break;
            }
        }
        i += BLOCK;
    }
    if out.len() < end {
        // Unreachable (the run lies in `raw`), but never leave part of a character.
        out.truncate(start);
    }
    out.truncate(end);
}

/// `raw` needs work at `first`: append it to `out` unescaped and normalized. What is
/// appended is `raw` cut only before and after ASCII bytes (`&`, `;`, tab, LF, CR),
/// with whole characters in between, so it is valid UTF-8 whenever `raw` is (which
/// [`utf8::resolved_string`] relies on); on an error, `out` may end with part of it.
fn resolve(raw: &str, first: usize, out: &mut Vec<u8>, mode: Mode) -> Result<(), Error> {
    let bytes = raw.as_bytes();
    let mut done = 0;
    let mut at = first;
    while let Some(&c) = bytes.get(at) {
        copy_run(bytes, done, at, out);
        if c == b'&' {
            let rest = bytes.get(at + 1..).unwrap_or_default();
            // The predefined entities and complete numeric references inline;
            // everything else through the scanner.
            let (len, ch) = match reference(rest) {
                Some(found) => found,
                None => match scan_ref(bytes, at + 1, RefState::Amp, usize::MAX) {
                    RefStep::Done { end, ch } => (end - at - 1, ch),
                    RefStep::Incomplete(_) => return Err(Error::MalformedReference),
                    RefStep::Invalid(e) => return Err(e),
                },
            };
            push_char(out, ch);
            done = at + 1 + len;
        } else {
            out.push(if mode == Mode::Attr { b' ' } else { b'\n' });
            done = at + 1;
            if c == b'\r' && bytes.get(done) == Some(&b'\n') {
                done += 1;
            }
        }
        at = next_special(bytes, done, mode).unwrap_or(bytes.len());
    }
    copy_run(bytes, done, bytes.len(), out);
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
        // Characters U+0080..U+00FF fit a byte but are two in UTF-8.
        assert_eq!(unescape("&#233;t&#xFF;&#x80;").unwrap(), "ét\u{FF}\u{80}");
        // Runs longer than a copy block, around references near the end.
        let long = "Привет, мир! 日本語 and more&quot; then &#x1F600;x&lt;";
        assert_eq!(
            unescape(long).unwrap(),
            "Привет, мир! 日本語 and more\" then \u{1F600}x<"
        );
        assert_eq!(unescape_attr("a\r\nb&apos;").unwrap(), "a b'");
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
    fn expands_recorded_references() {
        let raw = "é&lt;x&#x1F600;&amp;";
        let refs = [
            Reference {
                at: 2,
                end: 6,
                ch: '<'.into(),
            },
            Reference {
                at: 7,
                end: 16,
                ch: '\u{1F600}'.into(),
            },
            Reference {
                at: 16,
                end: 21,
                ch: '&'.into(),
            },
        ];
        assert_eq!(expand(raw, &refs), "é<x\u{1F600}&");
        assert_eq!(expand("no references", &[]), "no references");
        // References that do not sit on `&` and `;` are not trusted: the text is
        // unescaped from scratch instead.
        let misplaced = [Reference {
            at: 1,
            end: 6,
            ch: '?'.into(),
        }];
        assert_eq!(expand(raw, &misplaced), "é<x\u{1F600}&");
        let overlapping = [refs[1], refs[0]];
        assert_eq!(expand(raw, &overlapping), "é<x\u{1F600}&");
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
