//! Trust: who may call what. Principals from an auth file, bearer tokens and client
//! certificates, roles per RPC, tenants per principal, the audit actor, token rotation, TLS and
//! mTLS, and the refusal to serve the network without authentication.

use std::path::{Path, PathBuf};
use std::time::Duration;

use suppressd::auth::token_sha256;
use suppressd::grpc::proto::suppression_admin_service_client::SuppressionAdminServiceClient;
use suppressd::grpc::proto::{self as pb, history_entry::Entry, Outcome};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::helpers::*;
use crate::test_ca::TestCa;

/// One principal per role, each with the token `t-<role>`, for tenant `acme` only; and `ops`,
/// an admin of every tenant.
fn principals() -> String {
    let mut out = String::new();
    for role in ["reporter", "reader", "importer", "operator"] {
        out.push_str(&format!(
            "[[principal]]\nname = \"{role}-svc\"\ntoken_sha256 = \"{}\"\ntenants = [\"acme\"]\nroles = [\"{role}\"]\n\n",
            token_sha256(&format!("t-{role}"))
        ));
    }
    out.push_str(&format!(
        "[[principal]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\ntenants = [\"*\"]\nroles = [\"admin\"]\n\n",
        token_sha256("t-admin")
    ));
    out
}

/// A server with `auth` as its auth file (written into `dir`).
async fn spawn_with_auth(dir: &Path, auth: &str) -> (TestApp, PathBuf) {
    let path = dir.join("auth.toml");
    std::fs::write(&path, auth).unwrap();
    let file = path.clone();
    let app = spawn_app_with(move |s| s.auth_file = Some(file)).await;
    (app, path)
}

/// `message` with `authorization: Bearer <token>` (and `x-caller-id` when given).
fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

fn report(tenant: &str, id: &str, address: &str) -> pb::ReportSendResultRequest {
    pb::ReportSendResultRequest {
        tenant: tenant.into(),
        result: Some(result(id, address, Outcome::Bounce, USER_UNKNOWN)),
    }
}

fn status(tenant: &str, address: &str) -> pb::GetSuppressionStatusRequest {
    pb::GetSuppressionStatusRequest {
        tenant: tenant.into(),
        address: address.into(),
        ..Default::default()
    }
}

