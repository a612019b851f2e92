//! Online backups: a backup taken through `Backup` while reporters keep ingesting, restored
//! into an empty data directory of the other engine and served again, holds exactly the
//! writes committed up to its snapshot; only an admin of every tenant may take one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use suppressd::config::StorageEngine;
use suppressd::grpc::proto::suppression_admin_service_client::SuppressionAdminServiceClient;
use suppressd::grpc::proto::{self as pb, AddressState, Outcome};
use tokio::sync::watch;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

use crate::helpers::*;

const REPORTERS: usize = 4;
const BATCHES_PER_REPORTER: usize = 50;
const BATCH: usize = 500;
const TENANT: &str = "acme";
const SOURCE: &str = "backup-ingest";

fn address(reporter: usize, batch: usize, i: usize) -> String {
    format!("r{reporter}-b{batch}-i{i}@backup.example")
}

fn event_id(reporter: usize, batch: usize, i: usize) -> String {
    format!("r{reporter}-b{batch}-e{i}")
}

/// One batch of a reporter: when its stream was opened and when the server acknowledged it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    reporter: usize,
    batch: usize,
    opened: Instant,
    acked: Instant,
}

/// A reporter: one ReportSendResults stream per batch of hard bounces, each to an address of
/// its own, one after the other.
async fn reporter(
    mut client: Client,
    reporter: usize,
    acked: Arc<watch::Sender<usize>>,
) -> Vec<Sent> {
    let mut sent = Vec::new();
    for batch in 0..BATCHES_PER_REPORTER {
        let results = (0..BATCH)
            .map(|i| pb::SendResult {
                source: SOURCE.into(),
                ..result(
                    &event_id(reporter, batch, i),
                    &address(reporter, batch, i),
                    Outcome::HardBounce,
                    USER_UNKNOWN,
                )
            })
            .collect();
        let opened = Instant::now();
        let answer = client
            .report_send_results(tokio_stream::iter(vec![pb::ReportSendResultsRequest {
                tenant: TENANT.into(),
                results,
            }]))
            .await
            .expect("the batch is acknowledged")
            .into_inner();
        assert_eq!(answer.accepted, BATCH as u64);
        sent.push(Sent {
            reporter,
            batch,
            opened,
            acked: Instant::now(),
        });
        acked.send_modify(|n| *n += 1);
    }
    sent
}

/// The other engine than the tests'.
fn other_engine() -> StorageEngine {
    match test_engine() {
        StorageEngine::Redb => StorageEngine::Sled,
        StorageEngine::Sled | StorageEngine::Postgres => StorageEngine::Redb,
    }
}

