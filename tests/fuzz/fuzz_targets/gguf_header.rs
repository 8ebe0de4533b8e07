//! GGUF headers as the node checks a model file before llama.cpp sees it:
//! any bytes give a summary or a named error, never a panic or a huge
//! allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("netmoe-fuzz-gguf-{}.gguf", std::process::id()));
    std::fs::write(&path, data).expect("write the input");
    let _ = netmoe_common::inspect_gguf(&path);
});
