//! Deterministic corpora for the tokenizer benches, shared by the criterion bench and
//! the `bench-table` tool (which regenerates them to learn sizes and stanza counts
//! instead of trusting a side file).
//!
//! Everything is derived from a fixed seed, so every run and every machine measures the
//! same bytes.

#![forbid(unsafe_code)]

pub mod routines;

/// The stream header a client sends first (RFC 6120 section 4.2).
pub const STREAM_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='example.net' version='1.0'>";

/// Read size for the chunked variants: one Ethernet MTU's worth, what a socket read
/// returns under steady load.
pub const CHUNK: usize = 1500;

/// Criterion function names of the measured parsers, in table order.
pub const PARSERS: [&str; 4] = ["stanza", "quick-xml", "rxml", "quick-xml-ns"];

/// Criterion function names of the byte-scan ceilings (whole feed only).
pub const CEILINGS: [&str; 2] = ["memchr", "memchr3"];

/// Criterion parameter names of the two feeding modes.
pub const FEEDS: [&str; 2] = ["whole", "chunked-1500"];

/// One generated input stream.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Criterion group name.
    pub name: &'static str,
    /// Stream header, stanzas and keepalives, then `</stream:stream>`.
    pub bytes: Vec<u8>,
    /// Number of top-level stanzas, to turn time into stanzas per second.
    pub stanzas: u64,
}

/// The two corpora the bench measures, at their standard sizes.
pub fn standard() -> [Corpus; 2] {
    [c2s(16 << 20), sic(1_000_000)]
}

/// xorshift64: a dependency-free, reproducible stream of pseudo-random numbers.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-enough integer in `0..n` (the modulo bias is irrelevant for corpora).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const JIDS: [&str; 6] = [
    "juliet@capulet.example/balcony",
    "romeo@montague.example/orchard",
    "nurse@capulet.example",
    "benvolio@montague.example/phone",
    "мария@пример.рф/дом",
    "tybalt@capulet.example/sword",
];

/// Body words: plain ASCII, escaped markup, character references, and multi-byte UTF-8
/// (2, 3 and 4 bytes), roughly in the proportions chat traffic has.
const WORDS: [&str; 24] = [
    "hello",
    "see",
    "you",
    "at",
    "the",
    "meeting",
    "tomorrow",
    "ok",
    "café",
    "naïve",
    "Привет",
    "日本語",
    "😀",
    "🚀",
    "&lt;3",
    "R&amp;D",
    "x&gt;y",
    "&#x1F600;",
    "&#233;t&#233;",
    "&quot;quoted&quot;",
    "it&apos;s",
    "<-no",
    "fine",
    "thanks",
];

const GROUPS: [&str; 5] = ["Friends", "Family", "Work", "Théâtre", "Verona"];

const CAPS_NODES: [&str; 3] = [
    "https://conversations.im",
    "https://gajim.org",
    "http://psi-im.org",
];

/// Appends ` name='value'` with the given quote; `value` must already be escaped for it.
fn attr(out: &mut String, name: &str, value: &str, quote: char) {
    out.push(' ');
    out.push_str(name);
    out.push('=');
    out.push(quote);
    out.push_str(value);
    out.push(quote);
}

/// Escaped chat text of at least `min_len` bytes. The `<-no` word is escaped here so the
/// word list stays readable.
fn body_text(rng: &mut Rng, min_len: usize, out: &mut String) {
    let start = out.len();
    while out.len() - start < min_len {
        if out.len() > start {
            out.push(' ');
        }
        let word = rng.pick(&WORDS);
        if word == "<-no" {
            out.push_str("&lt;-no");
        } else {
            out.push_str(word);
        }
    }
}

