//! Every tokenizer rejection the session can meet, on the wire: the exact `<stream:error>`
//! condition and the exact cause (the mapping and its reasons are in
//! `crates/stanza/tests/rejections.rs`). `AfterStreamClose` cannot reach the wire: the
//! session stops reading at the client's `</stream:stream>`.

use session::Cause;
use stanza::Error;

use crate::client::{Client, DOMAIN};

/// The cause a tokenizer rejection closes the stream with.
fn cause(error: Error) -> Cause {
    match error {
        Error::StanzaTooLarge | Error::TooDeep | Error::TooManyAttributes | Error::NameTooLong => {
            Cause::StanzaLimit(error)
        }
        _ => Cause::Xml(error),
    }
}

#[test]
fn rejections_inside_the_stream() {
    let deep = format!("{}{}", "<a>".repeat(33), "</a>".repeat(33));
    let attributes = (0..33).map(|i| format!(" a{i}='1'")).collect::<String>();
    let many = format!("<a{attributes}/>");
    let long = format!("<{}/>", "a".repeat(257));
    let cases: &[(&[u8], Error, &str)] = &[
        // The example (XML 1.0 WFC: Unique Att Spec).
        (
            b"<message a='1' a='2'/>",
            Error::DuplicateAttribute,
            "not-well-formed",
        ),
        (b"<a>\x01</a>", Error::ForbiddenChar, "not-well-formed"),
        (b"<a>&#0;</a>", Error::ForbiddenCharRef, "not-well-formed"),
        (
            b"<a>fish & chips</a>",
            Error::MalformedReference,
            "not-well-formed",
        ),
        (b"<1a/>", Error::InvalidName, "not-well-formed"),
        (b"<a/ >", Error::MalformedTag, "not-well-formed"),
        (b"<a b/>", Error::AttributeWithoutValue, "not-well-formed"),
        (
            b"<a b=1/>",
            Error::UnquotedAttributeValue,
            "not-well-formed",
        ),
        (b"<a b='<'/>", Error::LtInAttributeValue, "not-well-formed"),
        (
            b"<a b='1'c='2'/>",
            Error::MissingWhitespace,
            "not-well-formed",
        ),
        (b"<a></b>", Error::MismatchedEndTag, "not-well-formed"),
        (b"<a>]]></a>", Error::CDataEndInText, "not-well-formed"),
        (b"<!ELEMENT a ANY>", Error::InvalidMarkup, "not-well-formed"),
        (
            b"<?xml version='1.0'?>",
            Error::MisplacedXmlDecl,
            "not-well-formed",
        ),
        (
            b"<a xmlns:xml='urn:other'/>",
            Error::ReservedNamespace,
            "not-well-formed",
        ),
        (
            b"<a xmlns:x=''/>",
            Error::EmptyPrefixBinding,
            "not-well-formed",
        ),
        (b"<!-- hi -->", Error::Comment, "restricted-xml"),
        (
            b"<?pi data?>",
            Error::ProcessingInstruction,
            "restricted-xml",
        ),
        (b"<!DOCTYPE x>", Error::Doctype, "restricted-xml"),
        (b"<a><![CDATA[x]]></a>", Error::CData, "restricted-xml"),
        (b"<a>&nbsp;</a>", Error::UnknownEntity, "restricted-xml"),
        (
            b"<x:message/>",
            Error::UndeclaredPrefix,
            "bad-namespace-prefix",
        ),
        (b" hello <a/>", Error::TextBetweenStanzas, "invalid-xml"),
        (
            b"<a>\xC3\x28</a>",
            Error::InvalidUtf8,
            "unsupported-encoding",
        ),
        (deep.as_bytes(), Error::TooDeep, "policy-violation"),
        (
            many.as_bytes(),
            Error::TooManyAttributes,
            "policy-violation",
        ),
        (long.as_bytes(), Error::NameTooLong, "policy-violation"),
    ];
    for &(input, error, condition) in cases {
        let shown = String::from_utf8_lossy(input);
        let mut client = Client::new();
        client.open();
        client.send_bytes(input);
        assert_eq!(client.stream_error(), condition, "{shown}");
        assert_eq!(client.closed_by, Some(cause(error)), "{shown}");
    }
}

#[test]
fn rejections_before_the_header() {
    let header = Client::header(DOMAIN);
    let bom = format!("\u{FEFF}{header}");
    let version = header.replace("version='1.0'?>", "version='2.0'?>");
    let encoding = header.replace("version='1.0'?>", "version='1.0' encoding='UTF-16'?>");
    let prefix = header.replace("<stream:stream", "<foo:stream");
    let cases: &[(&[u8], Error, &str)] = &[
        (b"hello<a>", Error::TextBeforeStream, "not-well-formed"),
        // RFC 6120 11.6: U+FEFF is a character, not a byte order mark.
        (bom.as_bytes(), Error::TextBeforeStream, "not-well-formed"),
        (
            b"</stream:stream>",
            Error::UnexpectedEndTag,
            "not-well-formed",
        ),
        (
            version.as_bytes(),
            Error::MalformedXmlDecl,
            "not-well-formed",
        ),
        (
            encoding.as_bytes(),
            Error::UnsupportedEncoding,
            "unsupported-encoding",
        ),
        // UTF-16 with its byte order mark.
        (
            b"\xFE\xFF\x00<\x00?",
            Error::InvalidUtf8,
            "unsupported-encoding",
        ),
        (
            prefix.as_bytes(),
            Error::UndeclaredPrefix,
            "bad-namespace-prefix",
        ),
    ];
    for &(input, error, condition) in cases {
        let shown = String::from_utf8_lossy(input);
        let mut client = Client::new();
        client.send_bytes(input);
        assert_eq!(client.header_then_stream_error(), condition, "{shown}");
        assert_eq!(client.closed_by, Some(cause(error)), "{shown}");
    }
}
