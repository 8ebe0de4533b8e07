//! Trust on a join: a node that has only a join token knows the SHA-256 of
//! the cluster's CA certificate (the token carries it), not the CA itself.
//! This verifier accepts a server whose presented chain contains a CA with
//! exactly that fingerprint and whose certificate that CA signed for the
//! dialled name, checked as webpki checks any chain.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::link::tls::fingerprint;

/// A server verifier pinned to a CA fingerprint.
#[derive(Debug)]
pub struct PinnedCa {
    sha256: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedCa {
    /// Pins the CA whose DER certificate hashes to `sha256` (hex).
    pub fn new(sha256: &str) -> Self {
        Self {
            sha256: sha256.to_ascii_lowercase(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// True when `cert_pem`'s first certificate is the pinned CA.
    pub fn matches_pem(&self, cert_pem: &str) -> bool {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map(|c| fingerprint(&c) == self.sha256)
            .unwrap_or(false)
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.sha256)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "the server presented no CA with the pinned SHA-256 {}",
                    self.sha256
                ))
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("pinned CA: {e}")))?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
