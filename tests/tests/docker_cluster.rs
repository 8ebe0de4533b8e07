//! The secured compose cluster (deploy/compose) for real: images built here
//! without a registry, a coordinator and three edge experts each in its own
//! container on a private network, joined with their tokens. It answers a
//! prompt; a node killed in the middle of a request costs a retry, not the
//! request; a node cut off the network is dropped within the liveness
//! timeout, routed around, and comes back when reconnected.
//!
//! Runs when a Docker engine and docker-compose are available; otherwise it
//! says so, loudly, and why.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROMPT: &str = "Write a story in which a young knight rides out to face a dragon, a robot scientist repairs a starship far from Earth, and a family of otters survives the first winter storm.";

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn docker_available() -> Result<(), String> {
    let ok = |c: &mut Command| {
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(Command::new("docker").arg("info")) {
        return Err("`docker info` failed: no Docker engine reachable".into());
    }
    if !ok(Command::new("docker-compose").arg("version")) {
        return Err("docker-compose is not installed".into());
    }
    Ok(())
}

fn run(mut c: Command) -> Output {
    let out = c.output().expect("spawn");
    if !out.status.success() {
        eprintln!(
            "command failed: {c:?}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn docker(args: &[&str]) -> Output {
    let mut c = Command::new("docker");
    c.args(args);
    run(c)
}

/// One compose project of the cluster, removed (volumes too) on drop.
struct Stack {
    project: &'static str,
    port: &'static str,
    extra: Option<&'static str>,
}

impl Stack {
    fn env(&self, c: &mut Command) {
        c.env("NETMOE_PROJECT", self.project)
            .env("NETMOE_COORDINATOR_PORT", self.port);
        if let Some(x) = self.extra {
            c.env("NETMOE_COMPOSE_EXTRA", root().join(x));
        }
    }

    fn compose(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker-compose");
        c.arg("-f")
            .arg(root().join("deploy/compose/docker-compose.yml"));
        if let Some(x) = self.extra {
            c.arg("-f").arg(root().join(x));
        }
        c.args(["-p", self.project]).args(args);
        self.env(&mut c);
        c
    }

    /// Builds the images, starts the cluster, answers PROMPT (up.sh).
    fn up(&self) -> Output {
        let mut up = Command::new(root().join("deploy/compose/up.sh"));
        up.arg(PROMPT);
        self.env(&mut up);
        run(up)
    }

    /// The coordinator's node table: (id, live column).
    fn nodes(&self) -> Vec<(String, String)> {
        let out = run(self.compose(&["run", "--rm", "-T", "client", "nodes"]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 4 && !l.starts_with(' ')).then(|| (f[0].to_owned(), f[4].to_owned()))
            })
            .collect()
    }

    /// How many generations a node's log says it has accepted.
    fn accepted(&self, service: &str) -> usize {
        let out = Command::new("docker")
            .args(["logs", &self.container(service)])
            .output()
            .expect("docker logs");
        let log = [out.stdout, out.stderr].concat();
        String::from_utf8_lossy(&log)
            .matches("generation accepted")
            .count()
    }

    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.project)
    }

    fn ask_json(&self) -> Command {
        self.compose(&[
            "run",
            "--rm",
            "-T",
            "client",
            "run",
            PROMPT,
            "--max-tokens",
            "48",
            "--policy",
            "relevance",
            "--json",
        ])
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut c = Command::new(root().join("deploy/compose/down.sh"));
        self.env(&mut c);
        let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    t.elapsed()
}

fn parse(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "command failed");
    serde_json::from_slice(&out.stdout).expect("JSON answer")
}

