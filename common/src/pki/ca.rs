//! The CA directory: `ca init` makes the CA (ECDSA P-256) and the
//! coordinator's certificate; `issue` makes a key and certificate for a
//! node or a client; `sign_csr` certifies a key a joining node made itself.
//! Every certificate issued is recorded in `certs.json`; revoking one marks
//! its record, and the coordinator refuses that serial from then on.
//!
//! Layout of DIR (keys 0600):
//! - `ca.pem`, `ca.key`: the CA;
//! - `coordinator.pem` (leaf then CA), `coordinator.key`;
//! - `certs.json`: every certificate issued, with its revocation.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::files::{self, JsonRecords};
use super::{
    COORDINATOR_SERVER_NAME, PkiError, Role, identity_uri, node_server_name, validate_name,
};

/// Validity of the CA certificate.
pub const CA_DAYS: i64 = 3650;
/// Default validity of the coordinator's certificate.
pub const COORDINATOR_DAYS: i64 = 365;
/// Default validity of node and client certificates: short enough that a
/// lost board's certificate dies by itself, long enough for a season of
/// experiments. Rotate by issuing (or joining) again before expiry.
pub const LEAF_DAYS: i64 = 90;
/// Clock skew tolerated between the CA and its peers.
const BACKDATE_S: i64 = 300;

/// When a certificate is valid, seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First valid second.
    pub from: i64,
    /// Last valid second.
    pub until: i64,
}

