//! The dashboard for real: a secured cluster (coordinator + three edge
//! experts, separate processes, the real model) serving its page over
//! HTTPS (`--http-tls`, the coordinator's certificate from the cluster CA),
//! loaded in headless Chromium (Debian's `chromium`, driven by Playwright
//! from PyPI) that trusts that certificate's key and no other; the page
//! sends a prompt, and the streamed answer (server-sent events over TLS),
//! the request's routing and its cost chart must appear. The screenshot is
//! kept at `~/.cache/netmoe/artifacts/dashboard.png`. Plain HTTP serving is
//! driven by the `http_api` suite.
//!
//! Chromium and Playwright come from the README's test command. Without
//! them the test says so, loudly, and fails: it never passes unchecked.

use std::process::Command;

use netmoe_tests::start_cluster;

#[tokio::test]
async fn the_dashboard_streams_an_answer_with_its_routing_and_costs() -> anyhow::Result<()> {
    let cache = netmoe_common::fetch::cache_dir();
    let python = cache.join("venv-test/bin/python");
    assert!(
        python.exists(),
        "\n*** {} is missing: run the README's test command (deploy/test.sh), which makes the venv with Playwright ***\n",
        python.display()
    );
    let cluster = start_cluster(
        None,
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--http-tls",
            "true",
            "--local-candidate",
            "false",
            "--policy",
            "relevance",
        ],
    )
    .await?;
    let http = cluster.coordinator.http_addr.expect("coordinator HTTP");
    let creds = cluster.credentials.as_ref().expect("secured cluster");
    let key = creds.api_key.clone();
    let pin = spki_sha256(&creds.state.join("coordinator.pem"))?;
    let artifacts = cache.join("artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || {
            Command::new(python)
                .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dashboard.py"))
                .arg(format!("https://localhost:{}", http.port()))
                .arg(key)
                .arg(shot)
                .arg(pin)
                .output()
        }
    })
    .await??;
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the dashboard checks failed");
    eprintln!(
        "dashboard: {} (screenshot {})",
        String::from_utf8_lossy(&out.stdout).trim(),
        shot.display()
    );
    assert!(
        std::fs::metadata(&shot)?.len() > 10_000,
        "the screenshot is missing or empty"
    );
    cluster.shutdown().await?;
    Ok(())
}

/// SHA-256 (hex) of the public key of the first certificate in `pem`, the
/// pin Chromium's `--ignore-certificate-errors-spki-list` takes (base64).
fn spki_sha256(pem: &std::path::Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let text = std::fs::read(pem)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text)?;
    let cert = pem.parse_x509()?;
    let digest = sha2::Sha256::digest(cert.tbs_certificate.subject_pki.raw);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}
