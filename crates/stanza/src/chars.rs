//! XML 1.0 character rules shared by the tokenizer and [`crate::unescape`]: byte classes
//! for the hot loops, name validation, forbidden-character search and a resumable
//! entity/character reference scanner.

use crate::Error;

const NAME_START: u8 = 1;
const NAME: u8 = 2;
const WS: u8 = 4;
/// ASCII-only subsets for the fast path: NCName bytes without the colon.
const ASCII_START: u8 = 8;
const ASCII_NAME: u8 = 16;

/// Class bits per byte. Bytes >= 0x80 count as name bytes so names are scanned with one
/// table lookup per byte; the characters they encode are checked once the name ends.
static CLASS: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' {
            t[b] = NAME_START | NAME | ASCII_START | ASCII_NAME;
        } else if c == b':' || c >= 0x80 {
            t[b] = NAME_START | NAME;
        } else if c.is_ascii_digit() || c == b'-' || c == b'.' {
            t[b] = NAME | ASCII_NAME;
        } else if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' {
            t[b] = WS;
        }
        b += 1;
    }
    t
}

#[inline]
pub(crate) fn is_name_start(b: u8) -> bool {
    CLASS[usize::from(b)] & NAME_START != 0
}

#[inline]
pub(crate) fn is_name(b: u8) -> bool {
    CLASS[usize::from(b)] & NAME != 0
}

#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    CLASS[usize::from(b)] & WS != 0
}

/// Whether no UTF-8 sequence starts with `b`: a continuation byte, a lead byte of an
/// overlong form (0xC0, 0xC1), or one past U+10FFFF (0xF5 on).
pub(crate) fn starts_no_utf8(b: u8) -> bool {
    matches!(b, 0x80..=0xC1 | 0xF5..=0xFF)
}

/// First index at or after `i` that is not a name byte.
#[inline]
pub(crate) fn skip_name(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !is_name(c) {
            break;
        }
        i += 1;
    }
    i
}

/// First index at or after `i` that is not XML whitespace.
#[inline]
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !is_ws(c) {
            break;
        }
        i += 1;
    }
    i
}

/// The XML 1.0 `Char` production.
pub(crate) fn is_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Bytes classified per step by [`find`]: one SSE2 or NEON register.
const LANES: usize = 16;

/// Index of the first byte at or after `i` for which `stop` holds, or `b.len()`.
///
/// Sixteen bytes are classified per step into a lane mask (0xFF per stopping byte)
/// which the compiler turns into vector compares, and the first stopping lane is read
/// off with one `trailing_zeros`: no byte loop and no call, so it pays even for the
/// short runs between markup (names, attribute values, words between references). The
/// last few bytes of the input go one at a time. `stop` must be branch-free arithmetic
/// on the byte (comparisons joined with `|`, not `||`): a table lookup or a
/// short-circuit would not vectorize.
#[inline(always)]
pub(crate) fn find(b: &[u8], mut i: usize, stop: impl Fn(u8) -> bool) -> usize {
    while let Some(block) = b
        .get(i..i + LANES)
        .and_then(|s| <&[u8; LANES]>::try_from(s).ok())
    {
        let mut lanes = [0u8; LANES];
        for (lane, &c) in lanes.iter_mut().zip(block) {
            *lane = if stop(c) { 0xFF } else { 0 };
        }
        if let Some(lane) = crate::utf8::first_lane(lanes) {
            return i + lane;
        }
        i += LANES;
    }
    let rest = b.get(i..).unwrap_or_default();
    i + rest.iter().position(|&c| stop(c)).unwrap_or(rest.len())
}

/// First index at or after `i` that is not an ASCII NCName byte (colons excluded). Names
/// are a few bytes long: a table loop beats setting up [`find`].
#[inline(always)]
fn skip_ascii_ncname(b: &[u8], i: usize) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    i + rest
        .iter()
        .position(|&c| CLASS[usize::from(c)] & ASCII_NAME == 0)
        .unwrap_or(rest.len())
}

/// A byte that starts an NCName in the ASCII fast path.
#[inline(always)]
pub(crate) fn is_ascii_start(c: u8) -> bool {
    CLASS[usize::from(c)] & ASCII_START != 0
}

