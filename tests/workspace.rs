//! Cross-crate checks of the workspace and the `tally` binary.

use std::process::Command;

/// ledger-core must do no IO. Its code is kept honest by the clippy
/// configuration in `ledger-core/clippy.toml`; its dependencies by this test:
/// nothing that brings a runtime, a network stack, a clock or randomness.
#[test]
fn ledger_core_depends_on_nothing_that_does_io() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "ledger-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"rust_decimal"),
        "the tree was read: {crates:?}"
    );
    let forbidden = |name: &str| {
        const EXACT: [&str; 12] = [
            "tokio",
            "mio",
            "socket2",
            "hyper",
            "reqwest",
            "getrandom",
            "rand",
            "rand_core",
            "iana-time-zone",
            "rusqlite",
            "libsqlite3-sys",
            "futures",
        ];
        EXACT.contains(&name)
            || ["aws-", "aws_", "lambda", "tokio-", "async-"]
                .iter()
                .any(|p| name.starts_with(p))
    };
    let bad: Vec<&&str> = crates.iter().filter(|c| forbidden(c)).collect();
    assert!(bad.is_empty(), "ledger-core must not depend on {bad:?}");
}

/// The README's run command: a small demo must simulate, fold, print a
/// dashboard and audit clean, exiting 0.
#[test]
fn tally_demo_runs_and_audits_clean() {
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "demo",
            "--days",
            "10",
            "--employees",
            "20",
            "--sales-per-day",
            "50",
            "--granularity",
            "day",
        ])
        .output()
        .expect("tally runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Audit: CLEAN"), "{stdout}");
    assert!(
        stdout.contains("2026-10-01"),
        "a daily bucket is printed: {stdout}"
    );
}

#[test]
fn tally_demo_exports_json_lines_that_parse() {
    let dir = std::env::temp_dir().join(format!("tally-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.jsonl");
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "demo",
            "--days",
            "3",
            "--employees",
            "5",
            "--sales-per-day",
            "20",
            "--export",
        ])
        .arg(&path)
        .output()
        .expect("tally runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let envelopes: Vec<ledger_core::Envelope> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("an envelope"))
        .collect();
    assert!(envelopes.len() > 50);
    assert_eq!(
        envelopes[0].event.event_type(),
        ledger_core::EventType::TenantConfigured
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tally_rejects_a_bad_granularity_with_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["demo", "--granularity", "fortnight"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected day, week or month"));
}
