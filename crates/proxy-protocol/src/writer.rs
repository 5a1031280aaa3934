//! Header encoding, for the load generator and tests that play the balancer.

use std::net::{IpAddr, Ipv6Addr};

use super::parser::{
    CMD_LOCAL, CMD_PROXY, FAM_TCP4, FAM_TCP6, FAM_UNSPEC, TLV_CRC32C, V2_SIGNATURE, V2_VERSION,
};
use super::{Command, ProxyAddresses};

/// A v2 header's length field is 16 bits; the addresses and TLVs asked for do not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("PROXY v2 addresses and TLVs take {0} bytes, more than the 65535 the length field holds")]
pub struct BlockTooLong(pub usize);

/// Appends a v1 line: `TCP4` when both addresses are IPv4, otherwise `TCP6` with IPv4
/// ones mapped (the line has one family); `UNKNOWN` without addresses.
pub fn write_v1(addresses: Option<ProxyAddresses>, out: &mut Vec<u8>) {
    let Some(ProxyAddresses {
        source,
        destination,
    }) = addresses
    else {
        out.extend_from_slice(b"PROXY UNKNOWN\r\n");
        return;
    };
    let (sport, dport) = (source.port(), destination.port());
    let line = match (source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => format!("PROXY TCP4 {src} {dst} {sport} {dport}\r\n"),
        (src, dst) => format!(
            "PROXY TCP6 {} {} {sport} {dport}\r\n",
            as_v6(src),
            as_v6(dst)
        ),
    };
    out.extend_from_slice(line.as_bytes());
}

/// Appends a v2 header: TCP4 or TCP6 (mixed families as TCP6, IPv4 mapped) or UNSPEC
/// without addresses, then `tlvs` as (type, value) in order, then, with `with_crc`, a
/// CRC32C TLV over the whole header. Nothing is appended on error.
pub fn write_v2(
    command: Command,
    addresses: Option<ProxyAddresses>,
    tlvs: &[(u8, &[u8])],
    with_crc: bool,
    out: &mut Vec<u8>,
) -> Result<(), BlockTooLong> {
    let (family, address_len) = match addresses {
        None => (FAM_UNSPEC, 0),
        Some(a) if a.source.is_ipv4() && a.destination.is_ipv4() => (FAM_TCP4, 12),
        Some(_) => (FAM_TCP6, 36),
    };
    let tlv_len: usize = tlvs.iter().map(|(_, value)| 3 + value.len()).sum();
    let len = address_len + tlv_len + if with_crc { 7 } else { 0 };
    let len16 = u16::try_from(len).map_err(|_| BlockTooLong(len))?;

    let start = out.len();
    out.reserve(16 + len);
    out.extend_from_slice(V2_SIGNATURE);
    out.push(
        V2_VERSION
            | match command {
                Command::Local => CMD_LOCAL,
                Command::Proxy => CMD_PROXY,
            },
    );
    out.push(family);
    out.extend_from_slice(&len16.to_be_bytes());
    if let Some(ProxyAddresses {
        source,
        destination,
    }) = addresses
    {
        match (source.ip(), destination.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
            }
            (src, dst) => {
                out.extend_from_slice(&as_v6(src).octets());
                out.extend_from_slice(&as_v6(dst).octets());
            }
        }
        out.extend_from_slice(&source.port().to_be_bytes());
        out.extend_from_slice(&destination.port().to_be_bytes());
    }
    for (kind, value) in tlvs {
        out.push(*kind);
        // Each value is shorter than the whole block, which fits in 16 bits.
        out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(value);
    }
    if with_crc {
        out.extend_from_slice(&[TLV_CRC32C, 0, 4]);
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        let crc = crc32c::crc32c(out.get(start..).unwrap_or_default());
        if let Some(field) = out.get_mut(at..) {
            field.copy_from_slice(&crc.to_be_bytes());
        }
    }
    Ok(())
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}
