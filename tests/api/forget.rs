//! ForgetAddress: a person's data is erased from everything the service keeps (searched for in
//! the raw bytes of every file of the data directory, and of a copy taken after the erasure,
//! which stands for a backup until `suppressd backup` exists; on the postgres engine, in every
//! text and bytes column of every live row of the database), while the address stays blocked.

use std::path::{Path, PathBuf};

use suppressd::config::StorageEngine;
use suppressd::grpc::proto::{
    self as pb, history_entry::Entry, AddressState, BounceReason, ImportDecision, Outcome,
    StateChangeKind,
};
use tokio_stream::StreamExt;

use crate::helpers::*;

/// The person: every byte string below must be gone from disk once they are forgotten.
const ADDRESS: &str = "zq.erasure-7f3k@example.com";
const LOCAL_PART: &str = "zq.erasure-7f3k";
/// A distinctive part of the SMTP responses reported for the address.
const SMTP_SNIPPET: &str = "kaput-9xw-mailbox";
/// A distinctive part of the operator's note when suppressing the address by hand.
const NOTE_SNIPPET: &str = "note-qx81-called-us";
/// The manual suppression's source: a label, kept in the clear on purpose (it names no one),
/// so that the search below is shown to find what the store writes.
const SOURCE_MARKER: &str = "src-marker-k7p2";
const JUSTIFICATION: &str = "erasure request, ticket JUST-5521";

/// Every file under `dir` whose raw bytes contain `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                // A file removed in between (a checkpointed journal segment) reads as an error.
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// Copies `from` into a new directory (a backup taken while the server runs).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            // A journal segment removed by a checkpoint meanwhile is simply not in the copy.
            let _ = std::fs::copy(entry.path(), &target);
        }
    }
}

/// Where the store of data directory `dir` holds `needle`: the files under it, or on the
/// postgres engine the columns of its database with a live row that holds it.
fn places_holding(dir: &Path, needle: &str) -> Vec<String> {
    match test_database_url(dir) {
        Some(url) => suppressd::store::testing::postgres_rows_holding(&url, needle),
        None => files_holding(dir, needle)
            .into_iter()
            .map(|p| p.display().to_string())
            .collect(),
    }
}

/// Asserts that the store of data directory `dir` holds nothing of the person.
fn assert_nothing_of_the_person_in(dir: &Path) {
    for needle in [ADDRESS, LOCAL_PART, SMTP_SNIPPET, NOTE_SNIPPET] {
        let found = places_holding(dir, needle);
        assert!(found.is_empty(), "{needle:?} is still stored in {found:?}");
    }
}

fn smtp(text: &str) -> String {
    format!("550 5.1.1 <{ADDRESS}>: {SMTP_SNIPPET} {text}")
}

