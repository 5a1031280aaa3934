//! Feeds arbitrary bytes to `proxy_protocol::HeaderParser` whole, one byte at a time and
//! in fuzzer-chosen reads, and checks that it never panics, that the verdict (the header
//! and the count of bytes it consumed, or the error) does not depend on the reads, that
//! `version()` follows the first byte, that a spent parser repeats its outcome, and that
//! a parsed header is self-delimiting. Then writes a header with `write_v1` and
//! `write_v2` for fuzzer-chosen addresses and TLVs and checks it parses back to them,
//! however it is split.
//!
//! Input layout: byte 0 picks the parser's `max_len` and the read sizes, bytes 1..3 seed
//! the read sizes, the rest is the stream; the round trip reads its addresses, command
//! and TLVs from the same stream.

#![no_main]
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use proxy_protocol::{
    BlockTooLong, Command, DEFAULT_MAX_LEN, HeaderParser, Progress, ProxyAddresses, ProxyError,
    ProxyHeader, Version, write_v1, write_v2,
};

/// How one input ended for the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Every byte belonged to a header not complete yet.
    NeedMore,
    /// A header, and how many bytes of the whole input it took.
    Done(ProxyHeader, usize),
    /// Rejected.
    Error(ProxyError),
}

/// The caps worth telling apart: the default, and those just around the sizes of the
/// v2 fixed part, the TCP4, TCP6 and UNIX address blocks.
const MAX_LENS: [usize; 8] = [DEFAULT_MAX_LEN, 0, 16, 27, 28, 52, 232, 65_551];

/// What `version()` must say once `first` (if any) has been fed.
fn expected_version(first: Option<u8>) -> Option<Version> {
    match first {
        Some(b'P') => Some(Version::V1),
        Some(b'\r') => Some(Version::V2),
        _ => None,
    }
}

/// Feeds `input` in `reads` (sizes summing to at most its length; the rest is never fed)
/// and checks the parser's contract along the way.
fn run(max_len: usize, input: &[u8], reads: &[usize]) -> Verdict {
    let mut parser = HeaderParser::new(max_len);
    assert_eq!(parser.version(), None, "a version before any byte");
    let mut fed = 0;
    let mut verdict = Verdict::NeedMore;
    for &read in reads {
        let chunk = &input[fed..fed + read];
        let outcome = parser.feed(chunk);
        let first = input.first().copied().filter(|_| fed + read > 0);
        assert_eq!(parser.version(), expected_version(first), "version()");
        match outcome {
            Ok(Progress::NeedMore) => {
                fed += read;
                continue;
            }
            Ok(Progress::Done { header, consumed }) => {
                assert!(
                    (1..=read).contains(&consumed),
                    "consumed {consumed} of a {read}-byte read"
                );
                assert_eq!(Some(header.version), parser.version(), "header version");
                verdict = Verdict::Done(header, fed + consumed);
            }
            Err(error) => {
                assert!(read > 0, "an empty read was rejected: {error}");
                // Neither may panic; the label is from a fixed set.
                let _ = error.to_string();
                assert!(!error.label().is_empty());
                verdict = Verdict::Error(error);
            }
        }
        // A spent parser repeats its outcome, whatever it is fed.
        let again = match parser.feed(input.get(fed..).unwrap_or_default()) {
            Ok(Progress::Done { header, consumed }) => {
                assert_eq!(consumed, 0, "a spent parser consumed bytes");
                Verdict::Done(header, 0)
            }
            Ok(Progress::NeedMore) => panic!("a spent parser wants more"),
            Err(error) => Verdict::Error(error),
        };
        match (&verdict, again) {
            (Verdict::Done(header, _), Verdict::Done(repeated, _)) => {
                assert_eq!(header, &repeated, "a spent parser changed its header");
            }
            (Verdict::Error(error), Verdict::Error(repeated)) => {
                assert_eq!(error, &repeated, "a spent parser changed its error");
            }
            (verdict, again) => panic!("{verdict:?} was repeated as {again:?}"),
        }
        return verdict;
    }
    verdict
}

/// Read sizes covering `len`, from a seed; `max` bounds one read; a zero-byte read now
/// and then, since an empty read must change nothing.
fn reads(len: usize, mut seed: u32, max: usize) -> Vec<usize> {
    let mut reads = Vec::new();
    let mut left = len;
    while left > 0 {
        // xorshift32; the seed is never zero.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let read = if seed % 16 == 0 {
            0
        } else {
            (1 + seed as usize % max).min(left)
        };
        reads.push(read);
        left -= read;
    }
    reads
}

