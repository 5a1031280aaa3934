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
/// again: the stream is dead (further calls return the same error).
///
/// Variants carry no positions so that the same input gives the same error however it
/// was split into reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    // not-well-formed
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("character XML forbids (control character, U+FFFE or U+FFFF)")]
    ForbiddenChar,
    #[error("character reference to a character XML forbids")]
    ForbiddenCharRef,
    #[error("`&` that does not start a well-formed reference")]
    MalformedReference,
    #[error("invalid element or attribute name")]
    InvalidName,
    #[error("malformed tag")]
    MalformedTag,
    #[error("attribute without `=` and a value")]
    AttributeWithoutValue,
    #[error("unquoted attribute value")]
    UnquotedAttributeValue,
    #[error("`<` in an attribute value")]
    LtInAttributeValue,
    #[error("attributes not separated by whitespace")]
    MissingWhitespace,
    #[error("end tag does not match the open element")]
    MismatchedEndTag,
    #[error("end tag before the stream header")]
    UnexpectedEndTag,
    #[error("`]]>` in character data")]
    CDataEndInText,
    #[error("text before the stream header")]
    TextBeforeStream,
    #[error("data after the stream was closed")]
    AfterStreamClose,
    #[error("`<!` that starts no known markup")]
    InvalidMarkup,
    #[error("malformed XML declaration")]
    MalformedXmlDecl,

    // restricted-xml
    #[error("XML comment")]
    Comment,
    #[error("processing instruction")]
    ProcessingInstruction,
    #[error("document type declaration")]
    Doctype,
    #[error("CDATA section")]
    CData,
    #[error("entity reference other than the five predefined entities")]
    UnknownEntity,

    // invalid-namespace
    #[error("undeclared namespace prefix")]
    UndeclaredPrefix,
    #[error("misuse of the reserved xml or xmlns prefix or namespace")]
    ReservedNamespace,
    #[error("namespace prefix bound to the empty namespace name")]
    EmptyPrefixBinding,

    // bad-format
    /// RFC 6120 has `unsupported-encoding` for this; it is sent as `bad-format` because
    /// [`StreamErrorCondition`] does not offer that condition.
    #[error("XML declaration names an encoding other than UTF-8")]
    UnsupportedEncoding,
    #[error("duplicate attribute")]
    DuplicateAttribute,
    #[error("text other than whitespace between stanzas")]
    TextBetweenStanzas,

    // policy-violation
    #[error("stanza, stream header or token larger than the limit")]
    StanzaTooLarge,
    #[error("elements nested deeper than the limit")]
    TooDeep,
    #[error("more attributes on one element than the limit")]
    TooManyAttributes,
    #[error("name longer than the limit")]
    NameTooLong,
}

impl Error {
    /// The stream error condition to send for this rejection.
    pub fn condition(&self) -> StreamErrorCondition {
        use StreamErrorCondition as C;
        match self {
            Self::InvalidUtf8
            | Self::ForbiddenChar
            | Self::ForbiddenCharRef
            | Self::MalformedReference
            | Self::InvalidName
            | Self::MalformedTag
            | Self::AttributeWithoutValue
            | Self::UnquotedAttributeValue
            | Self::LtInAttributeValue
            | Self::MissingWhitespace
            | Self::MismatchedEndTag
            | Self::UnexpectedEndTag
            | Self::CDataEndInText
            | Self::TextBeforeStream
            | Self::AfterStreamClose
            | Self::InvalidMarkup
            | Self::MalformedXmlDecl => C::NotWellFormed,
            Self::Comment
            | Self::ProcessingInstruction
            | Self::Doctype
            | Self::CData
            | Self::UnknownEntity => C::RestrictedXml,
            Self::UndeclaredPrefix | Self::ReservedNamespace | Self::EmptyPrefixBinding => {
                C::InvalidNamespace
            }
            Self::UnsupportedEncoding | Self::DuplicateAttribute | Self::TextBetweenStanzas => {
                C::BadFormat
            }
            Self::StanzaTooLarge | Self::TooDeep | Self::TooManyAttributes | Self::NameTooLong => {
                C::PolicyViolation
            }
        }
    }
}
