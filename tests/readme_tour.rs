//! README's five-minute tour, run as written: every `$ ` command of the console blocks between
//! `<!-- tour:start -->` and `<!-- tour:end -->`, through bash, with the `suppressd` binary on
//! the `PATH`, and what each prints compared with the lines under it. In an expected line `[..]`
//! stands for any text (a time, a figure); a line `...` for any number of lines. A command that
//! ends with `&` is the server: it runs in the background until the tour ends.
//!
//! The server takes a free port and a temporary data directory (`SUPPRESSD_LISTEN`,
//! `SUPPRESSD_DATA_DIR`, and `SUPPRESSD_ADDR` for the client commands); the README's metrics
//! address `127.0.0.1:9464` is replaced by a free port.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const METRICS_IN_README: &str = "127.0.0.1:9464";

#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The tour's steps, in order.
fn steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find("<!-- tour:start -->")
        .expect("README has a <!-- tour:start --> marker");
    let end = readme
        .find("<!-- tour:end -->")
        .expect("README has a <!-- tour:end --> marker");
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for line in readme[start..end].lines() {
        if !in_console {
            in_console = line.trim_end() == "```console";
            continue;
        }
        if line.trim_end() == "```" {
            in_console = false;
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
            });
        } else {
            steps
                .last_mut()
                .expect("a console block starts with a `$ ` command")
                .expected
                .push(line.trim_end().to_string());
        }
    }
    steps
}

/// Whether `actual` matches `expected`, where `[..]` stands for any text.
fn line_matches(expected: &str, actual: &str) -> bool {
    let pieces: Vec<&str> = expected.split("[..]").collect();
    if pieces.len() == 1 {
        return expected == actual;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !actual.starts_with(first) || actual.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &actual[first.len()..];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether the lines of `actual` match the `expected` ones, where a line `...` stands for any
/// number of lines.
fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((e, rest)) => {
            !actual.is_empty() && line_matches(e, actual[0]) && lines_match(rest, &actual[1..])
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The background server, stopped when the tour ends (also when it fails).
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bash(command: &str, dir: &Path, env: &[(&str, String)]) -> Command {
    let mut c = Command::new("bash");
    c.arg("-o").arg("pipefail").arg("-c").arg(command);
    c.current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.env_remove("SUPPRESSD_TOKEN")
        .env_remove("SUPPRESSD_TENANT");
    c
}

/// Waits until the server answers its health service.
fn wait_until_serving(dir: &Path, env: &[(&str, String)], server: &mut Background) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = server.0.try_wait() {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            panic!("the tour's server exited with {status}:\n{log}");
        }
        let ok = bash("suppressd healthcheck --addr \"$SUPPRESSD_ADDR\"", dir, env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the tour's server did not answer its health service within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_command_of_the_readme_tour_prints_what_the_readme_shows() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let steps = steps(&readme);
    assert!(
        steps.len() >= 6,
        "the tour has its steps (found {})",
        steps.len()
    );
    assert!(
        steps[0].command.starts_with("suppressd serve") && steps[0].command.ends_with('&'),
        "the tour starts the server in the background: {:?}",
        steps[0].command
    );

    let dir = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_suppressd")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let env = [
        ("PATH", path),
        ("SUPPRESSD_LISTEN", addr.clone()),
        ("SUPPRESSD_ADDR", addr),
        (
            "SUPPRESSD_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
    ];

    let mut server: Option<Background> = None;
    for step in &steps {
        let command = step.command.replace(METRICS_IN_README, &metrics);
        if let Some(command) = command.strip_suffix('&') {
            assert!(server.is_none(), "the tour starts one server");
            assert!(
                step.expected.is_empty(),
                "a background command shows no output"
            );
            let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
            let child = bash(&format!("exec {}", command.trim_end()), dir.path(), &env)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut background = Background(child);
            wait_until_serving(dir.path(), &env, &mut background);
            server = Some(background);
            continue;
        }
        let output = bash(&format!("{{ {command}\n}} 2>&1"), dir.path(), &env)
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        let actual: Vec<&str> = printed.lines().map(str::trim_end).collect();
        assert!(
            output.status.success(),
            "`{}` failed ({}):\n{printed}",
            step.command,
            output.status
        );
        assert!(
            lines_match(&step.expected, &actual),
            "`{}` printed:\n{printed}\nREADME shows:\n{}",
            step.command,
            step.expected.join("\n")
        );
    }
    assert!(server.is_some(), "the tour started its server");
}

#[test]
fn expected_output_patterns_match_as_documented() {
    assert!(line_matches(
        "since [..] source",
        "since 2026-12-05T05:41:48Z source"
    ));
    assert!(line_matches("[..]", ""));
    assert!(line_matches("a[..]b[..]c", "a1b2c"));
    assert!(!line_matches("a[..]b[..]c", "a1c2b"));
    assert!(!line_matches("ab[..]ba", "aba"));
    assert!(!line_matches("exact", "exact "));
    let lines = |s: &[&str]| s.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert!(lines_match(
        &lines(&["a", "...", "d"]),
        &["a", "b", "c", "d"]
    ));
    assert!(lines_match(&lines(&["a", "..."]), &["a"]));
    assert!(!lines_match(&lines(&["a", "b"]), &["a", "b", "c"]));
    assert!(!lines_match(&lines(&["a", "...", "d"]), &["a", "b", "c"]));
}