/// The verdict for `input` must not depend on how it is read.
fn check_splits(max_len: usize, input: &[u8], seed: u32, max_read: usize) -> Verdict {
    let whole = run(max_len, input, &[input.len()]);
    // Byte by byte up to the longest header the default cap allows; a round trip's
    // 64 KiB header is read in the fuzzer's reads only, to keep runs fast.
    if input.len() <= DEFAULT_MAX_LEN + 64 {
        let bytes = run(max_len, input, &vec![1; input.len()]);
        assert_eq!(whole, bytes, "byte-at-a-time reads changed the verdict");
    }
    let chunked = run(max_len, input, &reads(input.len(), seed, max_read));
    assert_eq!(whole, chunked, "reads changed the verdict");

    if let Verdict::Done(header, consumed) = &whole {
        // Self-delimiting: the header's own bytes alone give the same header, and any
        // shorter prefix of them is incomplete.
        let own = &input[..*consumed];
        assert_eq!(
            run(max_len, own, &[own.len()]),
            whole,
            "the header's own bytes"
        );
        assert_eq!(
            run(max_len, &own[..own.len() - 1], &[own.len() - 1]),
            Verdict::NeedMore,
            "a header one byte short"
        );
        check_header(header, own);
    }
    whole
}

/// What can be said about any accepted header.
fn check_header(header: &ProxyHeader, own: &[u8]) {
    if header.command == Command::Local {
        assert_eq!(header.addresses, None, "LOCAL with addresses");
    }
    match header.version {
        Version::V1 => {
            assert!(own.len() <= 107, "v1 line over 107 bytes");
            assert!(own.ends_with(b"\r\n"), "v1 line without CRLF");
            assert_eq!(header.command, Command::Proxy, "v1 is always PROXY");
            assert!(!header.crc_verified && header.authority.is_none());
            assert!(header.aws_vpce_id.is_none(), "v1 with a TLV");
            // The parser accepts only the canonical spelling of IPv4 lines, which is what
            // the writer produces.
            if own.starts_with(b"PROXY TCP4 ") {
                let mut line = Vec::new();
                write_v1(header.addresses, &mut line);
                assert_eq!(line, own, "a TCP4 line in a non-canonical spelling");
            }
        }
        Version::V2 => {
            assert!(own.len() >= 16, "v2 header shorter than its fixed part");
            let len = usize::from(u16::from_be_bytes([own[14], own[15]]));
            assert_eq!(own.len(), 16 + len, "v2 header length field");
        }
    }
}

/// Bytes read from the fuzz input for the round trip, zero once it runs out.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.byte())
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn ip(&mut self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>()))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>()))
        }
    }

    fn addresses(&mut self) -> Option<ProxyAddresses> {
        let kind = self.byte();
        let (source_v6, destination_v6) = match kind % 5 {
            0 => return None,
            1 => (false, false),
            2 => (true, true),
            3 => (false, true),
            _ => (true, false),
        };
        let source = self.ip(source_v6);
        let destination = self.ip(destination_v6);
        let ports: [u8; 4] = self.array();
        Some(ProxyAddresses {
            source: SocketAddr::new(source, u16::from_be_bytes([ports[0], ports[1]])),
            destination: SocketAddr::new(destination, u16::from_be_bytes([ports[2], ports[3]])),
        })
    }
}

/// The addresses a header written for `addresses` carries: one family, IPv4 mapped into
/// IPv6 when the two differ.
fn one_family(addresses: Option<ProxyAddresses>) -> Option<ProxyAddresses> {
    let ProxyAddresses {
        source,
        destination,
    } = addresses?;
    if source.is_ipv4() && destination.is_ipv4() {
        return addresses;
    }
    let v6 = |address: SocketAddr| {
        let ip = match address.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        SocketAddr::new(IpAddr::V6(ip), address.port())
    };
    Some(ProxyAddresses {
        source: v6(source),
        destination: v6(destination),
    })
}

/// The parser's TLV rules for the TLVs the round trip writes (never a CRC32C one of its
/// own): what the header should say about AUTHORITY and the VPC endpoint, or the error.
fn expected_tlvs(tlvs: &[(u8, Vec<u8>)]) -> Result<(Option<String>, Option<String>), ProxyError> {
    fn set_once(slot: &mut Option<String>, kind: u8, value: &[u8]) -> Result<(), ProxyError> {
        if slot.is_some() {
            return Err(ProxyError::BadTlv {
                kind,
                reason: "repeated",
            });
        }
        let text = std::str::from_utf8(value).map_err(|_| ProxyError::BadTlv {
            kind,
            reason: "not UTF-8",
        })?;
        *slot = Some(text.to_owned());
        Ok(())
    }
    let (mut authority, mut vpce) = (None, None);
    for (kind, value) in tlvs {
        match (*kind, value.split_first()) {
            (0x02, _) => set_once(&mut authority, 0x02, value)?,
            (0xEA, None) => {
                return Err(ProxyError::BadTlv {
                    kind: 0xEA,
                    reason: "no subtype",
                });
            }
            (0xEA, Some((0x01, id))) => set_once(&mut vpce, 0xEA, id)?,
            _ => {}
        }
    }
    Ok((authority, vpce))
}

