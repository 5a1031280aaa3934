//! PROXY protocol header parsing, writing and the trusted-source check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use proxy_protocol::{
    BlockTooLong, Cidr, Command, DEFAULT_MAX_LEN, HeaderParser, Progress, ProxyAddresses,
    ProxyError, ProxyHeader, TrustedSources, Version, write_v1, write_v2,
};

const SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// What the client sends after the header; it must never be taken as header bytes.
const CLIENT: &[u8] = b"<?xml version='1.0'?><stream:stream>";

// ---------------------------------------------------------------------------------------
// Helpers

fn sa(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn addrs(source: &str, destination: &str) -> Option<ProxyAddresses> {
    Some(ProxyAddresses {
        source: sa(source),
        destination: sa(destination),
    })
}

fn header(version: Version, command: Command, addresses: Option<ProxyAddresses>) -> ProxyHeader {
    ProxyHeader {
        version,
        command,
        addresses,
        crc_verified: false,
        authority: None,
        aws_vpce_id: None,
    }
}

/// A v2 header from raw parts, the length field taken from `block`.
fn raw_v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut out = SIG.to_vec();
    out.push(ver_cmd);
    out.push(family);
    out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    out.extend_from_slice(block);
    out
}

/// Like [`raw_v2`] with a CRC32C TLV appended, computed as the spec says (over the whole
/// header with the value zeroed), independently of the crate's writer.
fn raw_v2_crc(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut block = block.to_vec();
    block.extend_from_slice(&[0x03, 0, 4, 0, 0, 0, 0]);
    let mut out = raw_v2(ver_cmd, family, &block);
    let crc = crc32c::crc32c(&out);
    let at = out.len() - 4;
    out[at..].copy_from_slice(&crc.to_be_bytes());
    out
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn tcp4_block() -> Vec<u8> {
    // 192.0.2.10:51000 -> 198.51.100.1:5222
    let mut block = vec![192, 0, 2, 10, 198, 51, 100, 1];
    block.extend_from_slice(&51000u16.to_be_bytes());
    block.extend_from_slice(&5222u16.to_be_bytes());
    block
}

fn tcp6_block() -> Vec<u8> {
    // [2001:db8::7]:40000 -> [2001:db8::1]:5223
    let mut block = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&40000u16.to_be_bytes());
    block.extend_from_slice(&5223u16.to_be_bytes());
    block
}

/// The outcome of feeding `chunks` in order: the header and where in the concatenated
/// input it ended, or the error.
fn feed_chunks(
    max_len: usize,
    chunks: &[&[u8]],
) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let mut parser = HeaderParser::new(max_len);
    let mut offset = 0;
    for chunk in chunks {
        match parser.feed(chunk)? {
            Progress::NeedMore => offset += chunk.len(),
            Progress::Done { header, consumed } => {
                assert!(consumed <= chunk.len(), "consumed past the chunk");
                return Ok(Some((header, offset + consumed)));
            }
        }
    }
    Ok(None)
}

fn parse_whole(bytes: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    feed_chunks(DEFAULT_MAX_LEN, &[bytes])
}

fn error_of(bytes: &[u8]) -> ProxyError {
    match parse_whole(bytes) {
        Err(error) => error,
        Ok(outcome) => panic!("expected an error for {bytes:?}, got {outcome:?}"),
    }
}

