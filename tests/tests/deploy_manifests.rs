//! The deployment files validate: the Kubernetes manifests against the
//! Kubernetes schemas, the board's systemd unit with systemd-analyze, and
//! the compose file with docker-compose. A tool this machine lacks is
//! reported loudly as a skip, with the reason.

use std::process::Command;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn k8s_manifests_and_the_systemd_unit_validate() {
    if !have("python3", "--version") || !have("systemd-analyze", "--version") {
        netmoe_common::testing::skip(
            "k8s_manifests_and_the_systemd_unit_validate",
            "python3 (for kubernetes-validate) or systemd-analyze is missing",
        );
        return;
    }
    let bin = netmoe_coordinator::cluster::sibling_binary("edge-node").expect("edge-node built");
    let out = Command::new(root().join("deploy/k8s/validate.sh"))
        .arg(bin)
        .output()
        .expect("run validate.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("daemonset/edge-fantasy"), "{text}");
    assert!(text.contains("deployment/coordinator"), "{text}");
    assert!(!text.contains("ERROR"), "{text}");
    assert!(text.contains("systemd unit ok"), "{text}");
}

#[test]
fn the_compose_file_is_valid() {
    if !have("docker-compose", "version") {
        netmoe_common::testing::skip(
            "the_compose_file_is_valid",
            "docker-compose is not installed",
        );
        return;
    }
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(root().join("deploy/compose/docker-compose.yml"))
        .args(["config", "-q"])
        .env("NETMOE_MODELS", "/tmp")
        .output()
        .expect("docker-compose config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
