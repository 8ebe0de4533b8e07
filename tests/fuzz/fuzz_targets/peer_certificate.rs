//! Certificate identities (`netmoe://ROLE/NAME` URI SANs) read from DER:
//! any bytes give a well-formed identity or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(peer) = netmoe_common::pki::peer_of(data) {
        assert!(netmoe_common::pki::validate_name(&peer.name).is_ok());
    }
});