/// The code of one call of each role's group, made with `token`.
async fn codes_for(app: &TestApp, token: &str) -> [Code; 5] {
    let channel = Endpoint::from_shared(app.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = Client::new(channel.clone());
    let mut admin = SuppressionAdminServiceClient::new(channel);
    let code =
        |r: Result<_, tonic::Status>| r.map_or_else(|e: tonic::Status| e.code(), |_| Code::Ok);
    let reported = code(
        client
            .report_send_result(with_token(
                report("acme", &format!("ev-{token}"), "a@x.com"),
                token,
            ))
            .await
            .map(|_| ()),
    );
    let read = code(
        client
            .get_suppression_status(with_token(status("acme", "a@x.com"), token))
            .await
            .map(|_| ()),
    );
    let imported = code(
        match client
            .check_import(with_token(
                tokio_stream::iter(vec![pb::CheckImportRequest {
                    tenant: "acme".into(),
                    address_lines: "a@x.com\n".into(),
                    ..Default::default()
                }]),
                token,
            ))
            .await
        {
            Ok(stream) => stream.into_inner().message().await.map(|_| ()),
            Err(e) => Err(e),
        },
    );
    let operated = code(
        client
            .suppress(with_token(
                pb::SuppressRequest {
                    tenant: "acme".into(),
                    address: format!("op-{token}@x.com"),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(|_| ()),
    );
    let administered = code(
        admin
            .reclassify(with_token(
                pb::ReclassifyRequest {
                    tenant: "acme".into(),
                    dry_run: true,
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(|_| ()),
    );
    [reported, read, imported, operated, administered]
}

#[tokio::test]
async fn each_role_may_call_its_rpcs_and_is_refused_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = spawn_with_auth(dir.path(), &principals()).await;
    let (ok, no) = (Code::Ok, Code::PermissionDenied);
    let table = [
        ("t-reporter", [ok, no, no, no, no]),
        ("t-reader", [no, ok, no, no, no]),
        ("t-importer", [no, no, ok, no, no]),
        ("t-operator", [no, no, no, ok, no]),
        ("t-admin", [ok, ok, ok, ok, ok]),
    ];
    for (token, expected) in table {
        assert_eq!(codes_for(&app, token).await, expected, "{token}");
    }
}

#[tokio::test]
async fn calls_without_valid_credentials_are_unauthenticated_and_never_echo_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut app, _) = spawn_with_auth(dir.path(), &principals()).await;
    let err = app
        .client
        .get_suppression_status(status("acme", "a@x.com"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("authorization: Bearer"),
        "{}",
        err.message()
    );

    let err = app
        .client
        .get_suppression_status(with_token(
            status("acme", "a@x.com"),
            "not-a-known-token-123",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(!err.message().contains("not-a-known-token-123"));

    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "t-admin"] {
        let mut request = Request::new(status("acme", "a@x.com"));
        request
            .metadata_mut()
            .insert("authorization", MetadataValue::try_from(header).unwrap());
        let err = app
            .client
            .get_suppression_status(request)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{header:?}");
    }
}

#[tokio::test]
async fn health_and_reflection_need_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = spawn_with_auth(dir.path(), &principals()).await;
    let channel = Endpoint::from_shared(app.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: suppressd::startup::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    assert!(answers.message().await.unwrap().is_some());
}

#[tokio::test]
async fn a_foreign_tenant_is_permission_denied_and_nothing_of_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut app, _) = spawn_with_auth(dir.path(), &principals()).await;
    // Unary.
    let err = app
        .client
        .report_send_result(with_token(report("globex", "g-1", "g@x.com"), "t-reporter"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("globex"), "{}", err.message());
    // Batch.
    let err = app
        .client
        .batch_get_suppression_status(with_token(
            pb::BatchGetSuppressionStatusRequest {
                tenant: "globex".into(),
                addresses: vec!["g@x.com".into()],
                ..Default::default()
            },
            "t-reader",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // The second message of an ingest stream.
    let messages = vec![
        pb::ReportSendResultsRequest {
            tenant: "acme".into(),
            results: vec![result("s-1", "mine@x.com", Outcome::Bounce, USER_UNKNOWN)],
        },
        pb::ReportSendResultsRequest {
            tenant: "globex".into(),
            results: vec![result("s-2", "theirs@x.com", Outcome::Bounce, USER_UNKNOWN)],
        },
    ];
    let err = app
        .client
        .report_send_results(with_token(tokio_stream::iter(messages), "t-reporter"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // The second message of an import stream.
    let mut verdicts = app
        .client
        .check_import(with_token(
            tokio_stream::iter(vec![
                pb::CheckImportRequest {
                    tenant: "acme".into(),
                    address_lines: "a@x.com\n".into(),
                    ..Default::default()
                },
                pb::CheckImportRequest {
                    tenant: "globex".into(),
                    address_lines: "b@x.com\n".into(),
                    ..Default::default()
                },
            ]),
            "t-importer",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(verdicts.message().await.unwrap().is_some());
    let err = verdicts.message().await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Nothing of the foreign tenant was written; the own tenant's result was.
    let theirs = app
        .client
        .get_suppression_status(with_token(status("globex", "theirs@x.com"), "t-admin"))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(theirs.state(), pb::AddressState::Allowed);
    let g = app
        .client
        .get_suppression_status(with_token(status("globex", "g@x.com"), "t-admin"))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(g.state(), pb::AddressState::Allowed);
}

#[tokio::test]
async fn the_audit_actor_is_the_principal_even_when_x_caller_id_names_someone_else() {
    let dir = tempfile::tempdir().unwrap();
    let (mut app, _) = spawn_with_auth(dir.path(), &principals()).await;
    let mut request = with_token(
        pb::SuppressRequest {
            tenant: "acme".into(),
            address: "optout@x.com".into(),
            note: "ticket 1".into(),
            ..Default::default()
        },
        "t-operator",
    );
    request
        .metadata_mut()
        .insert("x-caller-id", MetadataValue::from_static("someone-else"));
    app.client.suppress(request).await.unwrap();
    let history = app
        .client
        .get_address_history(with_token(
            pb::GetAddressHistoryRequest {
                tenant: "acme".into(),
                address: "optout@x.com".into(),
                ..Default::default()
            },
            "t-admin",
        ))
        .await
        .unwrap()
        .into_inner();
    let Some(Entry::StateChange(change)) = history.entries[0].entry.clone() else {
        panic!("a state change first: {history:?}");
    };
    assert_eq!(change.actor, "operator-svc");
    assert_eq!(change.on_behalf_of, "someone-else");
}

#[tokio::test]
async fn a_rotated_token_is_refused_and_the_new_one_works_without_a_restart_or_a_dropped_stream() {
    let dir = tempfile::tempdir().unwrap();
    let one = |token: &str| {
        format!(
            "[[principal]]\nname = \"crm\"\ntoken_sha256 = \"{}\"\ntenants = [\"*\"]\nroles = [\"importer\", \"reader\"]\n",
            token_sha256(token)
        )
    };
    let (mut app, path) = spawn_with_auth(dir.path(), &one("old-token")).await;
    // An import stream opened with the old token stays open across the rotation.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let batch = |line: &str| pb::CheckImportRequest {
        tenant: "acme".into(),
        address_lines: format!("{line}\n"),
        ..Default::default()
    };
    tx.send(batch("before@x.com")).await.unwrap();
    let mut verdicts = app
        .client
        .check_import(with_token(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            "old-token",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(verdicts.message().await.unwrap().is_some());

    std::fs::write(&path, one("new-token")).unwrap();
    // A handler of this process's own, so that the signal can never meet the default action
    // (ending the process) whatever the servers of other tests are doing.
    let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let pid = std::process::id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    // The reload runs on the server's task; wait (bounded) until the old token is refused.
    let mut refused = false;
    for _ in 0..200 {
        let r = app
            .client
            .get_suppression_status(with_token(status("acme", "a@x.com"), "old-token"))
            .await;
        if r.is_err_and(|e| e.code() == Code::Unauthenticated) {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(refused, "the old token still works");
    app.client
        .get_suppression_status(with_token(status("acme", "a@x.com"), "new-token"))
        .await
        .expect("the new token works");
    tx.send(batch("after@x.com")).await.unwrap();
    let after = verdicts
        .message()
        .await
        .expect("the open stream goes on")
        .unwrap();
    assert_eq!(after.batch_index, 1);
}

#[tokio::test]
async fn a_non_loopback_address_without_authentication_is_refused_unless_insecure_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    settings.listen = "0.0.0.0:0".parse().unwrap();
    let err = suppressd::startup::Application::build(settings.clone())
        .await
        .err()
        .expect("refused");
    let message = format!("{err:#}");
    assert!(message.contains("--auth-file"), "{message}");
    assert!(message.contains("--insecure-no-auth"), "{message}");
    assert!(!settings.data_dir.exists(), "nothing was opened or created");
    settings.insecure_no_auth = true;
    let app = suppressd::startup::Application::build(settings)
        .await
        .unwrap();
    drop(app);
}

/// A server over TLS with `auth`, and its CA; with `client_ca`, clients need certificates.
async fn spawn_tls(dir: &Path, auth: &str, client_ca: Option<&TestCa>) -> (TestApp, TestCa) {
    let ca = TestCa::new("suppressd test CA");
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
    let write = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let (cert, key) = (write("server.pem", &cert), write("server.key", &key));
    let auth_file = write("auth.toml", auth);
    let client_ca = client_ca.map(|c| write("clients.pem", &c.pem));
    let app = spawn_app_with(move |s| {
        s.auth_file = Some(auth_file);
        s.tls_cert = Some(cert);
        s.tls_key = Some(key);
        s.tls_client_ca = client_ca;
    })
    .await;
    (app, ca)
}

async fn tls_channel(
    app: &TestApp,
    ca: &TestCa,
    identity: Option<(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let url = app.addr.replace("http://", "https://");
    Endpoint::from_shared(url)?.tls_config(tls)?.connect().await
}

#[tokio::test]
async fn over_tls_a_client_trusting_the_ca_is_served_and_plaintext_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (app, ca) = spawn_tls(dir.path(), &principals(), None).await;
    let channel = tls_channel(&app, &ca, None).await.unwrap();
    Client::new(channel)
        .get_suppression_status(with_token(status("acme", "a@x.com"), "t-reader"))
        .await
        .expect("served over TLS");
    let plain = Endpoint::from_shared(app.addr.clone())
        .unwrap()
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => Client::new(channel)
            .get_suppression_status(with_token(status("acme", "a@x.com"), "t-reader"))
            .await
            .is_err(),
    };
    assert!(refused, "plaintext must not reach a TLS port");
}

#[tokio::test]
async fn with_mtls_only_certificates_of_the_client_ca_get_in_and_their_subject_picks_the_principal()
{
    let dir = tempfile::tempdir().unwrap();
    let clients = TestCa::new("client CA");
    let auth = format!(
        "{}[[principal]]\nname = \"mta-eu\"\nclient_cert_subject = \"CN=mta-eu.internal\"\ntenants = [\"*\"]\nroles = [\"reporter\"]\n",
        principals()
    );
    let (app, ca) = spawn_tls(dir.path(), &auth, Some(&clients)).await;
    let call = |channel: Channel| async move {
        let mut client = Client::new(channel);
        let reported = client
            .report_send_result(report("acme", "m-1", "m@x.com"))
            .await
            .map(|_| ());
        let read = client
            .get_suppression_status(status("acme", "m@x.com"))
            .await
            .map(|_| ());
        (reported, read)
    };

    // No certificate: refused at the handshake (or unauthenticated).
    if let Ok(channel) = tls_channel(&app, &ca, None).await {
        let (reported, _) = call(channel).await;
        assert!(reported.is_err());
    }
    // A certificate from another CA: refused.
    let stranger = TestCa::new("another CA").leaf(&["mta-eu.internal"]);
    if let Ok(channel) = tls_channel(&app, &ca, Some(stranger)).await {
        let (reported, _) = call(channel).await;
        assert!(reported.is_err());
    }
    // A certificate of the client CA whose subject names no principal: unauthenticated.
    let unknown = clients.leaf(&["nobody.internal"]);
    let (reported, _) = call(tls_channel(&app, &ca, Some(unknown)).await.unwrap()).await;
    assert_eq!(reported.unwrap_err().code(), Code::Unauthenticated);
    // The principal's certificate: its roles apply (reporter, not reader).
    let mta = clients.leaf(&["mta-eu.internal"]);
    let (reported, read) = call(tls_channel(&app, &ca, Some(mta)).await.unwrap()).await;
    reported.expect("a reporter may report");
    assert_eq!(read.unwrap_err().code(), Code::PermissionDenied);
}
