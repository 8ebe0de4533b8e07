//! TLS for the QUIC link. A node presents a certificate: one from PEM files
//! (`--tls-cert`/`--tls-key`), or, in dev mode, a self-signed one made at
//! start whose SHA-256 it advertises in `NodeInfo.link`. The coordinator
//! verifies a node against a CA bundle when it has one (`--quic-ca`), and
//! otherwise pins the fingerprint it learned from the node's registration
//! (dev mode: as trustworthy as the control channel that carried it).

use std::path::Path;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// ALPN protocol id of the NetMoE link.
pub const ALPN: &[u8] = b"netmoe-link/1";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is unreadable or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Certificate generation failed.
    #[error("self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The fingerprint is not 64 hex digits.
    #[error("certificate fingerprint {0:?} is not a SHA-256 in hex")]
    BadFingerprint(String),
    /// QUIC cannot use this TLS configuration.
    #[error("QUIC TLS: {0}")]
    Quic(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lowercase hex SHA-256 of a DER certificate.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The certificate chain and key a node's QUIC endpoint presents.
#[derive(Debug)]
pub struct ServerIdentity {
    /// End-entity first.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// True when generated at start (dev mode).
    pub self_signed: bool,
    /// When set, clients must present a certificate chaining to these
    /// roots (mutual TLS, a secured cluster).
    pub client_roots: Option<Arc<RootCertStore>>,
}

impl ServerIdentity {
    /// A fresh self-signed certificate for `names` (dev mode).
    pub fn self_signed(names: Vec<String>) -> Result<Self, TlsError> {
        let ck = rcgen::generate_simple_self_signed(names)?;
        Ok(Self {
            chain: vec![ck.cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into(),
            self_signed: true,
            client_roots: None,
        })
    }

    /// A certificate chain and private key from PEM files.
    pub fn from_pem(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pem_err = |p: &Path, m: String| TlsError::Pem {
            path: p.display().to_string(),
            message: m,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem_err(cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(pem_err(cert, "no CERTIFICATE block".into()));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e.to_string()))?;
        Ok(Self {
            chain,
            key: key_der,
            self_signed: false,
            client_roots: None,
        })
    }

    /// A node's identity in a secured cluster: its CA-issued certificate,
    /// and only clients with a certificate from the same CA.
    pub fn cluster(tls: &crate::pki::TlsDir) -> Result<Self, TlsError> {
        let (chain, key, roots) = tls
            .rustls_parts()
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        Ok(Self {
            chain,
            key,
            self_signed: false,
            client_roots: Some(Arc::new(roots)),
        })
    }

    /// SHA-256 of the end-entity certificate.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.chain[0])
    }

    /// The quinn server configuration presenting this identity.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let builder = match &self.client_roots {
            Some(roots) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.clone(),
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::Quic(e.to_string()))?,
            ),
            None => builder.with_no_client_auth(),
        };
        let mut tls = builder.with_single_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
        cfg.transport_config(Arc::new(transport()));
        Ok(cfg)
    }
}

/// How the coordinator decides to trust a node's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Dev mode: exactly the certificate with this SHA-256.
    Pinned(String),
    /// Certificates chaining to these roots, for the server name dialled.
    Roots(Arc<RootCertStore>),
    /// A secured cluster: the CA's roots, and the coordinator's own
    /// certificate presented to the node (mutual TLS).
    Cluster {
        /// The cluster CA.
        roots: Arc<RootCertStore>,
        /// The coordinator's chain, end-entity first.
        chain: Vec<CertificateDer<'static>>,
        /// Its key.
        key: Arc<PrivateKeyDer<'static>>,
    },
}

impl Trust {
    /// The cluster trust of a secured coordinator.
    pub fn cluster(tls: &crate::pki::TlsDir) -> Result<Self, TlsError> {
        let (chain, key, roots) = tls
            .rustls_parts()
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        Ok(Self::Cluster {
            roots: Arc::new(roots),
            chain,
            key: Arc::new(key),
        })
    }

