//! However the input is split into reads, the tokens (text and whitespace runs merged)
//! and the final error are the same as for the whole input at once, with the caller
//! managing its buffer as a real connection does: append each read, take tokens until
//! `NeedMore`, then drop `compact()` bytes. Also: byte-at-a-time input costs linear
//! work, and arbitrary bytes never panic.

use proptest::prelude::*;
use stanza::{Error, Token, Tokenizer, TokenizerLimits};

/// An owned, normalized token: what a caller can observe.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Open {
        stream: bool,
        name: (Option<String>, String),
        namespace: String,
        /// Name, raw value, unescaped value.
        attrs: Vec<(String, String, String)>,
        self_closing: bool,
        depth: usize,
    },
    /// Raw text, and the concatenation of each token's unescaped text.
    Text(String, String),
    End((Option<String>, String), usize),
    /// The bytes of the stanza (its range moves with compaction; its content must not).
    Stanza(Vec<u8>),
    Whitespace,
    Close,
}

fn push(out: &mut Vec<Tok>, buf: &[u8], token: Token<'_>) {
    let owned = |p: Option<&str>| p.map(str::to_owned);
    let tok = match token {
        Token::NeedMore => return,
        Token::StreamOpen(s) | Token::Start(s) => Tok::Open {
            stream: s.depth == 0,
            name: (owned(s.name.prefix), s.name.local.to_owned()),
            namespace: s.namespace.to_owned(),
            attrs: s
                .attributes
                .map(|a| {
                    let name = match a.name.prefix {
                        Some(p) => format!("{p}:{}", a.name.local),
                        None => a.name.local.to_owned(),
                    };
                    (name, a.raw_value.to_owned(), a.value().into_owned())
                })
                .collect(),
            self_closing: s.self_closing,
            depth: s.depth,
        },
        Token::Text(t) => {
            assert!(!t.raw.is_empty(), "empty text token");
            let unescaped = stanza::unescape(t.raw).expect("text tokens unescape");
            assert_eq!(t.unescaped(), unescaped, "{t:?}");
            Tok::Text(t.raw.to_owned(), unescaped.into_owned())
        }
        Token::End(e) => Tok::End((owned(e.name.prefix), e.name.local.to_owned()), e.depth),
        Token::StanzaEnd(r) => Tok::Stanza(buf[r].to_vec()),
        Token::Whitespace => Tok::Whitespace,
        Token::StreamClose => Tok::Close,
    };
    match (out.last_mut(), tok) {
        (Some(Tok::Text(raw, text)), Tok::Text(more_raw, more_text)) => {
            raw.push_str(&more_raw);
            text.push_str(&more_text);
        }
        (Some(Tok::Whitespace), Tok::Whitespace) => {}
        (_, tok) => out.push(tok),
    }
}

/// Feeds `input` in reads of the sizes in `chunks` (cycled).
fn run(input: &[u8], chunks: &[usize], limits: TokenizerLimits) -> (Vec<Tok>, Option<Error>) {
    let mut t = Tokenizer::new(limits);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut fed = 0;
    for &size in chunks.iter().cycle() {
        if fed == input.len() {
            break;
        }
        let n = size.clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            match t.next(&buf) {
                Ok(Token::NeedMore) => break,
                Ok(token) => push(&mut out, &buf, token),
                Err(e) => return (out, Some(e)),
            }
        }
        let n = t.compact();
        buf.drain(..n);
    }
    (out, None)
}

fn check_split(input: &[u8], chunks: &[usize], limits: TokenizerLimits) {
    let whole = run(input, &[input.len().max(1)], limits);
    let bytewise = run(input, &[1], limits);
    assert_eq!(
        bytewise,
        whole,
        "1-byte reads differ for {:?}",
        String::from_utf8_lossy(input)
    );
    let split = run(input, chunks, limits);
    assert_eq!(
        split,
        whole,
        "reads {chunks:?} differ for {:?}",
        String::from_utf8_lossy(input)
    );
}

const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

fn text() -> impl Strategy<Value = String> {
    let fixed = vec![
        "&amp;",
        "&lt;",
        "&#65;",
        "&#x1F600;",
        "&#0000065;",
        "é",
        "😀",
        "中",
        ">",
        "] ",
        "\n",
        "\t",
        "\r",
        "\r\n",
    ];
    let piece = prop_oneof![
        "[a-z ]{1,6}",
        prop::sample::select(fixed).prop_map(String::from)
    ];
    prop::collection::vec(piece, 1..6).prop_map(|v| v.concat())
}

