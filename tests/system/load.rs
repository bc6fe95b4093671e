//! `tally load` end to end: against a real server, it sets up its tenant,
//! loads it, reads everything back and says the verification passed.

use std::process::Command;

use tally::server::{Server, ServerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_load_runs_and_verifies_against_a_live_server() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().expect("an address"),
        demo: false,
        store: tally::server::StoreConfig::Sqlite,
    })
    .await
    .expect("the server starts");
    let url = format!("http://{}", server.addr);
    let run = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
        command
            .args(["load", "--url", &url, "--data"])
            .arg(dir.path())
            .args(["--concurrency", "8", "--employees", "6", "--vendors", "2"])
            .args(["--refund-percent", "10"])
            .args(extra);
        command
    };
    // Closed loop, with small allowances so that some checkouts are
    // refused; then paced, on a tenant named twice to show a rerun on the
    // same tenant still verifies.
    let runs = [
        run(&["--duration", "1.5", "--allowance", "300.00", "--seed", "7"]),
        run(&["--duration", "1", "--rate", "200", "--tenant", "load-twice"]),
        run(&["--duration", "1", "--rate", "200", "--tenant", "load-twice"]),
    ];
    for mut command in runs {
        let out = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the load runs")
            .expect("tally load starts");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "tally load failed:\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("Verification PASSED"), "{stdout}");
        assert!(stdout.contains("errors                   none"), "{stdout}");
    }
    server.stop().await.expect("the server stops");
}