/// Writes headers for fuzzer-chosen addresses and checks they parse back.
fn round_trip(cursor: &mut Cursor<'_>, trailer: &[u8], seed: u32, max_read: usize) {
    let addresses = cursor.addresses();
    let expected = one_family(addresses);

    let mut line = Vec::new();
    write_v1(addresses, &mut line);
    let written = line.len();
    line.extend_from_slice(trailer);
    let header = ProxyHeader {
        version: Version::V1,
        command: Command::Proxy,
        addresses: expected,
        crc_verified: false,
        authority: None,
        aws_vpce_id: None,
    };
    assert_eq!(
        check_splits(DEFAULT_MAX_LEN, &line, seed, max_read),
        Verdict::Done(header, written),
        "a written v1 line did not parse back: {:?}",
        String::from_utf8_lossy(&line[..written])
    );

    let flags = cursor.byte();
    let command = if flags & 1 == 0 {
        Command::Proxy
    } else {
        Command::Local
    };
    let with_crc = flags & 2 != 0;
    let mut tlvs = Vec::new();
    for _ in 0..(flags >> 2) % 5 {
        let kind = match cursor.byte() {
            // The round trip writes no CRC32C TLV of its own: `with_crc` adds the one.
            0x03 => 0x04,
            kind => kind,
        };
        let len = usize::from(cursor.byte());
        // Now and then a value long enough to overflow the 16-bit length.
        let len = if len == 0xFF {
            usize::from(u16::from_be_bytes(cursor.array()))
        } else {
            len % 48
        };
        let mut value = cursor.take(len.min(64));
        value.resize(len, 0);
        tlvs.push((kind, value));
    }
    let borrowed: Vec<(u8, &[u8])> = tlvs.iter().map(|(k, v)| (*k, v.as_slice())).collect();

    let mut header_bytes = b"kept".to_vec();
    let block_len = match addresses.map(|a| a.source.is_ipv4() && a.destination.is_ipv4()) {
        None => 0,
        Some(true) => 12,
        Some(false) => 36,
    } + tlvs.iter().map(|(_, v)| 3 + v.len()).sum::<usize>()
        + if with_crc { 7 } else { 0 };
    match write_v2(command, addresses, &borrowed, with_crc, &mut header_bytes) {
        Err(BlockTooLong(len)) => {
            assert_eq!(len, block_len, "BlockTooLong length");
            assert!(len > 65_535, "refused a block of {len} bytes");
            assert_eq!(header_bytes, b"kept", "bytes appended on error");
            return;
        }
        Ok(()) => assert!(block_len <= 65_535, "wrote a block of {block_len} bytes"),
    }
    let mut header_bytes = header_bytes.split_off(4);
    let written = header_bytes.len();
    assert_eq!(written, 16 + block_len, "v2 header size");
    header_bytes.extend_from_slice(trailer);
    let expected = expected_tlvs(&tlvs).map(|(authority, aws_vpce_id)| {
        Verdict::Done(
            ProxyHeader {
                version: Version::V2,
                command,
                addresses: match command {
                    Command::Proxy => expected,
                    Command::Local => None,
                },
                crc_verified: with_crc,
                authority,
                aws_vpce_id,
            },
            written,
        )
    });
    let expected = expected.unwrap_or_else(Verdict::Error);
    assert_eq!(
        check_splits(usize::MAX, &header_bytes, seed, max_read),
        expected,
        "a written v2 header did not parse back"
    );
    // The cap counts the whole header: one byte under it is refused, before any TLV.
    if let Verdict::Done(..) = expected {
        let capped = run(written - 1, &header_bytes, &[header_bytes.len()]);
        assert_eq!(
            capped,
            Verdict::Error(ProxyError::TooLong {
                len: written,
                max: written - 1
            }),
            "a header one byte over the cap"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, a, b, input @ ..] = data else {
        return;
    };
    let max_len = MAX_LENS[usize::from(mode & 0x07)];
    let max_read = [1, 2, 3, 7, 16, 64, 200, 4096][usize::from(mode >> 3 & 0x07)];
    let seed = u32::from(u16::from_le_bytes([*a, *b])) | 0x1_0000;

    check_splits(max_len, input, seed, max_read);

    // The round trip's trailer (the client's first bytes) must stay the client's.
    let trailer: &[u8] = if mode & 0x40 != 0 {
        b"<?xml version='1.0'?>"
    } else {
        b""
    };
    round_trip(&mut Cursor(input), trailer, seed, max_read);
});
