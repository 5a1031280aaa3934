//! Stream features (RFC 6120 section 4.3.2): what is offered at each stage, and the rules
//! that later accept or refuse what the client asks for, so offer and check never disagree.

use crate::link::TlsInfo;
use crate::sasl::Mechanism;
use crate::writer::Output;
use crate::{Config, ListenerKind, ns};

/// The connection's transport security, which decides the TLS and SASL offers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transport {
    pub(crate) kind: ListenerKind,
    /// The TLS handshake result, once there is one.
    pub(crate) tls: Option<TlsInfo>,
}

impl Transport {
    /// STARTTLS: on the STARTTLS listener, before TLS, when a certificate exists.
    pub(crate) fn starttls_offered(&self, config: &Config) -> bool {
        self.kind == ListenerKind::Starttls && self.tls.is_none() && config.tls_available
    }

    /// SASL at all: over TLS, or in plaintext when TLS is not required. With TLS required
    /// but unavailable nothing is offered: the edge fails closed.
    pub(crate) fn sasl_offered(&self, config: &Config) -> bool {
        self.tls.is_some() || !config.require_tls
    }

    /// One mechanism: PLAIN only over TLS (it reveals the password), the PLUS variants
    /// only with RFC 9266 tls-exporter data (TLS 1.3).
    pub(crate) fn offers(&self, config: &Config, mechanism: Mechanism) -> bool {
        self.sasl_offered(config)
            && match mechanism {
                Mechanism::Plain => self.tls.is_some(),
                m if m.is_plus() => self.exporter().is_some(),
                _ => true,
            }
    }

    /// tls-exporter channel binding data, only for TLS 1.3.
    pub(crate) fn exporter(&self) -> Option<&[u8; 32]> {
        self.tls
            .as_ref()
            .filter(|tls| tls.tls13)
            .and_then(|tls| tls.exporter.as_ref())
    }
}

/// `<stream:features>` for a new stream: STARTTLS and SASL before authentication, resource
/// binding and the (optional) legacy session after.
pub(crate) fn write_features(
    out: &mut Output,
    config: &Config,
    transport: &Transport,
    authenticated: bool,
) {
    out.raw("<stream:features>");
    if authenticated {
        out.raw("<bind");
        out.attr("xmlns", ns::BIND);
        out.raw("/><session");
        out.attr("xmlns", ns::SESSION);
        out.raw("><optional/></session>");
    } else {
        if transport.starttls_offered(config) {
            out.raw("<starttls");
            out.attr("xmlns", ns::TLS);
            out.raw(if config.require_tls {
                "><required/></starttls>"
            } else {
                "/>"
            });
        }
        if transport.sasl_offered(config) {
            out.raw("<mechanisms");
            out.attr("xmlns", ns::SASL);
            out.raw(">");
            for mechanism in Mechanism::ALL
                .into_iter()
                .filter(|&m| transport.offers(config, m))
            {
                out.raw("<mechanism>");
                out.raw(mechanism.name());
                out.raw("</mechanism>");
            }
            out.raw("</mechanisms>");
        }
    }
    out.raw("</stream:features>");
}
