//! A short summary of the hardware a node runs on, for `Info`.

use netmoe_proto::v1::HardwareInfo;

/// Reads CPU, memory and OS facts once (sysinfo).
pub fn summary() -> HardwareInfo {
    let mut sys = sysinfo::System::new();
    sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    sys.refresh_memory();
    let cpu_model = sys
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_owned())
        .unwrap_or_default();
    HardwareInfo {
        cpu_model,
        logical_cpus: sys.cpus().len() as u32,
        memory_bytes: sys.total_memory(),
        os: sysinfo::System::long_os_version().unwrap_or_else(|| std::env::consts::OS.into()),
        arch: std::env::consts::ARCH.into(),
        accelerator: if cfg!(feature = "cuda") {
            "cuda"
        } else {
            "cpu"
        }
        .into(),
    }
}
