//! llama.cpp's backend modules in a `dynamic-backends` build: llama.cpp is
//! built as shared libraries with one CPU backend per x86-64 (or Arm)
//! feature level, `libggml-cpu-<variant>.so`, and ggml loads the best one
//! the CPU runs, so one binary is fast on every host of its architecture.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Loads the modules from `dir` instead of the default places; call before
/// the first model loads (later calls change nothing).
pub fn set_dir(dir: PathBuf) {
    let _ = DIR.set(dir);
}

/// Whether `dir` holds a CPU backend module.
pub fn has_cpu_backend(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (name.starts_with("libggml-cpu") || name.starts_with("ggml-cpu"))
                && [".so", ".dll", ".dylib"].iter().any(|x| name.ends_with(x))
        })
    })
}

/// CPU backend variants that execute AMX tile instructions (llama.cpp's
/// x86-64 `sapphirerapids` build).
const AMX_VARIANTS: &[&str] = &["sapphirerapids"];

/// Whether this process may use AMX tile data. CPUID can report AMX while
/// the kernel or a hypervisor leaves the tile state out of XSAVE (seen on a
/// cloud VM: `amx_tile` in /proc/cpuinfo, ggml picks its AMX variant, and
/// the first tile instruction is SIGILL). `ARCH_GET_XCOMP_SUPP` lists the
/// dynamic state the kernel really supports.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub fn amx_usable() -> bool {
    const ARCH_GET_XCOMP_SUPP: libc::c_long = 0x1022;
    const XFEATURE_XTILEDATA: u32 = 18;
    let mut mask: u64 = 0;
    // SAFETY: arch_prctl(ARCH_GET_XCOMP_SUPP, addr) writes one u64 at addr,
    // which points at `mask`, alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_GET_XCOMP_SUPP,
            &mut mask as *mut u64,
        )
    };
    r == 0 && mask & (1 << XFEATURE_XTILEDATA) != 0
}

/// No AMX variant exists off x86-64 Linux.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub fn amx_usable() -> bool {
    true
}

/// Whether `file` is a CPU backend module this host cannot run.
pub fn unrunnable(file: &str, amx: bool) -> bool {
    !amx && AMX_VARIANTS
        .iter()
        .any(|v| file.starts_with(&format!("libggml-cpu-{v}.")))
}

/// `dir` as ggml should see it: itself when every module can run here, else
/// a directory of links to the modules that can (ggml scores variants by
/// CPUID alone and would load one that dies on its first instruction).
pub fn runnable_view(dir: &Path, amx: bool) -> std::io::Result<PathBuf> {
    let entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    if !entries
        .iter()
        .any(|e| unrunnable(&e.file_name().to_string_lossy(), amx))
    {
        return Ok(dir.to_path_buf());
    }
    // Links resolve from the view, so their targets are absolute; the view
    // is a fresh directory only this user can write (create_dir fails on a
    // name someone planted), removed again if it cannot be completed.
    let dir = std::fs::canonicalize(dir)?;
    let view = std::env::temp_dir().join(format!(
        "netmoe-backends-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&view)?;
    }
    let linked = entries.iter().try_for_each(|e| {
        let name = e.file_name();
        if unrunnable(&name.to_string_lossy(), amx) {
            return Ok(());
        }
        std::os::unix::fs::symlink(dir.join(&name), view.join(&name))
    });
    match linked {
        Ok(()) => Ok(view),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&view);
            Err(e)
        }
    }
}

#[cfg(feature = "dynamic-backends")]
/// Loads the modules: from the set directory, else the executable's own
/// directory when it holds them (an installed node), else the directory the
/// build put them in (a node run from the cargo target directory); from the
/// first two, never a variant this host cannot run ([`amx_usable`]).
pub(crate) fn load() {
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .filter(|d| has_cpu_backend(d));
    let amx = amx_usable();
    match DIR.get().cloned().or(beside_exe) {
        Some(dir) => {
            let view = runnable_view(&dir, amx).unwrap_or_else(|e| {
                tracing::error!(error = %e, dir = %dir.display(), "cannot leave out the CPU variants this host cannot run (no AMX tile state); ggml may pick one and the node die with SIGILL: give --backends-dir a directory without libggml-cpu-sapphirerapids.so");
                dir.clone()
            });
            llama_cpp_2::llama_backend::load_backends_from_path(&view);
            if view != dir {
                // The modules are mapped; the links are no longer needed.
                let _ = std::fs::remove_dir_all(&view);
            }
            tracing::debug!(dir = %dir.display(), amx, "llama.cpp backend modules loaded");
        }
        // The build's own directory (a node run from the cargo target
        // directory), as ggml finds it: every variant, unfiltered; on a host
        // without AMX state give --backends-dir to have it filtered.
        None => llama_cpp_2::llama_backend::load_backends(),
    }
    let devices = llama_cpp_2::list_llama_ggml_backend_devices();
    if !devices.iter().any(|d| d.backend == "CPU") {
        tracing::error!(
            "no llama.cpp CPU backend module found: give --backends-dir, the directory with libggml-cpu-*.so"
        );
    }
    tracing::info!(
        cpu_variant = cpu_variant().as_deref().unwrap_or("unknown"),
        amx,
        devices = ?devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        "llama.cpp backends"
    );
}

#[cfg(feature = "dynamic-backends")]
/// The CPU backend module ggml picked, read off the process's mappings
/// (ggml names it only in an info line of its own log, which the node
/// filters to warnings by default).
fn cpu_variant() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.rsplit('/').next())
        .find(|f| f.starts_with("libggml-cpu"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_amx_state_the_amx_variant_is_left_out_of_a_linked_view() {
        assert!(unrunnable("libggml-cpu-sapphirerapids.so", false));
        assert!(!unrunnable("libggml-cpu-sapphirerapids.so", true));
        assert!(!unrunnable("libggml-cpu-zen4.so", false));

        let dir = std::env::temp_dir().join(format!("netmoe-backends-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for v in ["haswell", "zen4", "sapphirerapids"] {
            std::fs::write(dir.join(format!("libggml-cpu-{v}.so")), v).unwrap();
        }
        // Every variant runs: ggml gets the directory itself.
        assert_eq!(runnable_view(&dir, true).unwrap(), dir);
        // No AMX state: a view of links without the AMX variant.
        let view = runnable_view(&dir, false).unwrap();
        assert_ne!(view, dir);
        let mut names: Vec<String> = std::fs::read_dir(&view)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["libggml-cpu-haswell.so", "libggml-cpu-zen4.so"]);
        assert_eq!(
            std::fs::read_to_string(view.join("libggml-cpu-zen4.so")).unwrap(),
            "zen4"
        );
        assert!(has_cpu_backend(&view));
        std::fs::remove_dir_all(&view).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_amx_check_agrees_with_the_kernel() {
        // Where the kernel lists no AMX tile state, /proc/cpuinfo may still
        // say amx_tile (the case this check exists for); where it does, the
        // CPU has AMX. Either way the answer is a plain bool, never a crash.
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if amx_usable() {
            assert!(
                cpuinfo.contains("amx_tile") || cpuinfo.is_empty(),
                "AMX usable without amx_tile"
            );
        }
    }
}
