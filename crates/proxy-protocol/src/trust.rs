//! Which socket peers may send a PROXY header. CIDR parsing is a few lines, so it is done
//! here rather than with a crate.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A CIDR block that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a CIDR block: {reason}")]
pub struct CidrError {
    pub input: String,
    pub reason: &'static str,
}

/// An address block, `ADDR/PREFIX` or a bare address for a single host. IPv4-mapped IPv6
/// blocks (`::ffff:10.0.0.0/104`) are stored as the IPv4 block they cover, so that they
/// and plain IPv4 blocks match the same peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Rejects a prefix longer than the family's bits and set host bits (`10.0.0.1/8` is
    /// more likely a typo than a wish for `10.0.0.0/8`).
    pub fn new(network: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let error = |reason| CidrError {
            input: format!("{network}/{prefix}"),
            reason,
        };
        let max = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > max {
            return Err(error("prefix longer than the address"));
        }
        let cidr = match network {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Self {
                    network: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                None => Self { network, prefix },
            },
            _ => Self { network, prefix },
        };
        let (value, bits) = match cidr.network {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let host_mask = 1u128
            .checked_shl(u32::from(bits - cidr.prefix))
            .map_or(u128::MAX, |bit| bit - 1);
        if value & host_mask != 0 {
            return Err(error("host bits set"));
        }
        Ok(cidr)
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip`, IPv4-mapped IPv6 taken as the IPv4 address, is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the top `prefix` of the low `bits` bits agree.
fn same_prefix(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    (a ^ b)
        .checked_shr(u32::from(bits.saturating_sub(prefix)))
        .unwrap_or(0)
        == 0
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason| CidrError {
            input: s.to_owned(),
            reason,
        };
        let (address, prefix) = match s.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s, None),
        };
        let network = address
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .or_else(|_| address.parse::<Ipv6Addr>().map(IpAddr::V6))
            .map_err(|_| error("not an IP address"))?;
        let prefix = match prefix {
            None if network.is_ipv4() => 32,
            None => 128,
            Some(text) => {
                let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
                let leading_zero = text.len() > 1 && text.starts_with('0');
                if !digits || leading_zero {
                    return Err(error("prefix is not a decimal number"));
                }
                text.parse::<u8>()
                    .map_err(|_| error("prefix longer than the address"))?
            }
        };
        Self::new(network, prefix).map_err(|e| error(e.reason))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The peers whose PROXY headers are believed. Defaults to loopback only (a balancer on
/// the same host); an empty list trusts nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedSources(Vec<Cidr>);

impl Default for TrustedSources {
    fn default() -> Self {
        Self::loopback()
    }
}

impl TrustedSources {
    pub fn new(blocks: Vec<Cidr>) -> Self {
        Self(blocks)
    }

    /// 127.0.0.0/8 and ::1/128.
    pub fn loopback() -> Self {
        Self(vec![
            Cidr {
                network: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            Cidr {
                network: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ])
    }

    /// Parses configuration strings such as `"10.0.0.0/8"`, `"::1/128"` or `"192.0.2.7"`.
    pub fn parse<I>(blocks: I) -> Result<Self, CidrError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        blocks
            .into_iter()
            .map(|block| block.as_ref().parse())
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn blocks(&self) -> &[Cidr] {
        &self.0
    }

    /// Whether `peer` (the socket's peer address) is in any block.
    pub fn contains(&self, peer: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(peer))
    }
}
