//! The command line as a user meets it: `suppressd token new|hash`, and `suppressd healthcheck`
//! against real servers in plaintext, over TLS and over mTLS. Certificates are made per test.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use suppressd::startup::SERVICE_NAME;
use suppressd::tls::{TlsAcceptor, TlsFiles};
use tempfile::TempDir;
use test_ca::TestCa;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;

#[path = "support/test_ca.rs"]
mod test_ca;

/// Runs the binary with `args`, feeding `stdin`, off the async workers (a test server may be
/// running on them).
async fn suppressd(args: &[&str], stdin: &[u8]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_suppressd"))
            .args(&args)
            .env_remove("SUPPRESSD_HEALTHCHECK_ADDR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&stdin).unwrap();
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

/// The auth file's entry, refusing any key it does not know.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    principal: Vec<Principal>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Principal {
    name: String,
    token_sha256: String,
    tenants: Vec<String>,
    roles: Vec<String>,
}

/// The token (first line) and the parsed block of a `token new` run.
fn token_and_block(output: &Output) -> (String, AuthFile) {
    assert!(output.status.success(), "{}", stderr(output));
    let out = stdout(output);
    let (token, block) = out.split_once('\n').unwrap();
    (token.to_string(), toml::from_str(block).unwrap())
}

#[tokio::test]
async fn token_new_prints_a_fresh_token_once_and_the_principal_block_with_its_hash() {
    let output = suppressd(
        &[
            "token", "new", "--name", "crm-sync", "--tenant", "acme", "--tenant", "globex",
            "--role", "importer", "--role", "reader",
        ],
        b"",
    )
    .await;

    let (token, file) = token_and_block(&output);
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token)
        .expect("the token is URL-safe base64 without padding");
    assert!(raw.len() * 8 >= 256, "{} bits", raw.len() * 8);
    assert_eq!(stdout(&output).matches(&token).count(), 1);
    assert!(!stderr(&output).contains(&token), "no secret on stderr");

    assert_eq!(file.principal.len(), 1);
    let p = &file.principal[0];
    assert_eq!(p.name, "crm-sync");
    assert_eq!(p.tenants, ["acme", "globex"]);
    assert_eq!(p.roles, ["importer", "reader"]);
    assert_eq!(p.token_sha256.len(), 64);
    assert!(p
        .token_sha256
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

#[tokio::test]
async fn the_hash_in_the_block_is_what_token_hash_prints_for_the_token() {
    let output = suppressd(
        &[
            "token", "new", "--name", "mta", "--tenant", "*", "--role", "reporter",
        ],
        b"",
    )
    .await;
    let (token, file) = token_and_block(&output);

    let hashed = suppressd(&["token", "hash"], format!("{token}\n").as_bytes()).await;

    assert!(hashed.status.success(), "{}", stderr(&hashed));
    assert_eq!(
        stdout(&hashed),
        format!("{}\n", file.principal[0].token_sha256)
    );
    assert_eq!(file.principal[0].tenants, ["*"]);
}

#[tokio::test]
async fn token_hash_prints_the_sha256_of_the_line_on_stdin() {
    let hashed = suppressd(&["token", "hash"], b"test\n").await;
    assert_eq!(
        stdout(&hashed),
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
    );

    let empty = suppressd(&["token", "hash"], b"\n").await;
    assert_eq!(empty.status.code(), Some(2));
    assert!(stderr(&empty).contains("no token"), "{}", stderr(&empty));
}

#[tokio::test]
async fn two_runs_give_different_tokens() {
    let args = [
        "token", "new", "--name", "a", "--tenant", "acme", "--role", "reader",
    ];
    let mut tokens = BTreeSet::new();
    for _ in 0..2 {
        let (token, _) = token_and_block(&suppressd(&args, b"").await);
        tokens.insert(token);
    }
    assert_eq!(tokens.len(), 2);
}

#[tokio::test]
async fn token_new_refuses_bad_input_with_exit_code_2_and_says_why() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--name", "a", "--tenant", "acme", "--role", "superuser"],
            "superuser",
        ),
        (
            &["--name", "a", "--tenant", "Acme Corp", "--role", "reader"],
            "tenant must match",
        ),
        (
            &["--name", "a", "--tenant", "", "--role", "reader"],
            "tenant",
        ),
        (
            &["--name", " ", "--tenant", "acme", "--role", "reader"],
            "name",
        ),
        (
            &[
                "--name", "a", "--tenant", "*", "--tenant", "acme", "--role", "reader",
            ],
            "every tenant",
        ),
        (&["--name", "a", "--tenant", "acme"], "--role"),
    ];
    for (args, says) in cases {
        let mut full = vec!["token", "new"];
        full.extend_from_slice(args);
        let output = suppressd(&full, b"").await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).is_empty(), "{args:?}: no token printed");
    }
}

/// A health service saying SERVING for the suppression service, on 127.0.0.1:0, in plaintext
/// or over `tls`. Stops when the test's runtime ends.
async fn health_server(tls: Option<TlsAcceptor>) -> SocketAddr {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Server::builder().add_service(service);
    tokio::spawn(async move {
        let _keep = reporter;
        match tls {
            Some(tls) => router.serve_with_incoming(tls.incoming(listener)).await,
            None => {
                router
                    .serve_with_incoming(TcpIncoming::from(listener))
                    .await
            }
        }
    });
    addr
}

