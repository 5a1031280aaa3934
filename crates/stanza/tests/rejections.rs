//! Every rejection: the exact error variant and the RFC 6120 condition it maps to.
//!
//! | rejection | condition | rule |
//! | --- | --- | --- |
//! | `ForbiddenChar` | not-well-formed | XML 1.0 production 2 (Char) |
//! | `ForbiddenCharRef` | not-well-formed | XML 1.0 WFC: Legal Character |
//! | `MalformedReference` | not-well-formed | XML 1.0 productions 14, 10, 66, 68 |
//! | `InvalidName` | not-well-formed | XML 1.0 production 5 (Name), Namespaces 1.0 (QName) |
//! | `MalformedTag`, `AttributeWithoutValue`, `UnquotedAttributeValue` | not-well-formed | XML 1.0 productions 40-44 |
//! | `LtInAttributeValue` | not-well-formed | XML 1.0 WFC: No < in Attribute Values |
//! | `MissingWhitespace` | not-well-formed | XML 1.0 production 40 (S between attributes) |
//! | `MismatchedEndTag` | not-well-formed | XML 1.0 WFC: Element Type Match |
//! | `UnexpectedEndTag`, `TextBeforeStream`, `AfterStreamClose` | not-well-formed | XML 1.0 production 1 (document); RFC 6120 11.6 (U+FEFF is a character, not a BOM) |
//! | `CDataEndInText` | not-well-formed | XML 1.0 production 14 (CharData) |
//! | `InvalidMarkup` | not-well-formed | XML 1.0 production 43 (content) |
//! | `MalformedXmlDecl` | not-well-formed | XML 1.0 productions 23-26, 32, 80-81; 1.x other than 1.0 is read as 1.0 (XML 1.0 section 2.8, RFC 6120 11.8) |
//! | `MisplacedXmlDecl` | not-well-formed | XML 1.0 production 17 (PITarget excludes `xml`) |
//! | `DuplicateAttribute` | not-well-formed | XML 1.0 WFC: Unique Att Spec; Namespaces 1.0 section 6.3 |
//! | `ReservedNamespace` | not-well-formed | Namespaces 1.0 section 3, Reserved Prefixes and Namespace Names (RFC 6120 4.9.3.13) |
//! | `EmptyPrefixBinding` | not-well-formed | Namespaces 1.0 section 3 (no empty prefix declaration) |
//! | `Comment`, `ProcessingInstruction`, `Doctype`, `UnknownEntity` | restricted-xml | RFC 6120 11.1, 4.9.3.18 |
//! | `CData` | restricted-xml | this crate's restriction (see the crate docs) |
//! | `UndeclaredPrefix` | bad-namespace-prefix | Namespaces 1.0 NSC: Prefix Declared; RFC 6120 4.9.3.2 |
//! | `TextBetweenStanzas` | invalid-xml | RFC 6120 11.7, appendix A.1, 4.9.3.11 |
//! | `InvalidUtf8` | unsupported-encoding | RFC 6120 4.9.3.22 (improperly encoded), 11.6 |
//! | `UnsupportedEncoding` | unsupported-encoding | RFC 6120 11.6, 4.9.3.22 |
//! | `StanzaTooLarge`, `TooDeep`, `TooManyAttributes`, `NameTooLong` | policy-violation | RFC 6120 4.9.3.14 |

use stanza::{Error, StreamErrorCondition as C, Token, Tokenizer, TokenizerLimits};

const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

/// Feeds `input` whole and returns the error it ends with, if any.
fn error_of(limits: TokenizerLimits, input: &[u8]) -> Option<Error> {
    let mut t = Tokenizer::new(limits);
    loop {
        match t.next(input) {
            Ok(Token::NeedMore) => return None,
            Ok(_) => {}
            Err(e) => {
                // The stream is dead: the same error comes back.
                assert_eq!(t.next(input).err(), Some(e));
                return Some(e);
            }
        }
    }
}

/// Asserts that `body` after a stream header is rejected with `error` and `condition`.
fn rejects_in_stream(body: &str, error: Error, condition: C) {
    let input = format!("{HEADER}{body}");
    assert_eq!(
        error_of(TokenizerLimits::default(), input.as_bytes()),
        Some(error),
        "input: {body}"
    );
    assert_eq!(error.condition(), condition, "{error:?}");
    // The message says what went wrong.
    assert!(!error.to_string().is_empty());
}

