//! The request kinds loadgen sends once a session is ready, how each is written, how its
//! reply is checked, and the weighted mix that decides which kind each request is.

use std::net::SocketAddr;

use super::reader::{IqType, Payload, Reader};
use crate::histo::Metric;

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `<ip xmlns='urn:xmpp:sic:0'/>`: the client's IP address.
    Sic0Ip,
    /// `<address xmlns='urn:xmpp:sic:0'/>`: IP address (and port, if the server gives it).
    Sic0Address,
    /// `<address xmlns='urn:xmpp:sic:1'/>`: IP address and port.
    Sic1Address,
    /// disco#info of the domain.
    DiscoInfo,
    /// XEP-0199 ping of the domain.
    Ping,
}

impl RequestKind {
    pub const ALL: [RequestKind; 5] = [
        RequestKind::Sic0Ip,
        RequestKind::Sic0Address,
        RequestKind::Sic1Address,
        RequestKind::DiscoInfo,
        RequestKind::Ping,
    ];

    /// The name used in `--mix` and reports.
    pub fn name(self) -> &'static str {
        self.metric().name()
    }

    pub fn metric(self) -> Metric {
        match self {
            RequestKind::Sic0Ip => Metric::Sic0Ip,
            RequestKind::Sic0Address => Metric::Sic0Address,
            RequestKind::Sic1Address => Metric::Sic1Address,
            RequestKind::DiscoInfo => Metric::DiscoInfo,
            RequestKind::Ping => Metric::Ping,
        }
    }

    /// Writes the request with id `id`; `to_domain` is ` to='domain'`.
    pub(super) fn write(self, id: u32, to_domain: &str, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let (to, payload) = match self {
            RequestKind::Sic0Ip => ("", "<ip xmlns='urn:xmpp:sic:0'/>"),
            RequestKind::Sic0Address => ("", "<address xmlns='urn:xmpp:sic:0'/>"),
            RequestKind::Sic1Address => ("", "<address xmlns='urn:xmpp:sic:1'/>"),
            RequestKind::DiscoInfo => (
                to_domain,
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            ),
            RequestKind::Ping => (to_domain, "<ping xmlns='urn:xmpp:ping'/>"),
        };
        // Writing into a Vec cannot fail.
        let _ = write!(out, "<iq type='get' id='{id}'{to}>{payload}</iq>");
    }

    /// Checks a complete reply to this request; `local` is the connection's own address as
    /// the client sees it, which every SIC answer must report.
    pub(super) fn verify(self, reply: &Reader, local: SocketAddr) -> Result<(), Wrong> {
        match reply.iq_type {
            IqType::Result => {}
            IqType::Error => {
                let condition = reply.condition.as_deref().unwrap_or("no condition");
                return Err(Wrong::ErrorReply(format!(
                    "{}: error reply ({condition})",
                    self.name()
                )));
            }
            _ => {
                return Err(Wrong::Reply(format!(
                    "{}: reply is not type='result'",
                    self.name()
                )));
            }
        }
        let expected_payload = match self {
            RequestKind::Sic0Ip => Payload::SicIp,
            RequestKind::Sic0Address => Payload::SicAddress0,
            RequestKind::Sic1Address => Payload::SicAddress1,
            RequestKind::DiscoInfo => Payload::DiscoInfo,
            RequestKind::Ping => {
                return if matches!(reply.payload, Payload::None | Payload::Ping) {
                    Ok(())
                } else {
                    Err(Wrong::Reply(
                        "ping: unexpected payload in result".to_owned(),
                    ))
                };
            }
        };
        if reply.payload != expected_payload {
            return Err(Wrong::Reply(format!(
                "{}: result lacks the expected payload ({:?} instead)",
                self.name(),
                reply.payload
            )));
        }
        if reply.malformed {
            return Err(Wrong::Reply(format!(
                "{}: unparsable address or port",
                self.name()
            )));
        }
        if self == RequestKind::DiscoInfo {
            return Ok(());
        }
        let own_ip = local.ip().to_canonical();
        match reply.ip.map(|ip| ip.to_canonical()) {
            Some(ip) if ip == own_ip => {}
            Some(ip) => {
                return Err(Wrong::Reply(format!(
                    "{}: reported IP {ip}, but ours is {own_ip}",
                    self.name()
                )));
            }
            None => {
                return Err(Wrong::Reply(format!(
                    "{}: no IP address in reply",
                    self.name()
                )));
            }
        }
        match (self, reply.port) {
            (_, Some(port)) if port != local.port() => Err(Wrong::Reply(format!(
                "{}: reported port {port}, but ours is {}",
                self.name(),
                local.port()
            ))),
            (RequestKind::Sic1Address, None) => {
                Err(Wrong::Reply("sic1-address: no port in reply".to_owned()))
            }
            _ => Ok(()),
        }
    }
}

/// How a reply failed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wrong {
    /// The server answered with `type='error'`.
    ErrorReply(String),
    /// The answer is not what the request asks for.
    Reply(String),
}

/// Which kind each request is: a fixed cycle in which every kind appears as often as its
/// weight, spread out (smooth weighted round robin) so kinds interleave evenly in time.
#[derive(Debug, Clone)]
pub struct Mix {
    cycle: Vec<RequestKind>,
}

impl Mix {
    /// A mix from `(kind, weight)` pairs; zero weights drop a kind. `None` when all are zero.
    pub fn new(weights: &[(RequestKind, u32)]) -> Option<Self> {
        let weights: Vec<(RequestKind, i64)> = weights
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|&(k, w)| (k, i64::from(w)))
            .collect();
        let divisor = weights.iter().fold(0, |g, &(_, w)| gcd(g, w));
        if divisor == 0 {
            return None;
        }
        let weights: Vec<(RequestKind, i64)> =
            weights.into_iter().map(|(k, w)| (k, w / divisor)).collect();
        let total: i64 = weights.iter().map(|(_, w)| w).sum();
        let mut current = vec![0i64; weights.len()];
        let mut cycle = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, (_, w)) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            let best = (0..weights.len())
                .max_by_key(|&i| (current[i], -(i as i64)))
                .unwrap_or_default();
            current[best] -= total;
            cycle.push(weights[best].0);
        }
        Some(Self { cycle })
    }

    /// The kind of global request number `n`.
    pub fn kind(&self, n: u64) -> RequestKind {
        self.cycle[(n % self.cycle.len() as u64) as usize]
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_spreads_kinds_by_weight() {
        let mix = Mix::new(&[
            (RequestKind::Sic0Ip, 2),
            (RequestKind::Ping, 4),
            (RequestKind::DiscoInfo, 0),
        ])
        .unwrap();
        let first: Vec<_> = (0..3).map(|n| mix.kind(n)).collect();
        assert_eq!(
            first,
            [RequestKind::Ping, RequestKind::Sic0Ip, RequestKind::Ping]
        );
        assert_eq!(mix.kind(3), mix.kind(0));
        assert!((0..3).all(|n| mix.kind(n) != RequestKind::DiscoInfo));
        assert!(Mix::new(&[(RequestKind::Ping, 0)]).is_none());
    }

    #[test]
    fn every_kind_is_well_formed() {
        let mut out = Vec::new();
        for kind in RequestKind::ALL {
            out.clear();
            kind.write(7, " to='example.org'", &mut out);
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(text.starts_with("<iq type='get' id='7'"), "{text}");
            assert!(text.ends_with("/></iq>"), "{text}");
            assert_eq!(
                text.contains("to='example.org'"),
                matches!(kind, RequestKind::DiscoInfo | RequestKind::Ping)
            );
        }
    }
}