/// Feeds `header_bytes` followed by client bytes split in every way into two and three
/// pieces and byte by byte; every way must give `expected` and end exactly at the header.
fn check_every_split(header_bytes: &[u8], expected: &ProxyHeader) {
    let mut input = header_bytes.to_vec();
    input.extend_from_slice(CLIENT);
    let want = Ok(Some((expected.clone(), header_bytes.len())));
    let n = input.len();
    assert_eq!(feed_chunks(DEFAULT_MAX_LEN, &[&input]), want, "whole");
    for i in 0..=n {
        assert_eq!(
            feed_chunks(DEFAULT_MAX_LEN, &[&input[..i], &input[i..]]),
            want,
            "split at {i}"
        );
        for j in i..=n {
            assert_eq!(
                feed_chunks(DEFAULT_MAX_LEN, &[&input[..i], &input[i..j], &input[j..]]),
                want,
                "split at {i} and {j}"
            );
        }
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(feed_chunks(DEFAULT_MAX_LEN, &bytes), want, "byte by byte");
    // Header alone, byte by byte: NeedMore until the very last byte.
    let mut parser = HeaderParser::default();
    for (i, byte) in header_bytes.iter().enumerate() {
        let progress = parser.feed(std::slice::from_ref(byte)).unwrap();
        if i + 1 < header_bytes.len() {
            assert_eq!(progress, Progress::NeedMore, "byte {i}");
        } else {
            assert_eq!(
                progress,
                Progress::Done {
                    header: expected.clone(),
                    consumed: 1
                }
            );
        }
    }
}

/// Feeds `bytes` one at a time and returns the index of the byte that produced the error.
fn error_at(bytes: &[u8]) -> (usize, ProxyError) {
    let mut parser = HeaderParser::default();
    for (i, byte) in bytes.iter().enumerate() {
        match parser.feed(std::slice::from_ref(byte)) {
            Ok(Progress::NeedMore) => {}
            Ok(done) => panic!("unexpected {done:?} at byte {i}"),
            Err(error) => return (i, error),
        }
    }
    panic!("no error in {bytes:?}");
}

// ---------------------------------------------------------------------------------------
// Valid headers, split everywhere

#[test]
fn v1_tcp4_every_split() {
    check_every_split(
        b"PROXY TCP4 192.0.2.10 198.51.100.1 51000 5222\r\n",
        &header(
            Version::V1,
            Command::Proxy,
            addrs("192.0.2.10:51000", "198.51.100.1:5222"),
        ),
    );
}

#[test]
fn v1_tcp6_every_split() {
    check_every_split(
        b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 5223\r\n",
        &header(
            Version::V1,
            Command::Proxy,
            addrs("[2001:db8::7]:40000", "[2001:db8::1]:5223"),
        ),
    );
}

#[test]
fn v1_unknown_every_split() {
    let expected = header(Version::V1, Command::Proxy, None);
    check_every_split(b"PROXY UNKNOWN\r\n", &expected);
    check_every_split(
        b"PROXY UNKNOWN 2001:db8::7 2001:db8::1 40000 5223\r\n",
        &expected,
    );
}

#[test]
fn v1_longest_line_is_accepted() {
    let line = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(line.len(), 107);
    check_every_split(line, &header(Version::V1, Command::Proxy, None));
    let line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    let all = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
    assert_eq!(
        parse_whole(line),
        Ok(Some((
            header(Version::V1, Command::Proxy, addrs(all, all)),
            line.len()
        )))
    );
}

#[test]
fn v2_tcp4_every_split() {
    check_every_split(
        &raw_v2(0x21, 0x11, &tcp4_block()),
        &header(
            Version::V2,
            Command::Proxy,
            addrs("192.0.2.10:51000", "198.51.100.1:5222"),
        ),
    );
}

#[test]
fn v2_tcp6_every_split() {
    check_every_split(
        &raw_v2(0x21, 0x21, &tcp6_block()),
        &header(
            Version::V2,
            Command::Proxy,
            addrs("[2001:db8::7]:40000", "[2001:db8::1]:5223"),
        ),
    );
}

#[test]
fn v2_tcp6_with_tlvs_every_split() {
    let mut block = tcp6_block();
    block.extend(tlv(0x01, b"xmpp-client")); // ALPN: skipped
    block.extend(tlv(0x02, b"chat.example")); // AUTHORITY
    block.extend(tlv(0x04, &[0; 5])); // NOOP
    block.extend(tlv(0xEA, b"\x01vpce-0123456789abcdef0")); // AWS VPC endpoint ID
    block.extend(tlv(0xEA, b"\x02other")); // another AWS subtype: skipped
    block.extend(tlv(0x20, &[0x07, 0, 0, 0, 0])); // SSL: skipped
    block.extend(tlv(0xE5, b"")); // custom, empty
    let expected = ProxyHeader {
        authority: Some("chat.example".into()),
        aws_vpce_id: Some("vpce-0123456789abcdef0".into()),
        ..header(
            Version::V2,
            Command::Proxy,
            addrs("[2001:db8::7]:40000", "[2001:db8::1]:5223"),
        )
    };
    check_every_split(&raw_v2(0x21, 0x21, &block), &expected);
}

#[test]
fn v2_tcp4_with_tlvs_and_crc_every_split() {
    let mut block = tcp4_block();
    block.extend(tlv(0x02, b"chat.example"));
    let expected = ProxyHeader {
        crc_verified: true,
        authority: Some("chat.example".into()),
        ..header(
            Version::V2,
            Command::Proxy,
            addrs("192.0.2.10:51000", "198.51.100.1:5222"),
        )
    };
    check_every_split(&raw_v2_crc(0x21, 0x11, &block), &expected);
}

#[test]
fn v2_local_every_split() {
    let local = header(Version::V2, Command::Local, None);
    // What HAProxy sends for its health checks.
    check_every_split(&raw_v2(0x20, 0x00, &[]), &local);
    // LOCAL with addresses: they are ignored.
    check_every_split(&raw_v2(0x20, 0x11, &tcp4_block()), &local);
    check_every_split(
        &raw_v2_crc(0x20, 0x00, &tlv(0x05, b"unique-id")),
        &ProxyHeader {
            crc_verified: true,
            ..local.clone()
        },
    );
}

#[test]
fn v2_local_accepts_every_defined_family() {
    for (family, len) in [
        (0x00, 0),
        (0x11, 12),
        (0x12, 12),
        (0x21, 36),
        (0x22, 36),
        (0x31, 216),
        (0x32, 216),
    ] {
        let bytes = raw_v2(0x20, family, &vec![0xAB; len]);
        assert_eq!(
            parse_whole(&bytes),
            Ok(Some((
                header(Version::V2, Command::Local, None),
                bytes.len()
            ))),
            "family {family:#04x}"
        );
    }
    // A UNIX-family LOCAL header with a CRC, split everywhere (232 + 7 bytes).
    check_every_split(
        &raw_v2_crc(0x20, 0x31, &[0x2F; 216]),
        &ProxyHeader {
            crc_verified: true,
            ..header(Version::V2, Command::Local, None)
        },
    );
}

#[test]
fn v2_proxy_unspec_uses_socket_addresses() {
    let expected = header(Version::V2, Command::Proxy, None);
    check_every_split(&raw_v2(0x21, 0x00, &[]), &expected);
    check_every_split(
        &raw_v2(0x21, 0x00, &tlv(0x02, b"host")),
        &ProxyHeader {
            authority: Some("host".into()),
            ..expected
        },
    );
}

#[test]
fn v2_addresses_mapped_source_kept_as_is() {
    let mut block = "::ffff:192.0.2.10"
        .parse::<Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    block.extend_from_slice(&[0, 80, 0, 81]);
    let (parsed, _) = parse_whole(&raw_v2(0x21, 0x21, &block)).unwrap().unwrap();
    let source = parsed.addresses.unwrap().source;
    assert_eq!(source, sa("[::ffff:192.0.2.10]:80"));
    assert!(source.is_ipv6());
    let line = b"PROXY TCP6 ::ffff:192.0.2.10 ::1 80 81\r\n";
    let (parsed, _) = parse_whole(line).unwrap().unwrap();
    assert_eq!(
        parsed.addresses.unwrap().source,
        sa("[::ffff:192.0.2.10]:80")
    );
}

#[test]
fn client_address_falls_back_to_the_peer() {
    let peer = sa("127.0.0.1:40000");
    let local = header(Version::V2, Command::Local, None);
    assert_eq!(local.client_address(peer), peer);
    let proxied = header(
        Version::V1,
        Command::Proxy,
        addrs("192.0.2.10:51000", "198.51.100.1:5222"),
    );
    assert_eq!(proxied.client_address(peer), sa("192.0.2.10:51000"));
}

#[test]
fn header_may_end_a_read_exactly_or_come_with_nothing_after() {
    let line = b"PROXY TCP4 192.0.2.10 198.51.100.1 51000 5222\r\n";
    let mut parser = HeaderParser::default();
    assert_eq!(parser.feed(b""), Ok(Progress::NeedMore));
    match parser.feed(line) {
        Ok(Progress::Done { consumed, .. }) => assert_eq!(consumed, line.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn spent_parser_repeats_its_outcome() {
    let mut parser = HeaderParser::default();
    let line = b"PROXY UNKNOWN\r\nPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
    let first = parser.feed(line).unwrap();
    assert_eq!(
        first,
        Progress::Done {
            header: header(Version::V1, Command::Proxy, None),
            consumed: 15
        }
    );
    assert_eq!(
        parser.feed(b"more"),
        Ok(Progress::Done {
            header: header(Version::V1, Command::Proxy, None),
            consumed: 0
        })
    );
    let mut parser = HeaderParser::default();
    let error = parser.feed(b"X").unwrap_err();
    assert_eq!(parser.feed(b"PROXY UNKNOWN\r\n"), Err(error));
}

// ---------------------------------------------------------------------------------------
// Signatures

#[test]
fn garbage_first_byte_fails_at_once() {
    for first in [b'<', b'G', b'\n', 0, 0x16, b'p', b' '] {
        let mut parser = HeaderParser::default();
        let error = parser.feed(&[first]).unwrap_err();
        assert_eq!(
            error,
            ProxyError::BadSignature {
                offset: 0,
                byte: first
            }
        );
        assert_eq!(error.label(), "bad_signature");
    }
    // A TLS ClientHello or a stream header from a client that bypassed the balancer.
    assert_eq!(error_of(&[0x16, 3, 1, 0, 0xC8]).label(), "bad_signature");
    assert_eq!(error_of(b"<?xml").label(), "bad_signature");
}

#[test]
fn signature_mismatch_fails_at_the_first_wrong_byte() {
    assert_eq!(
        error_at(b"PROXX TCP4"),
        (
            4,
            ProxyError::BadSignature {
                offset: 4,
                byte: b'X'
            }
        )
    );
    assert_eq!(
        error_at(b"PROXY\r\n"),
        (
            5,
            ProxyError::BadSignature {
                offset: 5,
                byte: b'\r'
            }
        )
    );
    let mut bad = SIG.to_vec();
    bad[7] = b'q';
    bad.extend_from_slice(&[0x21, 0x11, 0, 12]);
    assert_eq!(
        error_at(&bad),
        (
            7,
            ProxyError::BadSignature {
                offset: 7,
                byte: b'q'
            }
        )
    );
    // A v1 line where the v2 signature was expected (CRLF, then not CRLF).
    assert_eq!(error_at(b"\r\nPROXY").0, 2);
}

// ---------------------------------------------------------------------------------------
// v2 errors

#[test]
fn v2_version_other_than_2_is_rejected_at_byte_13() {
    for (ver_cmd, version) in [(0x11, 1), (0x31, 3), (0x01, 0), (0xF1, 15)] {
        let bytes = raw_v2(ver_cmd, 0x11, &tcp4_block());
        let (at, error) = error_at(&bytes);
        assert_eq!(at, 12);
        assert_eq!(error, ProxyError::UnsupportedVersion(version));
        assert_eq!(error.label(), "unsupported_version");
    }
}

#[test]
fn v2_command_above_1_is_rejected() {
    for command in 2..=15u8 {
        let bytes = raw_v2(0x20 | command, 0x11, &tcp4_block());
        assert_eq!(error_at(&bytes), (12, ProxyError::BadCommand(command)));
    }
    assert_eq!(ProxyError::BadCommand(2).label(), "bad_command");
}

#[test]
fn v2_undefined_family_bytes_are_rejected_for_both_commands() {
    for family in [
        0x01, 0x02, 0x10, 0x13, 0x20, 0x23, 0x30, 0x33, 0x40, 0x41, 0xFF,
    ] {
        for ver_cmd in [0x20, 0x21] {
            let bytes = raw_v2(ver_cmd, family, &[0; 216]);
            let (at, error) = error_at(&bytes);
            assert_eq!((at, &error), (13, &ProxyError::BadFamily(family)));
            assert_eq!(error.label(), "bad_family");
        }
    }
}

#[test]
fn v2_proxy_over_udp_or_unix_is_rejected() {
    for family in [0x12, 0x22, 0x31, 0x32] {
        let bytes = raw_v2(0x21, family, &[0; 216]);
        let (at, error) = error_at(&bytes);
        assert_eq!((at, &error), (13, &ProxyError::UnsupportedFamily(family)));
        assert_eq!(error.label(), "unsupported_family");
    }
}

#[test]
fn v2_address_block_shorter_than_the_family_needs() {
    for (family, needed) in [(0x11u8, 12usize), (0x21, 36), (0x31, 216)] {
        for ver_cmd in [0x20, 0x21] {
            if ver_cmd == 0x21 && family == 0x31 {
                continue; // rejected earlier as unsupported
            }
            let bytes = raw_v2(ver_cmd, family, &vec![0; needed - 1]);
            let (at, error) = error_at(&bytes);
            assert_eq!(at, 15, "rejected as soon as the length is known");
            assert_eq!(
                error,
                ProxyError::ShortAddressBlock {
                    family,
                    len: u16::try_from(needed - 1).unwrap(),
                    needed
                }
            );
            assert_eq!(error.label(), "bad_length");
        }
    }
}

#[test]
fn v2_over_the_cap_is_rejected_from_the_length_alone() {
    let mut block = tcp4_block();
    block.extend(tlv(0xE0, &[0; 100]));
    let bytes = raw_v2(0x21, 0x11, &block);
    let total = bytes.len();
    assert_eq!(
        feed_chunks(total, &[&bytes]).map(|o| o.map(|(_, n)| n)),
        Ok(Some(total))
    );
    let error = feed_chunks(total - 1, &[&bytes[..16]]).unwrap_err();
    assert_eq!(
        error,
        ProxyError::TooLong {
            len: total,
            max: total - 1
        }
    );
    assert_eq!(error.label(), "too_long");
    // The largest length the field can say, against the default cap.
    let mut fixed = SIG.to_vec();
    fixed.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
    assert_eq!(
        error_of(&fixed),
        ProxyError::TooLong {
            len: 16 + 65535,
            max: DEFAULT_MAX_LEN
        }
    );
}

#[test]
fn v2_tlv_overrunning_the_header_is_rejected() {
    // A TLV that says 10 bytes with 4 left.
    let mut block = tcp4_block();
    block.extend_from_slice(&[0xE0, 0, 10, 1, 2, 3, 4]);
    let error = error_of(&raw_v2(0x21, 0x11, &block));
    assert_eq!(
        error,
        ProxyError::TlvOverrun {
            offset: 28,
            needed: 13,
            available: 7
        }
    );
    assert_eq!(error.label(), "tlv_overrun");
    // One or two stray bytes after the last TLV: no room for a TLV header.
    for stray in 1..=2 {
        let mut block = tcp4_block();
        block.extend(tlv(0x04, b"ab"));
        block.extend(std::iter::repeat_n(0u8, stray));
        assert_eq!(
            error_of(&raw_v2(0x21, 0x11, &block)),
            ProxyError::TlvOverrun {
                offset: 33,
                needed: 3,
                available: stray
            }
        );
    }
    // The overrun is judged against the header's length, not the bytes that follow it.
    let mut bytes = raw_v2(0x21, 0x00, &[0xE0, 0, 5, 1]);
    bytes.extend_from_slice(b"5678");
    assert_eq!(error_of(&bytes).label(), "tlv_overrun");
}

#[test]
fn v2_bad_crc_is_rejected() {
    let good = raw_v2_crc(0x21, 0x11, &tcp4_block());
    assert!(parse_whole(&good).unwrap().unwrap().0.crc_verified);
    // A changed address byte.
    let mut bad = good.clone();
    bad[16] ^= 1;
    let error = error_of(&bad);
    assert!(matches!(error, ProxyError::BadCrc { .. }), "{error:?}");
    assert_eq!(error.label(), "bad_crc");
    // A changed checksum.
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0x80;
    let expected = u32::from_be_bytes(bad[bad.len() - 4..].try_into().unwrap());
    let computed = u32::from_be_bytes(good[good.len() - 4..].try_into().unwrap());
    assert_eq!(error_of(&bad), ProxyError::BadCrc { expected, computed });
    // Zero is no "absent" marker.
    let mut zero = good.clone();
    let at = zero.len() - 4;
    zero[at..].fill(0);
    assert_eq!(error_of(&zero).label(), "bad_crc");
}

#[test]
fn crc_is_castagnoli() {
    // The CRC-32C check value, so a CRC-32 (IEEE) slip would show.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn v2_malformed_known_tlvs_are_rejected() {
    let bad_tlv = |block: Vec<u8>| error_of(&raw_v2(0x21, 0x00, &block));
    let crc3 = bad_tlv(tlv(0x03, &[1, 2, 3]));
    assert_eq!(
        crc3,
        ProxyError::BadTlv {
            kind: 0x03,
            reason: "CRC32C value is not 4 bytes"
        }
    );
    assert_eq!(crc3.label(), "bad_tlv");
    let mut twice = tlv(0x03, &[0; 4]);
    twice.extend(tlv(0x03, &[0; 4]));
    assert_eq!(
        bad_tlv(twice),
        ProxyError::BadTlv {
            kind: 0x03,
            reason: "repeated"
        }
    );
    assert_eq!(
        bad_tlv(tlv(0x02, b"\xFF\xFE")),
        ProxyError::BadTlv {
            kind: 0x02,
            reason: "not UTF-8"
        }
    );
    let mut twice = tlv(0x02, b"a");
    twice.extend(tlv(0x02, b"b"));
    assert_eq!(bad_tlv(twice).label(), "bad_tlv");
    assert_eq!(
        bad_tlv(tlv(0xEA, b"")),
        ProxyError::BadTlv {
            kind: 0xEA,
            reason: "no subtype"
        }
    );
}

// ---------------------------------------------------------------------------------------
// v1 errors

#[test]
fn v1_without_crlf_within_107_bytes_fails_at_the_107th() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(200, b'a');
    let (at, error) = error_at(&line);
    // Byte 107 (index 106) is not the LF that would have to end the line there.
    assert_eq!((at, &error), (106, &ProxyError::V1TooLong));
    assert_eq!(error.label(), "too_long");
    // A CR as the 107th byte cannot be followed by its LF within the limit.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(106, b'a');
    line.push(b'\r');
    assert_eq!(error_at(&line), (106, ProxyError::V1TooLong));
    // 106 bytes without CRLF: still waiting.
    let mut parser = HeaderParser::default();
    assert_eq!(parser.feed(&line[..106]), Ok(Progress::NeedMore));
}

#[test]
fn v1_protocol_word_is_checked_as_it_arrives() {
    for (line, at) in [
        (&b"PROXY TCP5 "[..], 9),
        (b"PROXY tcp4 ", 6),
        (b"PROXY UDP4 ", 7),
        (b"PROXY TCP4\r\n", 10),
        (b"PROXY  TCP4", 6),
        (b"PROXY UNKNOWNX", 13),
        (b"PROXY \r\n", 6),
    ] {
        let (got, error) = error_at(line);
        assert_eq!(got, at, "{:?}", String::from_utf8_lossy(line));
        assert_eq!(error.label(), "bad_v1_line");
    }
}

#[test]
fn v1_line_endings_are_strict() {
    assert_eq!(
        error_of(b"PROXY UNKNOWN\n"),
        ProxyError::BadV1Line("line feed without carriage return")
    );
    assert_eq!(
        error_of(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
        ProxyError::BadV1Line("line feed without carriage return")
    );
    assert_eq!(
        error_of(b"PROXY UNKNOWN\rx"),
        ProxyError::BadV1Line("carriage return not followed by line feed")
    );
    assert_eq!(
        error_of(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"),
        ProxyError::BadV1Line("carriage return not followed by line feed")
    );
}

#[test]
fn v1_field_structure() {
    let cases: [(&[u8], &str); 6] = [
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            "fewer than four fields after the protocol",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            "more than four fields after the protocol",
        ),
        (
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            "empty field (two spaces, or a space before CRLF)",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
            "more than four fields after the protocol",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",
            "empty field (two spaces, or a space before CRLF)",
        ),
        (
            b"PROXY TCP4 \r\n",
            "empty field (two spaces, or a space before CRLF)",
        ),
    ];
    for (line, reason) in cases {
        assert_eq!(
            error_of(line),
            ProxyError::BadV1Line(reason),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn v1_addresses_and_ports_are_strict() {
    let cases: [(&str, &str, &str); 17] = [
        ("TCP4 1.2.3 5.6.7.8 1 2", "source address", "1.2.3"),
        (
            "TCP4 1.2.3.4 5.6.7.256 1 2",
            "destination address",
            "5.6.7.256",
        ),
        ("TCP4 01.2.3.4 5.6.7.8 1 2", "source address", "01.2.3.4"),
        ("TCP4 ::1 5.6.7.8 1 2", "source address", "::1"),
        (
            "TCP4 1.2.3.4 ::ffff:5.6.7.8 1 2",
            "destination address",
            "::ffff:5.6.7.8",
        ),
        ("TCP6 1.2.3.4 ::1 1 2", "source address", "1.2.3.4"),
        ("TCP6 ::1 [::1] 1 2", "destination address", "[::1]"),
        (
            "TCP6 fe80::1%eth0 ::1 1 2",
            "source address",
            "fe80::1%eth0",
        ),
        ("TCP6 ::1 ::g 1 2", "destination address", "::g"),
        ("TCP4 1.2.3.4 5.6.7.8 65536 2", "source port", "65536"),
        ("TCP4 1.2.3.4 5.6.7.8 1 99999", "destination port", "99999"),
        ("TCP4 1.2.3.4 5.6.7.8 080 2", "source port", "080"),
        ("TCP4 1.2.3.4 5.6.7.8 +80 2", "source port", "+80"),
        ("TCP4 1.2.3.4 5.6.7.8 -1 2", "source port", "-1"),
        ("TCP4 1.2.3.4 5.6.7.8 1 0x50", "destination port", "0x50"),
        ("TCP4 1.2.3.4 5.6.7.8 1 00", "destination port", "00"),
        (
            "TCP4 1.2.3.4 5.6.7.8 1 000000000080",
            "destination port",
            "000000000080",
        ),
    ];
    for (rest, field, value) in cases {
        let line = format!("PROXY {rest}\r\n");
        let error = error_of(line.as_bytes());
        assert_eq!(
            error,
            ProxyError::BadAddress {
                field,
                value: value.into()
            },
            "{line:?}"
        );
        assert_eq!(error.label(), "bad_address");
    }
    // Edges that are fine.
    let line = b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n";
    assert_eq!(
        parse_whole(line).unwrap().unwrap().0.addresses,
        addrs("0.0.0.0:0", "255.255.255.255:65535")
    );
    // Invalid UTF-8 in an address is reported, not a panic.
    let error = error_of(b"PROXY TCP4 1.2.3.\xFF 5.6.7.8 1 2\r\n");
    assert_eq!(error.label(), "bad_address");
}

#[test]
fn v1_unknown_ignores_the_rest_of_its_line() {
    let line = b"PROXY UNKNOWN whatever \xFF here\r\n";
    let (parsed, consumed) = parse_whole(&[&line[..], b"X"].concat()).unwrap().unwrap();
    assert_eq!(parsed, header(Version::V1, Command::Proxy, None));
    assert_eq!(consumed, line.len());
}

#[test]
fn errors_display_a_specific_reason() {
    let cases = [
        (error_of(b"GET /"), "byte 0 is 0x47"),
        (
            error_of(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n"),
            "destination port \"080\"",
        ),
        (
            error_of(&raw_v2(0x21, 0x11, &[0; 4])),
            "length 4 is shorter than the 12-byte address block",
        ),
        (
            ProxyError::BadCrc {
                expected: 1,
                computed: 2,
            },
            "0x00000001",
        ),
        (ProxyError::UnsupportedFamily(0x12), "0x12"),
    ];
    for (error, part) in cases {
        let text = error.to_string();
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    // Control characters from the wire are escaped for the log line.
    let text = error_of(b"PROXY TCP4 1.2.3.4\x1b[2J 5.6.7.8 1 2\r\n").to_string();
    assert!(!text.contains('\x1b'), "{text:?}");
}

// ---------------------------------------------------------------------------------------
// Writer

#[test]
fn writer_output_matches_the_spec_bytes() {
    let mut out = Vec::new();
    write_v1(addrs("192.0.2.10:51000", "198.51.100.1:5222"), &mut out);
    assert_eq!(out, b"PROXY TCP4 192.0.2.10 198.51.100.1 51000 5222\r\n");
    out.clear();
    write_v1(None, &mut out);
    assert_eq!(out, b"PROXY UNKNOWN\r\n");
    out.clear();
    write_v1(addrs("192.0.2.10:1", "[2001:db8::1]:2"), &mut out);
    assert_eq!(out, b"PROXY TCP6 ::ffff:192.0.2.10 2001:db8::1 1 2\r\n");

    out.clear();
    write_v2(
        Command::Proxy,
        addrs("192.0.2.10:51000", "198.51.100.1:5222"),
        &[],
        false,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, raw_v2(0x21, 0x11, &tcp4_block()));
    out.clear();
    write_v2(
        Command::Proxy,
        addrs("192.0.2.10:51000", "198.51.100.1:5222"),
        &[],
        true,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, raw_v2_crc(0x21, 0x11, &tcp4_block()));
    out.clear();
    write_v2(Command::Local, None, &[], false, &mut out).unwrap();
    assert_eq!(out, raw_v2(0x20, 0x00, &[]));
}

#[test]
fn writer_refuses_blocks_over_64k_and_appends_nothing() {
    let big = vec![0u8; 65535 - 12 - 3 + 1];
    let mut out = b"kept".to_vec();
    let result = write_v2(
        Command::Proxy,
        addrs("1.2.3.4:1", "5.6.7.8:2"),
        &[(0xE0, &big)],
        false,
        &mut out,
    );
    assert_eq!(result, Err(BlockTooLong(65536)));
    assert_eq!(out, b"kept");
    // Exactly 65535 fits, and parses with a cap that allows it.
    let big = vec![0u8; 65535 - 12 - 3];
    write_v2(
        Command::Proxy,
        addrs("1.2.3.4:1", "5.6.7.8:2"),
        &[(0xE0, &big)],
        false,
        &mut out,
    )
    .unwrap();
    let outcome = feed_chunks(16 + 65535, &[&out[4..]]).unwrap().unwrap();
    assert_eq!(outcome.1, 16 + 65535);
}

// ---------------------------------------------------------------------------------------
// Trusted sources

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn cidr_parsing() {
    let cidr: Cidr = "10.0.0.0/8".parse().unwrap();
    assert_eq!((cidr.network(), cidr.prefix()), (ip("10.0.0.0"), 8));
    assert_eq!(cidr.to_string(), "10.0.0.0/8");
    let host: Cidr = "192.0.2.7".parse().unwrap();
    assert_eq!(host.to_string(), "192.0.2.7/32");
    let host6: Cidr = "2001:db8::1".parse().unwrap();
    assert_eq!(host6.to_string(), "2001:db8::1/128");
    assert_eq!("::1/128".parse::<Cidr>().unwrap().to_string(), "::1/128");
    assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix(), 0);
    assert_eq!("::/0".parse::<Cidr>().unwrap().prefix(), 0);
    // Mapped blocks are the IPv4 blocks they cover.
    assert_eq!(
        "::ffff:10.0.0.0/104".parse::<Cidr>().unwrap(),
        "10.0.0.0/8".parse::<Cidr>().unwrap()
    );
    assert_eq!(
        "::ffff:127.0.0.1".parse::<Cidr>().unwrap(),
        "127.0.0.1/32".parse::<Cidr>().unwrap()
    );

    for (input, reason) in [
        ("10.0.0.1/8", "host bits set"),
        ("2001:db8::1/64", "host bits set"),
        ("10.0.0.0/33", "prefix longer than the address"),
        ("::/129", "prefix longer than the address"),
        ("10.0.0.0/300", "prefix longer than the address"),
        ("10.0.0.0/", "prefix is not a decimal number"),
        ("10.0.0.0/08", "prefix is not a decimal number"),
        ("10.0.0.0/+8", "prefix is not a decimal number"),
        ("10.0.0.0/8/8", "prefix is not a decimal number"),
        ("10.0.0.0/ 8", "prefix is not a decimal number"),
        ("", "not an IP address"),
        ("10.0.0/8", "not an IP address"),
        (" 10.0.0.0/8", "not an IP address"),
        ("localhost", "not an IP address"),
        ("[::1]/128", "not an IP address"),
    ] {
        let error = input.parse::<Cidr>().unwrap_err();
        assert_eq!((error.input.as_str(), error.reason), (input, reason));
    }
    assert!(
        "10.0.0.1/8"
            .parse::<Cidr>()
            .unwrap_err()
            .to_string()
            .contains("\"10.0.0.1/8\"")
    );
}

#[test]
fn cidr_matching() {
    let ten: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(ten.contains(ip("10.0.0.0")));
    assert!(ten.contains(ip("10.255.255.255")));
    assert!(!ten.contains(ip("11.0.0.0")));
    assert!(!ten.contains(ip("9.255.255.255")));
    assert!(ten.contains(ip("::ffff:10.1.2.3")));
    assert!(
        !ten.contains(ip("::a01:203")),
        "IPv4-compatible is not mapped"
    );
    let odd: Cidr = "192.0.2.128/25".parse().unwrap();
    assert!(odd.contains(ip("192.0.2.200")));
    assert!(!odd.contains(ip("192.0.2.127")));
    let net6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(net6.contains(ip("2001:db8:ffff::1")));
    assert!(!net6.contains(ip("2001:db9::1")));
    assert!(!net6.contains(ip("10.0.0.1")));
    // /0 covers its own family only; a mapped peer counts as IPv4.
    let all4: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all4.contains(ip("203.0.113.9")));
    assert!(all4.contains(ip("::ffff:203.0.113.9")));
    assert!(!all4.contains(ip("::1")));
    let all6: Cidr = "::/0".parse().unwrap();
    assert!(all6.contains(ip("2001:db8::1")));
    assert!(!all6.contains(ip("203.0.113.9")));
    assert!(!all6.contains(ip("::ffff:203.0.113.9")));
    let host: Cidr = "::1".parse().unwrap();
    assert!(host.contains(ip("::1")));
    assert!(!host.contains(ip("::2")));
}

#[test]
fn trusted_sources_default_to_loopback() {
    let trusted = TrustedSources::default();
    assert_eq!(trusted, TrustedSources::loopback());
    assert_eq!(
        trusted,
        TrustedSources::parse(["127.0.0.0/8", "::1/128"]).unwrap()
    );
    for peer in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] {
        assert!(trusted.contains(ip(peer)), "{peer}");
    }
    for peer in ["128.0.0.1", "10.0.0.1", "::2", "::ffff:10.0.0.1", "fe80::1"] {
        assert!(!trusted.contains(ip(peer)), "{peer}");
    }
}

#[test]
fn trusted_sources_from_configuration() {
    let trusted = TrustedSources::parse(vec![
        "10.0.0.0/8".to_owned(),
        "2001:db8:1::/48".to_owned(),
        "192.0.2.7".to_owned(),
    ])
    .unwrap();
    assert_eq!(trusted.blocks().len(), 3);
    assert!(trusted.contains(ip("10.20.30.40")));
    assert!(trusted.contains(ip("::ffff:10.20.30.40")));
    assert!(trusted.contains(ip("2001:db8:1:2::3")));
    assert!(trusted.contains(ip("192.0.2.7")));
    assert!(!trusted.contains(ip("192.0.2.8")));
    assert!(!trusted.contains(ip("127.0.0.1")));
    let error = TrustedSources::parse(["10.0.0.0/8", "bogus"]).unwrap_err();
    assert_eq!(error.input, "bogus");
    let nobody = TrustedSources::parse(Vec::<String>::new()).unwrap();
    assert!(!nobody.contains(ip("127.0.0.1")));
    assert_eq!(
        TrustedSources::new(vec!["10.0.0.0/8".parse().unwrap()]),
        TrustedSources::parse(["10.0.0.0/8"]).unwrap()
    );
}

// ---------------------------------------------------------------------------------------
// Properties

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
    ]
}

fn arb_addresses() -> impl Strategy<Value = ProxyAddresses> {
    (arb_ip(), any::<u16>(), arb_ip(), any::<u16>()).prop_map(|(s, sp, d, dp)| ProxyAddresses {
        source: SocketAddr::new(s, sp),
        destination: SocketAddr::new(d, dp),
    })
}

/// What a parser reports for addresses the writer was given: one family, IPv4 mapped
/// when the two differ.
fn as_written(addresses: ProxyAddresses) -> ProxyAddresses {
    let map = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if addresses.source.is_ipv4() && addresses.destination.is_ipv4() {
        addresses
    } else {
        ProxyAddresses {
            source: map(addresses.source),
            destination: map(addresses.destination),
        }
    }
}

/// TLVs the parser skips (anything but AUTHORITY, CRC32C and AWS).
fn arb_other_tlvs() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    prop::collection::vec(
        (
            any::<u8>().prop_filter("summarized types", |k| ![0x02, 0x03, 0xEA].contains(k)),
            prop::collection::vec(any::<u8>(), 0..40),
        ),
        0..5,
    )
}

/// Cut points that split `len` bytes into pieces.
fn cuts(len: usize, points: &[prop::sample::Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        out.push(&bytes[start..cut]);
        start = cut;
    }
    out.push(&bytes[start..]);
    out
}

/// Mostly header-like inputs: valid ones with a few bytes changed or cut short, plus
/// plain noise behind each signature and none.
fn arb_input() -> impl Strategy<Value = Vec<u8>> {
    let valid = (
        arb_addresses(),
        arb_other_tlvs(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(addresses, tlvs, v2, crc)| {
            let mut out = Vec::new();
            if v2 {
                let tlvs: Vec<(u8, &[u8])> = tlvs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
                write_v2(Command::Proxy, Some(addresses), &tlvs, crc, &mut out).unwrap();
            } else {
                write_v1(Some(addresses), &mut out);
            }
            out.extend_from_slice(CLIENT);
            out
        });
    let mutated = (
        valid,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut bytes, changes, cut)| {
            for (at, byte) in changes {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes
        });
    prop_oneof![
        4 => mutated,
        1 => prop::collection::vec(any::<u8>(), 0..300),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|tail| [&b"PROXY "[..], &tail].concat()),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|tail| [&SIG[..], &tail].concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn v1_writer_round_trip(
        addresses in prop::option::of(arb_addresses()),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut bytes = Vec::new();
        write_v1(addresses, &mut bytes);
        prop_assert!(bytes.len() <= 107);
        let header_len = bytes.len();
        bytes.extend_from_slice(CLIENT);
        let chunks = pieces(&bytes, &cuts(bytes.len(), &points));
        let expected = header(Version::V1, Command::Proxy, addresses.map(as_written));
        prop_assert_eq!(
            feed_chunks(DEFAULT_MAX_LEN, &chunks),
            Ok(Some((expected, header_len)))
        );
    }

    #[test]
    fn v2_writer_round_trip(
        local in any::<bool>(),
        addresses in prop::option::of(arb_addresses()),
        others in arb_other_tlvs(),
        authority in prop::option::of("[a-z0-9.-]{0,40}"),
        vpce in prop::option::of("vpce-[0-9a-f]{17}"),
        with_crc in any::<bool>(),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut tlvs: Vec<(u8, Vec<u8>)> = others;
        if let Some(authority) = &authority {
            tlvs.insert(0, (0x02, authority.clone().into_bytes()));
        }
        if let Some(vpce) = &vpce {
            tlvs.push((0xEA, [&[0x01][..], vpce.as_bytes()].concat()));
        }
        let tlvs: Vec<(u8, &[u8])> = tlvs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let command = if local { Command::Local } else { Command::Proxy };
        let mut bytes = Vec::new();
        write_v2(command, addresses, &tlvs, with_crc, &mut bytes).unwrap();
        let header_len = bytes.len();
        bytes.extend_from_slice(CLIENT);
        let chunks = pieces(&bytes, &cuts(bytes.len(), &points));
        let expected = ProxyHeader {
            crc_verified: with_crc,
            authority,
            aws_vpce_id: vpce,
            ..header(
                Version::V2,
                command,
                if local { None } else { addresses.map(as_written) },
            )
        };
        prop_assert_eq!(
            feed_chunks(DEFAULT_MAX_LEN, &chunks),
            Ok(Some((expected, header_len)))
        );
    }

    #[test]
    fn any_bytes_whole_or_chunked_agree_and_never_panic(
        input in arb_input(),
        points in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        max_len in prop_oneof![Just(DEFAULT_MAX_LEN), 0usize..300],
    ) {
        let whole = feed_chunks(max_len, &[&input]);
        let chunks = pieces(&input, &cuts(input.len(), &points));
        prop_assert_eq!(&feed_chunks(max_len, &chunks), &whole);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(&feed_chunks(max_len, &bytes), &whole);
        if let Ok(Some((_, consumed))) = whole {
            prop_assert!(consumed <= input.len());
            prop_assert!(consumed <= max_len.max(107));
        }
    }
}
