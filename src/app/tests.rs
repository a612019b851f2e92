//! Use cases tested without a server: the application over a real store on a clock moved by
//! hand.

use std::sync::Arc;
use std::time::Duration;

use super::addresses::ManualSuppression;
use super::reclassify::ReclassifyRequest;
use super::report::event_write;
use super::{App, Caller, Settings};
use crate::classify::Classifier;
use crate::clock::Clock;
use std::collections::BTreeSet;

use crate::domain::{
    BounceReason, BounceType, Classification, EmailAddress, HistoryEntry, Principal, RecordedEvent,
    ReportedOutcome, Role, SendReport, Source, StateChangeKind, Tenant, TenantScope, Timestamp,
};
use crate::policy::EscalationPolicy;
use crate::store::{AddressWrite, Engine, StoreOptions, SuppressionStore};

const GMAIL_UNSOLICITED: &str = "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked.";
const START: Timestamp = Timestamp(1_780_000_000_000_000);

fn open_store(dir: &tempfile::TempDir) -> Arc<dyn SuppressionStore> {
    crate::store::open(StoreOptions {
        engine: Engine::Sled,
        path: dir.path().join("data"),
        cache_bytes: 16 << 20,
        journal_bytes: 1 << 20,
        database_url: None,
    })
    .expect("store opens")
}

fn app(store: Arc<dyn SuppressionStore>, clock: &Clock) -> App {
    App::new(
        store,
        Arc::new(Classifier::new()),
        Settings {
            clock: clock.clone(),
            ..Settings::default()
        },
    )
}

/// A bounce as an older rule set judged it: Gmail's spam block taken for a hard bounce.
fn legacy_bounce(id: String, address: &str, at: Timestamp) -> RecordedEvent {
    RecordedEvent {
        event_id: id,
        address: address.into(),
        outcome: ReportedOutcome::Bounce,
        smtp_response: GMAIL_UNSOLICITED.into(),
        enhanced_status: None,
        source: "legacy".into(),
        campaign: String::new(),
        segment: String::new(),
        provider: "gmail".into(),
        occurred_at: at,
        recorded_at: at,
        classification: Classification {
            bounce_type: BounceType::Hard,
            reason: BounceReason::MailboxNotFound,
            rule_id: "legacy.rule".into(),
            confidence: 0.5,
            disagrees_with_reporter: false,
        },
        rules_version: 0,
        list_id: String::new(),
    }
}

