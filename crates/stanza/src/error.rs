//! Typed rejections, each mapped to the RFC 6120 stream error condition the session sends.

/// The RFC 6120 section 4.9.3 stream error conditions a tokenizer rejection maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamErrorCondition {
    /// Input that is not well-formed XML.
    NotWellFormed,
    /// Well-formed XML that RFC 6120 section 11.1 forbids (comments, PIs, DTDs, entities).
    RestrictedXml,
    /// A namespace prefix that is not declared, or a reserved namespace misused.
    InvalidNamespace,
    /// XML that is well formed but breaks a rule of the stream format (e.g. duplicate attributes).
    BadFormat,
    /// A configured limit was exceeded.
    PolicyViolation,
}

impl StreamErrorCondition {
    /// The element name used on the wire inside `<stream:error>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotWellFormed => "not-well-formed",
            Self::RestrictedXml => "restricted-xml",
            Self::InvalidNamespace => "invalid-namespace",
            Self::BadFormat => "bad-format",
            Self::PolicyViolation => "policy-violation",
        }
    }
}

/// Why the tokenizer rejected its input. After an error the tokenizer must not be fed
/// again: the stream is dead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    // The helper implementing the tokenizer fills in the specific variants; each maps to
    // one condition in `condition()`.
}

impl Error {
    /// The stream error condition to send for this rejection.
    pub fn condition(&self) -> StreamErrorCondition {
        unimplemented!()
    }
}
