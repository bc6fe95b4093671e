//! Cross-crate checks of the workspace and the `tally` binary.

use std::process::Command;

/// ledger-core must do no IO. Its code is kept honest by the clippy
/// configuration in `ledger-core/clippy.toml`; its dependencies by this test:
/// nothing that brings a runtime, a network stack, a clock or randomness.
#[test]
fn ledger_core_depends_on_nothing_that_does_io() {
    let crates = linked("ledger-core");
    assert!(
        crates.iter().any(|c| c == "rust_decimal"),
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
    let bad: Vec<&String> = crates.iter().filter(|c| forbidden(c)).collect();
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

/// The workspace crates each crate may depend on (normal dependencies):
/// the layers of ARCHITECTURE.md, bottom up. Nothing depends on a crate
/// above it, and the production crates never on the local stand-ins.
const LAYERS: [(&str, &[&str]); 9] = [
    ("ledger-core", &[]),
    ("ledger-store", &["ledger-core"]),
    ("projector", &["ledger-core", "ledger-store"]),
    ("command-api", &["ledger-core", "ledger-store"]),
    ("aws-local", &["ledger-core", "ledger-store"]),
    ("tally-sim", &["ledger-core"]),
    ("tally-load", &["ledger-core", "command-api"]),
    (
        "tally-replay",
        &["ledger-core", "ledger-store", "projector"],
    ),
    (
        "tally-lambda",
        &["ledger-core", "ledger-store", "projector", "command-api"],
    ),
];

/// Each workspace package's normal dependencies on other workspace packages.
fn workspace_dependencies() -> Vec<(String, Vec<String>)> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let packages = metadata["packages"].as_array().expect("packages");
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.contains(d))
                .map(str::to_owned)
                .collect();
            (p["name"].as_str().unwrap_or_default().to_owned(), deps)
        })
        .collect()
}

#[test]
fn no_crate_depends_on_a_crate_above_it() {
    let packages = workspace_dependencies();
    for (name, allowed) in LAYERS {
        let (_, deps) = packages
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is a workspace package"));
        let above: Vec<&String> = deps
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(above.is_empty(), "{name} must not depend on {above:?}");
    }
    let layered: Vec<&str> = LAYERS.iter().map(|(n, _)| *n).collect();
    let unlisted: Vec<&String> = packages
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.as_str() != "tally" && !layered.contains(&n.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "give {unlisted:?} a layer here and in ARCHITECTURE.md"
    );
}

/// The `tamper` feature (writes below every port's rule) is for tests of
/// the audit: no binary is built with it.
#[test]
fn binaries_are_built_without_tamper() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "tally",
            "-p",
            "tally-lambda",
            "-e",
            "normal",
            "--format",
            "{p} [{f}]",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let store: Vec<&str> = tree
        .lines()
        .filter(|l| l.contains("ledger-store v"))
        .collect();
    assert!(!store.is_empty(), "{tree}");
    assert!(
        store.iter().all(|l| !l.contains("tamper")),
        "a binary links ledger-store with tamper: {store:?}"
    );
}

/// Every crate `package` links (normal dependencies, transitively).
fn linked(package: &str) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Only command-api knows HTTP, and it knows nothing of Lambda or of the
/// projectors: it reads through ledger-store's ports.
#[test]
fn command_api_links_neither_lambda_nor_kinesis() {
    let crates = linked("command-api");
    assert!(
        crates.iter().any(|c| c == "axum"),
        "the tree was read: {crates:?}"
    );
    for forbidden in [
        "lambda_runtime",
        "aws_lambda_events",
        "aws-sdk-kinesis",
        "projector",
        "aws-local",
    ] {
        assert!(
            !crates.iter().any(|c| c == forbidden),
            "command-api links {forbidden}"
        );
    }
}

/// The Lambda binaries (the tally-lambda crate) link no local stand-in and
/// no Kinesis client (the Kinesis projector reads Lambda's events, not the
/// stream); only they link the Lambda runtime, which the projector, whose
/// `lambda` module speaks Lambda's event types, does not.
#[test]
fn lambda_binaries_link_no_local_stand_ins() {
    let crates = linked("tally-lambda");
    for needed in ["lambda_runtime", "lambda_http", "command-api", "projector"] {
        assert!(
            crates.iter().any(|c| c == needed),
            "the Lambda entries link {needed}: {crates:?}"
        );
    }
    for forbidden in ["aws-local", "aws-sdk-kinesis"] {
        assert!(
            !crates.iter().any(|c| c == forbidden),
            "the Lambda entries link {forbidden}"
        );
    }
    let projector = linked("projector");
    assert!(
        projector.iter().any(|c| c == "aws_lambda_events"),
        "the tree was read: {projector:?}"
    );
    for forbidden in ["lambda_runtime", "lambda_http", "axum", "command-api"] {
        assert!(
            !projector.iter().any(|c| c == forbidden),
            "the projector links {forbidden}"
        );
    }
}

/// Only ledger-store knows how things sit in a database: outside it, no
/// production source names an item attribute, a key layout or SQL. Test
/// modules and fixtures may spell items out; the code they test may not.
#[test]
fn only_ledger_store_names_database_layouts() {
    const LAYOUTS: [&str; 12] = [
        "item::PK",
        "item::VERSION",
        "item::BYTES",
        "item::SORT",
        "\"pk\"",
        "\"sk\"",
        "|key|",
        "parked|",
        "|days",
        "rusqlite",
        "SELECT ",
        "INSERT INTO",
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut read = 0;
    for crate_dir in [
        "ledger-core",
        "projector",
        "command-api",
        "aws-local",
        "sim",
        "load",
        "replay",
        "lambda",
        ".",
    ] {
        let src = root.join(crate_dir).join("src");
        for path in rust_files(&src) {
            let text = std::fs::read_to_string(&path).expect("source reads");
            let production = text.split("#[cfg(test)]").next().unwrap_or_default();
            read += 1;
            for layout in LAYOUTS {
                if production.contains(layout) {
                    found.push(format!("{}: {layout}", path.display()));
                }
            }
        }
    }
    assert!(read > 20, "the sources were read ({read} files)");
    assert!(
        found.is_empty(),
        "only ledger-store may name these: {found:#?}"
    );
}

fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
