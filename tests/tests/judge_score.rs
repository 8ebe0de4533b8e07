//! `coordinator score` as a user runs it: JSON lines in on stdin, one JSON
//! verdict per line out; a bad line gets an error line, the others are still
//! scored, and the exit code says something failed.

use std::io::Write;
use std::process::{Command, Stdio};

use netmoe_coordinator::cluster::sibling_binary;
use netmoe_tests::instruct_model_path;

#[test]
fn scores_each_line_and_reports_bad_ones() -> anyhow::Result<()> {
    let model = instruct_model_path();
    anyhow::ensure!(
        model.exists(),
        "instruct test model {} is missing",
        model.display()
    );
    let good = "Mira pushed open the door of the lighthouse. Rain hammered the glass, and below her the sea threw itself at the rocks. She climbed the iron stairs, lit the great lamp, and watched its beam sweep across the water until, far out, a small boat turned toward the harbour.";
    let vague = "This is a story about a lighthouse. The lighthouse was very nice and interesting. Things happened there, really a lot of things, in a way. It was something special, kind of.";
    let input = [
        serde_json::json!({"task": "A lighthouse keeper in a storm.", "text": good}).to_string(),
        "{\"task\": \"no text field\"}".to_owned(),
        serde_json::json!({"task": "A lighthouse keeper in a storm.", "text": vague}).to_string(),
    ]
    .join("\n");
    let mut child = Command::new(sibling_binary("coordinator")?)
        .args(["score", "--model"])
        .arg(&model)
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad line makes the exit code 1"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1]["line"], 2);
    assert!(
        lines[1]["error"].as_str().unwrap().contains("text"),
        "{}",
        lines[1]
    );
    let (g, v) = (
        lines[0]["score"].as_f64().unwrap(),
        lines[2]["score"].as_f64().unwrap(),
    );
    assert!((0.0..=10.0).contains(&g) && (0.0..=10.0).contains(&v));
    assert_eq!(lines[0]["judge"], "quality");
    assert!(
        lines[0]["parts"]["order_margin"].is_number(),
        "{}",
        lines[0]
    );
    assert!(
        g > v + 2.0,
        "the concrete passage ({g:.2}) must beat the vague one ({v:.2})"
    );
    Ok(())
}