fn rejects_raw(input: &[u8], error: Error, condition: C) {
    assert_eq!(
        error_of(TokenizerLimits::default(), input),
        Some(error),
        "input: {}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(error.condition(), condition);
}

#[test]
fn valid_streams_are_not_rejected() {
    for body in [
        "<message><body>a &amp; b &#65; &#x42; &lt;&gt;&quot;&apos; ]] ]></body></message>",
        "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
        "<x:a xmlns:x='urn:x' x:b='1' b='2'/>",
        "<a xmlns:p='urn:p' xmlns:q='urn:q' p:x='1' q:y='2'/>",
        "<a xml:lang='en' c=\"'\" d='\"' e='&lt;'/>",
        "<a xmlns=''/>",
        "<a xmlns:xml='http://www.w3.org/XML/1998/namespace'/>",
        "<a>\t\r\n é 😀 \u{FFFD}</a>",
        "<a\n  b = 'c'\t/>",
        "<é:ü xmlns:é='urn:e'/>",
        "</stream:stream>  ",
    ] {
        let input = format!("{HEADER}{body}");
        assert_eq!(
            error_of(TokenizerLimits::default(), input.as_bytes()),
            None,
            "input: {body}"
        );
    }
    for declaration in [
        "<?xml version='1.0' encoding='utf-8'?>",
        // XML 1.0 section 2.8: a 1.x document is processed as 1.0.
        "<?xml version='1.1'?>",
    ] {
        assert_eq!(
            error_of(
                TokenizerLimits::default(),
                format!("{declaration}{HEADER}").as_bytes()
            ),
            None,
            "{declaration}"
        );
    }
}

#[test]
fn not_well_formed() {
    let nwf = C::NotWellFormed;
    rejects_raw(
        format!("{HEADER}<a>\u{0}</a>").as_bytes(),
        Error::ForbiddenChar,
        nwf,
    );
    rejects_in_stream("<a>\u{1}</a>", Error::ForbiddenChar, nwf);
    rejects_in_stream("<a>\u{FFFE}</a>", Error::ForbiddenChar, nwf);
    rejects_in_stream("<a b='\u{FFFF}'/>", Error::ForbiddenChar, nwf);
    rejects_in_stream("<a b='\u{7}'/>", Error::ForbiddenChar, nwf);
    rejects_in_stream("<a>&#0;</a>", Error::ForbiddenCharRef, nwf);
    rejects_in_stream("<a>&#xD800;</a>", Error::ForbiddenCharRef, nwf);
    rejects_in_stream("<a>&#xFFFF;</a>", Error::ForbiddenCharRef, nwf);
    rejects_in_stream("<a>&#x110000;</a>", Error::ForbiddenCharRef, nwf);
    rejects_in_stream("<a b='&#1;'/>", Error::ForbiddenCharRef, nwf);
    rejects_in_stream("<a>fish & chips</a>", Error::MalformedReference, nwf);
    rejects_in_stream("<a>&amp</a>", Error::MalformedReference, nwf);
    rejects_in_stream("<a>&#x;</a>", Error::MalformedReference, nwf);
    rejects_in_stream("<a>&#12a;</a>", Error::MalformedReference, nwf);
    rejects_in_stream("<a b='&'/>", Error::MalformedReference, nwf);
    rejects_in_stream("<1a/>", Error::InvalidName, nwf);
    rejects_in_stream("< a/>", Error::InvalidName, nwf);
    rejects_in_stream("<a:b:c/>", Error::InvalidName, nwf);
    rejects_in_stream("<:a/>", Error::InvalidName, nwf);
    rejects_in_stream("<a b:='1'/>", Error::InvalidName, nwf);
    rejects_in_stream("<\u{D7}/>", Error::InvalidName, nwf);
    rejects_in_stream("<a></>", Error::InvalidName, nwf);
    rejects_in_stream("<a/ >", Error::MalformedTag, nwf);
    rejects_in_stream("<a b='1' ! />", Error::MalformedTag, nwf);
    rejects_in_stream("<a></a x>", Error::MalformedTag, nwf);
    rejects_in_stream("<a b/>", Error::AttributeWithoutValue, nwf);
    rejects_in_stream("<a b c='1'/>", Error::AttributeWithoutValue, nwf);
    rejects_in_stream("<a b=1/>", Error::UnquotedAttributeValue, nwf);
    rejects_in_stream("<a b=/>", Error::UnquotedAttributeValue, nwf);
    rejects_in_stream("<a b='<'/>", Error::LtInAttributeValue, nwf);
    rejects_in_stream("<a b='1'c='2'/>", Error::MissingWhitespace, nwf);
    rejects_in_stream("<a><b></a></b>", Error::MismatchedEndTag, nwf);
    rejects_in_stream("<a></b>", Error::MismatchedEndTag, nwf);
    rejects_in_stream("<x:a xmlns:x='urn:x'></y:a>", Error::MismatchedEndTag, nwf);
    rejects_in_stream("</stream:streams>", Error::MismatchedEndTag, nwf);
    rejects_in_stream("<a>]]></a>", Error::CDataEndInText, nwf);
    rejects_in_stream("</stream:stream><a/>", Error::AfterStreamClose, nwf);
    rejects_in_stream("</stream:stream>x", Error::AfterStreamClose, nwf);
    rejects_in_stream("</stream:stream></a>", Error::AfterStreamClose, nwf);
    rejects_in_stream("<!ELEMENT a ANY>", Error::InvalidMarkup, nwf);
    rejects_in_stream("<!-x->", Error::InvalidMarkup, nwf);
    rejects_raw(b"</stream:stream>", Error::UnexpectedEndTag, nwf);
    rejects_raw(b"hello", Error::TextBeforeStream, nwf);
    rejects_raw(
        "\u{FEFF}<stream:stream>".as_bytes(),
        Error::TextBeforeStream,
        nwf,
    );
    rejects_raw(b"<?xml version='2.0'?><a>", Error::MalformedXmlDecl, nwf);
    rejects_raw(b"<?xml encoding='UTF-8'?><a>", Error::MalformedXmlDecl, nwf);
    rejects_raw(b"<?xml?><a>", Error::MalformedXmlDecl, nwf);
    rejects_raw(b"<?XML version='1.0'?><a>", Error::MalformedXmlDecl, nwf);
}

/// The example: `<message a='1' a='2'/>` breaks WFC: Unique Att Spec.
#[test]
fn duplicate_attributes_are_not_well_formed() {
    let nwf = C::NotWellFormed;
    rejects_in_stream("<message a='1' a='2'/>", Error::DuplicateAttribute, nwf);
    rejects_in_stream("<a b='1' b='2'/>", Error::DuplicateAttribute, nwf);
    rejects_in_stream("<a xmlns='x' xmlns='y'/>", Error::DuplicateAttribute, nwf);
    rejects_in_stream(
        "<a xmlns:p='urn:x' xmlns:q='urn:x' p:b='1' q:b='2'/>",
        Error::DuplicateAttribute,
        nwf,
    );
    rejects_raw(
        HEADER.replace("to=", "to='x' to=").as_bytes(),
        Error::DuplicateAttribute,
        nwf,
    );
}

/// `<?xml` is no processing instruction (XML 1.0 production 17), so outside the
/// declaration that opens the stream it is not well formed rather than restricted.
#[test]
fn misplaced_xml_declarations_are_not_well_formed() {
    let nwf = C::NotWellFormed;
    rejects_in_stream("<?xml version='1.0'?>", Error::MisplacedXmlDecl, nwf);
    rejects_in_stream("<a><?xml version='1.0'?></a>", Error::MisplacedXmlDecl, nwf);
    rejects_in_stream("<?XmL x?>", Error::MisplacedXmlDecl, nwf);
    rejects_in_stream("<?xml?>", Error::MisplacedXmlDecl, nwf);
    rejects_raw(b" <?xml version='1.0'?>", Error::MisplacedXmlDecl, nwf);
    rejects_raw(
        b"<?xml version='1.0'?><?xml version='1.0'?>",
        Error::MisplacedXmlDecl,
        nwf,
    );
}

/// Namespaces in XML 1.0 constraints on the reserved prefixes and on declarations are
/// namespace well-formedness (RFC 6120 4.9.3.13); `invalid-namespace` is only for the
/// stream and content namespaces of the header (4.9.3.10), which the session checks.
#[test]
fn namespace_constraints_are_not_well_formed() {
    let nwf = C::NotWellFormed;
    rejects_in_stream("<xmlns:a/>", Error::ReservedNamespace, nwf);
    rejects_in_stream("<a xmlns:xml='urn:other'/>", Error::ReservedNamespace, nwf);
    rejects_in_stream("<a xmlns:xmlns='urn:x'/>", Error::ReservedNamespace, nwf);
    rejects_in_stream(
        "<a xmlns:x='http://www.w3.org/XML/1998/namespace'/>",
        Error::ReservedNamespace,
        nwf,
    );
    rejects_in_stream(
        "<a xmlns='http://www.w3.org/2000/xmlns/'/>",
        Error::ReservedNamespace,
        nwf,
    );
    rejects_in_stream(
        "<a xmlns:x='http://www.w3.org/2000/xmlns&#x2F;'/>",
        Error::ReservedNamespace,
        nwf,
    );
    rejects_in_stream("<a xmlns:x=''/>", Error::EmptyPrefixBinding, nwf);
    rejects_raw(
        b"<s:stream xmlns:s='urn:x' xmlns:t=''>",
        Error::EmptyPrefixBinding,
        nwf,
    );
}

#[test]
fn restricted_xml() {
    let rx = C::RestrictedXml;
    rejects_in_stream("<!-- hi -->", Error::Comment, rx);
    rejects_in_stream("<a><!----></a>", Error::Comment, rx);
    rejects_raw(b"<!-- hi --><stream:stream>", Error::Comment, rx);
    rejects_in_stream("<?pi data?>", Error::ProcessingInstruction, rx);
    rejects_raw(b"<?php ?>", Error::ProcessingInstruction, rx);
    rejects_raw(
        b"<?xml-stylesheet href='a'?>",
        Error::ProcessingInstruction,
        rx,
    );
    rejects_in_stream("<?xmlfoo?>", Error::ProcessingInstruction, rx);
    rejects_in_stream("<?xm>", Error::ProcessingInstruction, rx);
    rejects_in_stream("<?p>", Error::ProcessingInstruction, rx);
    rejects_raw(b"<!DOCTYPE stream>", Error::Doctype, rx);
    rejects_in_stream("<!DOCTYPE x>", Error::Doctype, rx);
    rejects_in_stream("<a><![CDATA[x]]></a>", Error::CData, rx);
    rejects_in_stream("<a>&nbsp;</a>", Error::UnknownEntity, rx);
    rejects_in_stream("<a b='&foo;'/>", Error::UnknownEntity, rx);
    rejects_in_stream("<a>&é;</a>", Error::UnknownEntity, rx);
}

#[test]
fn bad_namespace_prefix() {
    let bnp = C::BadNamespacePrefix;
    rejects_in_stream("<x:a/>", Error::UndeclaredPrefix, bnp);
    rejects_in_stream("<a x:b='1'/>", Error::UndeclaredPrefix, bnp);
    rejects_in_stream("<a xmlns:x='urn:x'/><x:b/>", Error::UndeclaredPrefix, bnp);
    rejects_in_stream(
        "<a xmlns:x='urn:x'><b/></a><c x:d='1'/>",
        Error::UndeclaredPrefix,
        bnp,
    );
    rejects_raw(
        b"<foo:stream xmlns='jabber:client'>",
        Error::UndeclaredPrefix,
        bnp,
    );
}

/// Text at the stream level is well formed but not what the stream's schema allows.
#[test]
fn invalid_xml() {
    let ix = C::InvalidXml;
    rejects_in_stream(" hello <a/>", Error::TextBetweenStanzas, ix);
    rejects_in_stream("<a/>&amp;", Error::TextBetweenStanzas, ix);
}

#[test]
fn unsupported_encoding() {
    let ue = C::UnsupportedEncoding;
    let mut bad = format!("{HEADER}<a>").into_bytes();
    bad.extend_from_slice(b"\xC3\x28</a>");
    rejects_raw(&bad, Error::InvalidUtf8, ue);
    let mut bad = format!("{HEADER}<a b='").into_bytes();
    bad.extend_from_slice(b"\xFF'/>");
    rejects_raw(&bad, Error::InvalidUtf8, ue);
    let mut surrogate = format!("{HEADER}<a>").into_bytes();
    surrogate.extend_from_slice(b"\xED\xA0\x80</a>");
    rejects_raw(&surrogate, Error::InvalidUtf8, ue);
    // Between stanzas, a byte no UTF-8 character starts with is no text.
    let mut bad = format!("{HEADER}<a/>").into_bytes();
    bad.extend_from_slice(b"\x80<a/>");
    rejects_raw(&bad, Error::InvalidUtf8, ue);
    // A stream in UTF-16, with the byte order mark XML 1.0 (4.3.3) requires for it.
    rejects_raw(b"\xFE\xFF\x00<\x00?", Error::InvalidUtf8, ue);
    rejects_raw(b"\xFF\xFE<\x00?\x00", Error::InvalidUtf8, ue);
    rejects_raw(
        b"<?xml version='1.0' encoding='ISO-8859-1'?>",
        Error::UnsupportedEncoding,
        ue,
    );
    rejects_raw(
        b"<?xml version='1.0' encoding='UTF-16'?>",
        Error::UnsupportedEncoding,
        ue,
    );
}

#[test]
fn policy_violation() {
    let pv = C::PolicyViolation;
    let small = TokenizerLimits {
        max_stanza_bytes: 100,
        max_depth: 3,
        max_attributes: 4,
        max_name_bytes: 13,
    };
    let check = |body: &str, error: Error| {
        let input = format!("{HEADER}{body}");
        let limits = TokenizerLimits {
            max_stanza_bytes: 100.max(HEADER.len()),
            ..small
        };
        assert_eq!(
            error_of(limits, input.as_bytes()),
            Some(error),
            "input: {body}"
        );
        assert_eq!(error.condition(), pv);
    };
    check(
        &format!("<a>{}</a>", "x".repeat(200)),
        Error::StanzaTooLarge,
    );
    check(
        &format!("<a b='{}'/>", "x".repeat(200)),
        Error::StanzaTooLarge,
    );
    check("<a><b><c><d/></c></b></a>", Error::TooDeep);
    check(
        "<a b='1' c='2' d='3' e='4' f='5'/>",
        Error::TooManyAttributes,
    );
    check("<abcdefghijklmn/>", Error::NameTooLong);
    check("<a bcdefghijklmno='1'/>", Error::NameTooLong);
    check("<a>&abcdefghijklmn;</a>", Error::NameTooLong);
    check("<a></abcdefghijklmn>", Error::NameTooLong);
    // Within the limits.
    let ok = format!(
        "{HEADER}<a b='1' c='2'><b><abcdefghijklm/></b>{}</a>",
        "x".repeat(40)
    );
    assert_eq!(
        error_of(
            TokenizerLimits {
                max_stanza_bytes: HEADER.len(),
                ..small
            },
            ok.as_bytes()
        ),
        None
    );
    // The header itself is bounded too, and fails before it is complete.
    let limits = TokenizerLimits {
        max_stanza_bytes: 64,
        ..TokenizerLimits::default()
    };
    assert_eq!(
        error_of(limits, HEADER.as_bytes()),
        Some(Error::StanzaTooLarge)
    );
}

#[test]
fn every_condition_has_its_wire_name() {
    assert_eq!(C::NotWellFormed.as_str(), "not-well-formed");
    assert_eq!(C::RestrictedXml.as_str(), "restricted-xml");
    assert_eq!(C::BadNamespacePrefix.as_str(), "bad-namespace-prefix");
    assert_eq!(C::InvalidXml.as_str(), "invalid-xml");
    assert_eq!(C::UnsupportedEncoding.as_str(), "unsupported-encoding");
    assert_eq!(C::PolicyViolation.as_str(), "policy-violation");
}