/// Every bounce event id of the tenant's source, page by page.
async fn listed_events(app: &mut TestApp) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_bounces(pb::ListBouncesRequest {
                tenant: TENANT.into(),
                source: SOURCE.into(),
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("bounces listed")
            .into_inner();
        ids.extend(page.bounces.into_iter().map(|b| b.event_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_during_ingest_and_restored_into_the_other_engine_holds_exactly_the_writes_up_to_its_snapshot(
) {
    // A small journal table: during the backup tables fill, freeze and wait for their
    // checkpoint, which waits for the backup.
    let mut app = spawn_app_with(|s| s.journal_mb = 1).await;
    let (acked_tx, mut acked_rx) = watch::channel(0usize);
    let acked_tx = Arc::new(acked_tx);
    let reporters: Vec<_> = (0..REPORTERS)
        .map(|r| {
            let client = app.client.clone();
            let acked = acked_tx.clone();
            tokio::spawn(reporter(client, r, acked))
        })
        .collect();
    // A third of the batches acknowledged: the backup starts in the middle of the ingest.
    acked_rx
        .wait_for(|n| *n >= REPORTERS * BATCHES_PER_REPORTER / 3)
        .await
        .unwrap();
    let mut admin = SuppressionAdminServiceClient::connect(app.addr.clone())
        .await
        .unwrap()
        .max_decoding_message_size(64 * 1024 * 1024);
    let backup_called = Instant::now();
    let mut stream = admin
        .backup(pb::BackupRequest {})
        .await
        .expect("backup starts")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("backup streams")
        .expect("a first message");
    let first_received = Instant::now();
    let snapshot_seq = first.snapshot_seq;
    assert!(snapshot_seq > 0);
    assert!(first.created_at.is_some());
    let mut bytes = first.data;
    while let Some(message) = stream.message().await.expect("backup streams") {
        assert_eq!(
            message.snapshot_seq, 0,
            "only the first message names the snapshot"
        );
        bytes.extend_from_slice(&message.data);
    }
    let mut sent: Vec<Sent> = Vec::new();
    for r in reporters {
        sent.extend(r.await.unwrap());
    }
    assert_eq!(sent.len(), REPORTERS * BATCHES_PER_REPORTER);
    let before: Vec<&Sent> = sent.iter().filter(|s| s.acked < backup_called).collect();
    let after: Vec<&Sent> = sent.iter().filter(|s| s.opened > first_received).collect();
    assert!(
        !before.is_empty(),
        "some batches were acknowledged before the backup"
    );
    assert!(
        !after.is_empty(),
        "the ingest went on after the snapshot was taken"
    );

    // Restored into an empty directory of the other engine, and served from there.
    let dir = tempfile::tempdir().unwrap();
    let restored_dir = dir.path().join("restored");
    let restored = suppressd::store::restore(
        &mut bytes.as_slice(),
        other_engine().into(),
        &restored_dir,
        64 << 20,
        &mut |_| {},
    )
    .expect("the backup restores");
    assert_eq!(
        restored.header.seq, snapshot_seq,
        "the stream names the snapshot it holds"
    );
    app.stop().await;
    let mut restored_app = spawn_app_in(restored_dir.clone(), |s| s.engine = other_engine()).await;

    let present = listed_events(&mut restored_app).await;
    let all_sent: HashSet<String> = sent
        .iter()
        .flat_map(|s| (0..BATCH).map(move |i| event_id(s.reporter, s.batch, i)))
        .collect();
    assert!(
        present.is_subset(&all_sent),
        "every event present is one that was sent"
    );
    for s in &before {
        for i in 0..BATCH {
            assert!(
                present.contains(&event_id(s.reporter, s.batch, i)),
                "batch {s:?} was acknowledged before the backup started"
            );
        }
    }
    for s in &after {
        assert!(
            !present.contains(&event_id(s.reporter, s.batch, 0)),
            "batch {s:?} was sent after the snapshot was taken"
        );
    }
    // The stream's count of events is what the restored store lists.
    let events_in_stream = restored.summary.kinds.get(&b'P').copied().unwrap_or(0);
    assert_eq!(events_in_stream, present.len() as u64);

    // Nothing half-applied: an address is suppressed exactly when its bounce is there.
    let addresses: Vec<(String, String)> = sent
        .iter()
        .flat_map(|s| {
            (0..BATCH).map(move |i| {
                (
                    address(s.reporter, s.batch, i),
                    event_id(s.reporter, s.batch, i),
                )
            })
        })
        .collect();
    for chunk in addresses.chunks(10_000) {
        let names: Vec<&str> = chunk.iter().map(|(a, _)| a.as_str()).collect();
        let states = restored_app.batch_states(TENANT, &names, "").await;
        for ((address, id), state) in chunk.iter().zip(states) {
            let expected = if present.contains(id) {
                AddressState::Suppressed
            } else {
                AddressState::Allowed
            };
            assert_eq!(state, expected, "{address} ({id})");
        }
    }

    // The restored store goes on: a new write is taken and a replayed event is a duplicate.
    let replay = restored_app
        .report(
            TENANT,
            result(
                &event_id(before[0].reporter, before[0].batch, 0),
                &address(before[0].reporter, before[0].batch, 0),
                Outcome::HardBounce,
                USER_UNKNOWN,
            ),
        )
        .await;
    assert!(replay.duplicate);
    restored_app.stop().await;
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

#[tokio::test]
async fn only_an_admin_of_every_tenant_may_take_a_backup() {
    use suppressd::auth::token_sha256;
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    let mut principals = String::new();
    for (name, tenants, role) in [
        ("operator", "\"acme\"", "operator"),
        ("tenant-admin", "\"acme\"", "admin"),
        ("ops", "\"*\"", "admin"),
    ] {
        principals.push_str(&format!(
            "[[principal]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\ntenants = [{tenants}]\nroles = [\"{role}\"]\n\n",
            token_sha256(&format!("t-{name}"))
        ));
    }
    std::fs::write(&auth, principals).unwrap();
    let app = spawn_app_with(move |s| s.auth_file = Some(auth)).await;
    let mut admin = SuppressionAdminServiceClient::connect(app.addr.clone())
        .await
        .unwrap();
    for (token, code) in [
        ("t-operator", Code::PermissionDenied),
        ("t-tenant-admin", Code::PermissionDenied),
    ] {
        let err = admin
            .backup(with_token(pb::BackupRequest {}, token))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), code, "{token}: {err:?}");
    }
    let mut stream = admin
        .backup(with_token(pb::BackupRequest {}, "t-ops"))
        .await
        .expect("an admin of every tenant may")
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        bytes.extend(m.data);
    }
    assert!(bytes.starts_with(b"SPDSNAP\0"));
}