fn targets(v: &serde_json::Value) -> Vec<String> {
    v["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["target"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_secured_compose_cluster_answers_survives_a_kill_and_routes_around_a_partition() {
    if let Err(why) = docker_available() {
        netmoe_common::testing::skip(
            "docker_cluster",
            &format!("{why}. This test needs a Docker engine and docker-compose."),
        );
        return;
    }
    let stack = Stack {
        project: "netmoe-test",
        port: "50150",
        extra: None,
    };
    // Up: images built here, cluster started, every node joined, one answer.
    let started = Instant::now();
    let out = stack.up();
    assert!(out.status.success(), "up.sh failed");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("── story ("), "{table}");
    assert!(table.contains("Σ total"), "no cost table: {table}");
    for node in ["fantasy", "scifi", "nature"] {
        assert!(
            table.contains(node),
            "{node} took no segment or is missing: {table}"
        );
    }
    eprintln!(
        "compose up to first answer: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Kill a node in the middle of a request: the request completes on the
    // others. The kill waits until scifi has accepted its segment (its log
    // says so), so it lands during generation however slow the host is.
    let accepted_before = stack.accepted("scifi");
    let asking = stack
        .ask_json()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ask");
    wait_for("scifi accepts a segment", Duration::from_secs(60), || {
        stack.accepted("scifi") > accepted_before
    });
    assert!(
        docker(&["kill", &stack.container("scifi")])
            .status
            .success()
    );
    let v = parse(&asking.wait_with_output().expect("ask"));
    assert_eq!(v["partial"], false, "{v}");
    assert!(
        !targets(&v).contains(&"scifi".to_owned()),
        "answered by the killed node: {v}"
    );
    assert!(!v["story"].as_str().unwrap_or_default().trim().is_empty());
    assert!(
        docker(&["start", &stack.container("scifi")])
            .status
            .success()
    );
    wait_for("scifi back after restart", Duration::from_secs(120), || {
        stack
            .nodes()
            .iter()
            .any(|(id, live)| id == "scifi" && live == "yes")
    });

    // Partition: nature is cut off, dropped within the liveness timeout
    // (1.5 s; the check itself takes a client container start), routed
    // around, and back once reconnected.
    let network = format!("{}_edge", stack.project);
    let nature = stack.container("nature");
    assert!(
        docker(&["network", "disconnect", &network, &nature])
            .status
            .success()
    );
    let dropped = wait_for("nature dropped", Duration::from_secs(15), || {
        stack
            .nodes()
            .iter()
            .any(|(id, live)| id == "nature" && live == "no")
    });
    eprintln!(
        "partitioned node seen dropped after {:.1} s",
        dropped.as_secs_f64()
    );
    let v = parse(&run(stack.ask_json()));
    assert_eq!(v["partial"], false, "{v}");
    assert!(
        !targets(&v).contains(&"nature".to_owned()),
        "routed to a partitioned node: {v}"
    );
    assert!(
        docker(&["network", "connect", &network, &nature])
            .status
            .success()
    );
    let back = wait_for("nature back", Duration::from_secs(60), || {
        stack
            .nodes()
            .iter()
            .any(|(id, live)| id == "nature" && live == "yes")
    });
    eprintln!(
        "reconnected node live again after {:.1} s",
        back.as_secs_f64()
    );
}

#[test]
fn shaped_links_follow_the_shannon_rate_of_each_nodes_snr() {
    if let Err(why) = docker_available() {
        netmoe_common::testing::skip(
            "docker_cluster (shaped)",
            &format!("{why}. This test needs a Docker engine and docker-compose."),
        );
        return;
    }
    let stack = Stack {
        project: "netmoe-shaped",
        port: "50151",
        extra: Some("deploy/compose/docker-compose.shaped.yml"),
    };
    let out = stack.up();
    assert!(out.status.success(), "up.sh (shaped) failed");
    // Probe each link by name with 8 KiB each way: fantasy at 18 dB, nature
    // at 3 dB. By name, because a node the answer just quarantined (a
    // segment over its deadline on the 3 dB link) is not "live" but is
    // still registered, and its link is what is measured here.
    eprintln!(
        "{}",
        String::from_utf8_lossy(
            &run(stack.compose(&["run", "--rm", "-T", "client", "nodes"])).stdout
        )
    );
    // The answer up.sh asked for may leave a generation streaming on a slow
    // link after its deadline; a probe beside it would share the link.
    // So the links are measured once every node is idle, three times each
    // in turn, and each link's median probe is kept.
    let idle = |v: &serde_json::Value| {
        // `nodes --json` prints an array of nodes.
        let nodes = v.as_array().map(Vec::as_slice).unwrap_or_default();
        !nodes.is_empty()
            && nodes
                .iter()
                .all(|n| n["active"].as_u64().unwrap_or(1) + n["queued"].as_u64().unwrap_or(1) == 0)
    };
    let t = Instant::now();
    while !idle(&parse(&run(
        stack.compose(&["run", "--rm", "-T", "client", "nodes", "--json"])
    ))) {
        if t.elapsed() > Duration::from_secs(90) {
            eprintln!("*** nodes still busy after 90 s: probing anyway ***");
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let by = |id: &str| {
        let probes = parse(&run(stack.compose(&[
            "run", "--rm", "-T", "client", "probe", id, "--bytes", "8192", "--json",
        ])));
        let p = probes
            .as_array()
            .expect("probes")
            .iter()
            .find(|p| p["node_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no probe of {id}: {probes}"));
        assert_eq!(p["ok"], true, "probe of {id} failed: {p}");
        p
    };
    let goodput = |p: &serde_json::Value| p["down_goodput_bps"].as_f64().expect("goodput");
    let (mut his, mut los) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        his.push(by("fantasy"));
        los.push(by("nature"));
    }
    let median = |mut ps: Vec<serde_json::Value>| {
        ps.sort_by(|a, b| goodput(a).total_cmp(&goodput(b)));
        eprintln!(
            "goodputs of {}: {:?} b/s",
            ps[0]["node_id"],
            ps.iter().map(|p| goodput(p).round()).collect::<Vec<_>>()
        );
        ps.swap_remove(1)
    };
    let (hi, lo) = (median(his), median(los));
    let shannon = |db: f64| 10_000.0 * (1.0 + 10f64.powf(db / 10.0)).log2();
    let expected = shannon(18.0) / shannon(3.0);
    let measured = goodput(&hi) / goodput(&lo);
    eprintln!(
        "shaped goodput: fantasy {:.0} b/s (Shannon {:.0}), nature {:.0} b/s (Shannon {:.0}); ratio {measured:.2}, Shannon ratio {expected:.2}",
        goodput(&hi),
        shannon(18.0),
        goodput(&lo),
        shannon(3.0)
    );
    // Tolerance: 35% either way (packet headers and QUIC's own pacing make
    // goodput fall below the netem rate, more so on the slow link).
    assert!(
        (measured / expected - 1.0).abs() < 0.35,
        "goodput ratio {measured:.2} vs Shannon ratio {expected:.2}"
    );
    // Each goodput stays near or below its shaped rate (the 2 KB token
    // bucket lets a short probe run a little ahead of it).
    assert!(goodput(&hi) < shannon(18.0) * 1.15 && goodput(&lo) < shannon(3.0) * 1.15);
    // The delay is netem's; kernels without netem shape the rate with tbf
    // alone (the node logs it), and then there is no delay to see.
    let logs = run(stack.compose(&["logs", "--no-color", "fantasy"]));
    let tbf = String::from_utf8_lossy(&logs.stdout).contains("the kernel has no netem");
    if tbf {
        eprintln!(
            "*** this kernel has no netem: rate shaped with tbf, the 20 ms delay check is skipped ***"
        );
    } else {
        for p in [&hi, &lo] {
            let rtt = p["echo_rtt_ms"].as_f64().expect("rtt");
            assert!(
                rtt >= 19.0,
                "the probe did not see the 20 ms shaped delay: {p}"
            );
        }
    }
}
