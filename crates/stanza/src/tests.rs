//! Unit tests for every token kind, namespace resolution, and the buffer contract
//! (compaction, restarts). Rejections are in tests/rejections.rs.

use std::borrow::Cow;

use crate::{Error, Token, Tokenizer, TokenizerLimits};

const STREAMS: &str = "http://etherx.jabber.org/streams";
const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

/// A compact rendering of one token.
fn show(t: &Token<'_>) -> String {
    let qname = |p: Option<&str>, l: &str| p.map_or_else(|| l.to_owned(), |p| format!("{p}:{l}"));
    match t {
        Token::NeedMore => "NeedMore".into(),
        Token::StreamOpen(s) | Token::Start(s) => {
            let kind = if matches!(t, Token::StreamOpen(_)) {
                "Open"
            } else {
                "Start"
            };
            let mut out = format!(
                "{kind}({} {{{}}} {}",
                qname(s.name.prefix, s.name.local),
                s.namespace,
                s.depth
            );
            for a in s.attributes.clone() {
                out.push_str(&format!(
                    " {}={}",
                    qname(a.name.prefix, a.name.local),
                    a.raw_value
                ));
            }
            out.push_str(if s.self_closing { " /)" } else { ")" });
            out
        }
        Token::Text(s) => format!("Text({})", s.raw),
        Token::End(e) => format!("End({} {})", qname(e.name.prefix, e.name.local), e.depth),
        Token::StanzaEnd(r) => format!("StanzaEnd({}..{})", r.start, r.end),
        Token::Whitespace => "Ws".into(),
        Token::StreamClose => "Close".into(),
    }
}

/// All tokens of `input` fed at once, ending with the error if there is one.
fn tokens(input: &str) -> Vec<String> {
    let mut t = Tokenizer::new(TokenizerLimits::default());
    let mut out = Vec::new();
    loop {
        match t.next(input.as_bytes()) {
            Ok(Token::NeedMore) => return out,
            Ok(tok) => out.push(show(&tok)),
            Err(e) => {
                out.push(format!("Err({e:?})"));
                return out;
            }
        }
    }
}

/// Tokens of the stanzas after the header.
fn after_header(body: &str) -> Vec<String> {
    tokens(&format!("{HEADER}{body}")).split_off(1)
}

#[test]
fn stream_header() {
    let input = format!("<?xml version='1.0'?>\n{HEADER}");
    let mut t = Tokenizer::new(TokenizerLimits::default());
    assert!(matches!(t.next(input.as_bytes()), Ok(Token::Whitespace)));
    let Ok(Token::StreamOpen(s)) = t.next(input.as_bytes()) else {
        panic!("no header")
    };
    assert_eq!((s.name.prefix, s.name.local), (Some("stream"), "stream"));
    assert_eq!(s.namespace, STREAMS);
    assert_eq!((s.depth, s.self_closing), (0, false));
    assert_eq!(s.attributes.len(), 4);
    assert_eq!(s.attributes.get("to"), Some("example.com"));
    assert_eq!(s.attributes.get("xmlns:stream"), Some(STREAMS));
    assert_eq!(s.attributes.get("from"), None);
    let names: Vec<_> = s
        .attributes
        .map(|a| (a.name.prefix, a.name.local))
        .collect();
    assert_eq!(
        names,
        [
            (None, "xmlns"),
            (Some("xmlns"), "stream"),
            (None, "to"),
            (None, "version")
        ]
    );
    assert!(matches!(t.next(input.as_bytes()), Ok(Token::NeedMore)));
}

#[test]
fn stanzas_and_their_spans() {
    let body = "<iq type='get' id='1'><address xmlns='urn:xmpp:sic:1'/></iq> \n<message><body>a &amp; b</body></message>";
    let at = HEADER.len();
    assert_eq!(
        after_header(body),
        [
            "Start(iq {jabber:client} 1 type=get id=1)".to_owned(),
            "Start(address {urn:xmpp:sic:1} 2 xmlns=urn:xmpp:sic:1 /)".into(),
            "End(address 2)".into(),
            "End(iq 1)".into(),
            format!("StanzaEnd({at}..{})", at + 60),
            "Ws".into(),
            "Start(message {jabber:client} 1)".into(),
            "Start(body {jabber:client} 2)".into(),
            "Text(a &amp; b)".into(),
            "End(body 2)".into(),
            "End(message 1)".into(),
            format!("StanzaEnd({}..{})", at + 62, at + 62 + 41),
        ]
    );
}