/// Why a fast path gave up: the input ended first, so that the same path may finish
/// once more input comes, or it met something out of the ordinary (an error among
/// them), which the resumable scanner reads and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    Cut,
    Odd,
}

/// `b[i]`, or [`Miss::Cut`] past the end of the input.
#[inline(always)]
pub(crate) fn byte(b: &[u8], i: usize) -> Result<u8, Miss> {
    b.get(i).copied().ok_or(Miss::Cut)
}

/// Scans an ASCII QName starting at `start`: its end and colon offset. [`Miss::Odd`]
/// for anything out of the ordinary (non-ASCII, a misplaced colon), which the slower
/// [`skip_name`] and [`qname`] pair then handles and reports.
#[inline(always)]
pub(crate) fn fast_qname(b: &[u8], start: usize) -> Result<(usize, Option<usize>), Miss> {
    if !is_ascii_start(byte(b, start)?) {
        return Err(Miss::Odd);
    }
    let mut i = skip_ascii_ncname(b, start + 1);
    let mut colon = None;
    if b.get(i) == Some(&b':') {
        if !is_ascii_start(byte(b, i + 1)?) {
            return Err(Miss::Odd);
        }
        colon = Some(i);
        i = skip_ascii_ncname(b, i + 2);
    }
    if b.get(i).is_some_and(|&c| is_name(c)) {
        return Err(Miss::Odd);
    }
    Ok((i, colon))
}

/// Checks a name the scanner delimited (all its bytes are name bytes, see [`skip_name`])
/// against the Namespaces in XML `QName` production and returns the offset of its colon.
/// Names are short, so one plain pass beats calling out to a searcher.
pub(crate) fn qname(name: &[u8]) -> Result<Option<usize>, Error> {
    let mut colon = None;
    let mut high = false;
    for (k, &c) in name.iter().enumerate() {
        if c == b':' {
            if colon.is_some() {
                return Err(Error::InvalidName);
            }
            colon = Some(k);
        }
        high |= c >= 0x80;
    }
    let (prefix, local) = match colon {
        Some(c) => (
            name.get(..c).unwrap_or_default(),
            name.get(c + 1..).unwrap_or_default(),
        ),
        None => (&[][..], name),
    };
    if high {
        if colon.is_some() {
            ncname_chars(prefix)?;
        }
        ncname_chars(local)?;
    } else {
        // Every byte is a name byte already; only the first of each part may not be a
        // digit, `-` or `.`, and neither part may be empty.
        let starts = |part: &[u8]| part.first().is_some_and(|&c| is_name_start(c));
        if colon.is_some() && !starts(prefix) || !starts(local) {
            return Err(Error::InvalidName);
        }
    }
    Ok(colon)
}

/// An NCName with non-ASCII characters, checked character by character.
fn ncname_chars(name: &[u8]) -> Result<(), Error> {
    let s = std::str::from_utf8(name).map_err(|_| Error::InvalidUtf8)?;
    let mut chars = s.chars();
    if !chars.next().is_some_and(is_name_start_char) || !chars.all(is_name_char) {
        return Err(Error::InvalidName);
    }
    Ok(())
}

/// First index at or after `i` where an attribute value quoted by `quote` needs a closer
/// look: the quote, `<`, `&`, a C0 control (tab, LF and CR included) or 0xEF (which may
/// start U+FFFE or U+FFFF).
#[inline(always)]
pub(crate) fn skip_value(b: &[u8], i: usize, quote: u8) -> usize {
    find(b, i, |c| {
        (c == quote) | (c == b'<') | (c == b'&') | (c < 0x20) | (c == 0xEF)
    })
}

/// First index at or after `i` where character data needs a closer look: `<`, `&`, `>`
/// (which may end `]]>`), a C0 control (tab, LF and CR included) or 0xEF (which may
/// start U+FFFE or U+FFFF).
#[inline]
pub(crate) fn skip_text(b: &[u8], i: usize) -> usize {
    find(b, i, |c| {
        (c == b'<') | (c == b'&') | (c == b'>') | (c < 0x20) | (c == 0xEF)
    })
}

