//! TLS of the gRPC links (tonic over rustls) from a directory of PEM files,
//! and the bearer API key a client attaches to every call.
//!
//! A TLS directory holds `ca.pem` and one identity, `STEM.pem` (the
//! certificate, then the CA) and `STEM.key` (0600), where STEM is
//! `coordinator`, `node` or `client`.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::files;
use super::{Peer, PkiError, Role, peer_of};

/// How long a TLS handshake may take before the connection is dropped (a
/// peer that opens a socket and sends nothing holds no task for long).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One identity and the CA, read from a TLS directory.
#[derive(Clone)]
pub struct TlsDir {
    /// The directory.
    pub dir: PathBuf,
    /// `ca.pem`.
    pub ca_pem: String,
    /// `STEM.pem`: the certificate, then the CA.
    pub cert_pem: String,
    key_pem: String,
    /// Who the certificate says this is.
    pub me: Peer,
}

impl std::fmt::Debug for TlsDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsDir")
            .field("dir", &self.dir)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl TlsDir {
    /// The file stem of `role`'s identity.
    pub fn stem(role: Role) -> &'static str {
        match role {
            Role::Node => "node",
            Role::Client => "client",
            Role::Coordinator => "coordinator",
        }
    }

    /// True when `dir` holds an identity of `role`.
    pub fn exists(dir: &Path, role: Role) -> bool {
        dir.join(format!("{}.pem", Self::stem(role))).is_file()
    }

    /// Loads `role`'s identity from `dir`; the certificate must name that
    /// role.
    pub fn load(dir: &Path, role: Role) -> Result<Self, PkiError> {
        let stem = Self::stem(role);
        let ca_pem = files::read_text(&dir.join("ca.pem"))?;
        let cert_path = dir.join(format!("{stem}.pem"));
        let cert_pem = files::read_text(&cert_path)?;
        let key_path = dir.join(format!("{stem}.key"));
        files::check_private(&key_path)?;
        let key_pem = files::read_text(&key_path)?;
        let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::BadCertificate(format!("{}: {e}", cert_path.display())))?;
        let me = peer_of(&leaf)?;
        if me.role != role {
            return Err(PkiError::BadCertificate(format!(
                "{} is a {} certificate, not a {role} one",
                cert_path.display(),
                me.role
            )));
        }
        Ok(Self {
            dir: dir.to_owned(),
            ca_pem,
            cert_pem,
            key_pem,
            me,
        })
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// The server side: this identity, clients verified against the CA.
    /// With `client_optional`, a client without a certificate may connect
    /// (the coordinator's `Join`); one presenting a certificate is still
    /// verified, and the service decides what an anonymous caller may do.
    pub fn server(&self, client_optional: bool) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(client_optional)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The client side: this identity, the server verified against the CA
    /// under `server_name`.
    pub fn client(&self, server_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(self.identity())
            .domain_name(server_name)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The certificate chain and key as rustls takes them (the QUIC link).
    pub fn rustls_parts(
        &self,
    ) -> Result<
        (
            Vec<CertificateDer<'static>>,
            rustls::pki_types::PrivateKeyDer<'static>,
            rustls::RootCertStore,
        ),
        PkiError,
    > {
        let bad = |m: String| PkiError::BadCertificate(m);
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| bad(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
        Ok((chain, key, roots))
    }
}

/// The identity of the verified certificate a request came with, if any.
pub fn peer_of_request<T>(request: &tonic::Request<T>) -> Option<Result<Peer, PkiError>> {
    let certs = request.peer_certs()?;
    let leaf = certs.first()?;
    Some(peer_of(leaf))
}

/// The metadata key of the API key.
pub const AUTHORIZATION: &str = "authorization";

/// Attaches `authorization: Bearer KEY` to every call (no key: nothing).
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// A bearer of `key`; a key that is not printable ASCII is refused.
    pub fn new(key: Option<&str>) -> Result<Self, PkiError> {
        match key {
            None => Ok(Self(None)),
            Some(k) => format!("Bearer {k}")
                .parse()
                .map(|v| Self(Some(v)))
                .map_err(|_| PkiError::Refused("API key is not printable ASCII".into())),
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        Ok(req)
    }
}

/// The key of an `authorization: Bearer KEY` header, if present.
pub fn bearer_of<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .metadata()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A tonic endpoint for `uri`: with `tls`, over TLS (an `http://` URI is
/// taken as `https://`, never as plaintext); without, plaintext (an
/// `https://` URI is refused: there is nothing to verify it with).
pub fn endpoint(
    uri: &str,
    tls: Option<ClientTlsConfig>,
) -> Result<tonic::transport::Endpoint, PkiError> {
    let bad = |m: String| PkiError::Refused(format!("endpoint {uri:?}: {m}"));
    let uri = match (&tls, uri.strip_prefix("http://")) {
        (Some(_), Some(rest)) => format!("https://{rest}"),
        (None, _) if uri.starts_with("https://") => {
            return Err(bad(
                "https needs a TLS directory (--tls-dir), or use http:// with --insecure".into(),
            ));
        }
        _ => uri.to_owned(),
    };
    let mut ep = tonic::transport::Endpoint::from_shared(uri).map_err(|e| bad(e.to_string()))?;
    if let Some(t) = tls {
        ep = ep.tls_config(t).map_err(|e| bad(e.to_string()))?;
    }
    Ok(ep.tcp_nodelay(true))
}
