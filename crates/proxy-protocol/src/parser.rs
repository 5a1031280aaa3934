//! The incremental header parser: fed each read as it comes, it keeps only the header's
//! own bytes (at most 107 for v1; 16, then exactly the announced length, for v2) and looks
//! at each byte once, so a header split at any byte costs nothing extra.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Command, ProxyAddresses, ProxyError, ProxyHeader, Version};

/// The default cap on a v2 header, fixed part and TLVs included.
pub const DEFAULT_MAX_LEN: usize = 4096;

const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The spec's longest v1 line, CRLF included.
const V1_MAX_LINE: usize = 107;
/// What may follow `PROXY `, up to the first byte that settles the protocol.
const V1_PROTOCOLS: [&[u8]; 4] = [b"TCP4 ", b"TCP6 ", b"UNKNOWN ", b"UNKNOWN\r"];

pub(super) const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and transport, length.
const V2_FIXED_LEN: usize = 16;
pub(super) const V2_VERSION: u8 = 0x20;
pub(super) const CMD_LOCAL: u8 = 0x0;
pub(super) const CMD_PROXY: u8 = 0x1;

pub(super) const FAM_UNSPEC: u8 = 0x00;
pub(super) const FAM_TCP4: u8 = 0x11;
const FAM_UDP4: u8 = 0x12;
pub(super) const FAM_TCP6: u8 = 0x21;
const FAM_UDP6: u8 = 0x22;
const FAM_UNIX_STREAM: u8 = 0x31;
const FAM_UNIX_DGRAM: u8 = 0x32;

const TLV_AUTHORITY: u8 = 0x02;
pub(super) const TLV_CRC32C: u8 = 0x03;
const TLV_AWS: u8 = 0xEA;
const AWS_VPCE_ID: u8 = 0x01;

/// Where a [`HeaderParser`] stands after a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The header is not complete yet; every byte given so far belonged to it.
    NeedMore,
    /// The header ended within the last `data`: its first `consumed` bytes were the
    /// header's, the rest is the client's stream.
    Done {
        header: ProxyHeader,
        consumed: usize,
    },
}

/// Parses one PROXY header, v1 or v2, from reads fed in order.
#[derive(Debug)]
pub struct HeaderParser {
    max_len: usize,
    /// Settled by the first byte, and kept after an error so a rejected header is still
    /// labelled with the version it claimed.
    version: Option<Version>,
    state: State,
}

#[derive(Debug)]
enum State {
    /// No byte yet.
    Start,
    V1 {
        line: [u8; V1_MAX_LINE],
        len: usize,
    },
    V2Fixed {
        fixed: [u8; V2_FIXED_LEN],
        len: usize,
    },
    /// The fixed part passed its checks; `block` fills up to the announced length.
    V2Block {
        fixed: [u8; V2_FIXED_LEN],
        block: Vec<u8>,
        block_len: usize,
    },
    /// Kept so that feeding again repeats the outcome instead of misparsing client bytes.
    Finished(Result<ProxyHeader, ProxyError>),
}

/// What one step over the current state did.
enum Advance {
    /// Used this many bytes (zero only when leaving `Start`); the header goes on.
    Partial(usize),
    /// The header ended after this many bytes.
    Complete(ProxyHeader, usize),
}

impl Default for HeaderParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LEN)
    }
}