#[test]
fn self_closing_stanza() {
    let at = HEADER.len();
    assert_eq!(
        after_header("<presence/>"),
        [
            "Start(presence {jabber:client} 1 /)".to_owned(),
            "End(presence 1)".into(),
            format!("StanzaEnd({at}..{})", at + 11)
        ]
    );
}

/// End tags are matched against the open element's name 16 bytes at a time where 16
/// bytes can be read, and byte by byte where not (a longer name, the end of the input):
/// both ways must find a difference in any byte, the last one included.
#[test]
fn end_tag_names_of_every_length_around_sixteen() {
    for len in [1, 2, 15, 16, 17, 40] {
        let name: String = (0..len)
            .map(|k| char::from(b'a' + (k % 26) as u8))
            .collect();
        let mut wrong = name.clone();
        wrong.pop();
        wrong.push('Z');
        // Directly after the header (`</n>` ends the input, fewer than 16 bytes on) and
        // with a stanza after it (16 bytes readable at both names).
        for tail in ["", "<presence/><presence/><presence/>"] {
            let good = after_header(&format!("<{name}></{name}>{tail}"));
            assert_eq!(good[1], format!("End({name} 1)"), "{len} {tail:?}");
            let bad = after_header(&format!("<{name}></{wrong}>{tail}"));
            assert_eq!(bad[1], "Err(MismatchedEndTag)", "{len} {tail:?}");
        }
    }
}

#[test]
fn stream_close() {
    assert_eq!(
        after_header("<a/></stream:stream>\n"),
        [
            "Start(a {jabber:client} 1 /)",
            "End(a 1)",
            &format!("StanzaEnd({}..{})", HEADER.len(), HEADER.len() + 4),
            "Close",
            "Ws"
        ]
    );
    assert_eq!(
        tokens("<stream:stream xmlns:stream='urn:s'/>"),
        [
            "Open(stream:stream {urn:s} 0 xmlns:stream=urn:s /)",
            "Close"
        ]
    );
}

#[test]
fn namespaces_resolve() {
    let body = "<stream:features><x:a xmlns:x='urn:a&amp;b' xml:lang='en'><x:b/><c xmlns=''/>\
        <d xmlns='urn:d'><x:e/></d></x:a></stream:features>";
    let got = after_header(body);
    let starts: Vec<_> = got.iter().filter(|t| t.starts_with("Start")).collect();
    assert_eq!(
        starts,
        [
            &format!("Start(stream:features {{{STREAMS}}} 1)"),
            "Start(x:a {urn:a&b} 2 xmlns:x=urn:a&amp;b xml:lang=en)",
            "Start(x:b {urn:a&b} 3 /)",
            "Start(c {} 3 xmlns= /)",
            "Start(d {urn:d} 3 xmlns=urn:d)",
            "Start(x:e {urn:a&b} 4 /)",
        ]
    );
    // Declarations go out of scope with their element.
    assert_eq!(
        after_header("<a xmlns='urn:a'><b/></a><c/>")[5],
        "Start(c {jabber:client} 1 /)"
    );
}

#[test]
fn attribute_values() {
    let input = format!("{HEADER}<a plain='x' esc='a&lt;&#x42;' ws='1\t2\r\n3' q=\"'\"/>");
    let mut t = Tokenizer::new(TokenizerLimits::default());
    t.next(input.as_bytes()).unwrap();
    let Ok(Token::Start(s)) = t.next(input.as_bytes()) else {
        panic!("no start")
    };
    let values: Vec<_> = s.attributes.clone().map(|a| a.value()).collect();
    assert!(matches!(values[0], Cow::Borrowed("x")));
    assert!(matches!(&values[1], Cow::Owned(v) if v == "a<B"));
    assert_eq!(values[2], "1 2 3");
    assert_eq!(values[3], "'");
    assert_eq!(s.attributes.get("esc"), Some("a&lt;&#x42;"));
}

