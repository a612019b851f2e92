//! The `suppressd` binary as an operator runs it, for the tests of its commands.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs the binary with `args`, off the async workers (the test servers run on them), with no
/// server address, token or database URL taken from the environment.
pub async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_suppressd"))
            .args(&args)
            .env_remove("SUPPRESSD_ADDR")
            .env_remove("SUPPRESSD_TOKEN")
            .env_remove("SUPPRESSD_DATABASE_URL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The "  kind: count" lines a command prints.
pub fn counts(output: &Output) -> Vec<String> {
    text(&output.stdout)
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(str::to_string)
        .collect()
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
