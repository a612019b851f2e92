//! Classification through the API, and re-applying newer rules to stored events.

use suppressd::app::report::event_write;
use suppressd::domain::{
    BounceReason, BounceType, Classification, EmailAddress, RecordedEvent, ReportedOutcome, Tenant,
    Timestamp,
};
use suppressd::grpc::proto::suppression_admin_service_client::SuppressionAdminServiceClient;
use suppressd::grpc::proto::{
    self as pb, history_entry::Entry, AddressState, OutcomeType, ReclassifyEffect, StateChangeKind,
};
use suppressd::policy::EscalationPolicy;
use suppressd::store::{StoreOptions, SuppressionStore};

use crate::helpers::*;

#[tokio::test]
async fn classify_smtp_response_stores_nothing() {
    let mut app = spawn_app().await;
    let r = app
        .client
        .classify_smtp_response(pb::ClassifySmtpResponseRequest {
            smtp_response: USER_UNKNOWN.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let c = r.classification.unwrap();
    assert_eq!(c.outcome_type(), OutcomeType::Hard);
    assert_eq!(c.reason(), pb::BounceReason::MailboxNotFound);
    assert!(r.rules_version >= 1);
    let blocked = app
        .client
        .classify_smtp_response(pb::ClassifySmtpResponseRequest {
            smtp_response: GMAIL_UNSOLICITED.into(),
            reported_outcome: pb::Outcome::HardBounce as i32,
            provider: "gmail".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .classification
        .unwrap();
    assert_eq!(blocked.outcome_type(), OutcomeType::Block);
    assert!(
        blocked.disagrees_with_reporter,
        "the reporter called it hard"
    );
    let err = app
        .client
        .classify_smtp_response(pb::ClassifySmtpResponseRequest {
            smtp_response: "x".repeat(5000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "smtp_response");
    let bounces = app
        .client
        .list_bounces(pb::ListBouncesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(bounces.bounces.is_empty());
}

/// Records `text` for `address` as an older rule set judged it.
async fn record_legacy(
    store: &dyn SuppressionStore,
    id: &str,
    address: &str,
    text: &str,
    t: BounceType,
    reason: BounceReason,
    day: i64,
) {
    let now = suppressd::clock::Clock::system().now();
    let event = RecordedEvent {
        event_id: id.into(),
        address: address.into(),
        outcome: ReportedOutcome::Bounce,
        smtp_response: text.into(),
        enhanced_status: None,
        source: "legacy-source".into(),
        campaign: String::new(),
        segment: String::new(),
        provider: "gmail".into(),
        occurred_at: Timestamp(now.micros() - (10 - day) * 3_600_000_000),
        recorded_at: now,
        classification: Classification {
            bounce_type: t,
            reason,
            rule_id: "legacy.rule".into(),
            confidence: 0.5,
            disagrees_with_reporter: false,
        },
        rules_version: 0,
        list_id: String::new(),
    };
    let outcomes = store
        .write(vec![event_write(
            &Tenant::parse("").unwrap(),
            EmailAddress::parse(address).unwrap(),
            event,
            EscalationPolicy::default(),
        )])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
}

#[tokio::test]
async fn reclassify_fixes_suppressions_that_older_rules_got_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    {
        let store = suppressd::store::open(StoreOptions {
            engine: test_engine().into(),
            path: path.clone(),
            cache_bytes: 16 << 20,
            journal_bytes: 1 << 20,
            database_url: test_database_url(&path),
        })
        .unwrap();
        suppressd::store::testing::wait_until_ready(&*store, std::time::Duration::from_secs(30));
        // Older rules called Gmail's spam block a hard bounce, and missed a "user unknown".
        record_legacy(
            &*store,
            "e1",
            "wronged@gmail.com",
            GMAIL_UNSOLICITED,
            BounceType::Hard,
            BounceReason::MailboxNotFound,
            1,
        )
        .await;
        record_legacy(
            &*store,
            "e2",
            "missed@example.com",
            USER_UNKNOWN,
            BounceType::Soft,
            BounceReason::Unknown,
            2,
        )
        .await;
        record_legacy(
            &*store,
            "e3",
            "twice@gmail.com",
            GMAIL_UNSOLICITED,
            BounceType::Hard,
            BounceReason::MailboxNotFound,
            3,
        )
        .await;
        record_legacy(
            &*store,
            "e4",
            "twice@gmail.com",
            USER_UNKNOWN,
            BounceType::Hard,
            BounceReason::MailboxNotFound,
            4,
        )
        .await;
        store.close().unwrap();
    }
    let mut app = spawn_app_with(|s| {
        s.data_dir = path.clone();
        s.database_url = test_database_url(&path);
    })
    .await;
    assert_eq!(
        app.state("", "wronged@gmail.com").await,
        AddressState::Suppressed
    );
    assert_eq!(
        app.state("", "missed@example.com").await,
        AddressState::Allowed
    );
    let mut admin = SuppressionAdminServiceClient::connect(app.addr.clone())
        .await
        .unwrap();

    let dry = admin
        .reclassify(pb::ReclassifyRequest {
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(dry.dry_run);
    assert_eq!(dry.examined, 4);
    assert_eq!(
        (
            dry.suppressions_lifted,
            dry.suppressions_added,
            dry.suppressions_repointed
        ),
        (1, 1, 1),
        "{dry:?}"
    );
    assert_eq!(
        app.state("", "wronged@gmail.com").await,
        AddressState::Suppressed,
        "a dry run changes nothing"
    );

    let run = admin
        .reclassify(pb::ReclassifyRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            run.suppressions_lifted,
            run.suppressions_added,
            run.suppressions_repointed
        ),
        (1, 1, 1)
    );
    let effects: Vec<(String, ReclassifyEffect)> = run
        .changes
        .iter()
        .map(|c| (c.event_id.clone(), c.effect()))
        .collect();
    assert!(
        effects.contains(&("e1".into(), ReclassifyEffect::Lifted)),
        "{effects:?}"
    );
    assert!(
        effects.contains(&("e2".into(), ReclassifyEffect::Suppressed)),
        "{effects:?}"
    );
    assert!(
        effects.contains(&("e3".into(), ReclassifyEffect::Repointed)),
        "{effects:?}"
    );

    assert_eq!(
        app.state("", "wronged@gmail.com").await,
        AddressState::Allowed
    );
    assert_eq!(
        app.state("", "missed@example.com").await,
        AddressState::Suppressed
    );
    let twice = app.status("", "twice@gmail.com").await;
    assert_eq!(twice.state(), AddressState::Suppressed);
    assert_eq!(twice.suppression.unwrap().event_id, "e4");

    // The lift is in the history with both rule ids.
    let history = app
        .client
        .get_address_history(pb::GetAddressHistoryRequest {
            address: "wronged@gmail.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Entry::StateChange(change)) = &history.entries[0].entry else {
        panic!("{history:?}")
    };
    assert_eq!(change.kind(), StateChangeKind::Reclassified);
    assert!(change.note.contains("legacy.rule"), "{}", change.note);
    let e1 = history
        .entries
        .iter()
        .find_map(|e| match &e.entry {
            Some(Entry::SendResult(r)) => Some(r.clone()),
            _ => None,
        })
        .expect("the send result is in the history");
    assert_eq!(
        e1.classification.unwrap().outcome_type(),
        OutcomeType::Block,
        "the stored event carries the new verdict"
    );

    // Counters moved with the events: 2 hard (e2, e4) and 2 blocks (e1, e3) now.
    let stats = app
        .client
        .get_source_stats(pb::GetSourceStatsRequest {
            dimension: pb::StatsDimension::Source as i32,
            value: "legacy-source".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let c = stats.current.unwrap().counts.unwrap();
    assert_eq!(
        (c.sent, c.hard_bounces, c.blocks, c.soft_bounces),
        (4, 2, 2, 0)
    );

    // Running it again finds nothing left to change.
    let again = admin
        .reclassify(pb::ReclassifyRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.reclassified, 0);
}