#[test]
fn text_may_arrive_in_pieces() {
    let input = format!("{HEADER}<a>x&amp;y😀</a>");
    let mut t = Tokenizer::new(TokenizerLimits::default());
    let mut buf = Vec::new();
    let mut text = String::new();
    for &b in input.as_bytes() {
        buf.push(b);
        while let Ok(tok) = t.next(&buf) {
            match tok {
                Token::NeedMore => break,
                // Never a piece of a reference or of a character.
                Token::Text(s) => {
                    assert_eq!(s.unescaped(), crate::unescape(s.raw).unwrap());
                    text.push_str(s.raw);
                }
                _ => {}
            }
        }
        let n = t.compact();
        buf.drain(..n);
    }
    assert_eq!(text, "x&amp;y😀");
}

#[test]
fn compact_keeps_the_open_stanza() {
    let mut t = Tokenizer::new(TokenizerLimits::default());
    let mut buf = format!("{HEADER}  <message><body>hi</bo").into_bytes();
    assert!(matches!(t.next(&buf), Ok(Token::StreamOpen(_))));
    assert!(matches!(t.next(&buf), Ok(Token::Whitespace)));
    assert!(matches!(t.next(&buf), Ok(Token::Start(_))));
    // Between the header and the stanza: everything before the stanza goes.
    let n = t.compact();
    assert_eq!(n, HEADER.len() + 2);
    buf.drain(..n);
    assert!(matches!(t.next(&buf), Ok(Token::Start(_))));
    // The text waits for the `>` of the markup after it.
    assert!(matches!(t.next(&buf), Ok(Token::NeedMore)));
    // Inside the stanza: nothing more can go.
    assert_eq!(t.compact(), 0);
    buf.extend_from_slice(b"dy></message><x/>");
    assert!(matches!(t.next(&buf), Ok(Token::Text(text)) if text.raw == "hi"));
    assert!(matches!(t.next(&buf), Ok(Token::End(_))));
    assert!(matches!(t.next(&buf), Ok(Token::End(_))));
    let Ok(Token::StanzaEnd(r)) = t.next(&buf) else {
        panic!("no stanza end")
    };
    assert_eq!(&buf[r], b"<message><body>hi</body></message>");
    let n = t.compact();
    assert_eq!(n, 34);
    buf.drain(..n);
    assert!(matches!(t.next(&buf), Ok(Token::Start(_))));
    assert!(matches!(t.next(&buf), Ok(Token::End(_))));
    assert!(matches!(t.next(&buf), Ok(Token::StanzaEnd(r)) if r == (0..4)));
}

