//! Slicing at offsets the scans computed, without a panic path: an offset out of range
//! (which the scans never produce) yields an empty slice.

#[inline]
pub(super) fn span(b: &[u8], start: usize, end: usize) -> &[u8] {
    b.get(start..end).unwrap_or_default()
}

/// Offsets handed in are always at ASCII delimiters, hence at char boundaries.
#[inline]
pub(super) fn sub(s: &str, start: usize, end: usize) -> &str {
    s.get(start..end).unwrap_or_default()
}