/// Reports a delivery, a soft bounce and (after a manual suppression with a note) a hard
/// bounce for the person, each naming them in its SMTP response.
async fn a_person_with_a_history(app: &mut TestApp) {
    app.report(
        "acme",
        result("f-1", ADDRESS, Outcome::Delivered, "250 2.0.0 OK"),
    )
    .await;
    app.report(
        "acme",
        result("f-2", ADDRESS, Outcome::SoftBounce, &smtp("over quota")),
    )
    .await;
    app.client
        .suppress(pb::SuppressRequest {
            tenant: "acme".into(),
            address: ADDRESS.into(),
            note: format!("{NOTE_SNIPPET}: {ADDRESS} asked us to stop"),
            source: SOURCE_MARKER.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    app.report(
        "acme",
        result("f-3", ADDRESS, Outcome::HardBounce, &smtp("user unknown")),
    )
    .await;
}

async fn forget(
    app: &mut TestApp,
    address: &str,
    justification: &str,
) -> pb::ForgetAddressResponse {
    let mut request = tonic::Request::new(pb::ForgetAddressRequest {
        tenant: "acme".into(),
        address: address.into(),
        justification: justification.into(),
    });
    request
        .metadata_mut()
        .insert("x-caller-id", "privacy-officer".parse().unwrap());
    app.client
        .forget_address(request)
        .await
        .unwrap()
        .into_inner()
}

async fn history(app: &mut TestApp, address: &str) -> Vec<pb::HistoryEntry> {
    app.client
        .get_address_history(pb::GetAddressHistoryRequest {
            tenant: "acme".into(),
            address: address.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

async fn bounces(app: &mut TestApp, source: &str) -> Vec<pb::RecordedResult> {
    app.client
        .list_bounces(pb::ListBouncesRequest {
            tenant: "acme".into(),
            source: source.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .bounces
}

async fn suppressions(app: &mut TestApp) -> Vec<pb::AddressStatus> {
    app.client
        .list_suppressions(pb::ListSuppressionsRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .suppressions
}

async fn import_decision(app: &mut TestApp, address: &str) -> ImportDecision {
    let mut responses = app
        .check_import(vec![pb::CheckImportRequest {
            tenant: "acme".into(),
            contacts: vec![pb::ImportContact {
                address: address.into(),
                external_id: "crm-1".into(),
                ..Default::default()
            }],
            ..Default::default()
        }])
        .await;
    let response = responses.next().await.unwrap().unwrap();
    response.verdicts[0].decision()
}

/// What must hold through the API once the person is forgotten.
async fn assert_forgotten_and_blocked(app: &mut TestApp, address_id: &str) {
    let given = "ZQ.Erasure-7f3k@Example.com";
    let status = app.status("acme", given).await;
    assert_eq!(status.state(), AddressState::Suppressed);
    assert!(status.forgotten);
    assert_eq!(status.address, "", "a forgotten address has no text");
    assert_eq!(status.given_address, given, "the request's text is echoed");
    assert_eq!(status.address_id, address_id, "the id is stable");
    let suppression = status.suppression.unwrap();
    assert_eq!(suppression.reason(), BounceReason::Manual);
    assert_eq!(suppression.source, SOURCE_MARKER);
    assert_eq!(suppression.smtp_response, "", "the note is erased");

    let batch = app
        .client
        .batch_get_suppression_status(pb::BatchGetSuppressionStatusRequest {
            tenant: "acme".into(),
            addresses: vec![ADDRESS.into(), "someone.else@example.com".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .statuses;
    assert_eq!(batch[0].state(), AddressState::Suppressed);
    assert!(batch[0].forgotten && batch[0].address.is_empty());
    assert_eq!(batch[0].address_id, address_id);
    assert_eq!(batch[1].state(), AddressState::Allowed);
    assert!(!batch[1].address_id.is_empty() && batch[1].address_id != address_id);

    assert_eq!(
        import_decision(app, given).await,
        ImportDecision::BlockSuppressed,
        "a re-import is still blocked"
    );

    let entries = history(app, ADDRESS).await;
    assert_eq!(entries.len(), 1, "only the erasure is left: {entries:?}");
    let Some(Entry::StateChange(change)) = &entries[0].entry else {
        panic!("a change of state expected: {entries:?}")
    };
    assert_eq!(change.kind(), StateChangeKind::Forgotten);
    assert_eq!(change.actor, "privacy-officer");
    assert_eq!(change.note, JUSTIFICATION);
    assert_eq!(change.event_id, "");

    assert!(
        bounces(app, "").await.is_empty(),
        "no bounce of the person is listed"
    );
    assert!(bounces(app, "test-source").await.is_empty());
    let listed = suppressions(app).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].address, "");
    assert_eq!(listed[0].address_id, address_id);
    assert!(listed[0].forgotten);
    assert_eq!(listed[0].suppression.as_ref().unwrap().smtp_response, "");
}

#[tokio::test]
async fn a_forgotten_person_leaves_no_trace_on_disk_and_stays_blocked() {
    let mut app = spawn_app().await;
    a_person_with_a_history(&mut app).await;

    // Before: the service knows the person, through the API...
    let before = app.status("acme", ADDRESS).await;
    assert_eq!(before.address, ADDRESS);
    assert!(!before.forgotten);
    assert!(before
        .suppression
        .unwrap()
        .smtp_response
        .contains(NOTE_SNIPPET));
    let address_id = before.address_id;
    assert_eq!(address_id.len(), 32, "{address_id}");
    let entries = history(&mut app, ADDRESS).await;
    assert_eq!(
        entries.len(),
        4,
        "3 results and the manual suppression: {entries:?}"
    );
    assert!(format!("{entries:?}").contains(SMTP_SNIPPET));
    assert_eq!(bounces(&mut app, "").await.len(), 2);
    // ... while on disk its data is only ever sealed; the search finds what is in the clear.
    // The postgres engine keeps it in the clear until the erasure: the search finds it there.
    if test_engine() == StorageEngine::Postgres {
        for needle in [ADDRESS, LOCAL_PART, SMTP_SNIPPET, NOTE_SNIPPET] {
            assert!(
                !places_holding(&app.data_dir, needle).is_empty(),
                "{needle}"
            );
        }
    } else {
        assert_nothing_of_the_person_in(&app.data_dir);
    }
    assert!(!places_holding(&app.data_dir, SOURCE_MARKER).is_empty());

    let done = forget(&mut app, ADDRESS, JUSTIFICATION).await;
    assert!(!done.already_forgotten);
    let status = done.status.unwrap();
    assert_eq!(status.state(), AddressState::Suppressed);
    assert!(status.forgotten);
    assert_eq!(
        (status.address.as_str(), status.given_address.as_str()),
        ("", ADDRESS)
    );
    assert_forgotten_and_blocked(&mut app, &address_id).await;

    // A copy of the data directory taken now (what a backup would hold); the postgres engine
    // keeps nothing there (its backups: docs/postgres.md).
    if test_engine() != StorageEngine::Postgres {
        let backup = tempfile::tempdir().unwrap();
        copy_dir(&app.data_dir, backup.path());
        assert_nothing_of_the_person_in(backup.path());
    }

    // Everything checkpointed into the engine and the server stopped: still nothing, though
    // the justification (stored in the clear) is found.
    app.stop().await;
    assert_nothing_of_the_person_in(&app.data_dir);
    assert!(!places_holding(&app.data_dir, "JUST-5521").is_empty());
    assert!(!places_holding(&app.data_dir, SOURCE_MARKER).is_empty());

    let mut app = app.restart().await;
    assert_forgotten_and_blocked(&mut app, &address_id).await;
}

#[tokio::test]
async fn nothing_of_a_forgotten_person_is_on_disk_once_the_journal_is_checkpointed() {
    // A journal of no size: every commit is checkpointed into the engine right away.
    let mut app = spawn_app_with(|s| s.journal_mb = 0).await;
    a_person_with_a_history(&mut app).await;
    let address_id = app.status("acme", ADDRESS).await.address_id;
    forget(&mut app, ADDRESS, JUSTIFICATION).await;
    // The next commit waits for the checkpoint of the erasure's.
    app.report(
        "acme",
        result("other-1", "other@example.com", Outcome::Delivered, ""),
    )
    .await;
    assert_nothing_of_the_person_in(&app.data_dir);
    assert!(!places_holding(&app.data_dir, "JUST-5521").is_empty());
    assert_forgotten_and_blocked(&mut app, &address_id).await;
}

#[tokio::test]
async fn forgetting_twice_changes_nothing_and_a_new_address_is_suppressed_by_the_erasure() {
    let mut app = spawn_app().await;
    let first = forget(&mut app, "never.seen@example.com", "ticket 1").await;
    assert!(!first.already_forgotten);
    let status = first.status.unwrap();
    assert_eq!(status.state(), AddressState::Suppressed);
    let suppression = status.suppression.unwrap();
    assert_eq!(suppression.reason(), BounceReason::Manual);
    assert_eq!(suppression.source, "forget");

    let again = forget(&mut app, "never.seen@example.com", "ticket 2").await;
    assert!(again.already_forgotten);
    assert!(again.status.unwrap().forgotten);
    let entries = history(&mut app, "never.seen@example.com").await;
    assert_eq!(entries.len(), 1);
    let Some(Entry::StateChange(change)) = &entries[0].entry else {
        panic!("a change of state expected")
    };
    assert_eq!(change.note, "ticket 1");
}

#[tokio::test]
async fn a_forget_request_that_is_not_valid_is_refused_and_changes_nothing() {
    let mut app = spawn_app().await;
    app.report(
        "acme",
        result("v-1", ADDRESS, Outcome::SoftBounce, &smtp("over quota")),
    )
    .await;
    let cases = [
        ("not an address", "ticket 1", "address"),
        (ADDRESS, "", "justification"),
        (ADDRESS, "   ", "justification"),
        (ADDRESS, &"x".repeat(1025), "justification"),
        (ADDRESS, &format!("asked by {ADDRESS}"), "justification"),
        (ADDRESS, "zq.erasure-7F3K called", "justification"),
    ];
    for (address, justification, field) in cases {
        let err = app
            .client
            .forget_address(pb::ForgetAddressRequest {
                tenant: "acme".into(),
                address: address.into(),
                justification: justification.into(),
            })
            .await
            .unwrap_err();
        assert_invalid(&err, field);
    }
    let err = app
        .client
        .forget_address(pb::ForgetAddressRequest {
            tenant: "not a tenant!".into(),
            address: ADDRESS.into(),
            justification: "ticket".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "tenant");
    let status = app.status("acme", ADDRESS).await;
    assert_eq!(status.state(), AddressState::Allowed);
    assert!(!status.forgotten);
    assert_eq!(history(&mut app, ADDRESS).await.len(), 1);
}

#[tokio::test]
async fn a_forgotten_address_is_never_recorded_again_nor_reactivated() {
    let mut app = spawn_app().await;
    a_person_with_a_history(&mut app).await;
    let address_id = app.status("acme", ADDRESS).await.address_id;
    forget(&mut app, ADDRESS, JUSTIFICATION).await;

    // A send result is taken (and counted), but the address's history gets nothing.
    let reported = app
        .report(
            "acme",
            result("f-4", ADDRESS, Outcome::HardBounce, &smtp("again")),
        )
        .await;
    let status = reported.status.unwrap();
    assert_eq!(status.state(), AddressState::Suppressed);
    assert!(status.forgotten && status.address.is_empty());
    assert_eq!(status.address_id, address_id);
    assert_eq!(history(&mut app, ADDRESS).await.len(), 1);
    assert!(bounces(&mut app, "").await.is_empty());

    let err = app
        .client
        .reactivate(pb::ReactivateRequest {
            tenant: "acme".into(),
            address: ADDRESS.into(),
            justification: "the person came back".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    let again = app
        .client
        .suppress(pb::SuppressRequest {
            tenant: "acme".into(),
            address: ADDRESS.into(),
            note: format!("{NOTE_SNIPPET} once more"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_suppressed);

    app.stop().await;
    assert_nothing_of_the_person_in(&app.data_dir);
}

#[tokio::test]
async fn forgetting_a_replaced_address_takes_it_out_of_its_replacement_too() {
    let mut app = spawn_app().await;
    let replacement = "zq.renamed@example.com";
    app.report(
        "acme",
        result("r-1", ADDRESS, Outcome::HardBounce, &smtp("user unknown")),
    )
    .await;
    let replaced = app
        .client
        .replace_address(pb::ReplaceAddressRequest {
            tenant: "acme".into(),
            old_address: ADDRESS.into(),
            new_address: replacement.into(),
            evidence: pb::EvidenceKind::CrmCorrection as i32,
            confidence: 1.0,
            note: "fixed in the CRM".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.new_status.unwrap().replaces, ADDRESS);
    assert!(format!("{:?}", history(&mut app, replacement).await).contains(ADDRESS));

    forget(&mut app, ADDRESS, JUSTIFICATION).await;
    let new = app.status("acme", replacement).await;
    assert_eq!(new.address, replacement);
    assert!(!new.pending_validation && new.replaces.is_empty());
    let entries = history(&mut app, replacement).await;
    assert_eq!(entries.len(), 1, "the replacement keeps its own history");
    let text = format!("{entries:?}");
    assert!(
        !text.contains(ADDRESS) && text.contains("forgotten address"),
        "{text}"
    );

    app.stop().await;
    assert_nothing_of_the_person_in(&app.data_dir);
    // The replacement's own data is still there, sealed.
    let mut app = app.restart().await;
    assert_eq!(app.status("acme", replacement).await.address, replacement);
}

#[tokio::test]
async fn every_status_carries_the_same_stable_address_id() {
    let mut app = spawn_app().await;
    let reported = app
        .report(
            "acme",
            result(
                "i-1",
                "Id.Check@Example.com",
                Outcome::HardBounce,
                USER_UNKNOWN,
            ),
        )
        .await
        .status
        .unwrap();
    let id = reported.address_id.clone();
    assert_eq!(id.len(), 32);
    assert!(id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(
        app.status("acme", "id.check@example.com").await.address_id,
        id
    );
    assert_eq!(suppressions(&mut app).await[0].address_id, id);
    // Another tenant, another address: other ids. An address never seen has one too.
    assert_ne!(
        app.status("globex", "id.check@example.com")
            .await
            .address_id,
        id
    );
    let unknown = app.status("acme", "nobody@example.com").await.address_id;
    assert!(!unknown.is_empty() && unknown != id);
    let mut app = app.restart().await;
    assert_eq!(
        app.status("acme", "id.check@example.com").await.address_id,
        id
    );
}

/// The first `n` changes of the acme feed after `cursor`.
async fn feed_after(app: &mut TestApp, cursor: &str, n: usize) -> Vec<pb::SuppressionChange> {
    let mut stream = app
        .client
        .watch_suppressions(pb::WatchSuppressionsRequest {
            tenant: "acme".into(),
            after_cursor: cursor.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut changes = Vec::new();
    while changes.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(20), stream.message());
        changes.push(
            next.await
                .expect("a change comes")
                .unwrap()
                .expect("open stream"),
        );
    }
    changes
}

#[tokio::test]
async fn the_change_feed_forgets_the_person_too() {
    let mut app = spawn_app().await;
    let start = app
        .client
        .list_suppressions(pb::ListSuppressionsRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .feed_cursor;
    a_person_with_a_history(&mut app).await;
    let before = feed_after(&mut app, &start, 1).await;
    assert_eq!(before[0].kind(), pb::SuppressionChangeKind::Suppressed);
    assert_eq!(before[0].address, ADDRESS);
    assert!(before[0].note.contains(NOTE_SNIPPET));
    let address_id = before[0].address_id.clone();

    forget(&mut app, ADDRESS, JUSTIFICATION).await;
    let after = feed_after(&mut app, &start, 2).await;
    assert_eq!(
        after[0].cursor, before[0].cursor,
        "the same change, still in its place"
    );
    assert_eq!(after[0].kind(), pb::SuppressionChangeKind::Suppressed);
    assert_eq!(after[0].address_id, address_id);
    assert_eq!(
        (after[0].address.as_str(), after[0].domain.as_str()),
        ("", "")
    );
    assert_eq!(after[0].note, "", "its note named the person");
    let forgotten = &after[1];
    assert_eq!(forgotten.kind(), pb::SuppressionChangeKind::Forgotten);
    assert_eq!(forgotten.address_id, address_id);
    assert_eq!(
        (forgotten.address.as_str(), forgotten.domain.as_str()),
        ("", "")
    );
    assert_eq!(forgotten.actor, "privacy-officer");
    assert_eq!(forgotten.note, JUSTIFICATION);
    let suppression = forgotten.suppression.as_ref().unwrap();
    assert_eq!(suppression.reason(), BounceReason::Manual);
    assert_eq!(suppression.smtp_response, "");
}