/// Whether `b[i]` starts U+FFFE or U+FFFF; `None` when the input ends too early to know.
pub(crate) fn is_nonchar_at(b: &[u8], i: usize) -> Option<bool> {
    match (b.get(i), b.get(i + 1), b.get(i + 2)) {
        (Some(0xEF), Some(0xBF), Some(&c)) => Some(c == 0xBE || c == 0xBF),
        (Some(0xEF), Some(0xBF), None) | (Some(0xEF), None, _) => None,
        _ => Some(false),
    }
}

/// Byte-slice equality for short names: a plain loop instead of a `memcmp` call.
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Index of the first character XML forbids in `b`: a C0 control other than tab, LF and
/// CR, or U+FFFE/U+FFFF (surrogates are already invalid UTF-8). Blocks are screened with a
/// branch-free fold; only suspicious blocks are looked at bytewise.
pub(crate) fn find_forbidden(b: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut base = 0;
    for block in b.chunks(BLOCK) {
        let suspicious = block.iter().fold(0u8, |acc, &c| {
            acc | u8::from(c < 0x20) | u8::from(c == 0xEF)
        });
        if suspicious != 0 {
            for (k, &c) in block.iter().enumerate() {
                let at = base + k;
                let bad = if c < 0x20 {
                    !matches!(c, b'\t' | b'\n' | b'\r')
                } else {
                    c == 0xEF
                        && b.get(at + 1) == Some(&0xBF)
                        && matches!(b.get(at + 2), Some(0xBE | 0xBF))
                };
                if bad {
                    return Some(at);
                }
            }
        }
        base += block.len();
    }
    None
}

/// Where a reference scan stopped when the input ran out, so it resumes without
/// rescanning (a numeric reference may carry any number of leading zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefState {
    /// Just after `&`.
    Amp,
    /// After `&#`.
    Hash,
    /// After `&#` and decimal digits: the value so far, saturated above U+10FFFF.
    Dec(u32),
    /// After `&#x`.
    HexStart,
    /// After `&#x` and hex digits.
    Hex(u32),
    /// After `&` and this many name bytes.
    Named(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefStep {
    /// The reference ends just before `end` (after its `;`) and stands for `ch`.
    Done {
        end: usize,
        ch: RefChar,
    },
    /// The input ended inside the reference.
    Incomplete(RefState),
    Invalid(Error),
}

/// The character a reference stands for, UTF-8 encoded where the reference is read:
/// the five entities are ASCII, known without encoding anything, and whoever resolves
/// the reference copies its bytes out whole, with no branch on their number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RefChar {
    /// The encoding's bytes, first byte lowest; the bytes past `len` are zero.
    word: u32,
    len: u8,
}

impl RefChar {
    /// An ASCII character (the high bit of `b` is dropped, so that the bytes are always
    /// UTF-8).
    const fn ascii(b: u8) -> Self {
        Self {
            word: (b & 0x7F) as u32,
            len: 1,
        }
    }

    /// The encoding's bytes, of which the first [`Self::len`] count (four are always
    /// there, for copies of a fixed size).
    #[inline(always)]
    pub(crate) fn bytes(self) -> [u8; 4] {
        self.word.to_le_bytes()
    }

    #[inline(always)]
    pub(crate) fn len(self) -> usize {
        usize::from(self.len)
    }
}

impl From<char> for RefChar {
    /// All four encodings are computed and the one of the right length picked, with no
    /// branch on the character: numeric references in chat name characters of every
    /// length at random.
    #[inline]
    fn from(ch: char) -> Self {
        let c = u32::from(ch);
        let len = 1 + u8::from(c >= 0x80) + u8::from(c >= 0x800) + u8::from(c >= 0x1_0000);
        let tail = |shift: u32| 0x80 | (c >> shift) & 0x3F;
        let encodings = [
            c,
            (0xC0 | c >> 6) | tail(0) << 8,
            (0xE0 | c >> 12) | tail(6) << 8 | tail(0) << 16,
            (0xF0 | c >> 18) | tail(12) << 8 | tail(6) << 16 | tail(0) << 24,
        ];
        let word = encodings
            .get(usize::from(len) - 1)
            .copied()
            .unwrap_or_default();
        Self { word, len }
    }
}