impl HeaderParser {
    /// `max_len` caps a v2 header (the 16 fixed bytes, addresses and TLVs); a v1 line has
    /// the spec's own cap of 107 bytes. A cap under 232 rejects v2 LOCAL headers with UNIX
    /// addresses, under 52 v2 TCP6 ones.
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            version: None,
            state: State::Start,
        }
    }

    /// The version the input announced so far: `None` before the first byte and after a
    /// first byte that starts neither signature, since that byte alone tells them apart.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// Takes the next bytes read from the socket. After `Done` or an error the parser is
    /// spent: feeding it again repeats that outcome (`Done` with `consumed: 0`).
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, ProxyError> {
        if let State::Finished(outcome) = &self.state {
            return outcome.clone().map(|header| Progress::Done {
                header,
                consumed: 0,
            });
        }
        let mut used = 0;
        while let Some(rest) = data.get(used..).filter(|rest| !rest.is_empty()) {
            match self.advance(rest) {
                Ok(Advance::Partial(n)) => used += n,
                Ok(Advance::Complete(header, n)) => {
                    self.state = State::Finished(Ok(header.clone()));
                    return Ok(Progress::Done {
                        header,
                        consumed: used + n,
                    });
                }
                Err(error) => {
                    self.state = State::Finished(Err(error.clone()));
                    return Err(error);
                }
            }
        }
        Ok(Progress::NeedMore)
    }

    /// One step on a non-empty `rest`; every state but `Start` uses at least one byte.
    fn advance(&mut self, rest: &[u8]) -> Result<Advance, ProxyError> {
        match &mut self.state {
            State::Start => {
                self.state = match rest.first() {
                    Some(b'P') => {
                        self.version = Some(Version::V1);
                        State::V1 {
                            line: [0; V1_MAX_LINE],
                            len: 0,
                        }
                    }
                    Some(b'\r') => {
                        self.version = Some(Version::V2);
                        State::V2Fixed {
                            fixed: [0; V2_FIXED_LEN],
                            len: 0,
                        }
                    }
                    Some(&byte) => return Err(ProxyError::BadSignature { offset: 0, byte }),
                    None => State::Start,
                };
                Ok(Advance::Partial(0))
            }
            State::V1 { line, len } => {
                for (i, &byte) in rest.iter().enumerate() {
                    if push_v1(line, len, byte)? {
                        let header = parse_v1(line.get(..*len).unwrap_or_default())?;
                        return Ok(Advance::Complete(header, i + 1));
                    }
                }
                Ok(Advance::Partial(rest.len()))
            }
            State::V2Fixed { fixed, len } => {
                let mut used = 0;
                for &byte in rest.iter().take(V2_FIXED_LEN.saturating_sub(*len)) {
                    check_v2_fixed_byte(fixed, *len, byte)?;
                    if let Some(slot) = fixed.get_mut(*len) {
                        *slot = byte;
                    }
                    *len += 1;
                    used += 1;
                }
                if *len < V2_FIXED_LEN {
                    return Ok(Advance::Partial(used));
                }
                let block_len = check_v2_length(fixed, self.max_len)?;
                if block_len == 0 {
                    return Ok(Advance::Complete(parse_v2(fixed, &mut [])?, used));
                }
                self.state = State::V2Block {
                    fixed: *fixed,
                    block: Vec::with_capacity(block_len),
                    block_len,
                };
                Ok(Advance::Partial(used))
            }
            State::V2Block {
                fixed,
                block,
                block_len,
            } => {
                let take = block_len.saturating_sub(block.len()).min(rest.len());
                block.extend_from_slice(rest.get(..take).unwrap_or_default());
                if block.len() < *block_len {
                    return Ok(Advance::Partial(take));
                }
                Ok(Advance::Complete(parse_v2(fixed, block)?, take))
            }
            State::Finished(_) => Ok(Advance::Partial(rest.len())),
        }
    }
}

/// Appends `byte` to the v1 line and checks what it can already tell; true when the byte
/// ended the line with CRLF.
fn push_v1(line: &mut [u8; V1_MAX_LINE], len: &mut usize, byte: u8) -> Result<bool, ProxyError> {
    let at = *len;
    let Some(slot) = line.get_mut(at) else {
        return Err(ProxyError::V1TooLong);
    };
    *slot = byte;
    *len = at + 1;
    if let Some(&expected) = V1_PREFIX.get(at) {
        return if byte == expected {
            Ok(false)
        } else {
            Err(ProxyError::BadSignature { offset: at, byte })
        };
    }
    let after_cr = at.checked_sub(1).and_then(|i| line.get(i)) == Some(&b'\r');
    if byte == b'\n' {
        return if after_cr {
            Ok(true)
        } else {
            Err(ProxyError::BadV1Line("line feed without carriage return"))
        };
    }
    if after_cr {
        return Err(ProxyError::BadV1Line(
            "carriage return not followed by line feed",
        ));
    }
    let word = line.get(V1_PREFIX.len()..*len).unwrap_or_default();
    if !V1_PROTOCOLS
        .iter()
        .any(|protocol| protocol.starts_with(word) || word.starts_with(protocol))
    {
        return Err(ProxyError::BadV1Line(
            "protocol is not TCP4, TCP6 or UNKNOWN",
        ));
    }
    if *len == V1_MAX_LINE {
        return Err(ProxyError::V1TooLong);
    }
    Ok(false)
}

