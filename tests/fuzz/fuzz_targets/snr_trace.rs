//! SNR trace files (`--snr trace:FILE`): any bytes give a trace of finite
//! values or a named error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netmoe_common::SnrModel;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("netmoe-fuzz-trace-{}.txt", std::process::id()));
    std::fs::write(&path, data).expect("write the input");
    if let Ok(SnrModel::Trace { values_db, .. }) = SnrModel::trace_from_file(&path) {
        assert!(!values_db.is_empty());
        assert!(values_db.iter().all(|v| v.is_finite()));
    }
});