fn message(rng: &mut Rng, n: usize, q: char, out: &mut String) {
    out.push_str("<message");
    attr(out, "to", rng.pick(&JIDS), q);
    attr(out, "type", "chat", q);
    attr(out, "id", &format!("m{n}"), q);
    attr(out, "xml:lang", "en", q);
    out.push_str("><body>");
    let len = 10 + rng.below(400);
    body_text(rng, len, out);
    out.push_str("</body><active xmlns=");
    out.push(q);
    out.push_str("http://jabber.org/protocol/chatstates");
    out.push(q);
    out.push_str("/><origin-id");
    attr(out, "xmlns", "urn:xmpp:sid:0", q);
    attr(out, "id", &format!("{:016x}", rng.next()), q);
    out.push_str("/></message>");
}

fn presence(rng: &mut Rng, n: usize, q: char, out: &mut String) {
    out.push_str("<presence");
    attr(out, "id", &format!("p{n}"), q);
    out.push_str("><show>");
    out.push_str(rng.pick(&["away", "chat", "dnd", "xa"]));
    out.push_str("</show><status>");
    let len = rng.below(60);
    body_text(rng, len, out);
    out.push_str("</status><priority>5</priority><c");
    attr(out, "xmlns", "http://jabber.org/protocol/caps", q);
    attr(out, "hash", "sha-1", q);
    attr(out, "node", rng.pick(&CAPS_NODES), q);
    attr(out, "ver", "QgayPKawpkPSDYmwT/WM94uAlu0=", q);
    out.push_str("/><x");
    attr(out, "xmlns", "vcard-temp:x:update", q);
    out.push_str(&format!(
        "><photo>{:016x}{:016x}</photo></x></presence>",
        rng.next(),
        rng.next()
    ));
}

fn roster_set(rng: &mut Rng, n: usize, q: char, out: &mut String) {
    out.push_str("<iq");
    attr(out, "type", "set", q);
    attr(out, "id", &format!("r{n}"), q);
    out.push_str("><query");
    attr(out, "xmlns", "jabber:iq:roster", q);
    out.push('>');
    for _ in 0..3 + rng.below(10) {
        out.push_str("<item");
        attr(out, "jid", rng.pick(&JIDS), q);
        attr(
            out,
            "name",
            rng.pick(&["Juliet", "Romeo &amp; co", "Мария", "Nurse"]),
            q,
        );
        attr(
            out,
            "subscription",
            rng.pick(&["both", "to", "from", "none"]),
            q,
        );
        out.push('>');
        for _ in 0..1 + rng.below(2) {
            out.push_str("<group>");
            out.push_str(rng.pick(&GROUPS));
            out.push_str("</group>");
        }
        out.push_str("</item>");
    }
    out.push_str("</query></iq>");
}

fn ping(n: usize, q: char, out: &mut String) {
    out.push_str("<iq");
    attr(out, "type", "get", q);
    attr(out, "id", &format!("ping{n}"), q);
    attr(out, "to", "example.net", q);
    out.push_str("><ping");
    attr(out, "xmlns", "urn:xmpp:ping", q);
    out.push_str("/></iq>");
}

fn sic_request(n: usize, q: char, out: &mut String) {
    out.push_str("<iq");
    attr(out, "type", "get", q);
    attr(out, "id", &n.to_string(), q);
    out.push_str("><address");
    attr(out, "xmlns", "urn:xmpp:sic:1", q);
    out.push_str("/></iq>");
}

/// A disco#info query to the server, or the client's answer to one.
fn disco(rng: &mut Rng, n: usize, q: char, out: &mut String) {
    out.push_str("<iq");
    if rng.below(2) == 0 {
        attr(out, "type", "get", q);
        attr(out, "id", &format!("d{n}"), q);
        attr(out, "to", "example.net", q);
        out.push_str("><query");
        attr(out, "xmlns", "http://jabber.org/protocol/disco#info", q);
        out.push_str("/></iq>");
        return;
    }
    attr(out, "type", "result", q);
    attr(out, "id", &format!("d{n}"), q);
    attr(out, "to", "example.net", q);
    out.push_str("><query");
    attr(out, "xmlns", "http://jabber.org/protocol/disco#info", q);
    attr(out, "node", CAPS_NODES[0], q);
    out.push_str("><identity");
    attr(out, "category", "client", q);
    attr(out, "type", "phone", q);
    attr(out, "name", "Conversations", q);
    out.push_str("/>");
    for feature in [
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/chatstates",
        "urn:xmpp:ping",
        "urn:xmpp:receipts",
        "urn:xmpp:sic:1",
    ] {
        out.push_str("<feature");
        attr(out, "var", feature, q);
        out.push_str("/>");
    }
    out.push_str("</query></iq>");
}

