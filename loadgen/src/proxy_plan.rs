//! The PROXY header plan (`--proxy`): loadgen plays the load balancer. Every connection
//! starts with a PROXY header (v1 or v2) naming a synthetic client address and port, so one
//! machine can load a server's PROXY listener without a balancer in front, and every SIC
//! answer can be checked against an address the socket itself could never report.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proxy_protocol::{Cidr, Command, ProxyAddresses, write_v1, write_v2};

/// Most addresses taken from one block: session numbers are 64-bit, so more can never be
/// used.
const MAX_BLOCK: u128 = 1 << 64;

/// Which header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text line (`PROXY TCP4 ...`).
    V1,
    /// The binary header, without TLVs.
    V2,
}

impl Version {
    /// As given to `--proxy`.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// A contiguous run of synthetic addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    first: IpAddr,
    /// At least 1, at most [`MAX_BLOCK`].
    count: u128,
}

impl Block {
    /// The `index`th address; `index` is below `count`, which the parser kept within the
    /// family's range.
    fn nth(&self, index: u128) -> IpAddr {
        match self.first {
            IpAddr::V4(first) => {
                let offset = u32::try_from(index).unwrap_or(u32::MAX);
                IpAddr::V4(Ipv4Addr::from(u32::from(first).saturating_add(offset)))
            }
            IpAddr::V6(first) => {
                IpAddr::V6(Ipv6Addr::from(u128::from(first).saturating_add(index)))
            }
        }
    }
}

/// The synthetic client endpoints: address blocks and a port range. Session `n` gets one
/// from block `n mod blocks`, so every block is in use from the first sessions on (both
/// families at once, say); within a block, addresses advance with every session and
/// ports with every session too, so the first `addresses × ports` sessions of a block
/// all differ, as concurrent connections through a real balancer do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    blocks: Vec<Block>,
    first_port: u16,
    /// At least 1.
    ports: u32,
}

impl Sources {
    /// Parses `--proxy-sources` (comma-separated CIDR blocks, single addresses or
    /// `first-last` ranges of one family) and `--proxy-ports` (`first-last` or one port).
    pub fn parse(addresses: &str, ports: &str) -> Result<Self, String> {
        let mut blocks = Vec::new();
        for part in addresses
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            blocks.push(parse_block(part)?);
        }
        if blocks.is_empty() {
            return Err("no source address given".to_owned());
        }
        let (first_port, last_port) = match ports.split_once('-') {
            Some((first, last)) => (parse_port(first)?, parse_port(last)?),
            None => {
                let port = parse_port(ports)?;
                (port, port)
            }
        };
        if first_port > last_port {
            return Err(format!("port range {ports:?} is reversed"));
        }
        Ok(Self {
            blocks,
            first_port,
            ports: u32::from(last_port - first_port) + 1,
        })
    }

    /// Session `n`'s client address and port.
    pub fn get(&self, n: u64) -> SocketAddr {
        let count = self.blocks.len() as u64;
        let Some(block) = self.blocks.get((n % count) as usize) else {
            return SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), self.first_port);
        };
        // The session's turn within its block.
        let turn = u128::from(n / count);
        let index = turn % block.count;
        // Adding the address index makes (address, port) a bijection over one sweep of
        // addresses times ports, while the port still changes every session.
        let port = (turn / block.count + index) % u128::from(self.ports);
        SocketAddr::new(block.nth(index), self.first_port + port as u16)
    }
}

fn parse_block(part: &str) -> Result<Block, String> {
    let Some((first, last)) = part.split_once('-') else {
        let cidr: Cidr = part.parse().map_err(|e| format!("{e}"))?;
        let bits = if cidr.network().is_ipv4() { 32 } else { 128 };
        let count = 1u128
            .checked_shl(u32::from(bits - cidr.prefix()))
            .map_or(MAX_BLOCK, |count| count.min(MAX_BLOCK));
        return Ok(Block {
            first: cidr.network(),
            count,
        });
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<IpAddr>()
            .map_err(|_| format!("{s:?} in range {part:?} is not an IP address"))
    };
    let (first, last) = match (parse(first)?, parse(last)?) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (
            (IpAddr::V4(a), u128::from(u32::from(a))),
            u128::from(u32::from(b)),
        ),
        (IpAddr::V6(a), IpAddr::V6(b)) => ((IpAddr::V6(a), u128::from(a)), u128::from(b)),
        _ => return Err(format!("range {part:?} mixes address families")),
    };
    if first.1 > last {
        return Err(format!("range {part:?} is reversed"));
    }
    Ok(Block {
        first: first.0,
        count: (last - first.1).saturating_add(1).min(MAX_BLOCK),
    })
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("{text:?} is not a port (1-65535)")),
    }
}

/// Everything a session needs to write its header.
#[derive(Debug, Clone)]
pub struct ProxyPlan {
    pub version: Version,
    pub sources: Sources,
    /// The server address, which the header names as the address the client connected to.
    pub destination: SocketAddr,
}

