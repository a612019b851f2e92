//! The change feed (WatchSuppressions): a follower keeps an exact copy of a tenant's list.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use suppressd::grpc::proto::{self as pb, Outcome, SuppressionChangeKind as Kind};
use tonic::Streaming;

use crate::helpers::*;

/// How long a test waits for a change that must come.
const PATIENCE: Duration = Duration::from_secs(20);

/// A follower's copy of a tenant's list: address id -> (address, reason).
#[derive(Default)]
struct Follower {
    list: BTreeMap<String, (String, i32)>,
    cursor: String,
    seen: HashSet<String>,
}

impl Follower {
    /// Lists every page of the server's list; returns the feed cursor of the listing.
    async fn sync(&mut self, client: &mut Client, tenant: &str) -> String {
        let mut token = String::new();
        let mut feed_cursor = None;
        loop {
            let page = client
                .list_suppressions(pb::ListSuppressionsRequest {
                    tenant: tenant.into(),
                    page_size: 7,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .expect("listing")
                .into_inner();
            let cursor = feed_cursor.get_or_insert_with(|| page.feed_cursor.clone());
            assert_eq!(*cursor, page.feed_cursor, "one feed cursor per listing");
            for s in page.suppressions {
                let reason = s.suppression.as_ref().map_or(0, |s| s.reason);
                self.list
                    .insert(s.address_id.clone(), (s.address.clone(), reason));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let cursor = feed_cursor.expect("at least one page");
        assert!(!cursor.is_empty());
        self.cursor = cursor.clone();
        cursor
    }

    /// Applies one change, as a follower would: upsert or delete by address id.
    fn apply(&mut self, c: pb::SuppressionChange) {
        assert!(
            self.seen.insert(c.cursor.clone()),
            "change {c:?} given twice"
        );
        assert!(!c.address_id.is_empty(), "{c:?}");
        match c.kind() {
            Kind::Suppressed | Kind::Replaced | Kind::Forgotten => {
                let reason = c.suppression.as_ref().map_or(0, |s| s.reason);
                self.list
                    .insert(c.address_id.clone(), (c.address.clone(), reason));
            }
            Kind::Lifted | Kind::Expired => {
                self.list.remove(&c.address_id);
            }
            other => panic!("unexpected change kind {other:?}"),
        }
        self.cursor = c.cursor;
    }

    /// Reads changes until one for `address` of `kind` has been applied.
    async fn follow_until(
        &mut self,
        stream: &mut Streaming<pb::SuppressionChange>,
        address: &str,
        kind: Kind,
    ) {
        loop {
            let change = tokio::time::timeout(PATIENCE, stream.message())
                .await
                .expect("a change arrives in time")
                .expect("the stream goes on")
                .expect("the stream is open");
            let done = change.address == address && change.kind() == kind;
            self.apply(change);
            if done {
                return;
            }
        }
    }
}

async fn watch(client: &mut Client, tenant: &str, after: &str) -> Streaming<pb::SuppressionChange> {
    client
        .watch_suppressions(pb::WatchSuppressionsRequest {
            tenant: tenant.into(),
            after_cursor: after.into(),
            kinds: vec![],
        })
        .await
        .expect("watch opens")
        .into_inner()
}

/// The server's list, as a follower keeps it.
async fn server_list(client: &mut Client, tenant: &str) -> BTreeMap<String, (String, i32)> {
    let mut f = Follower::default();
    f.sync(client, tenant).await;
    f.list
}

async fn suppress(client: &mut Client, tenant: &str, address: &str, note: &str) {
    client
        .suppress(pb::SuppressRequest {
            tenant: tenant.into(),
            address: address.into(),
            note: note.into(),
            ..Default::default()
        })
        .await
        .expect("suppress");
}

async fn reactivate(client: &mut Client, tenant: &str, address: &str) {
    client
        .reactivate(pb::ReactivateRequest {
            tenant: tenant.into(),
            address: address.into(),
            justification: "confirmed with the customer".into(),
            ..Default::default()
        })
        .await
        .expect("reactivate");
}

/// Reports a hard bounce for each of `addresses`, in batches on one stream.
async fn bounce_all(client: &mut Client, tenant: &str, prefix: &str, addresses: &[String]) {
    let results: Vec<pb::SendResult> = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            result(
                &format!("{prefix}-{i}"),
                a,
                Outcome::HardBounce,
                USER_UNKNOWN,
            )
        })
        .collect();
    let requests: Vec<pb::ReportSendResultsRequest> = results
        .chunks(25)
        .map(|c| pb::ReportSendResultsRequest {
            tenant: tenant.into(),
            results: c.to_vec(),
        })
        .collect();
    let summary = client
        .report_send_results(tokio_stream::iter(requests))
        .await
        .expect("ingest")
        .into_inner();
    assert_eq!(summary.accepted as usize, addresses.len(), "{summary:?}");
}

fn addresses(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}@example.com")).collect()
}

#[tokio::test]
async fn a_follower_that_starts_mid_ingest_and_reconnects_after_a_restart_ends_with_the_servers_list(
) {
    let mut app = spawn_app().await;
    let tenant = "acme";
    let first = addresses("early", 120);
    bounce_all(&mut app.client, tenant, "e", &first).await;

    // An ingest runs while the follower lists and starts watching.
    let mut writer = SuppressionServiceClient::connect(app.addr.clone())
        .await
        .unwrap();
    let during = addresses("during", 200);
    let ingest = {
        let during = during.clone();
        let mut writer = writer.clone();
        tokio::spawn(async move {
            for (i, chunk) in during.chunks(20).enumerate() {
                bounce_all(&mut writer, tenant, &format!("d{i}"), chunk).await;
                if i % 3 == 0 {
                    reactivate(&mut writer, tenant, &chunk[0]).await;
                }
            }
        })
    };
    let mut follower = Follower::default();
    let cursor = follower.sync(&mut app.client, tenant).await;
    let mut stream = watch(&mut app.client, tenant, &cursor).await;
    ingest.await.unwrap();
    // The last change of the ingest: reactivation of the first address of its last chunk
    // that was reactivated (chunk 9).
    let last = &during[180];
    follower.follow_until(&mut stream, last, Kind::Lifted).await;
    drop(stream);

    // While the follower is away: more changes, a restart, more changes.
    reactivate(&mut writer, tenant, &first[0]).await;
    suppress(&mut writer, tenant, "manual@example.com", "ticket 12").await;
    let mut app = app.restart().await;
    let mut writer = app.client.clone();
    bounce_all(&mut writer, tenant, "late", &addresses("late", 30)).await;
    reactivate(&mut writer, tenant, &first[1]).await;
    suppress(&mut writer, tenant, "marker@example.com", "the last change").await;

    let mut stream = watch(&mut app.client, tenant, &follower.cursor.clone()).await;
    follower
        .follow_until(&mut stream, "marker@example.com", Kind::Suppressed)
        .await;
    let server = server_list(&mut app.client, tenant).await;
    // 120 early, 200 during less 4 reactivated (chunks 0, 3, 6, 9), 2 early reactivated, 1
    // manual, 30 late, the marker.
    assert_eq!(server.len(), 120 + 200 - 4 - 2 + 1 + 30 + 1);
    assert_eq!(follower.list, server);
}

#[tokio::test]
async fn changes_say_what_who_why_and_when_and_stay_within_their_tenant() {
    let mut app = spawn_app().await;
    let mut other = watch(&mut app.client, "other", "").await;
    let mut stream = watch(&mut app.client, "acme", "").await;
    app.report(
        "acme",
        result("b1", "gone@example.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;
    let mut request = tonic::Request::new(pb::SuppressRequest {
        tenant: "acme".into(),
        address: "Ops@Example.com".into(),
        note: "ticket 4711".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-caller-id", "support-agent".parse().unwrap());
    app.client.suppress(request).await.unwrap();
    reactivate(&mut app.client, "acme", "ops@example.com").await;

    let bounced = next(&mut stream).await;
    assert_eq!(bounced.kind(), Kind::Suppressed);
    assert_eq!(bounced.address, "gone@example.com");
    assert_eq!(bounced.domain, "example.com");
    assert_eq!(bounced.actor, "system");
    let s = bounced.suppression.unwrap();
    assert_eq!(s.reason(), pb::BounceReason::MailboxNotFound);
    assert_eq!(s.event_id, "b1");
    assert_eq!(s.smtp_response, USER_UNKNOWN);
    assert!(bounced.at.is_some());

    let manual = next(&mut stream).await;
    assert_eq!(manual.kind(), Kind::Suppressed);
    assert_eq!(manual.address, "ops@example.com");
    assert_eq!(manual.actor, "support-agent");
    assert_eq!(manual.note, "ticket 4711");
    assert_eq!(
        manual.suppression.unwrap().reason(),
        pb::BounceReason::Manual
    );

    let lifted = next(&mut stream).await;
    assert_eq!(lifted.kind(), Kind::Lifted);
    assert_eq!(lifted.address, "ops@example.com");
    assert_eq!(lifted.note, "confirmed with the customer");
    assert_eq!(lifted.address_id, manual.address_id);
    assert_ne!(lifted.address_id, bounced.address_id);
    assert_eq!(
        lifted.suppression.unwrap().reason(),
        pb::BounceReason::Manual
    );
    assert!(lifted.cursor != manual.cursor && manual.cursor != bounced.cursor);

    // The other tenant's follower saw none of it.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.message())
            .await
            .is_err(),
        "a change of another tenant reached this one's feed"
    );
}

#[tokio::test]
async fn a_replacement_is_a_change_and_kinds_filter_the_feed() {
    let mut app = spawn_app().await;
    let start = server_list_cursor(&mut app.client, "").await;
    app.report(
        "",
        result("b1", "jane@exmaple.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;
    app.client
        .replace_address(pb::ReplaceAddressRequest {
            old_address: "jane@exmaple.com".into(),
            new_address: "jane@example.com".into(),
            evidence: pb::EvidenceKind::CrmCorrection as i32,
            confidence: 0.99,
            note: "fixed in the CRM".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    reactivate(&mut app.client, "", "jane@exmaple.com").await;

    let mut all = watch(&mut app.client, "", &start).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let c = tokio::time::timeout(PATIENCE, all.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push((c.kind(), c.address.clone()));
    }
    assert_eq!(
        got,
        [
            (Kind::Suppressed, "jane@exmaple.com".to_string()),
            (Kind::Replaced, "jane@exmaple.com".to_string()),
            (Kind::Lifted, "jane@exmaple.com".to_string()),
        ]
    );

    let mut lifted_only = app
        .client
        .watch_suppressions(pb::WatchSuppressionsRequest {
            after_cursor: start.clone(),
            kinds: vec![Kind::Lifted as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let c = tokio::time::timeout(PATIENCE, lifted_only.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(c.kind(), Kind::Lifted);
}

async fn next(stream: &mut Streaming<pb::SuppressionChange>) -> pb::SuppressionChange {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a change arrives in time")
        .expect("the stream goes on")
        .expect("the stream is open")
}

async fn server_list_cursor(client: &mut Client, tenant: &str) -> String {
    Follower::default().sync(client, tenant).await
}

#[tokio::test]
async fn bad_cursors_and_kinds_are_invalid_arguments() {
    let mut app = spawn_app().await;
    for (cursor, kinds, field) in [
        ("garbage", vec![], "after_cursor"),
        ("c1.zz", vec![], "after_cursor"),
        ("", vec![Kind::Lifted as i32, 0], "kinds[1]"),
        ("", vec![99], "kinds[0]"),
    ] {
        let err = app
            .client
            .watch_suppressions(pb::WatchSuppressionsRequest {
                after_cursor: cursor.into(),
                kinds,
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_invalid(&err, field);
    }
    let err = app
        .client
        .watch_suppressions(pb::WatchSuppressionsRequest {
            tenant: "Not A Tenant".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_invalid(&err, "tenant");
}

#[tokio::test]
async fn a_cursor_older_than_the_retention_is_out_of_range_until_the_follower_resyncs() {
    let mut app = spawn_app_with(|s| s.change_retention_days = 30).await;
    let before = server_list_cursor(&mut app.client, "").await;
    suppress(&mut app.client, "", "old@example.com", "").await;
    let after = server_list_cursor(&mut app.client, "").await;
    // Still within the retention: the old cursor reads the change.
    app.clock.advance(Duration::from_secs(29 * 86_400));
    let mut stream = watch(&mut app.client, "", &before).await;
    let c = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(c.address, "old@example.com");
    drop(stream);

    // Past it: the change is pruned (retention runs when the clock moves), and a cursor from
    // before it is out of range, with what to do about it.
    app.clock.advance(Duration::from_secs(2 * 86_400));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let err = loop {
        match app
            .client
            .watch_suppressions(pb::WatchSuppressionsRequest {
                after_cursor: before.clone(),
                ..Default::default()
            })
            .await
        {
            Err(e) => break e,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(_) => panic!("the old change was never pruned"),
        }
    };
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("ListSuppressions"), "{err:?}");
    // A cursor after the pruned change, and a fresh listing's cursor, still work, also after a
    // restart (the horizon is kept with the data).
    let mut app = app.restart().await;
    watch(&mut app.client, "", &after).await;
    let fresh = server_list_cursor(&mut app.client, "").await;
    suppress(&mut app.client, "", "new@example.com", "").await;
    let mut stream = watch(&mut app.client, "", &fresh).await;
    let c = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(c.address, "new@example.com");
    let err = app
        .client
        .watch_suppressions(pb::WatchSuppressionsRequest {
            after_cursor: before,
            ..Default::default()
        })
        .await
        .expect_err("still out of range after a restart");
    assert_eq!(err.code(), tonic::Code::OutOfRange);
}

#[tokio::test]
async fn expiries_domains_list_unsubscribes_and_erasures_are_changes_too() {
    let mut app = spawn_app().await;
    let start = server_list_cursor(&mut app.client, "").await;
    let (seconds, nanos) = app.clock.now().to_parts();
    app.client
        .suppress(pb::SuppressRequest {
            address: "brief@example.com".into(),
            expires_at: Some(prost_types::Timestamp {
                seconds: seconds + 86_400,
                nanos,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut unsubscribe = result("u1", "reader@example.com", Outcome::Unsubscribe, "");
    unsubscribe.list_id = "newsletter".into();
    app.report("", unsubscribe).await;
    app.client
        .suppress_domain(pb::SuppressDomainRequest {
            domain: "defunct.example".into(),
            note: "company closed".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    app.client
        .reactivate_domain(pb::ReactivateDomainRequest {
            domain: "defunct.example".into(),
            justification: "reopened".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    app.clock.advance(Duration::from_secs(2 * 86_400));
    suppress(&mut app.client, "", "gone@example.com", "").await;
    app.client
        .forget_address(pb::ForgetAddressRequest {
            address: "gone@example.com".into(),
            justification: "erasure request 17".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut stream = watch(&mut app.client, "", &start).await;
    let mut got = Vec::new();
    // Six changes, and the sweep's EXPIRED among them once it has run (the clock moved).
    while got.len() < 7 {
        let c = next(&mut stream).await;
        got.push(c);
    }
    let find = |kind: Kind, what: &str| {
        got.iter()
            .find(|c| c.kind() == kind && (c.address == what || c.domain == what))
            .unwrap_or_else(|| panic!("no {kind:?} for {what} in {got:#?}"))
    };
    let brief = find(Kind::Suppressed, "brief@example.com");
    assert!(brief.suppression.as_ref().unwrap().expires_at.is_some());
    let expired = find(Kind::Expired, "brief@example.com");
    assert_eq!(expired.actor, "system");
    assert_eq!(expired.address_id, brief.address_id);
    let listed = find(Kind::Suppressed, "reader@example.com");
    assert_eq!(listed.suppression.as_ref().unwrap().list_id, "newsletter");
    let domain = find(Kind::DomainSuppressed, "defunct.example");
    assert!(domain.address.is_empty() && domain.address_id.is_empty());
    assert!(domain.note.contains("company closed"), "{domain:?}");
    let lifted = find(Kind::DomainLifted, "defunct.example");
    assert!(lifted.note.contains("reopened"), "{lifted:?}");
    let forgotten = got
        .iter()
        .find(|c| c.kind() == Kind::Forgotten)
        .expect("a FORGOTTEN change");
    assert_eq!(forgotten.address, "");
    assert!(
        forgotten.note.contains("erasure request 17"),
        "{forgotten:?}"
    );
    // Its earlier SUPPRESSED change, read after the erasure, no longer names the person.
    let gone = got
        .iter()
        .find(|c| c.kind() == Kind::Suppressed && c.address_id == forgotten.address_id)
        .expect("the forgotten address's suppression");
    assert_eq!(gone.address, "", "{gone:?}");
    assert!(!got.iter().any(|c| c.address == "gone@example.com"));
}
