//! What a joining node sends before it has any credential: the join token
//! (as the node parses it) and the CSR (as the coordinator parses it, PEM
//! and DER), and node ids, all from arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netmoe_common::pki::{token, validate_name};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(t) = token::parse(&text) {
        assert_eq!(t.id.len(), token::ID_LEN);
        assert_eq!(t.secret.len(), token::SECRET_LEN);
        assert_eq!(t.ca_sha256.len(), 64);
    }
    if validate_name(&text).is_ok() {
        assert!(!text.is_empty() && text.len() <= 63);
    }
    let _ = rcgen::CertificateSigningRequestParams::from_pem(&text);
    let der = rustls_pki_types::CertificateSigningRequestDer::from(data.to_vec());
    let _ = rcgen::CertificateSigningRequestParams::from_der(&der);
});