#[test]
fn restart() {
    let mut t = Tokenizer::new(TokenizerLimits::default());
    let first =
        format!("<?xml version='1.0'?>{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    let mut last = None;
    while let Ok(tok) = t.next(first.as_bytes()) {
        match tok {
            Token::NeedMore => break,
            Token::StanzaEnd(r) => last = Some(r.end),
            _ => {}
        }
    }
    assert_eq!(last, Some(first.len()));
    t.reset();
    // The new stream may start with an XML declaration again.
    let second = format!("<?xml version='1.0'?>{HEADER}");
    assert!(matches!(
        t.next(second.as_bytes()),
        Ok(Token::StreamOpen(_))
    ));
}

#[test]
fn a_failed_stream_stays_failed() {
    let input = format!("{HEADER}<!-- -->");
    let mut t = Tokenizer::new(TokenizerLimits::default());
    assert!(t.next(input.as_bytes()).is_ok());
    assert_eq!(t.next(input.as_bytes()).err(), Some(Error::Comment));
    assert_eq!(t.next(HEADER.as_bytes()).err(), Some(Error::Comment));
    t.reset();
    assert!(matches!(
        t.next(HEADER.as_bytes()),
        Ok(Token::StreamOpen(_))
    ));
}

#[test]
fn valid_text_before_an_error_is_handed_out_first() {
    assert_eq!(
        after_header("<a>ok &bad;</a>"),
        [
            "Start(a {jabber:client} 1)",
            "Text(ok )",
            "Err(UnknownEntity)"
        ]
    );
    assert_eq!(after_header(" \n x"), ["Ws", "Err(TextBetweenStanzas)"]);
}

/// Nothing after the last `>` of the input is read but whitespace between stanzas: a
/// read that ends inside a token leaves it for the next, and an error there is
/// reported once a `>` comes after it, or once the stanza outgrows its limit.
#[test]
fn input_after_the_last_gt_waits() {
    let mut t = Tokenizer::new(TokenizerLimits::default());
    let mut buf = format!("{HEADER}<a>ok &bad;").into_bytes();
    assert!(matches!(t.next(&buf), Ok(Token::StreamOpen(_))));
    assert!(matches!(t.next(&buf), Ok(Token::Start(_))));
    assert!(matches!(t.next(&buf), Ok(Token::NeedMore)));
    buf.extend_from_slice(b" <b");
    assert!(matches!(t.next(&buf), Ok(Token::NeedMore)));
    buf.push(b'>');
    assert!(matches!(t.next(&buf), Ok(Token::Text(text)) if text.raw == "ok "));
    assert_eq!(t.next(&buf).err(), Some(Error::UnknownEntity));

    let limits = TokenizerLimits {
        max_stanza_bytes: 256,
        ..TokenizerLimits::default()
    };
    let mut t = Tokenizer::new(limits);
    let mut buf = format!("{HEADER}<a>").into_bytes();
    assert!(matches!(t.next(&buf), Ok(Token::StreamOpen(_))));
    assert!(matches!(t.next(&buf), Ok(Token::Start(_))));
    buf.extend_from_slice(&[b'x'; 253]);
    assert!(matches!(t.next(&buf), Ok(Token::NeedMore)));
    buf.push(b'x');
    assert!(matches!(t.next(&buf), Ok(Token::Text(_))));
    assert_eq!(t.next(&buf).err(), Some(Error::StanzaTooLarge));

    // Whitespace between stanzas needs no `>` after it.
    let mut t = Tokenizer::new(TokenizerLimits::default());
    let buf = format!("{HEADER}<a/> \n");
    let tokens: Vec<_> = std::iter::from_fn(|| match t.next(buf.as_bytes()) {
        Ok(Token::NeedMore) | Err(_) => None,
        Ok(token) => Some(format!("{token:?}").split('(').next().map(str::to_owned)),
    })
    .flatten()
    .collect();
    assert_eq!(
        tokens,
        ["StreamOpen", "Start", "End", "StanzaEnd", "Whitespace"]
    );
}

#[test]
fn limits() {
    let d = TokenizerLimits::default();
    assert_eq!(
        (
            d.max_stanza_bytes,
            d.max_depth,
            d.max_attributes,
            d.max_name_bytes
        ),
        (65536, 32, 32, 256)
    );
    let t = Tokenizer::new(TokenizerLimits { max_depth: 3, ..d });
    assert_eq!(t.limits().max_depth, 3);
    // Exactly at the stanza limit is allowed; one byte more is not.
    let limits = TokenizerLimits {
        max_stanza_bytes: HEADER.len(),
        ..d
    };
    let run = |x: usize| {
        let input = format!("{HEADER}<a>{}</a>", "x".repeat(x));
        let mut t = Tokenizer::new(limits);
        loop {
            match t.next(input.as_bytes()) {
                Ok(Token::NeedMore) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    };
    assert_eq!(run(HEADER.len() - 7), Ok(()));
    assert_eq!(run(HEADER.len() - 6), Err(Error::StanzaTooLarge));
}

#[test]
fn work_is_counted() {
    let mut t = Tokenizer::new(TokenizerLimits::default());
    assert_eq!(t.bytes_examined(), 0);
    t.next(HEADER.as_bytes()).unwrap();
    assert!(t.bytes_examined() >= HEADER.len() as u64);
}

/// Declarations made on an enclosing element are copied into the tokenizer the first
/// time an element inside needs them; the copy must serve every later sibling and
/// descendant, survive compaction between reads, and end with the stanza.
#[test]
fn namespaces_declared_above_serve_every_descendant() {
    let body = "<iq type='set' id='1'><query xmlns='jabber:iq:roster' xmlns:p='urn:x:&amp;p'>\
                <item jid='a@b'><group>G</group><p:g/></item><item jid='c@d'><group/></item>\
                <p:x><y/></p:x></query></iq><iq type='get' id='2'><q xmlns='urn:q'><r/></q></iq>";
    let starts = |input: &str, read: usize| {
        let mut t = Tokenizer::new(TokenizerLimits::default());
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(read) {
            buf.extend_from_slice(chunk);
            loop {
                match t.next(&buf) {
                    Ok(Token::NeedMore) => break,
                    Ok(Token::Start(s)) => out.push(format!("{} {}", s.name.local, s.namespace)),
                    Ok(_) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            let n = t.compact();
            buf.drain(..n);
        }
        out
    };
    let input = format!("{HEADER}{body}");
    let expected = [
        "iq jabber:client",
        "query jabber:iq:roster",
        "item jabber:iq:roster",
        "group jabber:iq:roster",
        "g urn:x:&p",
        "item jabber:iq:roster",
        "group jabber:iq:roster",
        "x urn:x:&p",
        "y jabber:iq:roster",
        "iq jabber:client",
        "q urn:q",
        "r urn:q",
    ];
    for read in [input.len(), 1, 7, 64] {
        assert_eq!(starts(&input, read), expected, "reads of {read}");
    }
}

/// A lone default namespace declaration takes a shorter path through `open`; it must
/// reject and resolve exactly as the general attribute pass does.
#[test]
fn default_declarations_alone_or_not() {
    for uri in [
        "http://www.w3.org/XML/1998/namespace",
        "http://www.w3.org/2000/xmlns/",
    ] {
        for tag in [
            format!("<a xmlns='{uri}'/>"),
            format!("<a b='1' xmlns=\"{uri}\"/>"),
        ] {
            assert_eq!(
                after_header(&tag).last().map(String::as_str),
                Some("Err(ReservedNamespace)"),
                "{tag}"
            );
        }
    }
    let body = "<a xmlns='urn:a'><b xmlns=''><c/></b><d/></a>";
    let at = HEADER.len();
    assert_eq!(
        after_header(body),
        [
            "Start(a {urn:a} 1 xmlns=urn:a)".to_owned(),
            "Start(b {} 2 xmlns=)".into(),
            "Start(c {} 3 /)".into(),
            "End(c 3)".into(),
            "End(b 2)".into(),
            "Start(d {urn:a} 2 /)".into(),
            "End(d 2)".into(),
            "End(a 1)".into(),
            format!("StanzaEnd({at}..{})", at + body.len()),
        ]
    );
}

#[test]
fn text_with_many_references_unescapes_whole() {
    // More references than a text token records: unescaped from scratch, the same.
    for count in [1, 31, 32, 33, 500] {
        let body = "&lt;é&#x1F600;".repeat(count);
        let input = format!("{HEADER}<message><body>{body}</body></message>");
        let mut t = Tokenizer::new(TokenizerLimits::default());
        let mut text = String::new();
        loop {
            match t.next(input.as_bytes()).unwrap() {
                Token::Text(piece) => text.push_str(&piece.unescaped()),
                Token::StanzaEnd(_) => break,
                _ => {}
            }
        }
        assert_eq!(text, "<é\u{1F600}".repeat(count), "{count}");
    }
}

#[test]
fn errors_after_a_start_tag_cut_by_a_read() {
    // The fast path goes on from the attribute a read cut (the rest at least as long
    // again), or the resumable scanner reads the tag (less); both find the same error.
    let cases: [(&str, &str, Error); 3] = [
        ("<message a='1' ", "a='2'>", Error::DuplicateAttribute),
        ("<message a='1' b='x", "<'>", Error::LtInAttributeValue),
        ("<message a='1' ", "b>", Error::AttributeWithoutValue),
    ];
    for (first, second, error) in cases {
        for pad in [0, 40] {
            let mut t = Tokenizer::new(TokenizerLimits::default());
            let mut buf = format!("{HEADER}{first}").into_bytes();
            assert!(matches!(t.next(&buf), Ok(Token::StreamOpen(_))));
            assert!(matches!(t.next(&buf), Ok(Token::NeedMore)), "{first}");
            buf.extend_from_slice(second.as_bytes());
            buf.extend(std::iter::repeat_n(b' ', pad));
            assert_eq!(t.next(&buf).err(), Some(error), "{first}{second} +{pad}");
        }
    }
}
