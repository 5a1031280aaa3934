//! Sockets: resolving the target, spreading connections over many source addresses, and
//! non-blocking connects handed to mio.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use nix::sys::socket::setsockopt;
use nix::sys::socket::sockopt::IpBindAddressNoPort;
use socket2::{Domain, Protocol, Socket, Type};

/// Most source addresses one `--local-ips` range may expand to.
const MAX_LOCAL_IPS: u64 = 1 << 16;

/// Resolves `host:port` to the first address it names.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    })
}

/// Parses `--local-ips`: comma-separated addresses or inclusive IPv4 ranges
/// (`127.0.0.2-127.0.0.254`).
pub fn parse_local_ips(spec: &str) -> Result<Vec<IpAddr>, String> {
    let mut ips = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let parse = |s: &str| {
                    s.trim()
                        .parse::<Ipv4Addr>()
                        .map_err(|_| format!("{s:?} in range {part:?} is not an IPv4 address"))
                };
                let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
                if first > last {
                    return Err(format!("range {part:?} is reversed"));
                }
                if u64::from(last - first) + 1 + ips.len() as u64 > MAX_LOCAL_IPS {
                    return Err(format!("more than {MAX_LOCAL_IPS} local addresses"));
                }
                ips.extend((first..=last).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
            None => ips.push(
                part.parse()
                    .map_err(|_| format!("{part:?} is not an IP address"))?,
            ),
        }
    }
    if ips.is_empty() {
        return Err("no local address given".to_owned());
    }
    Ok(ips)
}

/// Starts a non-blocking connect to `target`, from `local` when given. With a local
/// address the port is picked at connect time (IP_BIND_ADDRESS_NO_PORT), so each source
/// address gets its own 64k ports per destination instead of sharing one ephemeral pool.
pub fn connect(target: SocketAddr, local: Option<IpAddr>) -> io::Result<mio::net::TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = local {
        setsockopt(&socket, IpBindAddressNoPort, &true)?;
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}

/// After a writable event on a connecting socket: `Ok(Some(local address))` once the
/// connection is up, `Ok(None)` if it is still in progress.
pub fn connect_result(stream: &mio::net::TcpStream) -> io::Result<Option<SocketAddr>> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => stream.local_addr().map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ip_ranges() {
        let ips = parse_local_ips("127.0.0.2-127.0.0.4, ::1").unwrap();
        assert_eq!(ips.len(), 4);
        assert_eq!(ips[0], "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(ips[2], "127.0.0.4".parse::<IpAddr>().unwrap());
        assert_eq!(ips[3], "::1".parse::<IpAddr>().unwrap());
        assert_eq!(parse_local_ips("127.0.0.2-127.0.1.1").unwrap().len(), 256);
        for bad in [
            "",
            "127.0.0.5-127.0.0.1",
            "x",
            "::1-::2",
            "0.0.0.0-255.255.255.255",
        ] {
            assert!(parse_local_ips(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connects_from_a_chosen_source_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let local: IpAddr = "127.0.0.3".parse().unwrap();
        let stream = connect(target, Some(local)).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), local);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(addr) = connect_result(&stream).unwrap() {
                assert_eq!(addr, peer);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "connect never completed"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
