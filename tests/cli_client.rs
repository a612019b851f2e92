//! The client commands as a user meets them: `check`, `export`, `status`, `history`,
//! `suppress`, `reactivate`, run as the binary against a real server started in-process.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use suppressd::config::ServeSettings;
use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use suppressd::grpc::proto::{self as pb, Outcome};
use suppressd::startup::Application;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A running server and its address as `host:port`.
struct Server {
    addr: String,
    dir: TempDir,
    client: SuppressionServiceClient<tonic::transport::Channel>,
    _stop: oneshot::Sender<()>,
}

async fn server() -> Server {
    server_with(|_, _| {}).await
}

/// A server whose settings `tweak` adjusts (given the test's directory).
async fn server_with(tweak: impl FnOnce(&mut ServeSettings, &Path)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut settings =
        ServeSettings::local("127.0.0.1:0".parse().unwrap(), dir.path().join("data"));
    tweak(&mut settings, dir.path());
    let app = Application::build(settings).await.unwrap();
    let addr = format!("127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = SuppressionServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Server {
        addr,
        dir,
        client,
        _stop: stop,
    }
}

impl Server {
    /// Reports a hard bounce (mailbox not found) of `address` in `tenant`.
    async fn hard_bounce(&mut self, tenant: &str, event_id: &str, address: &str) {
        self.client
            .report_send_result(pb::ReportSendResultRequest {
                tenant: tenant.into(),
                result: Some(pb::SendResult {
                    event_id: event_id.into(),
                    address: address.into(),
                    outcome: Outcome::HardBounce as i32,
                    smtp_response:
                        "550 5.1.1 The email account that you tried to reach does not exist".into(),
                    source: "crm-sync".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }

    /// Runs the binary with `args` and `--addr` of this server.
    async fn run(&self, args: &[&str]) -> Output {
        let mut full: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        full.push("--addr".into());
        full.push(self.addr.clone());
        run(full).await
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    }
}

/// Runs the binary off the async workers (the test server runs on them).
async fn run(args: Vec<String>) -> Output {
    run_with_token(args, None).await
}

/// Runs the binary with `SUPPRESSD_TOKEN` set to `token`, if any.
async fn run_with_token(args: Vec<String>, token: Option<&str>) -> Output {
    let token = token.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_suppressd"));
        if let Some(token) = token {
            command.env("SUPPRESSD_TOKEN", token);
        } else {
            command.env_remove("SUPPRESSD_TOKEN");
        }
        let mut child = command
            .args(&args)
            .env_remove("SUPPRESSD_ADDR")
            .env_remove("SUPPRESSD_TENANT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"").unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(path)).unwrap()
}

/// A CRM export as spreadsheets write it: a BOM, CRLF line ends, a quoted name with a comma,
/// the email column not first, and a row whose quoting is broken.
const CONTACTS: &[u8] = b"\xef\xbb\xbfname,Email,crm_id\r\n\
\"Doe, Jane\",jane@example.com,c-1\r\n\
Bounced,Gone@Example.com,c-2\r\n\
Typo,not-an-address,c-3\r\n\
Again,jane@example.com,c-4\r\n\
\"Broken \"quote\",x@example.com\r\n\
Fine,\"fine@example.org\",c-6\r\n";

#[tokio::test]
async fn check_writes_one_verdict_per_row_in_order_and_reports_the_broken_row_by_line() {
    let mut server = server().await;
    server.hard_bounce("", "e1", "gone@example.com").await;
    let input = server.file("contacts.csv", CONTACTS);
    let out = server.dir.path().join("verdicts.csv");
    let out = out.to_str().unwrap();

    let output = server
        .run(&["check", &input, "--id-column", "crm_id", "--out", out])
        .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows = csv_rows(&read(out));
    assert_eq!(
        rows[0],
        [
            "crm_id",
            "address",
            "decision",
            "reason",
            "since",
            "suggestion"
        ]
    );
    let decisions: Vec<(&str, &str, &str)> = rows[1..]
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(
        decisions,
        [
            ("c-1", "jane@example.com", "allow"),
            ("c-2", "Gone@Example.com", "block-suppressed"),
            ("c-3", "not-an-address", "block-invalid"),
            ("c-4", "jane@example.com", "duplicate"),
            ("c-6", "fine@example.org", "allow"),
        ]
    );
    assert_eq!(rows[2][3], "mailbox-not-found");
    assert!(rows[2][4].starts_with("20"), "since: {:?}", rows[2][4]);
    let err = stderr(&output);
    assert!(err.contains("line 6"), "{err}");
    assert!(err.contains("block-suppressed  1"), "{err}");
    assert!(stdout(&output).is_empty(), "verdicts went to --out");
}

#[tokio::test]
async fn only_blocked_keeps_the_rows_not_to_import_and_fail_on_blocked_exits_4() {
    let mut server = server().await;
    server.hard_bounce("", "e1", "gone@example.com").await;
    let input = server.file("contacts.csv", CONTACTS);

    let output = server
        .run(&["check", &input, "--only-blocked", "--fail-on-blocked"])
        .await;

    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let rows = csv_rows(&stdout(&output));
    assert_eq!(rows[0][0], "line", "no id column named: the line number");
    let kept: Vec<&str> = rows[1..].iter().map(|r| r[2].as_str()).collect();
    assert_eq!(kept, ["block-suppressed", "block-invalid", "duplicate"]);
    assert_eq!(rows[1][0], "3", "Gone@ is on line 3");
}

#[tokio::test]
async fn strict_stops_at_the_broken_row_and_a_missing_column_is_a_usage_error() {
    let server = server().await;
    let input = server.file("contacts.csv", CONTACTS);

    let strict = server.run(&["check", &input, "--strict"]).await;
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("line 6"), "{}", stderr(&strict));

    let missing = server.run(&["check", &input, "--column", "mail"]).await;
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("name, Email, crm_id"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn a_file_without_header_is_read_by_the_column_holding_addresses() {
    let mut server = server().await;
    server.hard_bounce("", "e1", "gone@example.com").await;
    let input = server.file("plain.csv", b"1,gone@example.com\n2,ok@example.com\n");

    let output = server.run(&["check", &input]).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows = csv_rows(&stdout(&output));
    assert_eq!(rows[1][..3], ["1", "gone@example.com", "block-suppressed"]);
    assert_eq!(rows[2][..3], ["2", "ok@example.com", "allow"]);

    // A byte order mark before the header does not hide the first column's name.
    let bom = server.file("bom.csv", b"\xef\xbb\xbfEmail,id\r\ngone@example.com,9\r\n");
    let output = server.run(&["check", &bom]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows = csv_rows(&stdout(&output));
    assert_eq!(rows[0][0], "id");
    assert_eq!(rows[1][..3], ["9", "gone@example.com", "block-suppressed"]);
}

#[tokio::test]
async fn many_batches_under_a_small_window_come_back_in_input_order() {
    let mut server = server().await;
    let mut file = String::from("id,email\n");
    for i in 0..2_500 {
        file.push_str(&format!("{i},user{i}@example.com\n"));
    }
    for i in (0..2_500).step_by(97) {
        server
            .hard_bounce("", &format!("e{i}"), &format!("user{i}@example.com"))
            .await;
    }
    let input = server.file("many.csv", file.as_bytes());

    let output = server
        .run(&["check", &input, "--batch-size", "100", "--window", "2"])
        .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows = csv_rows(&stdout(&output));
    assert_eq!(rows.len(), 2_501);
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[0], i.to_string());
        let expected = if i % 97 == 0 {
            "block-suppressed"
        } else {
            "allow"
        };
        assert_eq!(row[2], expected, "row {i}");
    }
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("c.csv");
    std::fs::write(&input, "email\na@example.com\n").unwrap();
    let output = run(vec![
        "check".into(),
        input.to_str().unwrap().into(),
        "--addr".into(),
        "127.0.0.1:1".into(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot connect"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn export_writes_every_suppression_of_the_tenant_as_csv_or_json_lines() {
    let mut server = server().await;
    server.hard_bounce("acme", "e1", "gone@example.com").await;
    server.hard_bounce("acme", "e2", "lost@example.com").await;
    server
        .hard_bounce("other", "e3", "theirs@example.com")
        .await;
    let manual = server
        .run(&[
            "suppress",
            "vip@example.com",
            "--note",
            "ticket 7",
            "--tenant",
            "acme",
        ])
        .await;
    assert!(manual.status.success(), "{}", stderr(&manual));

    let csv_out = server.run(&["export", "--tenant", "acme"]).await;
    assert!(csv_out.status.success(), "{}", stderr(&csv_out));
    let rows = csv_rows(&stdout(&csv_out));
    assert_eq!(
        rows[0],
        [
            "address",
            "reason",
            "since",
            "source",
            "smtp_response",
            "event_id"
        ]
    );
    let mut addresses: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    addresses.sort();
    assert_eq!(
        addresses,
        ["gone@example.com", "lost@example.com", "vip@example.com"]
    );
    let gone = rows.iter().find(|r| r[0] == "gone@example.com").unwrap();
    assert_eq!(gone[1], "mailbox-not-found");
    assert_eq!(gone[3], "crm-sync");
    assert!(gone[4].contains("does not exist"));
    assert_eq!(gone[5], "e1");

    let jsonl = server
        .run(&[
            "export",
            "--tenant",
            "acme",
            "--format",
            "jsonl",
            "--reason",
            "BOUNCE_REASON_MANUAL",
            "--since",
            "2000-01-01T00:00:00Z",
        ])
        .await;
    assert!(jsonl.status.success(), "{}", stderr(&jsonl));
    let lines: Vec<serde_json::Value> = stdout(&jsonl)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert!(
        stdout(&jsonl).starts_with("{\"address\":\"vip@example.com\",\"reason\":\"manual\""),
        "keys in column order: {}",
        stdout(&jsonl)
    );
    assert_eq!(lines[0]["address"], "vip@example.com");
    assert_eq!(lines[0]["reason"], "manual");
    assert_eq!(lines[0]["smtp_response"], "ticket 7");

    let future = server
        .run(&["export", "--tenant", "acme", "--since", "2999-01-01"])
        .await;
    assert_eq!(csv_rows(&stdout(&future)).len(), 1, "only the header");

    let bad = server.run(&["export", "--reason", "bounced-ish"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("mailbox-not-found"),
        "{}",
        stderr(&bad)
    );
}

#[tokio::test]
async fn operators_suppress_see_status_and_history_and_reactivate_with_json() {
    let server = server().await;

    let suppressed = server
        .run(&[
            "suppress",
            "Ann@Example.com",
            "--note",
            "asked by phone",
            "--json",
        ])
        .await;
    assert!(suppressed.status.success(), "{}", stderr(&suppressed));
    let json: serde_json::Value = serde_json::from_str(&stdout(&suppressed)).unwrap();
    assert_eq!(json["status"]["state"], "suppressed");
    assert_eq!(json["status"]["address"], "ann@example.com");
    assert_eq!(json["already_suppressed"], false);

    let status = server
        .run(&["status", "ann@example.com", "bob@example.com", "--json"])
        .await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(json[0]["state"], "suppressed");
    assert_eq!(json[0]["suppression"]["reason"], "manual");
    assert_eq!(json[0]["suppression"]["smtp_response"], "asked by phone");
    assert_eq!(json[1]["state"], "allowed");

    let table = server.run(&["status", "ann@example.com"]).await;
    let text = stdout(&table);
    assert!(text.starts_with("address"), "{text}");
    assert!(
        text.contains("ann@example.com  suppressed  manual"),
        "{text}"
    );

    let no_reason = server.run(&["reactivate", "ann@example.com"]).await;
    assert_eq!(
        no_reason.status.code(),
        Some(2),
        "--justification is required"
    );

    let lifted = server
        .run(&[
            "reactivate",
            "ann@example.com",
            "--justification",
            "confirmed by the customer",
            "--json",
        ])
        .await;
    assert!(lifted.status.success(), "{}", stderr(&lifted));
    let json: serde_json::Value = serde_json::from_str(&stdout(&lifted)).unwrap();
    assert_eq!(json["status"]["state"], "allowed");
    assert_eq!(json["lifted"]["reason"], "manual");

    let history = server.run(&["history", "ann@example.com", "--json"]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&history)).unwrap();
    let kinds: Vec<&str> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reactivated", "manually-suppressed"]);
    assert_eq!(json["entries"][0]["note"], "confirmed by the customer");

    let again = server
        .run(&["reactivate", "ann@example.com", "--justification", "x"])
        .await;
    assert_eq!(
        again.status.code(),
        Some(3),
        "not suppressed: the server refuses"
    );
}

#[tokio::test]
async fn check_help_documents_the_exit_codes() {
    let output = run(vec!["check".into(), "--help".into()]).await;
    assert!(output.status.success());
    let help = stdout(&output);
    assert!(help.contains("4 with --fail-on-blocked"), "{help}");
    assert!(help.contains("3 the server"), "{help}");
}

#[tokio::test]
async fn the_token_comes_from_suppressd_token_and_without_it_the_server_refuses() {
    use sha2::Digest as _;
    let token = "cli-test-token";
    let hash = format!("{:x}", sha2::Sha256::digest(token.as_bytes()));
    let server = server_with(|settings, dir| {
        let path = dir.join("auth.toml");
        std::fs::write(
            &path,
            format!(
                "[[principal]]\nname = \"ops\"\ntoken_sha256 = \"{hash}\"\ntenants = [\"acme\"]\nroles = [\"reader\"]\n"
            ),
        )
        .unwrap();
        settings.auth_file = Some(path);
    })
    .await;
    let args = |tenant: &str| -> Vec<String> {
        [
            "status",
            "a@example.com",
            "--json",
            "--tenant",
            tenant,
            "--addr",
            &server.addr,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };

    let allowed = run_with_token(args("acme"), Some(token)).await;
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    let json: serde_json::Value = serde_json::from_str(&stdout(&allowed)).unwrap();
    assert_eq!(json[0]["state"], "allowed");

    let anonymous = run_with_token(args("acme"), None).await;
    assert_eq!(anonymous.status.code(), Some(3), "{}", stderr(&anonymous));
    assert!(
        stderr(&anonymous).contains("needs credentials"),
        "{}",
        stderr(&anonymous)
    );

    let foreign = run_with_token(args("globex"), Some(token)).await;
    assert_eq!(foreign.status.code(), Some(3), "{}", stderr(&foreign));
}