fn record(event: RecordedEvent) -> AddressWrite {
    let address = EmailAddress::parse(&event.address).expect("valid address");
    event_write(
        &Tenant::parse("").unwrap(),
        address,
        event,
        EscalationPolicy::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclassification_settles_each_address_once_even_when_its_bounces_span_many_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    // 300 addresses, 8 legacy bounces each, interleaved in time so that every address has
    // bounces on every page of 1,000.
    let addresses: Vec<String> = (0..300).map(|i| format!("user{i}@gmail.com")).collect();
    let mut writes = Vec::new();
    for round in 0..8i64 {
        for (i, a) in addresses.iter().enumerate() {
            let at = Timestamp(START.micros() + (round * 300 + i as i64) * 1_000_000);
            writes.push(record(legacy_bounce(format!("e{round}-{i}"), a, at)));
        }
    }
    store.write(writes).await.unwrap();
    let clock = Clock::manual(Timestamp(START.micros() + 86_400_000_000));
    let app = app(store.clone(), &clock);
    let tenant = Tenant::parse("").unwrap();
    let ops = Caller::trusted("ops");

    let dry = app
        .reclassify
        .run(
            &ops,
            tenant.clone(),
            ReclassifyRequest {
                dry_run: true,
                max_listed: 10,
                ..ReclassifyRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dry.examined, 2_400);
    assert_eq!(dry.reclassified, 2_400, "every event counted once");
    assert_eq!(dry.lifted, 300, "every address counted once");
    assert_eq!(dry.changes.len(), 10);
    assert_eq!(dry.changes[0].event_id, "e0-0", "the earliest are listed");
    let probe = EmailAddress::parse(&addresses[7]).unwrap();
    assert!(app
        .lookup
        .status(&ops, &tenant, probe.clone(), &Default::default())
        .await
        .unwrap()
        .is_suppressed());

    let done = app
        .reclassify
        .run(&ops, tenant.clone(), ReclassifyRequest::default())
        .await
        .unwrap();
    assert_eq!((done.reclassified, done.lifted), (2_400, 300));
    for a in &addresses {
        let address = EmailAddress::parse(a).unwrap();
        assert!(!app
            .lookup
            .status(&ops, &tenant, address.clone(), &Default::default())
            .await
            .unwrap()
            .is_suppressed());
        let history = app
            .addresses
            .history(&ops, tenant.clone(), address, None, 100)
            .await
            .unwrap();
        let lifts = history
            .items
            .iter()
            .filter(|h| matches!(h, HistoryEntry::StateChange(c) if c.kind == StateChangeKind::Reclassified))
            .count();
        assert_eq!(lifts, 1, "{a} was settled once, not once per page");
    }
    let again = app
        .reclassify
        .run(&ops, tenant, ReclassifyRequest::default())
        .await
        .unwrap();
    assert_eq!((again.examined, again.reclassified), (2_400, 0));
    app.shutdown().await;
    drop(app);
    store.close().unwrap();
}

#[tokio::test]
async fn a_manual_suppression_is_dated_by_the_injected_clock_and_lifted_only_with_a_reactivation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir);
    let clock = Clock::manual(START);
    let app = app(store.clone(), &clock);
    let tenant = Tenant::parse("acme").unwrap();
    let support = Caller::authenticated(
        Arc::new(Principal::new(
            "support-desk",
            TenantScope::Only(BTreeSet::from([tenant.clone()])),
            BTreeSet::from([Role::Operator]),
        )),
        Some("agent-7".into()),
    );
    let address = EmailAddress::parse("optout@example.com").unwrap();
    let manual = || ManualSuppression {
        address: address.clone(),
        reason: BounceReason::Manual,
        source: Source::parse("").unwrap(),
        note: "ticket 4711".into(),
        expires_at: None,
        list_id: Default::default(),
    };
    let foreign = app
        .addresses
        .suppress(&support, Tenant::parse("globex").unwrap(), manual())
        .await
        .unwrap_err();
    assert!(
        matches!(foreign, super::AppError::PermissionDenied(_)),
        "{foreign:?}"
    );
    let done = app
        .addresses
        .suppress(&support, tenant.clone(), manual())
        .await
        .unwrap();
    let suppression = done.status.record.unwrap().suppression.unwrap();
    assert_eq!(suppression.since, START);
    assert_eq!(suppression.source, "manual");

    // A delivery a week later changes nothing.
    clock.advance(Duration::from_secs(7 * 86_400));
    let delivered = app
        .report
        .report(
            &Caller::trusted("mta"),
            tenant.clone(),
            SendReport {
                event_id: "d1".into(),
                address: address.clone(),
                outcome: ReportedOutcome::Delivered,
                smtp_response: "250 2.0.0 OK".into(),
                enhanced_status: None,
                source: Source::default(),
                campaign: Default::default(),
                segment: Default::default(),
                provider: String::new(),
                occurred_at: clock.now(),
                list_id: Default::default(),
            },
        )
        .await
        .unwrap();
    assert!(delivered.status.is_suppressed());

    let lifted = app
        .addresses
        .reactivate(
            &support,
            tenant.clone(),
            address.clone(),
            "asked".into(),
            Default::default(),
        )
        .await
        .unwrap();
    assert!(!lifted.status.is_suppressed());
    assert_eq!(lifted.lifted.unwrap().since, START);
    let err = app
        .addresses
        .reactivate(
            &support,
            tenant.clone(),
            address.clone(),
            "again".into(),
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, super::AppError::NotFound(_)), "{err:?}");

    // Both actions name the principal as the actor, and the person it acted for beside it.
    let history = app
        .addresses
        .history(&support, tenant, address, None, 10)
        .await
        .unwrap();
    let changes: Vec<_> = history
        .items
        .iter()
        .filter_map(|h| match h {
            HistoryEntry::StateChange(c) => {
                Some((c.kind, c.actor.as_str(), c.on_behalf_of.as_str()))
            }
            HistoryEntry::SendResult(_) => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (StateChangeKind::Reactivated, "support-desk", "agent-7"),
            (
                StateChangeKind::ManuallySuppressed,
                "support-desk",
                "agent-7"
            ),
        ]
    );
    app.shutdown().await;
    drop(app);
    store.close().unwrap();
}
