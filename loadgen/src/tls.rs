//! TLS client configuration for rustls (ring provider): trust roots or no verification at
//! all, ALPN for direct TLS, and no session resumption unless asked, so every simulated
//! client pays for a full handshake like a fresh device would.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, UnbufferedClientConnection};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ProtocolVersion, RootCertStore,
    SignatureScheme,
};
use session::sasl::TLS_EXPORTER_LABEL;

/// Trust stores tried, in order, when verification is on and no CA file is given.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What the TLS client checks and offers.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Verify the server certificate against the trust roots and the domain.
    pub verify: bool,
    /// PEM file of trusted CA certificates (instead of the system store).
    pub ca_file: Option<PathBuf>,
    /// Offer ALPN `xmpp-client` (XEP-0368 direct TLS).
    pub alpn: bool,
    /// Resume TLS sessions across connections of the same thread.
    pub resume: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA certificates from {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("no CA certificates found (tried $SSL_CERT_FILE and {}); pass --ca-file or --insecure", SYSTEM_BUNDLES.join(", "))]
    NoRoots,
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The shared client configuration and the name to verify and send in SNI.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl TlsSetup {
    pub fn new(options: &TlsOptions, domain: &str) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mut config = if options.verify {
            builder
                .with_root_certificates(load_roots(options.ca_file.as_deref())?)
                .with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth()
        };
        if options.alpn {
            config.alpn_protocols = vec![b"xmpp-client".to_vec()];
        }
        // Logged-in sessions keep only their traffic keys (see `records`).
        config.enable_secret_extraction = true;
        if !options.resume {
            config.resumption = Resumption::disabled();
        }
        let server_name = ServerName::try_from(domain.to_owned())
            .map_err(|_| TlsError::ServerName(domain.to_owned()))?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// A buffered client connection starting its handshake. It keeps a 4 KB receive buffer
    /// for its whole life, so it is only for sessions that need [`exporter`].
    pub fn connect(&self) -> Result<ClientConnection, rustls::Error> {
        ClientConnection::new(self.config.clone(), self.server_name.clone())
    }

    /// An unbuffered client connection starting its handshake: the caller owns the
    /// ciphertext buffers, so an idle session keeps only keys and protocol state.
    pub fn connect_unbuffered(&self) -> Result<UnbufferedClientConnection, rustls::Error> {
        UnbufferedClientConnection::new(self.config.clone(), self.server_name.clone())
    }
}

/// RFC 9266 tls-exporter channel binding data; only defined for TLS 1.3. rustls 0.23 offers
/// exporters on buffered connections only.
pub fn exporter(connection: &ClientConnection) -> Option<[u8; 32]> {
    if connection.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return None;
    }
    connection
        .export_keying_material([0u8; 32], TLS_EXPORTER_LABEL, None)
        .ok()
}

fn load_roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let paths: Vec<PathBuf> = match ca_file {
        Some(path) => vec![path.to_owned()],
        None => std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .into_iter()
            .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
            .filter(|p| p.exists())
            .take(1)
            .collect(),
    };
    for path in paths {
        let ca_error = |message: String| TlsError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(&path).map_err(|e| ca_error(e.to_string()))?;
        for cert in certs {
            let cert = cert.map_err(|e| ca_error(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        Err(TlsError::NoRoots)
    } else {
        Ok(roots)
    }
}

/// `--insecure`: accepts any certificate, but still checks that the handshake signatures
/// are made by the key in it, so the TLS work measured is the real work.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
