//! `suppressd import` as a user runs it against a real server: the summary counts, the line
//! numbers of invalid rows, skipped blocks, and a second run that changes nothing.

use std::process::{Command, Output};

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use helpers::spawn_app;
use suppressd::grpc::proto::AddressState;

async fn import(addr: &str, args: &[&str]) -> Output {
    let mut all = vec!["import".to_string(), "--addr".into(), addr.into()];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_suppressd"))
            .args(&all)
            .env_remove("SUPPRESSD_HEALTHCHECK_ADDR")
            .env_remove("SUPPRESSD_TOKEN")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn an_import_reports_counts_and_invalid_lines_and_a_second_run_changes_nothing() {
    let mut app = spawn_app().await;
    let args = [
        "--format",
        "sendgrid",
        "--batch",
        "2",
        "tests/data/import/sendgrid_bounces.csv",
    ];
    let first = import(&app.addr, &args).await;
    let out = stdout(&first);
    assert!(out.contains("imported: 2\n"), "{out}");
    assert!(out.contains("already suppressed: 0\n"), "{out}");
    assert!(out.contains("invalid: 2\n"), "{out}");
    assert!(out.contains("  line 4: address"), "{out}");
    assert!(out.contains("  line 5: no time"), "{out}");
    let progress = String::from_utf8_lossy(&first.stderr);
    assert!(progress.contains("sent 3 of 3"), "{progress}");
    assert_eq!(
        app.status("", "gone@example.com").await.state(),
        AddressState::Suppressed
    );
    let history = app.changes("", "gone@example.com").await.len();

    let out = stdout(&import(&app.addr, &args).await);
    assert!(out.contains("imported: 0\n"), "{out}");
    assert!(out.contains("already suppressed: 2\n"), "{out}");
    assert_eq!(app.changes("", "gone@example.com").await.len(), history);
}

#[tokio::test]
async fn blocks_are_skipped_and_reported() {
    let mut app = spawn_app().await;
    let out = stdout(
        &import(
            &app.addr,
            &[
                "--format",
                "sendgrid",
                "--kind",
                "blocks",
                "tests/data/import/sendgrid_blocks.csv",
            ],
        )
        .await,
    );
    assert!(out.contains("imported: 0\n"), "{out}");
    assert!(out.contains("skipped: 2\n"), "{out}");
    assert!(out.contains("  line 2: a block"), "{out}");
    assert_eq!(
        app.status("", "blocked@example.com").await.state(),
        AddressState::Allowed
    );
}

#[tokio::test]
async fn an_unreachable_server_fails() {
    let output = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_suppressd"))
            .args([
                "import",
                "--addr",
                "127.0.0.1:1",
                "--format",
                "csv",
                "tests/data/import/generic.csv",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}
