//! TLS server configuration (rustls with the ring provider), what a finished handshake
//! tells the session, and how handshakes end (`xmpp_edge_tls_handshakes_total`).

use std::io;
use std::path::Path;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use rustls::ServerConfig;
use rustls::server::ServerConnection;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use session::TlsInfo;
use session::sasl::TLS_EXPORTER_LABEL;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::metrics::{PerListener, label_enum};

/// ALPN protocol of XMPP client connections over direct TLS (XEP-0368).
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

/// Bytes of encrypted output rustls may hold per connection; the session already bounds
/// its own queue, so the edge keeps this small.
const TLS_BUFFER_LIMIT: usize = 16 * 1024;

/// Acceptors for both listener kinds, sharing one certificate.
#[derive(Clone)]
pub struct Acceptors {
    /// For STARTTLS: no ALPN.
    pub starttls: TlsAcceptor,
    /// For direct TLS: ALPN `xmpp-client` (clients sending no ALPN are accepted too).
    pub direct: TlsAcceptor,
    /// The certificate was generated at start, not loaded.
    pub self_signed: bool,
}

impl std::fmt::Debug for Acceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptors")
            .field("self_signed", &self.self_signed)
            .finish_non_exhaustive()
    }
}

label_enum! {
    /// How a TLS handshake ended.
    TlsOutcome {
        Ok => "ok",
        /// Not finished within `limits.tls_handshake_timeout`.
        Timeout => "timeout",
        /// The client went away mid-handshake.
        Closed => "closed",
        /// Bytes that are not TLS (such as plaintext XMPP on the direct TLS port).
        BadMessage => "bad_message",
        /// No protocol version, cipher suite or ALPN protocol in common.
        Incompatible => "incompatible",
        /// The client sent an alert, typically because it does not trust the certificate.
        AlertReceived => "alert_received",
        Other => "other",
    }
}

impl TlsOutcome {
    /// The outcome a failed handshake's error stands for. tokio-rustls reports TLS errors
    /// as `io::Error`s wrapping the `rustls::Error`.
    pub fn of_error(error: &io::Error) -> Self {
        use rustls::Error as E;
        if let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<E>()) {
            return match tls {
                E::InvalidMessage(_)
                | E::InappropriateMessage { .. }
                | E::InappropriateHandshakeMessage { .. }
                | E::DecryptError => Self::BadMessage,
                E::PeerIncompatible(_) | E::NoApplicationProtocol => Self::Incompatible,
                E::AlertReceived(_) => Self::AlertReceived,
                _ => Self::Other,
            };
        }
        match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Self::Closed,
            _ => Self::Other,
        }
    }
}

/// Registers `xmpp_edge_tls_handshakes_total{listener,address,outcome}`; each listening
/// address resolves its handles from it.
pub fn register_handshakes(registry: &mut Registry) -> PerListener<TlsOutcome> {
    PerListener::register(
        registry,
        "xmpp_edge_tls_handshakes",
        "TLS handshakes, by outcome",
        "outcome",
    )
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("unusable certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads the configured certificate and key, or makes a self-signed certificate for
/// `domains` when none is configured.
pub fn acceptors(config: &TlsConfig, domains: &[String]) -> Result<Acceptors, TlsError> {
    let (chain, key, self_signed) = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => (load_chain(cert)?, load_key(key)?, false),
        _ => {
            let generated = rcgen::generate_simple_self_signed(domains.to_vec())?;
            let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
            (vec![generated.cert.der().clone()], key, true)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let base = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let mut direct = base.clone();
    direct.alpn_protocols = vec![ALPN_XMPP_CLIENT.to_vec()];
    Ok(Acceptors {
        starttls: TlsAcceptor::from(Arc::new(base)),
        direct: TlsAcceptor::from(Arc::new(direct)),
        self_signed,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn pem_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if chain.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE section found"));
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| pem_error(path, format!("no usable private key: {e}")))
}

/// What the session needs from a finished handshake: the version and, for TLS 1.3, the
/// RFC 9266 `tls-exporter` channel binding.
pub fn info(connection: &mut ServerConnection) -> TlsInfo {
    connection.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
    let tls13 = connection.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
    let exporter = if tls13 {
        connection
            .export_keying_material([0u8; 32], TLS_EXPORTER_LABEL, None)
            .ok()
    } else {
        None
    };
    TlsInfo { tls13, exporter }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_when_nothing_configured() {
        let acceptors = acceptors(&TlsConfig::default(), &["localhost".to_owned()]).unwrap();
        assert!(acceptors.self_signed);
    }

    #[test]
    fn loads_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["example.org".to_owned()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let config = TlsConfig {
            cert: Some(cert.clone()),
            key: Some(key),
        };
        assert!(!acceptors(&config, &[]).unwrap().self_signed);

        let broken = TlsConfig {
            cert: Some(cert.clone()),
            key: Some(cert),
        };
        let err = acceptors(&broken, &[]).unwrap_err().to_string();
        assert!(err.contains("cert.pem"), "{err}");
    }

    #[test]
    fn tls_errors_are_classified() {
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(TlsOutcome::of_error(&eof), TlsOutcome::Closed);
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        );
        assert_eq!(TlsOutcome::of_error(&alert), TlsOutcome::AlertReceived);
        let garbage = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(TlsOutcome::of_error(&garbage), TlsOutcome::BadMessage);
        assert_eq!(
            TlsOutcome::of_error(&io::Error::other("weird")),
            TlsOutcome::Other
        );
    }
}