    /// Roots from a PEM bundle.
    pub fn roots_from_pem(path: &Path) -> Result<Self, TlsError> {
        let err = |m: String| TlsError::Pem {
            path: path.display().to_string(),
            message: m,
        };
        let mut store = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
            store
                .add(cert.map_err(|e| err(e.to_string()))?)
                .map_err(|e| err(e.to_string()))?;
        }
        if store.is_empty() {
            return Err(err("no CERTIFICATE block".into()));
        }
        Ok(Self::Roots(Arc::new(store)))
    }

    /// The quinn client configuration for one node.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let mut tls =
            match self {
                Trust::Roots(roots) => builder
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth(),
                Trust::Cluster { roots, chain, key } => builder
                    .with_root_certificates(roots.clone())
                    .with_client_auth_cert(chain.clone(), key.clone_key())?,
                Trust::Pinned(fp) => {
                    let fp = fp.to_ascii_lowercase();
                    if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(TlsError::BadFingerprint(fp));
                    }
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(Pinned {
                            sha256: fp,
                            algorithms: provider().signature_verification_algorithms,
                        }))
                        .with_no_client_auth()
                }
            };
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
        cfg.transport_config(Arc::new(transport()));
        Ok(cfg)
    }
}

/// Transport settings of both ends: keep idle links open (probes run every
/// few seconds), notice dead peers within seconds.
fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(std::time::Duration::from_secs(30)).expect("30 s fits"),
    ));
    t
}

/// Accepts exactly one end-entity certificate, by its SHA-256, and checks
/// the handshake signature with it (so the peer holds the key).
#[derive(Debug)]
struct Pinned {
    sha256: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate SHA-256 {} is not the pinned {}",
                fingerprint(end_entity),
                self.sha256
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_identity_has_a_stable_fingerprint_and_configs_build() {
        let id = ServerIdentity::self_signed(vec!["localhost".into()]).unwrap();
        assert!(id.self_signed);
        let fp = id.fingerprint();
        assert_eq!(fp.len(), 64);
        assert_eq!(fp, fingerprint(&id.chain[0]));
        id.server_config().unwrap();
        Trust::Pinned(fp).client_config().unwrap();
        let e = Trust::Pinned("abc".into()).client_config().unwrap_err();
        assert!(matches!(e, TlsError::BadFingerprint(_)), "{e}");
    }

    /// A CA, and a node certificate it issued for `localhost`, as PEM files.
    fn ca_and_node(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let node_key = rcgen::KeyPair::generate().unwrap();
        let node_cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&node_key, &issuer)
            .unwrap();
        let (ca, cert, key) = (
            dir.join("ca.pem"),
            dir.join("node.pem"),
            dir.join("node.key"),
        );
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        std::fs::write(&cert, node_cert.pem()).unwrap();
        std::fs::write(&key, node_key.serialize_pem()).unwrap();
        (ca, cert, key)
    }

    #[tokio::test]
    async fn a_ca_issued_node_certificate_is_verified_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = ca_and_node(dir.path());
        let id = ServerIdentity::from_pem(&cert, &key).unwrap();
        assert!(!id.self_signed);
        let server =
            quinn::Endpoint::server(id.server_config().unwrap(), "127.0.0.1:0".parse().unwrap())
                .unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                if let Ok(conn) = incoming.await {
                    tokio::spawn(async move { conn.closed().await });
                }
            }
        });
        let roots = Trust::roots_from_pem(&ca).unwrap();
        let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let ok = client
            .connect_with(roots.client_config().unwrap(), addr, "localhost")
            .unwrap()
            .await;
        assert!(ok.is_ok(), "{ok:?}");
        let wrong_name = client
            .connect_with(roots.client_config().unwrap(), addr, "other.example")
            .unwrap()
            .await;
        assert!(
            wrong_name.is_err(),
            "a certificate for localhost is not other.example's"
        );
        // Another CA's roots refuse it.
        let other = tempfile::tempdir().unwrap();
        let (other_ca, _, _) = ca_and_node(other.path());
        let stranger = client
            .connect_with(
                Trust::roots_from_pem(&other_ca)
                    .unwrap()
                    .client_config()
                    .unwrap(),
                addr,
                "localhost",
            )
            .unwrap()
            .await;
        assert!(stranger.is_err());
    }

    #[test]
    fn missing_or_empty_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = Trust::roots_from_pem(&empty).unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
        let e = ServerIdentity::from_pem(&dir.path().join("nope.pem"), &empty).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
    }
}