impl Validity {
    /// From now (minus a little clock skew) for `days`.
    pub fn days(days: i64) -> Self {
        let now = now_s();
        Self {
            from: now - BACKDATE_S,
            until: now + days * 86_400,
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Serial, lowercase hex.
    pub serial: String,
    /// The holder's role.
    pub role: Role,
    /// Node id or client name.
    pub name: String,
    /// Validity, Unix seconds.
    pub not_before: i64,
    /// Validity, Unix seconds.
    pub not_after: i64,
    /// When it was revoked, if it was.
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

impl CertRecord {
    /// Neither revoked nor expired at `now`.
    pub fn in_force(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now <= self.not_after
    }
}

/// A certificate just issued.
#[derive(Debug)]
pub struct Issued {
    /// The certificate, PEM, followed by the CA's.
    pub chain_pem: String,
    /// Its private key, PEM, when the CA made it (None for a CSR).
    pub key_pem: Option<String>,
    /// What was recorded.
    pub record: CertRecord,
}

/// A CA loaded from its directory.
pub struct Ca {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    records: JsonRecords,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn ia5(s: &str) -> Result<rcgen::string::Ia5String, PkiError> {
    rcgen::string::Ia5String::try_from(s.to_owned()).map_err(PkiError::from)
}

fn offset(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| PkiError::Refused(format!("validity {unix}: {e}")))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and of full length in DER.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// The names of a coordinator certificate: the fixed server name, loopback,
/// and whatever the operator adds (hosts or IPs the coordinator is dialled by).
fn coordinator_sans(extra: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut sans = vec![
        SanType::DnsName(ia5(COORDINATOR_SERVER_NAME)?),
        SanType::DnsName(ia5("localhost")?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress("::1".parse().expect("IPv6 loopback")),
    ];
    for name in extra {
        sans.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(ia5(name)?),
        });
    }
    Ok(sans)
}

impl Ca {
    /// Makes a CA in `dir` (created if needed, refused if it holds one) and
    /// the coordinator's certificate, valid also for `extra_names`.
    pub fn init(dir: &Path, extra_names: &[String]) -> Result<Self, PkiError> {
        if dir.join("ca.pem").exists() {
            return Err(PkiError::Exists(dir.to_owned()));
        }
        std::fs::create_dir_all(dir).map_err(|e| PkiError::File {
            path: dir.to_owned(),
            message: e.to_string(),
        })?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "NetMoE cluster CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let v = Validity::days(CA_DAYS);
        params.not_before = offset(v.from)?;
        params.not_after = offset(v.until)?;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        files::write_secret(&dir.join("ca.key"), key.serialize_pem().as_bytes())?;
        files::write_public(&dir.join("ca.pem"), cert.pem().as_bytes())?;
        let ca = Self::load(dir)?;
        let issued = ca.issue_with(
            Role::Coordinator,
            "coordinator",
            coordinator_sans(extra_names)?,
            None,
            Validity::days(COORDINATOR_DAYS),
        )?;
        files::write_secret(
            &dir.join("coordinator.key"),
            issued.key_pem.as_deref().unwrap_or_default().as_bytes(),
        )?;
        files::write_public(&dir.join("coordinator.pem"), issued.chain_pem.as_bytes())?;
        Ok(ca)
    }

    /// Loads the CA of `dir` (its key must be 0600).
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let cert_pem = files::read_text(&dir.join("ca.pem"))?;
        files::check_private(&dir.join("ca.key"))?;
        let key = KeyPair::from_pem(&files::read_text(&dir.join("ca.key"))?)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::BadCertificate(format!("ca.pem: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Self {
            dir: dir.to_owned(),
            cert_pem,
            cert_der,
            issuer,
            records: JsonRecords::new(dir, "certs.json"),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate (DER), lowercase hex: what a join
    /// token carries for the node to pin.
    pub fn fingerprint(&self) -> String {
        crate::link::tls::fingerprint(&self.cert_der)
    }

    fn leaf_params(
        role: Role,
        name: &str,
        mut sans: Vec<SanType>,
        validity: Validity,
    ) -> Result<CertificateParams, PkiError> {
        validate_name(name)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationalUnitName, role.as_str());
        params.distinguished_name = dn;
        sans.push(SanType::URI(ia5(&identity_uri(role, name))?));
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = offset(validity.from)?;
        params.not_after = offset(validity.until)?;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    /// The names a leaf of `role` carries besides its identity URI.
    fn role_sans(role: Role, name: &str) -> Result<Vec<SanType>, PkiError> {
        Ok(match role {
            Role::Node => vec![SanType::DnsName(ia5(&node_server_name(name))?)],
            Role::Coordinator => coordinator_sans(&[])?,
            Role::Client => Vec::new(),
        })
    }

    /// Issues a key and certificate for `role` `name`, valid for `validity`.
    /// A node id already certified (in force) is refused: revoke the old
    /// certificate first, so two holders can never claim one node.
    pub fn issue(&self, role: Role, name: &str, validity: Validity) -> Result<Issued, PkiError> {
        let sans = Self::role_sans(role, name)?;
        self.issue_with(role, name, sans, None, validity)
    }

    /// Certifies the public key of a CSR (PEM) as `role` `name`. Only the
    /// key is taken from the request: names and usages are the CA's.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        role: Role,
        name: &str,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let sans = Self::role_sans(role, name)?;
        self.issue_with(role, name, sans, Some(csr), validity)
    }

    fn issue_with(
        &self,
        role: Role,
        name: &str,
        sans: Vec<SanType>,
        csr: Option<CertificateSigningRequestParams>,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let params = Self::leaf_params(role, name, sans, validity)?;
        let serial = hex::encode(
            params
                .serial_number
                .as_ref()
                .map(|s| s.to_bytes())
                .unwrap_or_default(),
        );
        let record = CertRecord {
            serial,
            role,
            name: name.to_owned(),
            not_before: validity.from,
            not_after: validity.until,
            revoked_at: None,
        };
        let now = now_s();
        let (cert, key_pem) = self.records.update(|records: &mut Vec<CertRecord>| {
            if role == Role::Node
                && let Some(old) = records
                    .iter()
                    .find(|r| r.role == Role::Node && r.name == name && r.in_force(now))
            {
                return Err(PkiError::Refused(format!(
                    "node {name:?} already holds certificate {} (valid until {}); revoke it first",
                    old.serial, old.not_after
                )));
            }
            let (cert, key_pem) = match csr {
                Some(csr) => {
                    let req = CertificateSigningRequestParams {
                        params,
                        public_key: csr.public_key,
                    };
                    (req.signed_by(&self.issuer)?, None)
                }
                None => {
                    let key = KeyPair::generate()?;
                    (
                        params.signed_by(&key, &self.issuer)?,
                        Some(key.serialize_pem()),
                    )
                }
            };
            records.push(record.clone());
            Ok((cert, key_pem))
        })?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem,
            record,
        })
    }

    /// Every certificate issued.
    pub fn records(&self) -> Result<Vec<CertRecord>, PkiError> {
        self.records.read()
    }

    /// Revokes the certificates in force whose serial or holder name is
    /// `which`; returns them (none: nothing matched).
    pub fn revoke(&self, which: &str) -> Result<Vec<CertRecord>, PkiError> {
        let now = now_s();
        self.records.update(|records: &mut Vec<CertRecord>| {
            let mut hit = Vec::new();
            for r in records.iter_mut() {
                if (r.serial == which || r.name == which) && r.revoked_at.is_none() {
                    r.revoked_at = Some(now);
                    hit.push(r.clone());
                }
            }
            Ok(hit)
        })
    }
}

/// The revoked serials of a CA directory, re-read when `certs.json`
/// changes (the admin commands write it while the coordinator runs).
#[derive(Debug)]
pub struct Revocations(files::Watched<CertRecord>);

impl Revocations {
    /// Watches the records of `dir`.
    pub fn new(dir: &Path) -> Self {
        Self(files::Watched::new(JsonRecords::new(dir, "certs.json")))
    }

    /// True when `serial` was revoked. A records file that cannot be read
    /// counts every serial as revoked (fail closed).
    pub fn is_revoked(&self, serial: &str) -> bool {
        match self.0.get() {
            Ok(records) => records
                .iter()
                .any(|r| r.serial == serial && r.revoked_at.is_some()),
            Err(e) => {
                tracing::error!(error = %e, "certificate records unreadable; refusing every certificate");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::peer_of;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn init_issue_csr_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(dir.path(), &["10.0.0.5".into(), "coord.lan".into()]).unwrap();
        assert!(matches!(
            Ca::init(dir.path(), &[]),
            Err(PkiError::Exists(_))
        ));
        files::check_private(&dir.path().join("ca.key")).unwrap();
        files::check_private(&dir.path().join("coordinator.key")).unwrap();
        let coord = peer_of(&der(
            &files::read_text(&dir.path().join("coordinator.pem")).unwrap()
        ))
        .unwrap();
        assert_eq!(coord.role, Role::Coordinator);

        let node = ca
            .issue(Role::Node, "fantasy-1", Validity::days(1))
            .unwrap();
        let peer = peer_of(&der(&node.chain_pem)).unwrap();
        assert_eq!((peer.role, peer.name.as_str()), (Role::Node, "fantasy-1"));
        assert_eq!(peer.serial, node.record.serial);
        let again = ca.issue(Role::Node, "fantasy-1", Validity::days(1));
        assert!(
            matches!(again, Err(PkiError::Refused(_))),
            "one holder per node id"
        );

        // A CSR: the CA's names win over the request's.
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec!["evil.example".to_owned()])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let signed = ca
            .sign_csr(&csr, Role::Node, "scifi-2", Validity::days(1))
            .unwrap();
        assert!(signed.key_pem.is_none());
        assert_eq!(peer_of(&der(&signed.chain_pem)).unwrap().name, "scifi-2");
        assert!(
            ca.sign_csr("garbage", Role::Node, "x", Validity::days(1))
                .is_err()
        );

        let rev = Revocations::new(dir.path());
        assert!(!rev.is_revoked(&peer.serial));
        assert_eq!(ca.revoke("fantasy-1").unwrap().len(), 1);
        assert!(rev.is_revoked(&peer.serial));
        assert!(ca.revoke("fantasy-1").unwrap().is_empty());
        // Revoked: the id may be certified again.
        ca.issue(Role::Node, "fantasy-1", Validity::days(1))
            .unwrap();
        assert_eq!(ca.records().unwrap().len(), 4);
        assert!(
            ca.issue(Role::Client, "Bad Name", Validity::days(1))
                .is_err()
        );
    }
}
