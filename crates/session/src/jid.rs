//! Minimal JID handling: split and compare (RFC 7622 without full PRECIS).
//!
//! The edge only needs to decide whether a `to` address names the server, the requester's
//! own account or resource, or someone else; it never routes. So JIDs are borrowed slices
//! of the input, validated for shape and length, and compared with the domain part
//! case-insensitively (the one normalisation every RFC 7622 domain gets).

use std::fmt;

/// RFC 7622 section 3: each part is at most 1023 bytes.
pub const MAX_PART_BYTES: usize = 1023;

/// Why a string is not a JID; the stanza error is always `jid-malformed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// A part that is present is empty (`@domain`, `domain/`, or no domain at all).
    #[error("empty {0}")]
    EmptyPart(Part),
    /// A part is longer than 1023 bytes.
    #[error("{0} longer than 1023 bytes")]
    TooLong(Part),
    /// A part contains a character RFC 7622 forbids there (controls, spaces, or one of
    /// `"&'/:<>@` in the localpart).
    #[error("forbidden character in {0}")]
    ForbiddenChar(Part),
}

/// The three parts of a JID, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Local,
    Domain,
    Resource,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Local => "localpart",
            Part::Domain => "domainpart",
            Part::Resource => "resourcepart",
        })
    }
}

/// A JID borrowed from its text: `[local@]domain[/resource]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jid<'a> {
    local: Option<&'a str>,
    domain: &'a str,
    resource: Option<&'a str>,
}

impl<'a> Jid<'a> {
    /// Splits and validates `s` (RFC 7622 section 3.1: the resource starts at the first
    /// `/`, the localpart ends at the first `@` before it; a final dot of the domain is
    /// dropped).
    pub fn parse(s: &'a str) -> Result<Self, JidError> {
        let (rest, resource) = match s.split_once('/') {
            Some((rest, resource)) => (rest, Some(resource)),
            None => (s, None),
        };
        let (local, domain) = match rest.split_once('@') {
            Some((local, domain)) => (Some(local), domain),
            None => (None, rest),
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if let Some(local) = local {
            check_part(local, Part::Local)?;
            if local.contains(['"', '&', '\'', '/', ':', '<', '>', '@']) {
                return Err(JidError::ForbiddenChar(Part::Local));
            }
        }
        check_part(domain, Part::Domain)?;
        if domain.contains('@') {
            return Err(JidError::ForbiddenChar(Part::Domain));
        }
        if let Some(resource) = resource {
            validate_resource(resource)?;
        }
        Ok(Self {
            local,
            domain,
            resource,
        })
    }

    pub fn local(&self) -> Option<&'a str> {
        self.local
    }

    pub fn domain(&self) -> &'a str {
        self.domain
    }

    pub fn resource(&self) -> Option<&'a str> {
        self.resource
    }

    /// Whether this is a bare domain, `domain` (compared case-insensitively).
    pub fn is_domain(&self, domain: &str) -> bool {
        self.local.is_none() && self.resource.is_none() && domain_eq(self.domain, domain)
    }

    /// Whether both name the same account, ignoring resources.
    pub fn same_bare(&self, other: &Jid<'_>) -> bool {
        self.local == other.local && domain_eq(self.domain, other.domain)
    }

    /// Whether both are the same full (or bare) JID.
    pub fn same_full(&self, other: &Jid<'_>) -> bool {
        self.same_bare(other) && self.resource == other.resource
    }
}

/// The rules a resourcepart must meet, also applied to a client's requested resource in
/// resource binding: non-empty, at most 1023 bytes, no control characters.
pub fn validate_resource(resource: &str) -> Result<(), JidError> {
    if resource.is_empty() {
        return Err(JidError::EmptyPart(Part::Resource));
    }
    if resource.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong(Part::Resource));
    }
    if resource.chars().any(char::is_control) {
        return Err(JidError::ForbiddenChar(Part::Resource));
    }
    Ok(())
}

/// Domain comparison: case-insensitive (RFC 7622 section 3.2 maps domains to lower
/// case), without allocating.
pub fn domain_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

fn check_part(part: &str, which: Part) -> Result<(), JidError> {
    if part.is_empty() {
        return Err(JidError::EmptyPart(which));
    }
    if part.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong(which));
    }
    if part.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(JidError::ForbiddenChar(which));
    }
    Ok(())
}

/// Numbered account JIDs, `user%d@localhost`: the text around the pattern's one `%d`, which
/// each number replaces. One home for the patterns the edge's `user add-range` creates
/// accounts from and the load generator logs in with, so both read them alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JidPattern {
    prefix: String,
    suffix: String,
}

/// A JID pattern without exactly one `%d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a JID pattern must contain exactly one %d")]
pub struct PatternError;

impl JidPattern {
    /// Splits `pattern` at its `%d`; the JIDs it yields are not validated here, since
    /// each caller has its own rules for them.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let (prefix, suffix) = pattern
            .split_once("%d")
            .filter(|(_, suffix)| !suffix.contains("%d"))
            .ok_or(PatternError)?;
        Ok(Self {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The JID for `number`.
    pub fn jid(&self, number: u64) -> String {
        format!("{}{number}{}", self.prefix, self.suffix)
    }
}

impl fmt::Display for JidPattern {
    /// The pattern as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%d{}", self.prefix, self.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_have_exactly_one_number() {
        let pattern = JidPattern::parse("user%d@localhost").unwrap();
        assert_eq!(pattern.jid(0), "user0@localhost");
        assert_eq!(pattern.jid(42), "user42@localhost");
        assert_eq!(pattern.to_string(), "user%d@localhost");
        assert_eq!(JidPattern::parse("%d").unwrap().jid(7), "7");
        assert_eq!(JidPattern::parse("%%d@x").unwrap().jid(1), "%1@x");
        for bad in ["user@localhost", "u%d%d@x", "u%d@x%d", ""] {
            assert_eq!(JidPattern::parse(bad), Err(PatternError), "{bad}");
        }
    }

    #[test]
    fn splits_parts() {
        let jid = Jid::parse("alice@Example.COM/phone/x@y").unwrap();
        assert_eq!(jid.local(), Some("alice"));
        assert_eq!(jid.domain(), "Example.COM");
        assert_eq!(jid.resource(), Some("phone/x@y"));
        assert!(Jid::parse("example.com.").unwrap().is_domain("EXAMPLE.com"));
    }

    #[test]
    fn compares_domain_case_insensitively() {
        let a = Jid::parse("alice@EXAMPLE.com/r").unwrap();
        let b = Jid::parse("alice@example.COM/r").unwrap();
        assert!(a.same_full(&b));
        assert!(!a.same_full(&Jid::parse("alice@example.com/R").unwrap()));
        assert!(!a.same_bare(&Jid::parse("Alice@example.com").unwrap()));
        assert!(domain_eq("ÄÖ.example", "äö.EXAMPLE"));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "@example.com",
            "alice@",
            "example.com/",
            "a b@example.com",
            "a\"b@x",
        ] {
            assert!(Jid::parse(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(1024);
        assert_eq!(Jid::parse(&long), Err(JidError::TooLong(Part::Domain)));
        assert_eq!(
            Jid::parse(&format!("x/{long}")),
            Err(JidError::TooLong(Part::Resource))
        );
        assert!(Jid::parse(&format!("{}@x", "a".repeat(1023))).is_ok());
        assert_eq!(
            validate_resource("a\u{7}"),
            Err(JidError::ForbiddenChar(Part::Resource))
        );
    }
}