/// A PEP publish whose payload uses prefixed names, a prefixed attribute and `xml:lang`.
fn prefixed(rng: &mut Rng, n: usize, q: char, out: &mut String) {
    out.push_str("<iq");
    attr(out, "type", "set", q);
    attr(out, "id", &format!("pub{n}"), q);
    out.push_str("><ps:pubsub");
    attr(out, "xmlns:ps", "http://jabber.org/protocol/pubsub", q);
    out.push_str("><ps:publish");
    attr(out, "node", "urn:x:mood", q);
    out.push_str("><ps:item><m:mood");
    attr(out, "xmlns:m", "urn:x:mood", q);
    attr(out, "m:intensity", &rng.below(10).to_string(), q);
    attr(out, "xml:lang", "en", q);
    out.push_str("><m:happy/><m:text>");
    let len = rng.below(40);
    body_text(rng, len, out);
    out.push_str("</m:text></m:mood></ps:item></ps:publish></ps:pubsub></iq>");
}

/// A realistic client-to-server stream of at least `min_bytes`: chat messages with
/// escaped multilingual bodies, presence with entity caps, roster sets, pings, disco,
/// SIC requests and a prefixed-namespace payload, in both quote styles, with whitespace
/// keepalives between some stanzas.
pub fn c2s(min_bytes: usize) -> Corpus {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = String::with_capacity(min_bytes + 4096);
    out.push_str(STREAM_HEADER);
    let mut stanzas = 0;
    while out.len() < min_bytes {
        let q = if rng.below(3) == 0 { '"' } else { '\'' };
        let n = stanzas as usize;
        match rng.below(100) {
            0..35 => message(&mut rng, n, q, &mut out),
            35..55 => presence(&mut rng, n, q, &mut out),
            55..65 => roster_set(&mut rng, n, q, &mut out),
            65..77 => ping(n, q, &mut out),
            77..87 => sic_request(n, q, &mut out),
            87..95 => disco(&mut rng, n, q, &mut out),
            _ => prefixed(&mut rng, n, q, &mut out),
        }
        stanzas += 1;
        if rng.below(8) == 0 {
            out.push_str(if rng.below(2) == 0 { " " } else { "\n" });
        }
    }
    out.push_str("</stream:stream>");
    Corpus {
        name: "c2s",
        bytes: out.into_bytes(),
        stanzas,
    }
}

/// The edge's hot path: `count` minimal SIC requests
/// (`<iq type='get' id='N'><address xmlns='urn:xmpp:sic:1'/></iq>`) after a header.
pub fn sic(count: u64) -> Corpus {
    let mut out = String::with_capacity(STREAM_HEADER.len() + 64 * count as usize);
    out.push_str(STREAM_HEADER);
    for n in 0..count {
        sic_request(n as usize, '\'', &mut out);
    }
    out.push_str("</stream:stream>");
    Corpus {
        name: "sic",
        bytes: out.into_bytes(),
        stanzas: count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpora_are_deterministic_and_sized() {
        let a = c2s(1 << 20);
        assert_eq!(a.bytes, c2s(1 << 20).bytes);
        assert!(a.bytes.len() >= 1 << 20);
        assert!(std::str::from_utf8(&a.bytes).is_ok());
        let s = sic(10);
        assert_eq!(s.stanzas, 10);
        assert!(s.bytes.ends_with(
            b"<iq type='get' id='9'><address xmlns='urn:xmpp:sic:1'/></iq></stream:stream>"
        ));
    }
}
