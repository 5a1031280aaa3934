//! The RFC 6120 error conditions the edge sends: stream errors (which end the stream) and
//! stanza errors (which answer one stanza).

/// RFC 6120 section 4.9.3 stream error conditions the edge sends. Public so the I/O layer
/// can keep one counter per condition ([`crate::Cause::condition`] names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCondition {
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostUnknown,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RestrictedXml,
    SystemShutdown,
    UnsupportedEncoding,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamCondition {
    /// Every condition, in [`StreamCondition::index`] order.
    pub const ALL: [Self; 14] = [
        Self::BadNamespacePrefix,
        Self::Conflict,
        Self::ConnectionTimeout,
        Self::HostUnknown,
        Self::InvalidNamespace,
        Self::InvalidXml,
        Self::NotAuthorized,
        Self::NotWellFormed,
        Self::PolicyViolation,
        Self::RestrictedXml,
        Self::SystemShutdown,
        Self::UnsupportedEncoding,
        Self::UnsupportedStanzaType,
        Self::UnsupportedVersion,
    ];

    /// The position in [`StreamCondition::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The element name inside `<stream:error>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadNamespacePrefix => "bad-namespace-prefix",
            Self::Conflict => "conflict",
            Self::ConnectionTimeout => "connection-timeout",
            Self::HostUnknown => "host-unknown",
            Self::InvalidNamespace => "invalid-namespace",
            Self::InvalidXml => "invalid-xml",
            Self::NotAuthorized => "not-authorized",
            Self::NotWellFormed => "not-well-formed",
            Self::PolicyViolation => "policy-violation",
            Self::RestrictedXml => "restricted-xml",
            Self::SystemShutdown => "system-shutdown",
            Self::UnsupportedEncoding => "unsupported-encoding",
            Self::UnsupportedStanzaType => "unsupported-stanza-type",
            Self::UnsupportedVersion => "unsupported-version",
        }
    }
}

impl From<stanza::StreamErrorCondition> for StreamCondition {
    fn from(condition: stanza::StreamErrorCondition) -> Self {
        use stanza::StreamErrorCondition as C;
        match condition {
            C::NotWellFormed => Self::NotWellFormed,
            C::RestrictedXml => Self::RestrictedXml,
            C::BadNamespacePrefix => Self::BadNamespacePrefix,
            C::InvalidXml => Self::InvalidXml,
            C::UnsupportedEncoding => Self::UnsupportedEncoding,
            C::PolicyViolation => Self::PolicyViolation,
        }
    }
}

/// RFC 6120 section 8.3.3 stanza error conditions, each with the error type it is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StanzaCondition {
    BadRequest,
    Forbidden,
    ItemNotFound,
    JidMalformed,
    NotAllowed,
    ServiceUnavailable,
}

impl StanzaCondition {
    /// The element name inside `<error>`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::Forbidden => "forbidden",
            Self::ItemNotFound => "item-not-found",
            Self::JidMalformed => "jid-malformed",
            Self::NotAllowed => "not-allowed",
            Self::ServiceUnavailable => "service-unavailable",
        }
    }

    /// The `type` of the `<error>` element (RFC 6120 section 8.3.2), as section 8.3.3
    /// suggests for each condition.
    pub(crate) fn error_type(self) -> &'static str {
        match self {
            Self::BadRequest | Self::JidMalformed => "modify",
            Self::Forbidden => "auth",
            Self::ItemNotFound | Self::NotAllowed | Self::ServiceUnavailable => "cancel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_conditions_by_index_with_distinct_names() {
        let mut names = std::collections::HashSet::new();
        for (i, condition) in StreamCondition::ALL.into_iter().enumerate() {
            assert_eq!(condition.index(), i);
            assert!(names.insert(condition.as_str()), "{condition:?}");
        }
    }
}