/// A complete predefined entity or numeric character reference to a character XML
/// allows, recognized whole without the state machine; `rest` starts just after the
/// `&`. `None` for anything else (including errors, which [`scan_ref`] then reports).
///
/// Chat text has a reference every few words, and which one comes next is anyone's
/// guess: the five entity names are compared all at once on one 8-byte word, and digits
/// are read through a table, so that what a reference says does not steer a branch.
#[inline]
pub(crate) fn reference(rest: &[u8]) -> Option<(usize, RefChar)> {
    let Some(word) = rest.first_chunk::<8>() else {
        return predefined(rest).or_else(|| numeric(rest));
    };
    let w = u64::from_le_bytes(*word);
    let (three, four, five) = (w & 0xFF_FFFF, w & 0xFFFF_FFFF, w & 0xFF_FFFF_FFFF);
    let lt = three == word_of(b"lt;");
    let gt = three == word_of(b"gt;");
    let amp = four == word_of(b"amp;");
    let apos = five == word_of(b"apos;");
    let quot = five == word_of(b"quot;");
    let len = 3 * usize::from(lt | gt) + 4 * usize::from(amp) + 5 * usize::from(apos | quot);
    // At most one matched: the sum is that entity's character.
    let ch = u8::from(lt) * b'<'
        + u8::from(gt) * b'>'
        + u8::from(amp) * b'&'
        + u8::from(apos) * b'\''
        + u8::from(quot) * b'"';
    if len != 0 {
        return Some((len, RefChar::ascii(ch)));
    }
    numeric(rest)
}

/// `bytes` (at most 8) as a little-endian word, zero-padded.
const fn word_of(bytes: &[u8]) -> u64 {
    let mut w = 0;
    let mut k = 0;
    while k < bytes.len() {
        w |= (bytes[k] as u64) << (8 * k);
        k += 1;
    }
    w
}

/// The five predefined entities, for the last few bytes of an input, where
/// [`reference`] cannot read a whole word, and for [`scan_ref`].
fn predefined(rest: &[u8]) -> Option<(usize, RefChar)> {
    let (len, ch) = match rest.first()? {
        b'l' if rest.starts_with(b"lt;") => (3, b'<'),
        b'g' if rest.starts_with(b"gt;") => (3, b'>'),
        b'a' if rest.starts_with(b"amp;") => (4, b'&'),
        b'a' if rest.starts_with(b"apos;") => (5, b'\''),
        b'q' if rest.starts_with(b"quot;") => (5, b'"'),
        _ => return None,
    };
    Some((len, RefChar::ascii(ch)))
}

/// A complete numeric character reference to a character XML allows; `rest` starts
/// just after the `&`.
#[inline(always)]
fn numeric(rest: &[u8]) -> Option<(usize, RefChar)> {
    let (&hash, after) = rest.split_first()?;
    if hash != b'#' {
        return None;
    }
    let hex = after.first() == Some(&b'x');
    let digits = after.get(usize::from(hex)..).unwrap_or_default();
    let base: u32 = if hex { 16 } else { 10 };
    // `value` stays at most TOO_BIG, so `value * 16 + 15` cannot overflow a `u32`.
    let mut value: u32 = 0;
    let mut n = 0;
    for &c in digits {
        let digit = u32::from(DIGIT[usize::from(c)]);
        if digit >= base {
            break;
        }
        value = (value * base + digit).min(TOO_BIG);
        n += 1;
    }
    let k = 1 + usize::from(hex) + n;
    if n == 0 || rest.get(k) != Some(&b';') {
        return None;
    }
    let ch = char::from_u32(value).filter(|&ch| is_xml_char(u32::from(ch)))?;
    Some((k + 1, ch.into()))
}

/// Each byte's value as a hexadecimal digit (lower or upper case), or 0xFF.
static DIGIT: [u8; 256] = digits();

