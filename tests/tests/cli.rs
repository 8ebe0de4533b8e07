//! The command line as scripts use it, on the real binaries: documented
//! exit codes (an unreachable coordinator 3, a bad API key 4, a refused
//! request 5, bad usage 2), every error on one `error: ...` line with no
//! debug dump, `--json` output that parses on the commands that print
//! results, shell completions, `config --print-default` and resolved `config` output that the
//! binaries load back as their settings file, and `--http-tls` serving the
//! HTTP side as HTTPS with the coordinator's certificate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use netmoe_coordinator::cluster::sibling_binary;
use netmoe_tests::start_cluster;

fn bin(name: &str) -> PathBuf {
    sibling_binary(name).expect("cargo build --release --bins first")
}

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("spawn")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code and that the error is a single clean line.
fn assert_fails(what: &str, o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: not one line:\n{err}");
    assert!(lines[0].starts_with("error: "), "{what}: {err}");
    for dump in ["Caused by", "MetadataMap", "Status {", "backtrace"] {
        assert!(!err.contains(dump), "{what}: debug dump in {err}");
    }
    lines[0].to_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

#[test]
fn offline_commands_exit_codes_json_completions_and_defaults() {
    // Bad usage is clap's 2.
    assert_eq!(run("coordinator", &["run"]).status.code(), Some(2));
    assert_eq!(
        run("edge-node", &["serve", "--slots", "x"]).status.code(),
        Some(2)
    );
    // Nothing listens on port 1: unreachable is 3, on one line.
    let line = assert_fails(
        "unreachable coordinator",
        &run(
            "coordinator",
            &["nodes", "--insecure", "--endpoint", "http://127.0.0.1:1"],
        ),
        3,
    );
    assert!(line.contains("127.0.0.1:1"), "{line}");
    assert_fails(
        "unreachable node",
        &run(
            "edge-node",
            &["ask", "hi", "--endpoint", "http://127.0.0.1:1"],
        ),
        3,
    );
    assert_fails(
        "unreachable health",
        &run("coordinator", &["health", "--endpoint", "127.0.0.1:1"]),
        3,
    );
    // A missing file is a plain failure, 1.
    assert_fails(
        "missing dataset dump",
        &run("coordinator", &["judge-fit", "/nonexistent/dump.jsonl"]),
        1,
    );

    // Admin commands on a fresh state directory, as JSON.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    let init = json(&run("coordinator", &["--json", "ca", "init", s]));
    assert_eq!(init["ca_sha256"].as_str().map(str::len), Some(64), "{init}");
    let token = json(&run(
        "coordinator",
        &["token", "create", "--dir", s, "--ttl", "5m", "--json"],
    ));
    assert!(
        token["token"].as_str().is_some_and(|t| t.contains('.')),
        "{token}"
    );
    let key = json(&run(
        "coordinator",
        &["key", "create", "--dir", s, "--name", "ci", "--json"],
    ));
    let keys = json(&run("coordinator", &["key", "list", "--dir", s, "--json"]));
    assert_eq!(keys[0]["id"], key["id"], "{keys}");
    assert_eq!(keys[0]["state"], "valid");
    let tokens = json(&run(
        "coordinator",
        &["token", "list", "--dir", s, "--json"],
    ));
    assert_eq!(tokens.as_array().map(Vec::len), Some(1), "{tokens}");
    // Revoking what is not there is a refused request, 5.
    assert_fails(
        "revoke an unknown key",
        &run("coordinator", &["key", "revoke", "nosuchkey", "--dir", s]),
        5,
    );
    // The text output the scripts parse is unchanged: the key alone.
    let text = run(
        "coordinator",
        &["key", "create", "--dir", s, "--name", "ci2"],
    );
    assert_eq!(String::from_utf8_lossy(&text.stdout).lines().count(), 1);

    // Completions for both binaries name their subcommands.
    for (b, shell) in [
        ("coordinator", "bash"),
        ("coordinator", "zsh"),
        ("edge-node", "fish"),
    ] {
        let o = run(b, &["completions", shell]);
        assert!(
            o.status.success(),
            "{b} completions {shell}: {}",
            stderr(&o)
        );
        let script = String::from_utf8_lossy(&o.stdout);
        for sub in ["serve", "config", "completions"] {
            assert!(script.contains(sub), "{b} {shell} completions lack {sub}");
        }
    }

    // The defaults listing loads back as each binary's settings file (an
    // unknown or mistyped key would be refused: the files deny unknown keys).
    for (b, must) in [
        (
            "coordinator",
            ["listen", "max_concurrent_asks", "bandwidth_hz"],
        ),
        ("edge-node", ["listen", "slots", "queue_depth"]),
    ] {
        let o = run(b, &["config", "--print-default"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let table: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{b}: {e}\n{text}"));
        let listed = json(&run(b, &["config", "--print-default", "--json"]));
        for k in must {
            assert!(
                listed.as_array().unwrap().iter().any(|s| s["key"] == k),
                "{b}: {k} not listed"
            );
        }
        assert!(!table.is_empty(), "{b}: no value set in\n{text}");
        check_loads(b, &text, dir.path());
    }

    // The resolved settings: a flag and a variable show up, and the printout
    // loads back as a settings file.
    let o = Command::new(bin("coordinator"))
        .args(["config", "--max-segments", "3", "--insecure"])
        .env("NETMOE_PROBE_BYTES", "4096")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(table["max_segments"].as_integer(), Some(3), "{text}");
    assert_eq!(table["probe_bytes"].as_integer(), Some(4096), "{text}");
    assert_eq!(table["insecure"].as_bool(), Some(true), "{text}");
    assert_eq!(
        json(&run("coordinator", &["config", "--insecure", "--json"]))["max_segments"],
        4
    );
    check_loads("coordinator", &text, dir.path());
    let bad = run(
        "coordinator",
        &["config", "--max-segments", "9", "--insecure"],
    );
    let line = assert_fails("an invalid resolved setting", &bad, 1);
    assert!(line.contains("max_segments"), "{line}");
}

/// Starts `serve --config FILE` only far enough to see the file accepted:
/// a bad key fails at once with "config file", a good file gets past it
/// (and is then stopped).
fn check_loads(b: &str, text: &str, dir: &Path) {
    let file = dir.join(format!("{b}.toml"));
    std::fs::write(&file, text).unwrap();
    // At the top: the end of the file is inside its last table.
    let bad = format!("no_such_key = 1\n{text}");
    let bad_file = dir.join(format!("{b}-bad.toml"));
    std::fs::write(&bad_file, bad).unwrap();
    let o = run(
        b,
        &[
            "serve",
            "--config",
            bad_file.to_str().unwrap(),
            "--insecure",
        ],
    );
    let line = assert_fails("a bad settings file", &o, 1);
    assert!(line.contains("no_such_key"), "{line}");
    // The good file passes the settings check: the process gets as far as
    // its model or port, not a settings error.
    let mut child = Command::new(bin(b))
        .args(["serve", "--config", file.to_str().unwrap(), "--insecure"])
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(
        !err.contains("config file"),
        "{b}: the printed defaults were refused: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn against_a_live_coordinator_denied_is_4_rejected_is_5_and_json_parses() {
    let cluster = start_cluster(
        Some(Vec::new()),
        &["--http-listen", "127.0.0.1:0", "--http-tls", "true"],
    )
    .await
    .expect("cluster");
    let creds = cluster.credentials.as_ref().expect("secured");
    let endpoint = format!("https://{}", cluster.coordinator.addr);
    let tls = creds.root.path().join("client");
    let base = [
        "--endpoint",
        endpoint.as_str(),
        "--tls-dir",
        tls.to_str().unwrap(),
    ];
    let with = |extra: &[&str], key: &str| -> Output {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(base);
        args.extend(["--api-key", key]);
        run("coordinator", &args)
    };
    let key = creds.api_key.clone();
    let nodes = with(&["nodes", "--json"], &key);
    assert_eq!(json(&nodes).as_array().map(Vec::len), Some(0));
    assert_fails("a bad API key", &with(&["nodes"], "not-a-key"), 4);
    let line = assert_fails(
        "too many segments",
        &with(&["run", "hello", "-k", "99"], &key),
        5,
    );
    assert!(line.contains("invalid argument"), "{line}");
    let health = run(
        "coordinator",
        &[
            "--json",
            "health",
            "--endpoint",
            &cluster.coordinator.addr.to_string(),
            "--tls-dir",
            creds.state.to_str().unwrap(),
        ],
    );
    assert_eq!(json(&health)["serving"], true);

    // --http-tls: the HTTP side is HTTPS with the coordinator's certificate,
    // verified against the cluster's CA by curl; the key is still needed.
    let http = cluster.coordinator.http_addr.expect("HTTP listener");
    let ca = creds.state.join("ca.pem");
    let curl = |args: &[&str]| -> Output {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl")
    };
    let url = |path: &str| format!("https://localhost:{}{path}", http.port());
    let ok = curl(&["--cacert", ca.to_str().unwrap(), &url("/healthz")]);
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout)
            .trim_end()
            .rsplit('\n')
            .next(),
        Some("200"),
        "https /healthz: {}",
        stderr(&ok)
    );
    let no_key = curl(&["--cacert", ca.to_str().unwrap(), &url("/v1/models")]);
    assert!(
        String::from_utf8_lossy(&no_key.stdout).ends_with("401"),
        "{}",
        String::from_utf8_lossy(&no_key.stdout)
    );
    let models = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "-H",
        &format!("Authorization: Bearer {key}"),
        &url("/v1/models"),
    ]);
    let body = String::from_utf8_lossy(&models.stdout);
    assert!(
        body.contains("\"netmoe\"") && body.ends_with("200"),
        "{body}"
    );
    // Without the CA the certificate is not trusted; plaintext gets nowhere.
    assert!(
        !curl(&[&url("/healthz")]).status.success(),
        "an untrusted certificate was accepted"
    );
    let plain = curl(&[&format!("http://127.0.0.1:{}/healthz", http.port())]);
    assert!(
        !String::from_utf8_lossy(&plain.stdout).ends_with("200"),
        "plaintext HTTP was served on the TLS listener"
    );
    cluster.shutdown().await.unwrap();
}
