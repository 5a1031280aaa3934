//! Lazy unescaping of raw text and attribute values, and escaping for output.

use std::borrow::Cow;

use crate::Error;

/// Resolve the five predefined entities and numeric character references in `raw`.
/// Borrowed when `raw` contains no `&`. Unknown entities are `RestrictedXml` errors;
/// references to characters XML forbids are `NotWellFormed`.
pub fn unescape(raw: &str) -> Result<Cow<'_, str>, Error> {
    let _ = raw;
    unimplemented!()
}

/// Append `text` to `out`, escaped for use as element content (`&`, `<`, `>`).
pub fn escape_text(text: &str, out: &mut Vec<u8>) {
    let _ = (text, out);
    unimplemented!()
}

/// Append `value` to `out`, escaped for use inside a single- or double-quoted attribute.
pub fn escape_attr(value: &str, out: &mut Vec<u8>) {
    let _ = (value, out);
    unimplemented!()
}