fn attr_value(quote: char) -> impl Strategy<Value = String> {
    let other = if quote == '\'' { "\"" } else { "'" };
    let fixed = vec![
        "&amp;",
        "&apos;&quot;",
        "&#x20AC;",
        "ü",
        "😀",
        ">",
        "\r\n",
        "\t",
        other,
    ];
    let piece = prop_oneof![
        "[a-z0-9@./ ]{0,6}",
        prop::sample::select(fixed).prop_map(String::from)
    ];
    prop::collection::vec(piece, 0..4).prop_map(|v| v.concat())
}

fn attrs() -> impl Strategy<Value = String> {
    let names = vec!["id", "type", "to", "xml:lang", "from", "p:a", "é"];
    (
        prop::sample::subsequence(names, 0..4),
        prop::collection::vec((attr_value('\''), attr_value('"'), any::<bool>()), 4),
    )
        .prop_map(|(names, values)| {
            let mut out = String::new();
            for (name, (single, double, use_single)) in names.iter().zip(values) {
                if use_single {
                    out.push_str(&format!(" {name}='{single}'"));
                } else {
                    out.push_str(&format!(" {name} =\t\"{double}\""));
                }
            }
            out
        })
}

/// One element with children; every prefix it uses it declares itself (or the header does).
fn element() -> impl Strategy<Value = String> {
    let leaf = (
        prop::sample::select(vec!["a", "body", "p:item", "stream:features", "ü"]),
        attrs(),
        any::<bool>(),
    )
        .prop_map(|(name, attrs, decl)| {
            let decl = if decl || name.starts_with("p:") || attrs.contains("p:a") {
                " xmlns:p='urn:p'"
            } else {
                ""
            };
            format!("<{name}{decl}{attrs}/>")
        });
    leaf.prop_recursive(4, 24, 4, |inner| {
        let child = prop_oneof![inner, text()];
        (
            prop::sample::select(vec!["message", "iq", "p:query", "x"]),
            attrs(),
            prop::collection::vec(child, 0..4),
            prop::sample::select(vec!["", " xmlns='urn:default'", " xmlns:p='urn:p&amp;q'"]),
        )
            .prop_map(|(name, attrs, children, decl)| {
                let decl = if name.starts_with("p:") || attrs.contains("p:a") {
                    " xmlns:p='urn:p'"
                } else {
                    decl
                };
                format!("<{name}{decl}{attrs} >{}</{name} >", children.concat())
            })
    })
}

fn stream() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(
            (
                element(),
                prop::sample::select(vec!["", " ", "\n", "\r\n\t "]),
            ),
            0..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(decl, stanzas, close)| {
            let mut s = String::new();
            if decl {
                s.push_str("<?xml version='1.0' encoding='UTF-8'?>\n");
            }
            s.push_str(HEADER);
            for (stanza, ws) in stanzas {
                s.push_str(&stanza);
                s.push_str(ws);
            }
            if close {
                s.push_str("</stream:stream>\n");
            }
            s
        })
}

/// A byte string that breaks something: markup RFC 6120 forbids, broken references,
/// bad bytes, stray delimiters.
fn damage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "<!-- c -->",
            "<![CDATA[x]]>",
            "<!DOCTYPE a>",
            "<?pi?>",
            "&foo;",
            "&",
            "&#;",
            "&#xD800;",
            "]]>",
            "<",
            ">",
            "'",
            "\"",
            "=",
            "</a>",
            "<q:x/>",
            " b='1' b='2'",
            "\u{FFFE}",
            "\u{1}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 1..3),
        Just(vec![0xFF]),
        Just(vec![0xC3]),
        Just(vec![0xED, 0xA0, 0x80]),
    ]
}

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        stream(),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, damage()), 1..3),
    )
        .prop_map(|(s, edits)| {
            let mut bytes = s.into_bytes();
            for (at, kind, patch) in edits {
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 => {
                        bytes.splice(i..i, patch);
                    }
                    1 if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => {
                        let end = (i + patch.len()).min(bytes.len());
                        bytes.splice(i..end, patch);
                    }
                }
            }
            bytes
        })
}

fn limits() -> impl Strategy<Value = TokenizerLimits> {
    prop_oneof![
        3 => Just(TokenizerLimits::default()),
        1 => Just(TokenizerLimits { max_stanza_bytes: 160, max_depth: 3, max_attributes: 5, max_name_bytes: 16 }),
    ]
}

fn chunks() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..24, 1..8)
}

