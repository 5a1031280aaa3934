//! Typed rejections, each mapped to the RFC 6120 stream error condition the session sends.

/// The RFC 6120 section 4.9.3 stream error conditions a tokenizer rejection maps to.
/// RFC 6120 4.9.3.1 allows `bad-format` for any of them but recommends the specific
/// condition, so it is never used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamErrorCondition {
    /// Input that breaks a well-formedness rule of XML 1.0 or of Namespaces in XML 1.0
    /// (4.9.3.13).
    NotWellFormed,
    /// Well-formed XML that RFC 6120 section 11.1 forbids (comments, PIs, DTDs,
    /// entities) or this crate restricts (CDATA sections) (4.9.3.18).
    RestrictedXml,
    /// A namespace prefix that is not bound (4.9.3.2).
    BadNamespacePrefix,
    /// Well-formed XML that does not fit the stream's schema, which the tokenizer checks
    /// at the stream level (4.9.3.11).
    InvalidXml,
    /// Input that is not UTF-8 (4.9.3.22, RFC 6120 11.6).
    UnsupportedEncoding,
    /// A configured limit was exceeded (4.9.3.14).
    PolicyViolation,
}

impl StreamErrorCondition {
    /// The element name used on the wire inside `<stream:error>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotWellFormed => "not-well-formed",
            Self::RestrictedXml => "restricted-xml",
            Self::BadNamespacePrefix => "bad-namespace-prefix",
            Self::InvalidXml => "invalid-xml",
            Self::UnsupportedEncoding => "unsupported-encoding",
            Self::PolicyViolation => "policy-violation",
        }
    }
}

/// Why the tokenizer rejected its input. After an error the tokenizer must not be fed
/// again: the stream is dead (further calls return the same error).
///
/// Variants carry no positions so that the same input gives the same error however it
/// was split into reads. `crates/stanza/tests/rejections.rs` lists each one with its
/// condition and the rule it enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    // not-well-formed
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
    /// XML 1.0 production 17 keeps the target `xml` (in any case) from processing
    /// instructions, so `<?xml` anywhere but as the declaration that opens the stream is
    /// not a PI (`restricted-xml`) but not well formed.
    #[error("`<?xml` other than as the XML declaration at the start of the stream")]
    MisplacedXmlDecl,
    /// XML 1.0 WFC: Unique Att Spec, or Namespaces in XML 1.0 section 6.3 (two prefixes
    /// bound to one namespace name with the same local name).
    #[error("duplicate attribute")]
    DuplicateAttribute,
    /// Namespaces in XML 1.0 section 3, Reserved Prefixes and Namespace Names: a
    /// namespace-well-formedness rule (RFC 6120 4.9.3.13), not the stream or content
    /// namespace that `invalid-namespace` (4.9.3.10) is about.
    #[error("misuse of the reserved xml or xmlns prefix or namespace")]
    ReservedNamespace,
    /// Namespaces in XML 1.0 section 3: a prefix's declaration must not be empty.
    #[error("namespace prefix bound to the empty namespace name")]
    EmptyPrefixBinding,

    // restricted-xml
    #[error("XML comment")]
    Comment,
    #[error("processing instruction")]
    ProcessingInstruction,
    #[error("document type declaration")]
    Doctype,
    #[error("CDATA section")]
    CData,
    /// Undeclared, hence not well formed (XML 1.0 WFC: Entity Declared), but RFC 6120
    /// 11.1 names entity references as restricted XML, the more specific condition.
    #[error("entity reference other than the five predefined entities")]
    UnknownEntity,

    // bad-namespace-prefix
    /// Namespaces in XML 1.0 NSC: Prefix Declared; RFC 6120 4.9.3.2 has the condition
    /// for a prefix the receiver cannot use, more specific than `not-well-formed`.
    #[error("undeclared namespace prefix")]
    UndeclaredPrefix,

    // invalid-xml
    /// Well formed (the stream element may hold text), but RFC 6120 allows only
    /// whitespace between stanzas (11.7) and its schema gives the stream element
    /// element-only content (appendix A.1): checking that is validation, so 4.9.3.11.
    #[error("text other than whitespace between stanzas")]
    TextBetweenStanzas,

    // unsupported-encoding
    /// RFC 6120 4.9.3.22 names bytes that break the rules of UTF-8 explicitly.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// RFC 6120 11.6: UTF-8 only.
    #[error("XML declaration names an encoding other than UTF-8")]
    UnsupportedEncoding,

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
            Self::ForbiddenChar
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
            | Self::MalformedXmlDecl
            | Self::MisplacedXmlDecl
            | Self::DuplicateAttribute
            | Self::ReservedNamespace
            | Self::EmptyPrefixBinding => C::NotWellFormed,
            Self::Comment
            | Self::ProcessingInstruction
            | Self::Doctype
            | Self::CData
            | Self::UnknownEntity => C::RestrictedXml,
            Self::UndeclaredPrefix => C::BadNamespacePrefix,
            Self::TextBetweenStanzas => C::InvalidXml,
            Self::InvalidUtf8 | Self::UnsupportedEncoding => C::UnsupportedEncoding,
            Self::StanzaTooLarge | Self::TooDeep | Self::TooManyAttributes | Self::NameTooLong => {
                C::PolicyViolation
            }
        }
    }
}
