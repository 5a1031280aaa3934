//! After warm-up, tokenizing stanzas allocates nothing: not per token, not for
//! attribute iteration, not for namespace resolution, not across a stream restart.
// A global allocator cannot be written without `unsafe`; the library itself forbids it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;

use stanza::{Token, Tokenizer, TokenizerLimits};

/// Counts allocations made by the current thread, so the test harness's own threads
/// do not interfere.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is passed straight to the system allocator with its arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

/// A realistic mix: attributes, prefixes declared in the stanza and on the header,
/// nesting, text with references, self-closing elements, an escaped namespace name,
/// whitespace keepalives.
fn stanza(i: usize) -> String {
    match i % 5 {
        0 => format!(
            "<message from='juliet@example.com/balcony' to='romeo@example.net' type='chat' id='m{i}' xml:lang='en'>\
             <body>Wherefore art thou, Romeo? &amp; &lt;3 &#x1F339; n°{i}</body>\
             <active xmlns='http://jabber.org/protocol/chatstates'/></message>\n"
        ),
        1 => format!(
            "<presence id='p{i}'><show>away</show><status>Out &apos;n about</status>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://example.org' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>"
        ),
        2 => format!(
            "<iq type='set' id='r{i}'><query xmlns='jabber:iq:roster' xmlns:g='urn:x:groups'>\
             <item jid='nurse@example.com' name='Nurse' g:order='1'><group>Servants</group></item></query></iq> "
        ),
        3 => format!("<iq type='get' id='{i}'><address xmlns='urn:xmpp:sic:1'/></iq>"),
        _ => "<stream:features><x:a xmlns:x='urn:a&amp;b' x:y='&quot;q&quot;'><x:b/></x:a></stream:features>\r\n"
            .to_owned(),
    }
}

/// Tokenizes `input` in reads of `read` bytes into the pre-reserved `buf`, touching
/// everything a caller would; returns how many stanzas ended.
fn tokenize(t: &mut Tokenizer, buf: &mut Vec<u8>, input: &[u8], read: usize) -> usize {
    let mut stanzas = 0;
    for chunk in input.chunks(read) {
        buf.extend_from_slice(chunk);
        loop {
            match t.next(buf).expect("valid input") {
                Token::NeedMore => break,
                Token::StreamOpen(s) | Token::Start(s) => {
                    assert!(!s.namespace.is_empty());
                    assert!(!s.name.local.is_empty());
                    let _ = s.attributes.get("id");
                    for a in s.attributes {
                        assert!(!a.name.local.is_empty());
                        if !a.raw_value.contains('&') {
                            assert!(matches!(a.value(), Cow::Borrowed(_)));
                        }
                    }
                }
                Token::Text(text) => assert!(!text.raw.is_empty()),
                Token::StanzaEnd(range) => {
                    assert_eq!(buf.get(range.start), Some(&b'<'));
                    stanzas += 1;
                }
                Token::End(_) | Token::Whitespace | Token::StreamClose => {}
            }
        }
        let n = t.compact();
        buf.drain(..n);
    }
    stanzas
}

#[test]
fn steady_state_allocates_nothing() {
    let stream = |count: usize| {
        let mut s = String::from(HEADER);
        for i in 0..count {
            s.push_str(&stanza(i));
        }
        s.into_bytes()
    };
    let warm_up = stream(100);
    let first = stream(5_000);
    let second = stream(5_000);

    let mut t = Tokenizer::new(TokenizerLimits::default());
    let mut buf = Vec::with_capacity(64 * 1024);
    assert_eq!(tokenize(&mut t, &mut buf, &warm_up, 1500), 100);
    // A restart (after STARTTLS or SASL): the caller drops the old stream's bytes.
    buf.clear();
    t.reset();

    let before = allocations();
    let mut stanzas = tokenize(&mut t, &mut buf, &first, 1500);
    buf.clear();
    t.reset();
    stanzas += tokenize(&mut t, &mut buf, &second, 997);
    let allocated = allocations() - before;

    assert_eq!(stanzas, 10_000);
    assert_eq!(allocated, 0, "allocations while tokenizing 10,000 stanzas");
}