/// A TLS server with a certificate for `names` from a fresh CA (and `client_ca` for mTLS);
/// the CA file is in `dir`.
async fn tls_server(
    dir: &TempDir,
    names: &[&str],
    client_ca: Option<&TestCa>,
) -> (SocketAddr, PathBuf) {
    let ca = TestCa::new("server ca");
    let (cert, key) = ca.write_leaf(dir.path(), "server", names);
    let acceptor = TlsAcceptor::load(TlsFiles {
        cert,
        key,
        client_ca: client_ca.map(|c| c.write(dir.path(), "clients.pem")),
    })
    .unwrap();
    let addr = health_server(Some(acceptor)).await;
    (addr, ca.write(dir.path(), "server-ca.pem"))
}

#[tokio::test]
async fn healthcheck_accepts_host_and_port() {
    let addr = health_server(None).await;

    let output = suppressd(&["healthcheck", "--addr", &addr.to_string()], b"").await;

    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "SERVING\n");
}

#[tokio::test]
async fn healthcheck_prints_its_error_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);

    let output = suppressd(
        &["healthcheck", "--addr", &addr, "--timeout-secs", "1"],
        b"",
    )
    .await;

    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(err.matches(&addr).count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn healthcheck_over_tls_passes_when_it_trusts_the_servers_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, ca) = tls_server(&dir, &["localhost", "127.0.0.1"], None).await;
    let ca = ca.to_str().unwrap();

    for target in [
        addr.to_string(),
        format!("https://localhost:{}", addr.port()),
    ] {
        let output = suppressd(&["healthcheck", "--addr", &target, "--tls-ca", ca], b"").await;
        assert!(output.status.success(), "{target}: {}", stderr(&output));
        assert_eq!(stdout(&output), "SERVING\n");
    }

    let other = TestCa::new("other ca").write(dir.path(), "other-ca.pem");
    let untrusted = suppressd(
        &[
            "healthcheck",
            "--addr",
            &addr.to_string(),
            "--tls-ca",
            other.to_str().unwrap(),
        ],
        b"",
    )
    .await;
    assert_eq!(untrusted.status.code(), Some(1));

    let plaintext = suppressd(&["healthcheck", "--addr", &addr.to_string()], b"").await;
    assert_eq!(plaintext.status.code(), Some(1));
}

#[tokio::test]
async fn healthcheck_checks_the_name_given_by_tls_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, ca) = tls_server(&dir, &["suppressd.internal"], None).await;
    let (addr, ca) = (addr.to_string(), ca.to_str().unwrap().to_string());

    let wrong_name = suppressd(&["healthcheck", "--addr", &addr, "--tls-ca", &ca], b"").await;
    assert_eq!(wrong_name.status.code(), Some(1));

    let named = suppressd(
        &[
            "healthcheck",
            "--addr",
            &addr,
            "--tls-ca",
            &ca,
            "--tls-server-name",
            "suppressd.internal",
        ],
        b"",
    )
    .await;
    assert!(named.status.success(), "{}", stderr(&named));
}

#[tokio::test]
async fn healthcheck_over_mtls_needs_a_client_certificate_from_the_servers_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let clients = TestCa::new("client ca");
    let (addr, ca) = tls_server(&dir, &["127.0.0.1"], Some(&clients)).await;
    let (addr, ca) = (addr.to_string(), ca.to_str().unwrap().to_string());
    let (cert, key) = clients.write_leaf(dir.path(), "probe", &["probe.internal"]);
    let (stranger_cert, stranger_key) =
        TestCa::new("stranger ca").write_leaf(dir.path(), "stranger", &["probe.internal"]);

    let without = suppressd(&["healthcheck", "--addr", &addr, "--tls-ca", &ca], b"").await;
    assert_eq!(without.status.code(), Some(1));

    let foreign = suppressd(
        &[
            "healthcheck",
            "--addr",
            &addr,
            "--tls-ca",
            &ca,
            "--tls-cert",
            stranger_cert.to_str().unwrap(),
            "--tls-key",
            stranger_key.to_str().unwrap(),
        ],
        b"",
    )
    .await;
    assert_eq!(foreign.status.code(), Some(1));

    let with = suppressd(
        &[
            "healthcheck",
            "--addr",
            &addr,
            "--tls-ca",
            &ca,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        b"",
    )
    .await;
    assert!(with.status.success(), "{}", stderr(&with));
}

#[tokio::test]
async fn healthcheck_explains_a_scheme_that_disagrees_with_tls_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ca").write(dir.path(), "ca.pem");

    let https_without_ca = suppressd(&["healthcheck", "--addr", "https://127.0.0.1:1"], b"").await;
    assert_eq!(https_without_ca.status.code(), Some(1));
    assert!(stderr(&https_without_ca).contains("--tls-ca"));

    let http_with_ca = suppressd(
        &[
            "healthcheck",
            "--addr",
            "http://127.0.0.1:1",
            "--tls-ca",
            ca.to_str().unwrap(),
        ],
        b"",
    )
    .await;
    assert_eq!(http_with_ca.status.code(), Some(1));
    assert!(stderr(&http_with_ca).contains("plaintext"));

    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let bad_ca = suppressd(
        &[
            "healthcheck",
            "--addr",
            "127.0.0.1:1",
            "--tls-ca",
            not_pem.to_str().unwrap(),
        ],
        b"",
    )
    .await;
    assert_eq!(bad_ca.status.code(), Some(1));
    assert!(stderr(&bad_ca).contains("not.pem"), "{}", stderr(&bad_ca));

    let cert_without_key = suppressd(
        &[
            "healthcheck",
            "--tls-ca",
            ca.to_str().unwrap(),
            "--tls-cert",
            ca.to_str().unwrap(),
        ],
        b"",
    )
    .await;
    assert_eq!(cert_without_key.status.code(), Some(2));
    assert!(stderr(&cert_without_key).contains("--tls-key"));
}
