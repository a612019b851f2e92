//! Running the service: health, reflection, restarts, one process per data directory, the
//! binary's health check and graceful shutdown.

use std::process::{Command, Stdio};
use std::time::Duration;

use suppressd::grpc::proto::{self as pb, AddressState, Outcome};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

use suppressd::config::StorageEngine;

use crate::helpers::*;

async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(addr.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_reports_serving_for_the_service() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(channel(&app.addr).await);
    for service in ["", "suppression.v1.SuppressionService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_the_suppression_service() {
    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(channel(&app.addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"suppression.v1.SuppressionService"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}

#[tokio::test]
async fn a_restart_on_the_same_data_keeps_suppressions_history_idempotency_and_tokens() {
    let mut app = spawn_app().await;
    app.report(
        "acme",
        result("h1", "gone@example.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;
    for i in 0..3 {
        app.report(
            "acme",
            result(
                &format!("b{i}"),
                &format!("b{i}@example.com"),
                Outcome::HardBounce,
                USER_UNKNOWN,
            ),
        )
        .await;
    }
    app.client
        .suppress(pb::SuppressRequest {
            tenant: "acme".into(),
            address: "manual@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let page = app
        .client
        .list_bounces(pb::ListBouncesRequest {
            tenant: "acme".into(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let mut app = app.restart().await;
    assert_eq!(
        app.state("acme", "gone@example.com").await,
        AddressState::Suppressed
    );
    assert_eq!(
        app.state("acme", "manual@example.com").await,
        AddressState::Suppressed
    );
    let replay = app
        .report(
            "acme",
            result("h1", "gone@example.com", Outcome::HardBounce, USER_UNKNOWN),
        )
        .await;
    assert!(replay.duplicate, "the event id is remembered");
    let history = app
        .client
        .get_address_history(pb::GetAddressHistoryRequest {
            tenant: "acme".into(),
            address: "gone@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries.len(), 2, "send result and suppression");
    // The import guard's in-memory index is rebuilt from disk.
    let mut verdicts = app
        .check_import(vec![pb::CheckImportRequest {
            compact_allow: false,
            tenant: "acme".into(),
            contacts: vec![pb::ImportContact {
                address: "b1@example.com".into(),
                ..Default::default()
            }],
            ..Default::default()
        }])
        .await;
    let v = verdicts.message().await.unwrap().unwrap();
    assert_eq!(
        v.verdicts[0].decision(),
        pb::ImportDecision::BlockSuppressed
    );
    // A page token issued before the restart still works.
    let next = app
        .client
        .list_bounces(pb::ListBouncesRequest {
            tenant: "acme".into(),
            page_size: 2,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.bounces.len(), 2);
}

fn wait_until_serving(addr: &str) {
    for _ in 0..100 {
        let ok = Command::new(env!("CARGO_BIN_EXE_suppressd"))
            .args(["healthcheck", "--addr", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("server at {addr} never became healthy");
}

#[test]
fn the_binary_serves_answers_its_healthcheck_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let addr = format!("http://{listen}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_suppressd"))
        .arg("serve")
        .env("SUPPRESSD_LISTEN", &listen)
        .env("SUPPRESSD_DATA_DIR", dir.path())
        .env("SUPPRESSD_ENGINE", test_engine_name())
        .envs(test_database_env(dir.path()))
        .env(
            "SUPPRESSD_METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_serving(&addr);

    // Prometheus metrics are served over HTTP.
    {
        use std::io::{Read, Write};
        let mut http = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        http.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    // A second process on the same data directory refuses to start, and says why (an
    // embedded engine's directory; on the postgres engine replicas share the database).
    if test_engine() != StorageEngine::Postgres {
        let second = Command::new(env!("CARGO_BIN_EXE_suppressd"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("SUPPRESSD_DATA_DIR", dir.path())
            .env("SUPPRESSD_ENGINE", test_engine_name())
            .output()
            .unwrap();
        assert!(!second.status.success());
        assert!(
            String::from_utf8_lossy(&second.stderr).contains("in use"),
            "{}",
            String::from_utf8_lossy(&second.stderr)
        );
    }

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.wait().unwrap();
    let mut said = String::new();
    if let Some(mut stderr) = server.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut said);
    }
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}; the server said:\n{said}"
    );

    let down = Command::new(env!("CARGO_BIN_EXE_suppressd"))
        .args(["healthcheck", "--addr", &addr, "--timeout-secs", "1"])
        .output()
        .unwrap();
    assert!(
        !down.status.success(),
        "healthcheck fails once the server is gone"
    );
}

/// Starts the binary on a free port; returns the child and the address.
fn start_binary(data_dir: &std::path::Path) -> (std::process::Child, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_suppressd"))
        .args(["serve", "--listen", &listen])
        .env("SUPPRESSD_DATA_DIR", data_dir)
        .env("SUPPRESSD_ENGINE", test_engine_name())
        .envs(test_database_env(data_dir))
        // A small journal (redb), so that kills land before, during and after checkpoints.
        .env("SUPPRESSD_JOURNAL_MB", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("http://{listen}");
    wait_until_serving(&addr);
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_process_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3 {
        let (mut server, addr) = tokio::task::spawn_blocking({
            let path = dir.path().to_path_buf();
            move || start_binary(&path)
        })
        .await
        .unwrap();
        let mut client = Client::connect(addr).await.unwrap();
        // Kill the server without warning while batches are in flight.
        let pid = server.id();
        let killer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150 + 100 * round)).await;
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
        });
        for batch in 0.. {
            let results: Vec<_> = (0..200)
                .map(|i| {
                    let id = format!("r{round}-b{batch}-{i}");
                    result(
                        &id,
                        &format!("{id}@crash.example"),
                        Outcome::HardBounce,
                        USER_UNKNOWN,
                    )
                })
                .collect();
            let ids: Vec<String> = results.iter().map(|r| r.address.clone()).collect();
            let sent = client
                .report_send_results(tokio_stream::iter(vec![pb::ReportSendResultsRequest {
                    tenant: String::new(),
                    results,
                }]))
                .await;
            match sent {
                Ok(summary) => {
                    assert_eq!(summary.into_inner().accepted, 200);
                    acknowledged.extend(ids);
                }
                Err(_) => break, // the server is gone
            }
            assert!(batch < 100_000, "the server was never killed");
        }
        killer.await.unwrap();
        server.wait().unwrap();
    }
    assert!(!acknowledged.is_empty());
    eprintln!("{} acknowledged results across 3 kills", acknowledged.len());

    let (mut server, addr) = tokio::task::spawn_blocking({
        let path = dir.path().to_path_buf();
        move || start_binary(&path)
    })
    .await
    .unwrap();
    let mut client = Client::connect(addr).await.unwrap();
    for chunk in acknowledged.chunks(5000) {
        let statuses = client
            .batch_get_suppression_status(pb::BatchGetSuppressionStatusRequest {
                tenant: String::new(),
                addresses: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .statuses;
        for s in statuses {
            assert_eq!(
                s.state(),
                AddressState::Suppressed,
                "{} was acknowledged but lost",
                s.given_address
            );
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn a_graceful_stop_ends_open_watch_streams_instead_of_waiting_for_their_clients() {
    let mut app = spawn_app().await;
    let mut watch = app
        .client
        .watch_source_health(pb::WatchSourceHealthRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Well inside the grace period after which open calls would be cut.
    tokio::time::timeout(Duration::from_secs(15), app.stop())
        .await
        .expect("the server stops without waiting for the watcher");
    let end = watch.message().await;
    assert!(matches!(end, Ok(None)), "the stream ends cleanly: {end:?}");
}

/// What only the embedded engines have: a data directory that one process holds, an engine of
/// the directory's own, an engine whose commit can be made to panic in the writer thread. The
/// postgres run of the suite skips these by name (`--skip embedded_only::`, `.ci/run`): there
/// replicas share one database on purpose (`postgres::`), and there is no directory to hold.
mod embedded_only {
    use super::*;

    #[tokio::test]
    async fn a_second_server_on_the_same_data_directory_fails_clearly() {
        let app = spawn_app().await;
        let settings = test_settings(app.data_dir.clone());
        let err = match suppressd::startup::Application::build(settings).await {
            Ok(_) => panic!("a second store opened the same data directory"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("in use by another suppressd process"), "{err}");
    }

    #[tokio::test]
    async fn a_data_directory_of_the_other_engine_is_refused_not_emptied() {
        let mut app = spawn_app().await;
        app.report(
            "acme",
            result("h1", "gone@example.com", Outcome::HardBounce, USER_UNKNOWN),
        )
        .await;
        app.stop().await;
        let mut settings = test_settings(app.data_dir.clone());
        settings.engine = match test_engine() {
            StorageEngine::Sled => StorageEngine::Redb,
            StorageEngine::Redb => StorageEngine::Sled,
            StorageEngine::Postgres => panic!("the postgres engine keeps no data directory"),
        };
        let err = match suppressd::startup::Application::build(settings).await {
            Ok(_) => panic!("the other engine opened the data directory"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains(&format!("holds {} data", test_engine_name())),
            "{err}"
        );
        let mut app = app.restart().await;
        assert_eq!(
            app.state("acme", "gone@example.com").await,
            AddressState::Suppressed
        );
    }

    #[tokio::test]
    async fn a_store_writer_that_stops_turns_health_not_serving_and_the_server_ends_with_an_error()
    {
        let dir = tempfile::tempdir().unwrap();
        let settings = test_settings(dir.path().join("data"));
        // The engine panics in the writer thread on the second commit: the first write lands.
        let store = suppressd::store::testing::open_with_commit_panic(
            suppressd::startup::Application::store_options(&settings),
            2,
        )
        .unwrap();
        let app = suppressd::startup::Application::with_store(settings, store)
            .await
            .unwrap();
        let addr = format!("http://127.0.0.1:{}", app.port());
        let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
        let channel = channel(&addr).await;
        let mut watch = HealthClient::new(channel.clone())
            .watch(HealthCheckRequest {
                service: suppressd::startup::SERVICE_NAME.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::Serving);

        let mut client = Client::new(channel);
        let report = |id: &str, address: &str| pb::ReportSendResultRequest {
            tenant: String::new(),
            result: Some(result(id, address, Outcome::Bounce, USER_UNKNOWN)),
        };
        client
            .report_send_result(report("ok-1", "a@example.com"))
            .await
            .unwrap();
        let err = client
            .report_send_result(report("dies-2", "b@example.com"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");

        let bounded = Duration::from_secs(60);
        let turned = tokio::time::timeout(bounded, watch.message())
            .await
            .expect("health changes")
            .unwrap()
            .expect("the watch reports before the server stops");
        assert_eq!(turned.status(), ServingStatus::NotServing);
        drop(watch);
        let ended = tokio::time::timeout(bounded, server)
            .await
            .expect("the server stops by itself")
            .unwrap();
        let e = ended.expect_err("the server's end is an error, so the process exits non-zero");
        assert!(format!("{e:#}").contains("writer stopped"), "{e:#}");
    }
}