const fn digits() -> [u8; 256] {
    let mut t = [0xFF; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0xFF,
        };
        b += 1;
    }
    t
}

/// Anything above the largest code point; saturating there keeps the value in a `u32`.
const TOO_BIG: u32 = 0x11_0000;

/// Continues scanning the reference in `b` at index `i` from state `st`. Named
/// references other than the five predefined entities are restricted XML; numeric ones
/// must name a character XML allows. `max_name` bounds entity names.
pub(crate) fn scan_ref(b: &[u8], mut i: usize, mut st: RefState, max_name: usize) -> RefStep {
    if st == RefState::Amp
        && let Some((len, ch)) = reference(b.get(i..).unwrap_or_default())
    {
        return RefStep::Done { end: i + len, ch };
    }
    while let Some(&c) = b.get(i) {
        st = match st {
            RefState::Amp if c == b'#' => RefState::Hash,
            RefState::Amp if is_name_start(c) && c != b':' => RefState::Named(1),
            RefState::Hash if c == b'x' => RefState::HexStart,
            RefState::Hash | RefState::Dec(_) if c.is_ascii_digit() => {
                let v = if let RefState::Dec(v) = st { v } else { 0 };
                RefState::Dec(
                    v.saturating_mul(10)
                        .saturating_add(u32::from(c - b'0'))
                        .min(TOO_BIG),
                )
            }
            RefState::HexStart | RefState::Hex(_) if c.is_ascii_hexdigit() => {
                let v = if let RefState::Hex(v) = st { v } else { 0 };
                let d = char::from(c).to_digit(16).unwrap_or(0);
                RefState::Hex(v.saturating_mul(16).saturating_add(d).min(TOO_BIG))
            }
            RefState::Dec(v) | RefState::Hex(v) if c == b';' => {
                return match char::from_u32(v).filter(|&ch| is_xml_char(u32::from(ch))) {
                    Some(ch) => RefStep::Done {
                        end: i + 1,
                        ch: ch.into(),
                    },
                    None => RefStep::Invalid(Error::ForbiddenCharRef),
                };
            }
            RefState::Named(n) if c == b';' => {
                // The name and its `;`, which must be one of the five whole.
                let named = b.get(i.saturating_sub(n)..=i).unwrap_or_default();
                return match predefined(named) {
                    Some((len, ch)) if len == named.len() => RefStep::Done { end: i + 1, ch },
                    _ => RefStep::Invalid(Error::UnknownEntity),
                };
            }
            RefState::Named(n) if is_name(c) => {
                if n >= max_name {
                    return RefStep::Invalid(Error::NameTooLong);
                }
                RefState::Named(n + 1)
            }
            _ => return RefStep::Invalid(Error::MalformedReference),
        };
        i += 1;
    }
    RefStep::Incomplete(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(s: &str) -> RefStep {
        scan_ref(s.as_bytes(), 1, RefState::Amp, 256)
    }

    #[test]
    fn references() {
        assert_eq!(
            whole("&lt;"),
            RefStep::Done {
                end: 4,
                ch: '<'.into()
            }
        );
        assert_eq!(
            whole("&apos;x"),
            RefStep::Done {
                end: 6,
                ch: '\''.into()
            }
        );
        assert_eq!(
            whole("&#65;"),
            RefStep::Done {
                end: 5,
                ch: 'A'.into()
            }
        );
        assert_eq!(
            whole("&#x1F600;"),
            RefStep::Done {
                end: 9,
                ch: '\u{1F600}'.into()
            }
        );
        assert_eq!(
            whole("&#0000000000000000000065;"),
            RefStep::Done {
                end: 25,
                ch: 'A'.into()
            }
        );
        assert_eq!(whole("&#xD800;"), RefStep::Invalid(Error::ForbiddenCharRef));
        assert_eq!(whole("&#0;"), RefStep::Invalid(Error::ForbiddenCharRef));
        assert_eq!(whole("&#xFFFE;"), RefStep::Invalid(Error::ForbiddenCharRef));
        assert_eq!(
            whole("&#99999999999;"),
            RefStep::Invalid(Error::ForbiddenCharRef)
        );
        assert_eq!(whole("&nbsp;"), RefStep::Invalid(Error::UnknownEntity));
        assert_eq!(whole("& "), RefStep::Invalid(Error::MalformedReference));
        assert_eq!(whole("&#;"), RefStep::Invalid(Error::MalformedReference));
        assert_eq!(whole("&#X41;"), RefStep::Invalid(Error::MalformedReference));
        assert_eq!(whole("&amp"), RefStep::Incomplete(RefState::Named(3)));
        assert_eq!(
            scan_ref(b"&abcd", 1, RefState::Amp, 3),
            RefStep::Invalid(Error::NameTooLong)
        );
    }

    /// `escape::expand` and `escape::resolve` copy these bytes into strings that
    /// `utf8::resolved_string` trusts to be UTF-8.
    #[test]
    fn ref_chars_are_utf8_for_every_char() {
        for ch in (0..=0x10_FFFF).filter_map(char::from_u32) {
            let encoded = RefChar::from(ch);
            let bytes = encoded.bytes();
            let (used, rest) = bytes.split_at(encoded.len());
            assert_eq!(used, ch.encode_utf8(&mut [0; 4]).as_bytes(), "{ch:?}");
            assert!(rest.iter().all(|&b| b == 0), "{ch:?}");
        }
        for b in 0..=u8::MAX {
            let encoded = RefChar::ascii(b);
            assert_eq!(encoded.len(), 1);
            assert!(encoded.bytes()[0].is_ascii());
        }
    }

    #[test]
    fn resumes_where_it_stopped() {
        /// `s` fed one more byte at a time, the last call resuming where the one before
        /// stopped.
        fn byte_by_byte(s: &[u8]) -> RefStep {
            let mut st = RefState::Amp;
            for end in 2..s.len() {
                match scan_ref(&s[..end], end - 1, st, 256) {
                    RefStep::Incomplete(next) => st = next,
                    other => return other,
                }
            }
            scan_ref(s, s.len() - 1, st, 256)
        }
        assert_eq!(
            byte_by_byte(b"&#x41;"),
            RefStep::Done {
                end: 6,
                ch: 'A'.into()
            }
        );
        // A name read in pieces is resolved at its `;`.
        assert_eq!(
            byte_by_byte(b"&quot;"),
            RefStep::Done {
                end: 6,
                ch: '"'.into()
            }
        );
        assert_eq!(
            byte_by_byte(b"&lt;"),
            RefStep::Done {
                end: 4,
                ch: '<'.into()
            }
        );
        assert_eq!(
            byte_by_byte(b"&quotx;"),
            RefStep::Invalid(Error::UnknownEntity)
        );
        assert_eq!(
            byte_by_byte(b"&quo;"),
            RefStep::Invalid(Error::UnknownEntity)
        );
    }

    #[test]
    fn names() {
        assert_eq!(qname(b"a"), Ok(None));
        assert_eq!(qname(b"stream:stream"), Ok(Some(6)));
        assert_eq!(qname("é:ü".as_bytes()), Ok(Some(2)));
        assert_eq!(qname(b"a:b:c"), Err(Error::InvalidName));
        assert_eq!(qname(b":a"), Err(Error::InvalidName));
        assert_eq!(qname(b"a:"), Err(Error::InvalidName));
        assert_eq!(qname(b"1a"), Err(Error::InvalidName));
        assert_eq!(qname(b"a:-b"), Err(Error::InvalidName));
        assert_eq!(qname("\u{D7}".as_bytes()), Err(Error::InvalidName));
        assert_eq!(qname(b"\xff"), Err(Error::InvalidUtf8));
    }

    #[test]
    fn forbidden() {
        assert_eq!(find_forbidden(b"plain\ttext\r\n"), None);
        assert_eq!(find_forbidden(b"a\x01"), Some(1));
        let long = format!("{}\u{FFFF}", "x".repeat(40));
        assert_eq!(find_forbidden(long.as_bytes()), Some(40));
        assert_eq!(find_forbidden("\u{FFFD}\u{EFFF}".as_bytes()), None);
    }
}
