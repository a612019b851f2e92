//! The postgres engine as replicas use it: two servers on one database, and a database that is
//! unreachable at start or goes away mid-flight. These need a PostgreSQL cluster
//! (`SUPPRESSD_TEST_DATABASE_URL`, see docs/postgres.md): a plain `cargo test` lists them as
//! ignored; `.ci/run` runs them with `--ignored` on the cluster `.ci/postgres.sh` starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suppressd::config::StorageEngine;
use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use suppressd::grpc::proto::{self as pb, AddressState, ImportDecision, Outcome};
use suppressd::startup::Application;
use suppressd::store::testing::postgres_test_database;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::helpers::*;

/// A server on the postgres engine with the database `url`.
async fn replica(url: &str) -> TestApp {
    let url = url.to_string();
    spawn_app_with(move |s| {
        s.engine = StorageEngine::Postgres;
        s.database_url = Some(url);
    })
    .await
}

/// A database of the test cluster of its own, named after `test`.
fn fresh_database(test: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    postgres_test_database(&format!("{test} {}", dir.path().display()))
}

#[tokio::test]
#[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
async fn domain_marks_and_erasures_made_on_one_replica_apply_on_the_other_at_once() {
    let url = fresh_database("domain marks on replicas");
    let mut a = replica(&url).await;
    let mut b = replica(&url).await;
    // Asked on B first, so that any copy B kept would be of before the mark.
    assert_eq!(
        b.state("acme", "anyone@mail.closed.example").await,
        AddressState::Allowed
    );
    a.client
        .suppress_domain(pb::SuppressDomainRequest {
            tenant: "acme".into(),
            domain: "closed.example".into(),
            note: "closed down".into(),
            include_subdomains: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let on_b = b.status("acme", "anyone@mail.closed.example").await;
    assert_eq!(on_b.state(), AddressState::Suppressed);
    assert!(on_b.domain_level);
    assert_eq!(on_b.suppressed_domain, "closed.example");
    let listed = b
        .client
        .list_suppressed_domains(pb::ListSuppressedDomainsRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.domains.iter().map(|d| d.domain.as_str()).collect();
    assert_eq!(names, ["closed.example"]);

    // Lifted on B: allowed on A.
    b.client
        .reactivate_domain(pb::ReactivateDomainRequest {
            tenant: "acme".into(),
            domain: "closed.example".into(),
            justification: "open again".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        a.state("acme", "anyone@mail.closed.example").await,
        AddressState::Allowed
    );

    // Forgotten on A: forgotten on B, and B's send result for it is only counted.
    a.report(
        "acme",
        result(
            "f1",
            "person@example.com",
            Outcome::HardBounce,
            USER_UNKNOWN,
        ),
    )
    .await;
    a.client
        .forget_address(pb::ForgetAddressRequest {
            tenant: "acme".into(),
            address: "person@example.com".into(),
            justification: "erasure request 12".into(),
        })
        .await
        .unwrap();
    b.report(
        "acme",
        result(
            "f2",
            "person@example.com",
            Outcome::HardBounce,
            USER_UNKNOWN,
        ),
    )
    .await;
    let gone = b.status("acme", "person@example.com").await;
    assert_eq!(gone.state(), AddressState::Suppressed);
    assert!(gone.forgotten && gone.address.is_empty());
    let history = b
        .client
        .get_address_history(pb::GetAddressHistoryRequest {
            tenant: "acme".into(),
            address: "person@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries.len(), 1, "{history:?}");
    assert!(
        suppressd::store::testing::postgres_rows_holding(&url, "person@example.com").is_empty()
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
async fn two_replicas_on_one_database_see_each_others_writes_at_once() {
    let url = fresh_database("two replicas");
    let mut a = replica(&url).await;
    let mut b = replica(&url).await;

    // A hard bounce reported on A is suppressed on B at once, and B's import screen blocks it.
    a.report(
        "acme",
        result("h1", "gone@example.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;
    assert_eq!(
        b.state("acme", "gone@example.com").await,
        AddressState::Suppressed
    );
    let mut verdicts = b
        .check_import(vec![pb::CheckImportRequest {
            tenant: "acme".into(),
            contacts: vec![
                pb::ImportContact {
                    address: "gone@example.com".into(),
                    external_id: "crm-1".into(),
                    ..Default::default()
                },
                pb::ImportContact {
                    address: "fresh@example.com".into(),
                    external_id: "crm-2".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }])
        .await;
    let response = verdicts.message().await.unwrap().expect("one response");
    let decisions: Vec<(String, ImportDecision)> = response
        .verdicts
        .iter()
        .map(|v| (v.external_id.clone(), v.decision()))
        .collect();
    assert_eq!(
        decisions,
        [
            ("crm-1".to_string(), ImportDecision::BlockSuppressed),
            ("crm-2".to_string(), ImportDecision::Allow)
        ]
    );

    // Reactivated on B, allowed on A.
    b.client
        .reactivate(pb::ReactivateRequest {
            tenant: "acme".into(),
            address: "gone@example.com".into(),
            justification: "the customer confirmed the mailbox".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        a.state("acme", "gone@example.com").await,
        AddressState::Allowed
    );

    // The same event id reported on both at once is stored once.
    let same = result(
        "dup-1",
        "twice@example.com",
        Outcome::HardBounce,
        USER_UNKNOWN,
    );
    let (on_a, on_b) = tokio::join!(
        a.client.report_send_result(pb::ReportSendResultRequest {
            tenant: "acme".into(),
            result: Some(same.clone()),
        }),
        b.client.report_send_result(pb::ReportSendResultRequest {
            tenant: "acme".into(),
            result: Some(same.clone()),
        }),
    );
    // A replica whose commit met the other's insert of the id may answer an error, which the
    // caller retries: it then finds the id recorded.
    for outcome in [on_a, on_b] {
        if outcome.is_err() {
            b.report("acme", same.clone()).await;
        }
    }
    let listed = b
        .client
        .list_bounces(pb::ListBouncesRequest {
            tenant: "acme".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = listed.bounces.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(
        ids.iter().filter(|id| **id == "dup-1").count(),
        1,
        "{ids:?}"
    );

    // A page token from A is good on B (one token secret in the database).
    for i in 0..5 {
        a.report(
            "paging",
            result(
                &format!("p{i}"),
                &format!("p{i}@example.com"),
                Outcome::HardBounce,
                USER_UNKNOWN,
            ),
        )
        .await;
    }
    let first = a
        .client
        .list_bounces(pb::ListBouncesRequest {
            tenant: "paging".into(),
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.bounces.len(), 3);
    assert!(!first.next_page_token.is_empty());
    let rest = b
        .client
        .list_bounces(pb::ListBouncesRequest {
            tenant: "paging".into(),
            page_size: 3,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut all: Vec<String> = first
        .bounces
        .iter()
        .chain(&rest.bounces)
        .map(|r| r.event_id.clone())
        .collect();
    all.sort();
    assert_eq!(all, ["p0", "p1", "p2", "p3", "p4"]);
    assert!(rest.next_page_token.is_empty());
}

/// A TCP proxy in front of the test cluster that refuses connections while closed and cuts
/// every open one when closed: a database that is unreachable, then reachable, then gone.
struct Proxy {
    addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Proxy {
    async fn to(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (is_open, tasks) = (open.clone(), links.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !is_open.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(link);
            }
        });
        Proxy {
            addr,
            open,
            links,
            _accept: accept,
        }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Refuses new connections and cuts the open ones.
    fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

async fn health(addr: &str) -> Option<i32> {
    let channel = tonic::transport::Endpoint::from_shared(addr.to_string())
        .ok()?
        .connect()
        .await
        .ok()?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "suppression.v1.SuppressionService".into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

/// Polls the health service until it says `wanted`, for at most 30 s.
async fn until_health(addr: &str, wanted: ServingStatus) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while health(addr).await != Some(wanted as i32) {
        assert!(
            std::time::Instant::now() < deadline,
            "health never became {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Several workers: the proxy runs on the test's runtime while the store's reads block theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
async fn an_unreachable_database_is_not_serving_until_it_answers_and_a_lost_one_is_unavailable() {
    let url = fresh_database("unreachable");
    // postgres://user@host:port/db: the proxy stands in for host:port.
    let (scheme_user, rest) = url.split_once('@').expect("a URL with a user");
    let (target, db) = rest.split_once('/').expect("a URL with a database");
    let proxy = Proxy::to(target.to_string()).await;
    let proxied = format!("{scheme_user}@{}/{db}", proxy.addr);

    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    settings.engine = StorageEngine::Postgres;
    settings.database_url = Some(proxied);
    let app = Application::build(settings)
        .await
        .expect("starts without its database");
    let addr = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // No database: NOT_SERVING, and calls are UNAVAILABLE.
    until_health(&addr, ServingStatus::NotServing).await;
    let mut client = SuppressionServiceClient::connect(addr.clone())
        .await
        .unwrap();
    let report = |id: &str, to: &str| pb::ReportSendResultRequest {
        tenant: "acme".into(),
        result: Some(result(id, to, Outcome::HardBounce, USER_UNKNOWN)),
    };
    let refused = client
        .report_send_result(report("h0", "early@example.com"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    // Reachable: SERVING once connected and migrated; writes are acknowledged.
    proxy.open();
    until_health(&addr, ServingStatus::Serving).await;
    client
        .report_send_result(report("h1", "kept@example.com"))
        .await
        .expect("acknowledged");

    // Gone mid-flight: NOT_SERVING, calls UNAVAILABLE (not INTERNAL).
    proxy.close();
    until_health(&addr, ServingStatus::NotServing).await;
    let status = client
        .get_suppression_status(pb::GetSuppressionStatusRequest {
            tenant: "acme".into(),
            address: "kept@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // Every call that needs the database says so, whatever it reads or writes.
    let failed = [
        (
            "BatchGetSuppressionStatus",
            client
                .batch_get_suppression_status(pb::BatchGetSuppressionStatusRequest {
                    tenant: "acme".into(),
                    addresses: vec!["kept@example.com".into(), "other@example.com".into()],
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "ForgetAddress",
            client
                .forget_address(pb::ForgetAddressRequest {
                    tenant: "acme".into(),
                    address: "kept@example.com".into(),
                    justification: "erasure request 7".into(),
                })
                .await
                .map(drop),
        ),
        (
            "Suppress",
            client
                .suppress(pb::SuppressRequest {
                    tenant: "acme".into(),
                    address: "manual@example.com".into(),
                    reason: pb::BounceReason::Manual as i32,
                    note: "asked to stop".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "ListBounces",
            client
                .list_bounces(pb::ListBouncesRequest {
                    tenant: "acme".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "GetAddressHistory",
            client
                .get_address_history(pb::GetAddressHistoryRequest {
                    tenant: "acme".into(),
                    address: "kept@example.com".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
    ];
    for (call, answer) in failed {
        let e = answer.expect_err(call);
        assert_eq!(e.code(), tonic::Code::Unavailable, "{call}: {e:?}");
    }

    // Back: SERVING again without a restart, and the acknowledged write is there.
    proxy.open();
    until_health(&addr, ServingStatus::Serving).await;
    let status = client
        .get_suppression_status(pb::GetSuppressionStatusRequest {
            tenant: "acme".into(),
            address: "kept@example.com".into(),
            ..Default::default()
        })
        .await
        .expect("answered again")
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state(), AddressState::Suppressed);
    let early = client
        .get_suppression_status(pb::GetSuppressionStatusRequest {
            tenant: "acme".into(),
            address: "early@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(
        early.state(),
        AddressState::Allowed,
        "the refused write stored nothing"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A CheckImport stream kept open: one request message at a time, answered in order.
struct ImportStream {
    requests: tokio::sync::mpsc::Sender<pb::CheckImportRequest>,
    responses: tonic::Streaming<pb::CheckImportResponse>,
}

impl ImportStream {
    async fn open(client: &mut Client) -> ImportStream {
        let (requests, queue) = tokio::sync::mpsc::channel(4);
        let responses = client
            .check_import(tokio_stream::wrappers::ReceiverStream::new(queue))
            .await
            .expect("import stream opens")
            .into_inner();
        ImportStream {
            requests,
            responses,
        }
    }

    /// The decisions for `addresses`, screened as one message (each address new to the stream).
    async fn screen(&mut self, addresses: &[String]) -> Vec<ImportDecision> {
        self.screen_for("race", addresses).await
    }

    /// The same for the contacts of `tenant`.
    async fn screen_for(&mut self, tenant: &str, addresses: &[String]) -> Vec<ImportDecision> {
        self.requests
            .send(pb::CheckImportRequest {
                tenant: tenant.into(),
                contacts: addresses
                    .iter()
                    .map(|a| pb::ImportContact {
                        address: a.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .await
            .expect("the stream takes the message");
        let response = self
            .responses
            .message()
            .await
            .expect("screened")
            .expect("one response per message");
        response.verdicts.iter().map(|v| v.decision()).collect()
    }
}

/// Reports a hard bounce of `address` through `client`; returns once it is acknowledged.
async fn bounce(client: &mut Client, id: &str, address: &str) {
    client
        .report_send_result(pb::ReportSendResultRequest {
            tenant: "race".into(),
            result: Some(result(id, address, Outcome::HardBounce, USER_UNKNOWN)),
        })
        .await
        .expect("the bounce is acknowledged");
}

/// Iterations of each race below: a few seconds each in a debug build.
const RACE_ROUNDS: usize = 1000;

// The replicas' in-memory suppressed index must never answer a stale ALLOW: a suppression
// acknowledged on A before a screen is sent to B blocks that contact on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
async fn a_suppression_acknowledged_on_one_replica_blocks_every_later_screen_on_the_other() {
    let url = fresh_database("index race");
    let mut a = replica(&url).await;
    let mut b = replica(&url).await;

    // One after the other: acknowledged on A, then screened on B at once (one stream, one
    // message per round, so each message passes the barrier on its own).
    let mut on_b = ImportStream::open(&mut b.client).await;
    for i in 0..RACE_ROUNDS {
        let gone = format!("seq{i}@example.com");
        bounce(&mut a.client, &format!("seq-{i}"), &gone).await;
        let decisions = on_b
            .screen(&[gone.clone(), format!("clean{i}@example.com")])
            .await;
        assert_eq!(
            decisions,
            [ImportDecision::BlockSuppressed, ImportDecision::Allow],
            "round {i}: {gone} was acknowledged on A before the screen was sent to B"
        );
    }

    // Concurrently: writers on A, screeners on B. Each screen carries every address
    // acknowledged since the screener's previous one (all must be blocked) and a clean one.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let writing = Arc::new(AtomicBool::new(true));
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut client = a.client.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..RACE_ROUNDS / 4 {
                let gone = format!("w{w}-{i}@example.com");
                bounce(&mut client, &format!("w{w}-{i}"), &gone).await;
                acknowledged.lock().unwrap().push(gone);
            }
        }));
    }
    let mut screeners = Vec::new();
    for s in 0..4 {
        let mut client = b.client.clone();
        let (acknowledged, writing) = (acknowledged.clone(), writing.clone());
        screeners.push(tokio::spawn(async move {
            let mut stream = ImportStream::open(&mut client).await;
            let (mut seen, mut screens, mut blocked) = (0, 0, 0);
            loop {
                let done = !writing.load(Ordering::SeqCst);
                // Taken before the message is sent: all of these were acknowledged before.
                let mut batch: Vec<String> = acknowledged.lock().unwrap()[seen..].to_vec();
                seen += batch.len();
                let expected_blocks = batch.len();
                batch.push(format!("s{s}-clean{screens}@example.com"));
                let decisions = stream.screen(&batch).await;
                for (address, decision) in batch.iter().zip(&decisions).take(expected_blocks) {
                    assert_eq!(
                        *decision,
                        ImportDecision::BlockSuppressed,
                        "{address} was acknowledged on A before the screen was sent to B"
                    );
                }
                assert_eq!(decisions.last(), Some(&ImportDecision::Allow));
                screens += 1;
                blocked += expected_blocks;
                if done {
                    return (screens, blocked);
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    writing.store(false, Ordering::SeqCst);
    for s in screeners {
        let (screens, blocked) = s.await.unwrap();
        assert!(screens > 1, "each screener raced the writers");
        assert_eq!(
            blocked,
            RACE_ROUNDS / 4 * 4,
            "each screener saw every write"
        );
    }

    // Lifted on A: B's next screen allows (B saw the suppression first).
    let mut before = ImportStream::open(&mut b.client).await;
    let mut after = ImportStream::open(&mut b.client).await;
    for i in 0..RACE_ROUNDS / 4 {
        let address = format!("back{i}@example.com");
        bounce(&mut a.client, &format!("back-{i}"), &address).await;
        assert_eq!(
            before.screen(std::slice::from_ref(&address)).await,
            [ImportDecision::BlockSuppressed]
        );
        a.client
            .reactivate(pb::ReactivateRequest {
                tenant: "race".into(),
                address: address.clone(),
                justification: "the customer confirmed the mailbox".into(),
                ..Default::default()
            })
            .await
            .expect("reactivated");
        assert_eq!(
            after.screen(std::slice::from_ref(&address)).await,
            [ImportDecision::Allow],
            "round {i}: {address} was reactivated on A before the screen was sent to B"
        );
    }
}

/// A PostgreSQL cluster of the test's own, from `.ci/postgres.sh`: the test may crash it
/// without touching the cluster the other tests share. Stopped and removed when dropped, also
/// when the test fails.
struct PrivateCluster {
    dir: String,
    url: String,
}

/// Runs `.ci/postgres.sh` with `args` and returns what it printed; panics with its errors when
/// it fails.
fn postgres_script(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/postgres.sh");
    let output = std::process::Command::new(script)
        .args(args)
        .output()
        .expect("runs .ci/postgres.sh");
    assert!(
        output.status.success(),
        "postgres.sh {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

impl PrivateCluster {
    fn start() -> PrivateCluster {
        let printed = postgres_script(&["start"]);
        // Lines of the form `export NAME='value'`.
        let value = |name: &str| {
            printed
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or_else(|| panic!("postgres.sh start printed no {name}: {printed}"))
                .to_string()
        };
        PrivateCluster {
            dir: value("PG_TEST_DIR"),
            url: value("SUPPRESSD_TEST_DATABASE_URL"),
        }
    }

    /// Crashes the cluster (`pg_ctl stop -m immediate`): no clean shutdown.
    async fn kill(&self) {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || postgres_script(&["kill", &dir]))
            .await
            .unwrap();
    }

    /// Starts it again on the same port (after crash recovery).
    async fn restart(&self) {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || postgres_script(&["restart", &dir]))
            .await
            .unwrap();
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/postgres.sh");
        let _ = std::process::Command::new(script)
            .args(["stop", &self.dir])
            .output();
    }
}

/// Polls `done` every 10 ms until it holds (the fault test's clients run meanwhile); fails
/// with `what` after 30 s.
async fn poll_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Results per ReportSendResults call of the fault test.
const FAULT_BATCH: usize = 10;
/// How long one call may take at most: a lost database fails calls, it does not hang them.
const CALL_BOUND: Duration = Duration::from_secs(20);

/// When a batch of the fault test was sent.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    BeforeCrash,
    /// Between the crash and the call that starts the cluster again.
    Down,
    /// From that call until both replicas say SERVING.
    Restarting,
    Recovered,
}

/// One ReportSendResults call of the fault test and how it was answered.
#[derive(Debug)]
struct SentBatch {
    replica: usize,
    phase: Phase,
    /// The phase when the answer came.
    answered_in: Phase,
    results: Vec<pb::SendResult>,
    /// Ok when acknowledged; the code and message of the error otherwise.
    answer: Result<(), (tonic::Code, String)>,
}

impl SentBatch {
    fn addresses(&self) -> impl Iterator<Item = &str> {
        self.results.iter().map(|r| r.address.as_str())
    }
}

/// Sends `results` as one ReportSendResults call, bounded by [`CALL_BOUND`].
async fn report_batch(
    client: &mut Client,
    results: Vec<pb::SendResult>,
) -> Result<pb::ReportSendResultsResponse, tonic::Status> {
    let call = client.report_send_results(tokio_stream::iter(vec![pb::ReportSendResultsRequest {
        tenant: "fault".into(),
        results,
    }]));
    match tokio::time::timeout(CALL_BOUND, call).await {
        Ok(answer) => answer.map(|r| r.into_inner()),
        Err(_) => panic!("a ReportSendResults call hung for more than {CALL_BOUND:?}"),
    }
}

// Several workers: the ingest, the health polls and the script calls run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: initdb and pg_ctl, or root to install them (docs/postgres.md)"]
async fn a_cluster_crashed_mid_ingest_keeps_every_acknowledged_result_and_the_replicas_recover() {
    let cluster = PrivateCluster::start();
    let mut replicas = [replica(&cluster.url).await, replica(&cluster.url).await];

    // Six clients, three on each replica, each sending batches of fresh hard bounces.
    let phase = Arc::new(Mutex::new(Phase::BeforeCrash));
    let ingesting = Arc::new(AtomicBool::new(true));
    let sent: Arc<Mutex<Vec<SentBatch>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..6 {
        let r = c % 2;
        let mut client = replicas[r].client.clone();
        let (phase, ingesting, sent) = (phase.clone(), ingesting.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut k = 0;
            while ingesting.load(Ordering::SeqCst) {
                let results: Vec<pb::SendResult> = (0..FAULT_BATCH)
                    .map(|i| {
                        let id = format!("c{c}-{k}-{i}");
                        let address = format!("{id}@example.com");
                        result(&id, &address, Outcome::HardBounce, USER_UNKNOWN)
                    })
                    .collect();
                k += 1;
                let sent_in = *phase.lock().unwrap();
                let answer = match report_batch(&mut client, results.clone()).await {
                    Ok(summary) => {
                        assert_eq!(
                            (summary.accepted, summary.duplicates),
                            (FAULT_BATCH as u64, 0),
                            "fresh event ids: {summary:?}"
                        );
                        Ok(())
                    }
                    Err(status) => Err((status.code(), status.message().to_string())),
                };
                let failed = answer.is_err();
                let answered_in = *phase.lock().unwrap();
                sent.lock().unwrap().push(SentBatch {
                    replica: r,
                    phase: sent_in,
                    answered_in,
                    results,
                    answer,
                });
                if failed {
                    // Paces the retries while the database is down (not a correctness wait).
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let count = |wanted: &dyn Fn(&SentBatch) -> bool| {
        sent.lock().unwrap().iter().filter(|b| wanted(b)).count()
    };

    // Some hundreds acknowledged, then the crash.
    poll_until("the ingest never got going", || {
        count(&|b| b.answer.is_ok()) * FAULT_BATCH >= 300
    })
    .await;
    cluster.kill().await;
    *phase.lock().unwrap() = Phase::Down;

    // The ingest goes on against the dead cluster: calls fail on both replicas, which turn
    // NOT_SERVING.
    poll_until(
        "calls did not fail on both replicas with the database down",
        || {
            (0..2).all(|r| {
                count(&|b| b.replica == r && b.phase == Phase::Down && b.answer.is_err()) >= 3
            })
        },
    )
    .await;
    for app in &replicas {
        until_health(&app.addr, ServingStatus::NotServing).await;
    }

    // Back: both replicas serve again without a restart, and take more results.
    *phase.lock().unwrap() = Phase::Restarting;
    cluster.restart().await;
    for app in &replicas {
        until_health(&app.addr, ServingStatus::Serving).await;
    }
    *phase.lock().unwrap() = Phase::Recovered;
    poll_until(
        "a replica took no results after the database came back",
        || {
            (0..2).all(|r| {
                count(&|b| b.replica == r && b.phase == Phase::Recovered && b.answer.is_ok()) >= 5
            })
        },
    )
    .await;
    ingesting.store(false, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let (acknowledged, failed): (Vec<&SentBatch>, Vec<&SentBatch>) =
        sent.iter().partition(|b| b.answer.is_ok());

    // The crash was real: nothing sent and answered while the cluster was down was
    // acknowledged.
    assert_eq!(
        sent.iter()
            .filter(|b| b.phase == Phase::Down && b.answered_in == Phase::Down)
            .filter(|b| b.answer.is_ok())
            .count(),
        0
    );
    // Every failure said the service was unavailable, and none came once both served again.
    for batch in &failed {
        let (code, message) = batch.answer.as_ref().unwrap_err();
        assert_eq!(
            *code,
            tonic::Code::Unavailable,
            "{message} (replica {}, {:?})",
            batch.replica,
            batch.phase
        );
        assert_ne!(batch.phase, Phase::Recovered, "{message}");
    }

    let acknowledged_addresses: Vec<String> = acknowledged
        .iter()
        .flat_map(|b| b.addresses())
        .map(String::from)
        .collect();
    for app in &mut replicas {
        // The import screen (the in-memory index) blocks every acknowledged address.
        let mut screen = ImportStream::open(&mut app.client).await;
        for chunk in acknowledged_addresses.chunks(1000) {
            let decisions = screen.screen_for("fault", chunk).await;
            for (address, decision) in chunk.iter().zip(decisions) {
                assert_eq!(
                    decision,
                    ImportDecision::BlockSuppressed,
                    "{address} was acknowledged"
                );
            }
        }
        // And the database says so.
        for chunk in acknowledged_addresses.chunks(500) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let states = app.batch_states("fault", &chunk, "").await;
            for (address, state) in chunk.iter().zip(states) {
                assert_eq!(
                    state,
                    AddressState::Suppressed,
                    "{address} was acknowledged"
                );
            }
        }
    }

    // Every acknowledged event is recorded: reported again on either replica, a duplicate.
    for (n, batch) in acknowledged.iter().enumerate() {
        let again = report_batch(&mut replicas[n % 2].client, batch.results.clone())
            .await
            .expect("answered");
        assert_eq!(
            (again.accepted, again.duplicates),
            (0, FAULT_BATCH as u64),
            "an acknowledged batch of replica {} sent {:?}",
            batch.replica,
            batch.phase
        );
    }
    // A failed batch may or may not have been stored; retried, it is recorded once.
    for (n, batch) in failed.iter().enumerate() {
        let retried = report_batch(&mut replicas[n % 2].client, batch.results.clone())
            .await
            .expect("the retry is answered");
        assert_eq!(retried.accepted + retried.duplicates, FAULT_BATCH as u64);
        let again = report_batch(&mut replicas[(n + 1) % 2].client, batch.results.clone())
            .await
            .expect("answered");
        assert_eq!((again.accepted, again.duplicates), (0, FAULT_BATCH as u64));
    }
    // Each event id of the test is listed once.
    let mut listed = std::collections::HashMap::<String, usize>::new();
    let mut page_token = String::new();
    loop {
        let page = replicas[0]
            .client
            .list_bounces(pb::ListBouncesRequest {
                tenant: "fault".into(),
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner();
        for bounce in page.bounces {
            *listed.entry(bounce.event_id).or_default() += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let expected: std::collections::HashMap<String, usize> = sent
        .iter()
        .flat_map(|b| &b.results)
        .map(|r| (r.event_id.clone(), 1))
        .collect();
    assert_eq!(listed.len(), expected.len());
    assert!(listed == expected, "an event id is missing or listed twice");
    let in_phase = |phase: Phase, ok: bool| {
        sent.iter()
            .filter(|b| b.phase == phase && b.answer.is_ok() == ok)
            .count()
    };
    eprintln!(
        "fault test: acknowledged/failed batches before the crash {}/{}, while down {}/{}, \
         restarting {}/{}, after recovery {}/{}",
        in_phase(Phase::BeforeCrash, true),
        in_phase(Phase::BeforeCrash, false),
        in_phase(Phase::Down, true),
        in_phase(Phase::Down, false),
        in_phase(Phase::Restarting, true),
        in_phase(Phase::Restarting, false),
        in_phase(Phase::Recovered, true),
        in_phase(Phase::Recovered, false),
    );
}