/// Parses a whole v1 line, `PROXY ` and CRLF included.
fn parse_v1(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let body = line
        .get(V1_PREFIX.len()..line.len().saturating_sub(2))
        .unwrap_or_default();
    let mut fields = body.split(|&b| b == b' ');
    let ipv6 = match fields.next() {
        // The spec says to ignore whatever follows UNKNOWN.
        Some(b"UNKNOWN") => return Ok(header(Version::V1, Command::Proxy, None)),
        Some(b"TCP4") => false,
        Some(b"TCP6") => true,
        _ => {
            return Err(ProxyError::BadV1Line(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    let source = v1_field(&mut fields)?;
    let destination = v1_field(&mut fields)?;
    let source_port = v1_field(&mut fields)?;
    let destination_port = v1_field(&mut fields)?;
    if fields.next().is_some() {
        return Err(ProxyError::BadV1Line(
            "more than four fields after the protocol",
        ));
    }
    let addresses = ProxyAddresses {
        source: SocketAddr::new(
            v1_ip(source, ipv6, "source address")?,
            v1_port(source_port, "source port")?,
        ),
        destination: SocketAddr::new(
            v1_ip(destination, ipv6, "destination address")?,
            v1_port(destination_port, "destination port")?,
        ),
    };
    Ok(header(Version::V1, Command::Proxy, Some(addresses)))
}

fn v1_field<'a>(fields: &mut impl Iterator<Item = &'a [u8]>) -> Result<&'a [u8], ProxyError> {
    match fields.next() {
        None => Err(ProxyError::BadV1Line(
            "fewer than four fields after the protocol",
        )),
        Some([]) => Err(ProxyError::BadV1Line(
            "empty field (two spaces, or a space before CRLF)",
        )),
        Some(field) => Ok(field),
    }
}

/// The standard library's parsers are strict already: dotted quads without leading zeros,
/// RFC 4291 text for IPv6, no zone or brackets.
fn v1_ip(field: &[u8], ipv6: bool, name: &'static str) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(field).ok();
    let ip = if ipv6 {
        text.and_then(|t| t.parse::<Ipv6Addr>().ok())
            .map(IpAddr::V6)
    } else {
        text.and_then(|t| t.parse::<Ipv4Addr>().ok())
            .map(IpAddr::V4)
    };
    ip.ok_or_else(|| bad_address(name, field))
}

/// Decimal 0-65535 without sign or leading zeros (`u16::from_str` would take `+80`).
fn v1_port(field: &[u8], name: &'static str) -> Result<u16, ProxyError> {
    let digits_only = field.iter().all(u8::is_ascii_digit);
    let leading_zero = field.len() > 1 && field.first() == Some(&b'0');
    if !digits_only || leading_zero || field.len() > 5 {
        return Err(bad_address(name, field));
    }
    let value = field
        .iter()
        .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
    u16::try_from(value).map_err(|_| bad_address(name, field))
}

fn bad_address(field: &'static str, value: &[u8]) -> ProxyError {
    ProxyError::BadAddress {
        field,
        value: String::from_utf8_lossy(value).into_owned(),
    }
}

/// Checks byte `at` of the v2 fixed part against what the bytes before it allow.
fn check_v2_fixed_byte(fixed: &[u8; V2_FIXED_LEN], at: usize, byte: u8) -> Result<(), ProxyError> {
    if let Some(&expected) = V2_SIGNATURE.get(at) {
        if byte != expected {
            return Err(ProxyError::BadSignature { offset: at, byte });
        }
        return Ok(());
    }
    match at {
        12 => {
            if byte & 0xF0 != V2_VERSION {
                return Err(ProxyError::UnsupportedVersion(byte >> 4));
            }
            let command = byte & 0x0F;
            if command != CMD_LOCAL && command != CMD_PROXY {
                return Err(ProxyError::BadCommand(command));
            }
            Ok(())
        }
        13 => {
            let local = fixed[12] & 0x0F == CMD_LOCAL;
            match byte {
                FAM_UNSPEC | FAM_TCP4 | FAM_TCP6 => Ok(()),
                FAM_UDP4 | FAM_UDP6 | FAM_UNIX_STREAM | FAM_UNIX_DGRAM if local => Ok(()),
                FAM_UDP4 | FAM_UDP6 | FAM_UNIX_STREAM | FAM_UNIX_DGRAM => {
                    Err(ProxyError::UnsupportedFamily(byte))
                }
                _ => Err(ProxyError::BadFamily(byte)),
            }
        }
        _ => Ok(()),
    }
}

/// The announced length, once it is known to hold the family's addresses and fit the cap.
fn check_v2_length(fixed: &[u8; V2_FIXED_LEN], max_len: usize) -> Result<usize, ProxyError> {
    let family = fixed[13];
    let len = u16::from_be_bytes([fixed[14], fixed[15]]);
    let needed = address_len(family);
    if usize::from(len) < needed {
        return Err(ProxyError::ShortAddressBlock {
            family,
            len,
            needed,
        });
    }
    let total = V2_FIXED_LEN + usize::from(len);
    if total > max_len {
        return Err(ProxyError::TooLong {
            len: total,
            max: max_len,
        });
    }
    Ok(usize::from(len))
}

/// The address block size of a family the fixed-part checks let through.
fn address_len(family: u8) -> usize {
    match family >> 4 {
        0x1 => 12,
        0x2 => 36,
        0x3 => 216,
        _ => 0,
    }
}

/// Parses the block after a checked fixed part. `block` is mutable so that the CRC32C
/// field can be zeroed in place for the check, as the spec computes it.
fn parse_v2(fixed: &[u8; V2_FIXED_LEN], block: &mut [u8]) -> Result<ProxyHeader, ProxyError> {
    let command = if fixed[12] & 0x0F == CMD_PROXY {
        Command::Proxy
    } else {
        Command::Local
    };
    let family = fixed[13];
    let short = || ProxyError::ShortAddressBlock {
        family,
        len: u16::try_from(block.len()).unwrap_or(u16::MAX),
        needed: address_len(family),
    };
    let addresses = match (command, family) {
        (Command::Proxy, FAM_TCP4) => Some(v2_addresses::<4>(block).ok_or_else(short)?),
        (Command::Proxy, FAM_TCP6) => Some(v2_addresses::<16>(block).ok_or_else(short)?),
        _ => None,
    };
    let mut header = header(Version::V2, command, addresses);
    if let Some((at, expected)) = read_tlvs(block, address_len(family), &mut header)? {
        if let Some(field) = block.get_mut(at..at + 4) {
            field.fill(0);
        }
        let computed = crc32c::crc32c_append(crc32c::crc32c(fixed), block);
        if computed != expected {
            return Err(ProxyError::BadCrc { expected, computed });
        }
        header.crc_verified = true;
    }
    Ok(header)
}

/// Source and destination addresses of `N` bytes each, then the two ports.
fn v2_addresses<const N: usize>(block: &[u8]) -> Option<ProxyAddresses>
where
    [u8; N]: Into<IpAddr>,
{
    let (source, rest) = block.split_first_chunk::<N>()?;
    let (destination, rest) = rest.split_first_chunk::<N>()?;
    let (source_port, rest) = rest.split_first_chunk::<2>()?;
    let (destination_port, _) = rest.split_first_chunk::<2>()?;
    Some(ProxyAddresses {
        source: SocketAddr::new((*source).into(), u16::from_be_bytes(*source_port)),
        destination: SocketAddr::new((*destination).into(), u16::from_be_bytes(*destination_port)),
    })
}

/// Walks the TLVs from `start` to the block's end, filling the header's summary; returns
/// where the CRC32C value sits in `block` and what it says, if there is one.
fn read_tlvs(
    block: &[u8],
    start: usize,
    header: &mut ProxyHeader,
) -> Result<Option<(usize, u32)>, ProxyError> {
    let mut crc = None;
    let mut offset = start;
    while let Some(rest) = block.get(offset..).filter(|rest| !rest.is_empty()) {
        let overrun = |needed| ProxyError::TlvOverrun {
            offset: V2_FIXED_LEN + offset,
            needed,
            available: rest.len(),
        };
        let Some((&[kind, high, low], tail)) = rest.split_first_chunk::<3>() else {
            return Err(overrun(3));
        };
        let len = usize::from(u16::from_be_bytes([high, low]));
        let value = tail.get(..len).ok_or_else(|| overrun(3 + len))?;
        match kind {
            TLV_CRC32C => {
                let bytes = <[u8; 4]>::try_from(value).map_err(|_| ProxyError::BadTlv {
                    kind,
                    reason: "CRC32C value is not 4 bytes",
                })?;
                if crc.is_some() {
                    return Err(ProxyError::BadTlv {
                        kind,
                        reason: "repeated",
                    });
                }
                crc = Some((offset + 3, u32::from_be_bytes(bytes)));
            }
            TLV_AUTHORITY => set_once(&mut header.authority, kind, value)?,
            TLV_AWS => match value.split_first() {
                None => {
                    return Err(ProxyError::BadTlv {
                        kind,
                        reason: "no subtype",
                    });
                }
                Some((&AWS_VPCE_ID, id)) => set_once(&mut header.aws_vpce_id, kind, id)?,
                Some(_) => {}
            },
            _ => {}
        }
        offset += 3 + len;
    }
    Ok(crc)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_known_from_the_first_byte_and_kept_after_the_outcome() {
        let mut parser = HeaderParser::default();
        assert_eq!(parser.version(), None);
        assert_eq!(parser.feed(b"P"), Ok(Progress::NeedMore));
        assert_eq!(parser.version(), Some(Version::V1));
        assert!(parser.feed(b"ROXY TCP9 ").is_err());
        assert_eq!(parser.version(), Some(Version::V1));

        let mut parser = HeaderParser::default();
        assert_eq!(parser.feed(b"\r\n"), Ok(Progress::NeedMore));
        assert_eq!(parser.version(), Some(Version::V2));
        assert!(parser.feed(b"\r\n\0\r\nQUIT\n\x21\x00\x00\x00").is_ok());
        assert_eq!(parser.version(), Some(Version::V2));

        let mut parser = HeaderParser::default();
        assert!(parser.feed(b"GET / HTTP/1.1\r\n").is_err());
        assert_eq!(parser.version(), None);
    }
}