impl ProxyPlan {
    /// Appends session `session`'s header to `out` and returns the client address it
    /// names, which SIC answers must report.
    pub fn write(&self, session: u64, out: &mut Vec<u8>) -> SocketAddr {
        let source = self.sources.get(session);
        let addresses = Some(ProxyAddresses {
            source,
            destination: self.destination,
        });
        match self.version {
            Version::V1 => write_v1(addresses, out),
            // Without TLVs a v2 header is at most 52 bytes: its length always fits.
            Version::V2 => {
                let _ = write_v2(Command::Proxy, addresses, &[], false, out);
            }
        }
        source
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proxy_protocol::{HeaderParser, Progress};

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn sessions_take_blocks_in_turn_and_vary_address_and_port() {
        let sources = Sources::parse("198.51.100.0/30, 2001:db8::/126", "1000-1002").unwrap();
        let first: Vec<SocketAddr> = (0..6).map(|n| sources.get(n)).collect();
        assert_eq!(
            first,
            [
                addr("198.51.100.0:1000"),
                addr("[2001:db8::]:1000"),
                addr("198.51.100.1:1001"),
                addr("[2001:db8::1]:1001"),
                addr("198.51.100.2:1002"),
                addr("[2001:db8::2]:1002"),
            ]
        );
        // Per block, 4 addresses × 3 ports: the block's first 12 sessions all differ,
        // then its sequence repeats.
        let v4: Vec<SocketAddr> = (0..48).step_by(2).map(|n| sources.get(n)).collect();
        assert_eq!(v4.iter().collect::<HashSet<_>>().len(), 12);
        assert!(v4.iter().all(|a| a.ip().is_ipv4()));
        assert_eq!(sources.get(24), sources.get(0));
        let all: HashSet<SocketAddr> = (0..24).map(|n| sources.get(n)).collect();
        assert_eq!(all.len(), 24);
    }

    #[test]
    fn ranges_single_addresses_and_huge_blocks() {
        let sources = Sources::parse("10.0.0.254-10.0.1.1", "7").unwrap();
        let got: Vec<SocketAddr> = (0..5).map(|n| sources.get(n)).collect();
        assert_eq!(
            got,
            [
                addr("10.0.0.254:7"),
                addr("10.0.0.255:7"),
                addr("10.0.1.0:7"),
                addr("10.0.1.1:7"),
                addr("10.0.0.254:7"),
            ]
        );
        let one = Sources::parse("203.0.113.9", "40000-40001").unwrap();
        assert_eq!(one.get(0), addr("203.0.113.9:40000"));
        assert_eq!(one.get(1), addr("203.0.113.9:40001"));
        assert_eq!(one.get(2), addr("203.0.113.9:40000"));
        let all = Sources::parse("::/0,0.0.0.0/0", "1-65535").unwrap();
        // 2^63 - 1 mod 65535 is 32767: the port is the range's 32768th.
        assert_eq!(all.get(u64::MAX - 1), addr("[::7fff:ffff:ffff:ffff]:32768"));
        assert_eq!(all.get(1), addr("0.0.0.0:1"));
        assert_eq!(all.get(3), addr("0.0.0.1:2"));
    }

    #[test]
    fn bad_specifications_are_refused() {
        for (addresses, ports) in [
            ("", "1-2"),
            ("198.51.100.1/24", "1-2"),
            ("198.51.100.9-198.51.100.1", "1-2"),
            ("198.51.100.1-2001:db8::1", "1-2"),
            ("example.org", "1-2"),
            ("198.51.100.0/24", "0-10"),
            ("198.51.100.0/24", "10-5"),
            ("198.51.100.0/24", "70000"),
            ("198.51.100.0/24", ""),
        ] {
            assert!(
                Sources::parse(addresses, ports).is_err(),
                "{addresses:?} {ports:?}"
            );
        }
    }

    #[test]
    fn headers_parse_back_to_the_synthetic_source() {
        let sources = Sources::parse("198.51.100.0/24,2001:db8::/64", "1024-65535").unwrap();
        for version in [Version::V1, Version::V2] {
            let plan = ProxyPlan {
                version,
                sources: sources.clone(),
                destination: addr("127.0.0.1:5222"),
            };
            for session in 0..4 {
                let mut out = b"prefix".to_vec();
                let source = plan.write(session, &mut out);
                assert_eq!(source, sources.get(session));
                assert_eq!(&out[..6], b"prefix");
                out.extend_from_slice(b"<?xml");
                let mut parser = HeaderParser::default();
                let Ok(Progress::Done { header, consumed }) = parser.feed(&out[6..]) else {
                    panic!("{version:?} header of session {session} does not parse");
                };
                assert_eq!(&out[6 + consumed..], b"<?xml");
                let addresses = header.addresses.unwrap();
                assert_eq!(addresses.source.ip().to_canonical(), source.ip());
                assert_eq!(addresses.source.port(), source.port());
                assert_eq!(
                    addresses.destination.ip().to_canonical(),
                    plan.destination.ip()
                );
                assert_eq!(addresses.destination.port(), 5222);
            }
        }
        let plan = ProxyPlan {
            version: Version::V1,
            sources: Sources::parse("198.51.100.7", "4000").unwrap(),
            destination: addr("127.0.0.1:5222"),
        };
        let mut out = Vec::new();
        plan.write(0, &mut out);
        assert_eq!(out, b"PROXY TCP4 198.51.100.7 127.0.0.1 4000 5222\r\n");
    }
}