/// Bounded so the suite stays quick; `PROPTEST_CASES` raises it for a deeper run.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(192);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_streams_split_anywhere(input in stream(), chunks in chunks(), limits in limits()) {
        check_split(input.as_bytes(), &chunks, limits);
        if limits == TokenizerLimits::default() {
            let (tokens, error) = run(input.as_bytes(), &[input.len()], limits);
            prop_assert_eq!(error, None);
            let first = tokens.iter().find(|t| **t != Tok::Whitespace);
            let opens = matches!(first, Some(Tok::Open { stream: true, .. }));
            prop_assert!(opens);
        }
    }

    #[test]
    fn damaged_streams_split_anywhere(input in mutated(), chunks in chunks(), limits in limits()) {
        check_split(&input, &chunks, limits);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in any::<bool>(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        chunks in chunks(),
    ) {
        let mut input = if prefix { HEADER.as_bytes().to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        check_split(&input, &chunks, TokenizerLimits::default());
    }
}

#[test]
fn split_inside_every_construct() {
    let input = format!(
        "<?xml version='1.0'?>{HEADER}<message xmlns:p='urn:p' p:x='a&amp;b&#x1F600;é' to=\"v\"><body>é😀 &lt;&#0000065; ]] ></body><p:c/></message> \n</stream:stream>"
    );
    for size in 1..input.len() {
        check_split(input.as_bytes(), &[size], TokenizerLimits::default());
    }
    for size in 1..12 {
        check_split(input.as_bytes(), &[size, 1, 3], TokenizerLimits::default());
    }
}

/// The rejections that look at a few bytes before deciding (`<?` and what follows it, a
/// byte that is not UTF-8 between stanzas) give the same error however they are split.
#[test]
fn short_lookahead_rejections_split_anywhere() {
    let mut inputs: Vec<Vec<u8>> = [
        "<?xml version='1.0'?><?xml version='1.0'?>",
        " <?xml version='1.0'?>",
        "<?XML version='1.0'?>",
        "<?xml?>",
        "<?xm>",
        "<?p>",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for body in ["<?xml version='1.0'?>", "<?XmL x?>", "<?xmlfoo?>", "<?p>"] {
        inputs.push(format!("{HEADER}{body}<a/>").into_bytes());
    }
    inputs.push(b"\xFE\xFF\x00<\x00?".to_vec());
    inputs.push([HEADER.as_bytes(), b"<a/>\x80<a/>"].concat());
    for input in &inputs {
        for size in 1..input.len() {
            check_split(input, &[size], TokenizerLimits::default());
        }
    }
}

/// Feeds `input` one byte at a time and returns the bytes examined per input byte.
fn work_per_byte(input: &[u8], limits: TokenizerLimits) -> f64 {
    let mut t = Tokenizer::new(limits);
    let mut buf = Vec::new();
    for &b in input {
        buf.push(b);
        loop {
            match t.next(&buf) {
                Ok(Token::NeedMore) => break,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let n = t.compact();
        buf.drain(..n);
    }
    t.bytes_examined() as f64 / input.len() as f64
}

#[test]
fn byte_at_a_time_is_linear() {
    let limits = TokenizerLimits {
        max_stanza_bytes: 1 << 20,
        ..TokenizerLimits::default()
    };
    let big = 60_000;
    let cases = [
        format!(
            "{HEADER}<message><body>{}</body></message>",
            "xé&amp;".repeat(big / 8)
        ),
        format!("{HEADER}<message to='{}'/>", "vé&amp;".repeat(big / 8)),
        // Each `>` lets the tokenizer read up to it (the input's last `>` bounds it).
        format!("{HEADER}<message to='{}'/>", "v>".repeat(big / 2)),
        format!(
            "{HEADER}<message><body>{}</body></message>",
            "x>".repeat(big / 2)
        ),
        format!(
            "{HEADER}<message><body>&#{}65;</body></message>",
            "0".repeat(big)
        ),
        format!("{HEADER}<message to='&#x{}41;'/>", "0".repeat(big)),
        format!("{HEADER}{}<a/>", " ".repeat(big)),
        format!(
            "{HEADER}<message>{}</message>",
            "<b x='1'>t</b>".repeat(big / 14)
        ),
        format!("<?xml version='1.0'{}?>{HEADER}", " ".repeat(big)),
        format!("{HEADER}<message{}/>", " ".repeat(big)),
        format!("{HEADER}<a><b/>{}</a>", "😀".repeat(big / 4)),
    ];
    for input in &cases {
        let work = work_per_byte(input.as_bytes(), limits);
        // Quadratic behaviour would be thousands of bytes per byte here.
        assert!(
            work < 8.0,
            "{work} bytes examined per input byte for {}",
            &input[HEADER.len()..HEADER.len() + 40]
        );
    }
}
