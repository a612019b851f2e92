//! The storage contract, run against every engine: each write atomic, event ids idempotent,
//! everything acknowledged still there after a reopen, the suppressed index exact after a
//! reopen, one process per data directory, and no engine opening the other's data.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::kv::KvEngine;
use super::kv_store;
use super::legacy;
use super::redb_engine::RedbEngine;
use super::sled_engine::SledEngine;
use super::{
    keys, open, testing, AddressWrite, BounceQuery, Decision, DomainDecision, DomainWrite, Engine,
    ForgetWrite, Granularity, PairDecision, PairWrite, StoreError, StoreOptions, SuppressionQuery,
    SuppressionStore, WriteOutcome,
};
use crate::domain::{
    AddressRecord, BounceReason, BounceType, ChangeKind, Classification, Dimension, DomainRecord,
    EmailAddress, HistoryEntry, OutcomeCounts, RecordedEvent, ReportedOutcome, StateChangeKind,
    Tenant, Timestamp,
};
use crate::policy::domains::DomainPolicy;
use crate::policy::{EscalationPolicy, ManualSuppress};

/// 2026-01-01T10:00:00Z, in microseconds.
const T0: i64 = 1_767_261_600_000_000;

fn open_at(engine: Engine, path: &Path) -> Result<Arc<dyn SuppressionStore>, StoreError> {
    // The postgres engine: a database of the test cluster per directory.
    let database_url = (engine == Engine::Postgres)
        .then(|| testing::postgres_test_database(&path.to_string_lossy()));
    let store = open(StoreOptions {
        engine,
        path: path.to_path_buf(),
        cache_bytes: 16 << 20,
        journal_bytes: 1 << 20,
        database_url,
    })?;
    testing::wait_until_ready(&*store, Duration::from_secs(30));
    Ok(store)
}

/// Opens a directory that a store of this process used and closed. sled lets go of its file
/// lock from background threads a moment after its last handle is dropped, so a refusal as
/// locked is retried for a few seconds.
fn reopen_at(engine: Engine, path: &Path) -> Arc<dyn SuppressionStore> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open_at(engine, path) {
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

fn tenant(t: &str) -> Tenant {
    Tenant::parse(t).unwrap()
}

fn address(a: &str) -> EmailAddress {
    EmailAddress::parse(a).unwrap()
}

fn hard_bounce(id: &str, to: &str, at: i64) -> RecordedEvent {
    RecordedEvent {
        event_id: id.into(),
        address: to.into(),
        outcome: ReportedOutcome::Bounce,
        smtp_response: "550 5.1.1 user unknown".into(),
        enhanced_status: None,
        source: "signup-form".into(),
        campaign: "spring".into(),
        segment: String::new(),
        provider: "test".into(),
        occurred_at: Timestamp(at),
        recorded_at: Timestamp(at),
        classification: Classification {
            bounce_type: BounceType::Hard,
            reason: BounceReason::MailboxNotFound,
            rule_id: "test.rule".into(),
            confidence: 1.0,
            disagrees_with_reporter: false,
        },
        rules_version: 1,
        list_id: String::new(),
    }
}

/// A send result applied by the escalation policy.
fn event_write(t: &str, event: RecordedEvent) -> AddressWrite {
    let for_policy = event.clone();
    AddressWrite {
        tenant: tenant(t),
        address: address(&event.address),
        event: Some(event),
        reclassified: Vec::new(),
        decide: Box::new(move |current| {
            let next = EscalationPolicy::default().apply_event(current, &for_policy);
            Decision::Apply {
                record: next.record,
                changes: next.changes,
            }
        }),
    }
}

/// `n` hard bounces for `tenant`, event `e{i}` to `{local}{i}@x.com`, all at `T0`.
fn hard_bounces(t: &str, local: &str, n: usize) -> Vec<AddressWrite> {
    (0..n)
        .map(|i| {
            event_write(
                t,
                hard_bounce(&format!("e{i}"), &format!("{local}{i}@x.com"), T0),
            )
        })
        .collect()
}

/// A send result whose decision refuses it.
fn refused_write(t: &str, event: RecordedEvent) -> AddressWrite {
    AddressWrite {
        tenant: tenant(t),
        address: address(&event.address),
        event: Some(event),
        reclassified: Vec::new(),
        decide: Box::new(|_| Decision::Refuse("no".into())),
    }
}

/// Lifts the suppression of `a` at time `at`.
fn lift(t: &str, a: &str, at: i64) -> AddressWrite {
    AddressWrite {
        tenant: tenant(t),
        address: address(a),
        event: None,
        reclassified: Vec::new(),
        decide: Box::new(move |current| {
            match EscalationPolicy::default().reactivate(
                current,
                "ops",
                "asked",
                Timestamp(at),
                None,
            ) {
                Ok((next, _)) => Decision::Apply {
                    record: next.record,
                    changes: next.changes,
                },
                Err(e) => Decision::Refuse(e.to_string()),
            }
        }),
    }
}

fn hard_count(store: &dyn SuppressionStore, t: &str, at: i64) -> u64 {
    let bucket = Granularity::Hourly.bucket(Timestamp(at));
    store
        .counters(
            &tenant(t),
            Dimension::Source,
            "signup-form",
            Granularity::Hourly,
            bucket,
            bucket + 1,
        )
        .unwrap()
        .iter()
        .map(|(_, c)| c.hard)
        .sum()
}

fn history(store: &dyn SuppressionStore, t: &str, a: &str) -> Vec<HistoryEntry> {
    store
        .history(&tenant(t), &address(a), None, 100)
        .unwrap()
        .items
}

fn bounce_ids(store: &dyn SuppressionStore, t: &str) -> Vec<String> {
    store
        .list_bounces(&tenant(t), &BounceQuery::default(), None, 1000)
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

fn suppressed(store: &dyn SuppressionStore, t: &str, a: &str) -> bool {
    store
        .get_record(&tenant(t), &address(a))
        .unwrap()
        .as_ref()
        .is_some_and(AddressRecord::is_suppressed)
}

async fn each_write_is_atomic_and_refused_writes_store_nothing(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    let outcomes = store
        .write(vec![
            event_write("acme", hard_bounce("e1", "a@example.com", T0)),
            refused_write("acme", hard_bounce("e2", "b@example.com", T0)),
            event_write("acme", hard_bounce("e3", "c@example.com", T0)),
        ])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Applied { .. }));
    assert!(matches!(outcomes[1], WriteOutcome::Refused { .. }));
    assert!(matches!(outcomes[2], WriteOutcome::Applied { .. }));

    // The applied writes: event, record, suppressed index, history, bounce index, counters.
    for (id, a) in [("e1", "a@example.com"), ("e3", "c@example.com")] {
        assert!(store.get_event(&tenant("acme"), id).unwrap().is_some());
        assert!(suppressed(&*store, "acme", a));
        assert_eq!(
            history(&*store, "acme", a).len(),
            2,
            "send result and change"
        );
    }
    let mut ids = bounce_ids(&*store, "acme");
    ids.sort();
    assert_eq!(ids, ["e1", "e3"]);
    assert_eq!(hard_count(&*store, "acme", T0), 2);
    assert_eq!(store.suppressed_count(), 2);
    assert_eq!(
        store
            .dimension_values(&tenant("acme"), Dimension::Campaign)
            .unwrap(),
        ["spring"]
    );

    // The refused one left no trace.
    assert!(store.get_event(&tenant("acme"), "e2").unwrap().is_none());
    assert!(store
        .get_record(&tenant("acme"), &address("b@example.com"))
        .unwrap()
        .is_none());
    assert!(history(&*store, "acme", "b@example.com").is_empty());
    store.close().unwrap();
}

async fn event_ids_are_idempotent(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    // Twice in one group commit, then again in a later one, then in another tenant.
    let outcomes = store
        .write(vec![
            event_write("acme", hard_bounce("e1", "a@example.com", T0)),
            event_write("acme", hard_bounce("e1", "a@example.com", T0)),
        ])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], WriteOutcome::Applied { .. }));
    assert!(matches!(outcomes[1], WriteOutcome::Duplicate { .. }));
    let again = store
        .write(vec![event_write(
            "acme",
            hard_bounce("e1", "other@example.com", T0),
        )])
        .await
        .unwrap();
    assert!(matches!(again[0], WriteOutcome::Duplicate { .. }));
    let elsewhere = store
        .write(vec![event_write(
            "globex",
            hard_bounce("e1", "a@example.com", T0),
        )])
        .await
        .unwrap();
    assert!(matches!(elsewhere[0], WriteOutcome::Applied { .. }));

    assert_eq!(hard_count(&*store, "acme", T0), 1);
    assert_eq!(bounce_ids(&*store, "acme"), ["e1"]);
    assert_eq!(history(&*store, "acme", "a@example.com").len(), 2);
    assert!(store
        .get_record(&tenant("acme"), &address("other@example.com"))
        .unwrap()
        .is_none());
    store.close().unwrap();
}

async fn everything_acknowledged_survives_a_reopen(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let secret;
    {
        let store = open_at(engine, dir.path()).unwrap();
        secret = store.token_secret();
        for i in 0..50 {
            store
                .write(vec![event_write(
                    "acme",
                    hard_bounce(&format!("e{i}"), &format!("u{i}@example.com"), T0 + i),
                )])
                .await
                .unwrap();
        }
        store.close().unwrap();
    }
    let store = reopen_at(engine, dir.path());
    assert_eq!(store.token_secret(), secret, "page tokens survive restarts");
    assert_eq!(bounce_ids(&*store, "acme").len(), 50);
    assert_eq!(hard_count(&*store, "acme", T0), 50);
    assert!(suppressed(&*store, "acme", "u7@example.com"));
    let replay = store
        .write(vec![event_write(
            "acme",
            hard_bounce("e7", "u7@example.com", T0 + 7),
        )])
        .await
        .unwrap();
    assert!(matches!(replay[0], WriteOutcome::Duplicate { .. }));

    // Entries written after the reopen at the same instant as older ones sort newest first and
    // overwrite nothing: the sequence numbers go on where they stopped.
    let lifted = store.write(vec![lift("acme", "u0@example.com", T0)]).await;
    assert!(matches!(lifted.unwrap()[0], WriteOutcome::Applied { .. }));
    let entries = history(&*store, "acme", "u0@example.com");
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(
        matches!(&entries[0], HistoryEntry::StateChange(c) if c.kind == StateChangeKind::Reactivated),
        "{entries:?}"
    );
    store.close().unwrap();
    drop(store);

    let store = reopen_at(engine, dir.path());
    assert!(!suppressed(&*store, "acme", "u0@example.com"));
    assert_eq!(history(&*store, "acme", "u0@example.com").len(), 3);
    store.close().unwrap();
}

async fn the_suppressed_index_is_exact_after_a_reopen(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    {
        let store = open_at(engine, dir.path()).unwrap();
        store.write(hard_bounces("acme", "s", n)).await.unwrap();
        // Lift every third one.
        let lifts = (0..n)
            .filter(|i| i % 3 == 0)
            .map(|i| lift("acme", &format!("s{i}@x.com"), T0 + 1))
            .collect();
        store.write(lifts).await.unwrap();
        store.close().unwrap();
    }
    let store = reopen_at(engine, dir.path());
    assert_eq!(store.suppressed_count(), 200);
    let asked: Vec<EmailAddress> = (0..n + 50)
        .map(|i| address(&format!("s{i}@x.com")))
        .collect();
    let refs: Vec<&str> = asked.iter().map(EmailAddress::as_str).collect();
    let found = store
        .suppressed_records(&tenant("acme"), &refs, false)
        .unwrap();
    let positions: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
    let want: Vec<usize> = (0..n + 50).filter(|i| *i < n && i % 3 != 0).collect();
    assert_eq!(positions, want);
    assert!(found.iter().all(|(_, r)| r.is_suppressed()));
    // The same addresses of another tenant are not suppressed.
    let other = store
        .suppressed_records(&tenant("globex"), &refs, false)
        .unwrap();
    assert!(other.is_empty());
    store.close().unwrap();
}

async fn a_second_open_of_the_same_directory_is_refused(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    match open_at(engine, dir.path()) {
        Err(StoreError::Locked(path)) => assert!(path.contains(&*dir.path().to_string_lossy())),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("the data directory was opened twice"),
    }
    store.close().unwrap();
}

async fn the_other_engine_refuses_the_directory(engine: Engine) {
    let other = match engine {
        Engine::Sled => Engine::Redb,
        Engine::Redb => Engine::Sled,
        Engine::Postgres => unreachable!("a test of the embedded engines"),
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_at(engine, dir.path()).unwrap();
        store
            .write(vec![event_write(
                "acme",
                hard_bounce("e1", "a@example.com", T0),
            )])
            .await
            .unwrap();
        store.close().unwrap();
    }
    match open_at(other, dir.path()) {
        Err(e @ StoreError::OtherEngine { .. }) => {
            let message = e.to_string();
            assert!(message.contains(engine.name()), "{message}");
        }
        Err(e) => panic!("expected OtherEngine, got {e}"),
        Ok(_) => panic!("{} opened {} data", other.name(), engine.name()),
    }
    // The data is untouched.
    let store = reopen_at(engine, dir.path());
    assert!(suppressed(&*store, "acme", "a@example.com"));
    store.close().unwrap();
}

async fn inverted_or_empty_ranges_answer_nothing(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    store
        .write(vec![event_write(
            "acme",
            hard_bounce("e1", "a@example.com", T0),
        )])
        .await
        .unwrap();
    let query = BounceQuery {
        start: Some(Timestamp(T0 + 10)),
        end: Some(Timestamp(T0 - 10)),
        ..BounceQuery::default()
    };
    let page = store
        .list_bounces(&tenant("acme"), &query, None, 10)
        .unwrap();
    assert!(page.items.is_empty());
    let bucket = Granularity::Daily.bucket(Timestamp(T0));
    let counters = store
        .counters(
            &tenant("acme"),
            Dimension::Source,
            "signup-form",
            Granularity::Daily,
            bucket + 1,
            bucket - 1,
        )
        .unwrap();
    assert!(counters.is_empty());
    assert!(store
        .known_good_locals(&tenant("acme"), "example.com", 0)
        .unwrap()
        .is_empty());
    store.close().unwrap();
}

/// Writes keep being acknowledged while many callers write at once, and every acknowledged
/// one is there after a reopen (group commit over several groups).
async fn concurrent_writers_share_commits_and_lose_nothing(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_at(engine, dir.path()).unwrap();
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for b in 0..10 {
                    let writes = (0..20)
                        .map(|i| {
                            let id = format!("w{w}-b{b}-{i}");
                            event_write("acme", hard_bounce(&id, &format!("{id}@x.com"), T0))
                        })
                        .collect();
                    let out = store.write(writes).await.unwrap();
                    assert!(out
                        .iter()
                        .all(|o| matches!(o, WriteOutcome::Applied { .. })));
                }
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .unwrap()
                .unwrap();
        }
        store.close().unwrap();
    }
    let store = reopen_at(engine, dir.path());
    assert_eq!(store.suppressed_count(), 8 * 10 * 20);
    assert_eq!(hard_count(&*store, "acme", T0), 8 * 10 * 20);
    store.close().unwrap();
}

/// A send result of type `t` and reason `reason` to `to`, at `at`.
fn result_of(id: &str, to: &str, t: BounceType, reason: BounceReason, at: i64) -> RecordedEvent {
    let mut e = hard_bounce(id, to, at);
    e.classification.bounce_type = t;
    e.classification.reason = reason;
    e
}

/// An operator's domain write deciding with `decide`.
fn domain_write(
    t: &str,
    domain: &str,
    decide: impl Fn(&DomainRecord) -> DomainDecision + Send + Sync + 'static,
) -> DomainWrite {
    DomainWrite {
        tenant: tenant(t),
        domain: domain.into(),
        decide: Box::new(decide),
    }
}

/// Suppresses `domain` by hand (with its subdomains when `all`).
fn suppress_domain(t: &str, domain: &str, all: bool) -> DomainWrite {
    domain_write(t, domain, move |current| {
        match DomainPolicy::default().suppress(
            current,
            BounceReason::Manual,
            "closed",
            all,
            "ops",
            Timestamp(T0),
        ) {
            Some(next) => DomainDecision::Apply {
                record: next.record,
                changes: next.changes,
            },
            None => DomainDecision::Unchanged,
        }
    })
}

fn domain_suppressed_at(store: &dyn SuppressionStore, t: &str, domain: &str) -> Option<String> {
    store
        .domain_facts(&tenant(t), &[domain])
        .pop()
        .and_then(|(_, f)| f.suppressed)
        .map(|(d, _)| d)
}

/// Domain writes are durable, their marks answer from memory at once and again after a reopen;
/// a refused or panicking domain decision stores nothing.
async fn domain_writes_survive_a_reopen_and_refusals_store_nothing(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_at(engine, dir.path()).unwrap();
        assert!(!store.has_marked_domains(&tenant("acme")));
        let done = store
            .write_domain(suppress_domain("acme", "closed.example", true))
            .await
            .unwrap();
        assert!(done.applied && done.previous.suppression.is_none());
        let again = store
            .write_domain(suppress_domain("acme", "closed.example", true))
            .await
            .unwrap();
        assert!(!again.applied);
        let refused = store
            .write_domain(domain_write("acme", "other.example", |_| {
                DomainDecision::Refuse("no".into())
            }))
            .await
            .unwrap();
        assert_eq!(refused.refused.as_deref(), Some("no"));
        let panicked = store
            .write_domain(domain_write("acme", "other.example", |_| {
                panic!("policy bug")
            }))
            .await;
        assert!(matches!(panicked, Err(StoreError::DecisionPanicked(_))));
        assert_eq!(
            domain_suppressed_at(&*store, "acme", "mail.closed.example").as_deref(),
            Some("closed.example")
        );
        store.close().unwrap();
    }
    let store = reopen_at(engine, dir.path());
    assert!(store.has_marked_domains(&tenant("acme")));
    assert!(!store.has_marked_domains(&tenant("globex")));
    assert_eq!(
        domain_suppressed_at(&*store, "acme", "mail.closed.example").as_deref(),
        Some("closed.example")
    );
    assert_eq!(domain_suppressed_at(&*store, "acme", "other.example"), None);
    let record = store.domain(&tenant("acme"), "closed.example").unwrap();
    assert!(record.suppression.unwrap().include_subdomains);
    let history = store
        .domain_history(&tenant("acme"), "closed.example", 10)
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].kind, StateChangeKind::DomainSuppressed);
    assert!(store
        .domain_history(&tenant("acme"), "other.example", 10)
        .unwrap()
        .is_empty());
    let page = store
        .list_suppressed_domains(&tenant("acme"), None, 10)
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next.is_none());
    assert!(matches!(
        store.list_suppressed_domains(&tenant("acme"), Some(b"short"), 10),
        Err(StoreError::BadCursor)
    ));
    store.close().unwrap();
}

/// Send results change their domain in the same group commit: DOMAIN_NOT_FOUND bounces of one
/// group add up to an automatic suppression, deliveries set the domain's delivery hour and lift
/// it, results to accept-all domains are counted; all of it is there after a reopen.
async fn send_results_update_their_domains_in_the_same_commit(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let rules = Arc::new(DomainPolicy::default());
    {
        let store = open_at(engine, dir.path()).unwrap();
        store.set_domain_rules(rules.clone());
        let not_found = |i: usize| {
            event_write(
                "acme",
                result_of(
                    &format!("n{i}"),
                    &format!("a{i}@gone.example"),
                    BounceType::Hard,
                    BounceReason::DomainNotFound,
                    T0 + i as i64,
                ),
            )
        };
        store
            .write(vec![not_found(0), not_found(1), not_found(2)])
            .await
            .unwrap();
        assert_eq!(
            domain_suppressed_at(&*store, "acme", "gone.example").as_deref(),
            Some("gone.example")
        );
        let delivered = |id: &str, to: &str, at: i64| {
            event_write(
                "acme",
                result_of(id, to, BounceType::Delivered, BounceReason::None, at),
            )
        };
        store
            .write(vec![
                delivered("d1", "x@fine.example", T0 + 60_000_000),
                delivered("d2", "y@fine.example", T0 + 120_000_000),
            ])
            .await
            .unwrap();
        let fine = store.domain(&tenant("acme"), "fine.example").unwrap();
        assert_eq!(
            fine.last_delivered,
            Some(Granularity::Hourly.start(Granularity::Hourly.bucket(Timestamp(T0))))
        );

        store
            .write_domain(domain_write("acme", "catchall.example", |current| {
                let next = DomainPolicy::default()
                    .set_accept_all(current, true, "", "ops", Timestamp(T0))
                    .unwrap();
                DomainDecision::Apply {
                    record: next.record,
                    changes: next.changes,
                }
            }))
            .await
            .unwrap();
        store
            .write(vec![
                delivered("d3", "a@catchall.example", T0),
                event_write("acme", hard_bounce("h3", "b@catchall.example", T0)),
            ])
            .await
            .unwrap();
        store.close().unwrap();
    }
    let store = reopen_at(engine, dir.path());
    store.set_domain_rules(rules);
    assert!(domain_suppressed_at(&*store, "acme", "gone.example").is_some());
    let gone = store.domain(&tenant("acme"), "gone.example").unwrap();
    assert_eq!(gone.recent_not_found.len(), 3);
    assert!(gone.suppression.unwrap().automatic);
    let day = Granularity::Daily.bucket(Timestamp(T0));
    let counts = store
        .counters(
            &tenant("acme"),
            Dimension::Source,
            "signup-form",
            Granularity::Daily,
            day,
            day + 1,
        )
        .unwrap();
    assert_eq!(counts[0].1.to_accept_all, 2);
    assert_eq!(counts[0].1.sent, 3 + 2 + 2);

    store
        .write(vec![event_write(
            "acme",
            result_of(
                "d4",
                "z@gone.example",
                BounceType::Delivered,
                BounceReason::None,
                T0 + 3_600_000_000,
            ),
        )])
        .await
        .unwrap();
    assert!(domain_suppressed_at(&*store, "acme", "gone.example").is_none());
    let history = store
        .domain_history(&tenant("acme"), "gone.example", 10)
        .unwrap();
    let kinds: Vec<StateChangeKind> = history.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            StateChangeKind::DomainReactivated,
            StateChangeKind::DomainSuppressed
        ]
    );
    store.close().unwrap();
}

/// `records` gives the records of the addresses that have one, by index.
async fn records_of_many_addresses_come_back_by_index(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    store.write(hard_bounces("acme", "r", 3)).await.unwrap();
    let found = store
        .records(&tenant("acme"), &["r2@x.com", "nobody@x.com", "r0@x.com"])
        .unwrap();
    let positions: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
    assert_eq!(positions, [0, 2]);
    assert!(found.iter().all(|(_, r)| r.is_suppressed()));
    store.close().unwrap();
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::Sled).await
                }
            )*
        }
        mod on_redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::Redb).await
                }
            )*
        }
    };
}

/// The known-address index spares the reads of addresses without a record; once loaded at
/// start-up it must still find every record written before and after the restart.
async fn status_lookups_know_every_record_once_the_index_is_loaded(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_at(engine, dir.path()).unwrap();
        store.write(hard_bounces("acme", "k", 300)).await.unwrap();
        store.close().unwrap();
    }
    let store = reopen_at(engine, dir.path());
    store.wait_for_index_load().unwrap();
    assert!(store.indexes_loaded());
    for i in 0..300 {
        assert!(suppressed(&*store, "acme", &format!("k{i}@x.com")), "k{i}");
    }
    let unknown = store.get_record(&tenant("acme"), &address("nobody@x.com"));
    assert!(unknown.unwrap().is_none());
    assert!(!suppressed(&*store, "globex", "k1@x.com"));
    // A record written after the load is found too.
    assert!(!suppressed(&*store, "acme", "fresh@x.com"));
    store
        .write(vec![event_write(
            "acme",
            hard_bounce("e-new", "fresh@x.com", T0 + 1),
        )])
        .await
        .unwrap();
    assert!(suppressed(&*store, "acme", "fresh@x.com"));
    store.close().unwrap();
}

/// A new classification moves a recorded result into or out of the bounce listing: a result
/// reported as delivered whose reply a new rule reads as a failure is listed from then on, and
/// one that stops being a bounce is no longer listed (with or without a source filter).
async fn a_reclassified_result_enters_or_leaves_the_bounce_listing(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    let mut delivered = hard_bounce("d1", "kept@x.com", T0);
    delivered.outcome = ReportedOutcome::Delivered;
    delivered.classification.bounce_type = BounceType::Delivered;
    store
        .write(vec![
            event_write("acme", delivered.clone()),
            event_write("acme", hard_bounce("h1", "gone@x.com", T0 + 1)),
        ])
        .await
        .unwrap();
    assert_eq!(bounce_ids(&*store, "acme"), ["h1"]);
    let reclassify = |mut event: RecordedEvent, to: BounceType| {
        event.classification.bounce_type = to;
        AddressWrite {
            tenant: tenant("acme"),
            address: address(&event.address),
            event: None,
            reclassified: vec![event],
            decide: Box::new(|_| Decision::Unchanged),
        }
    };
    let mut bounced = hard_bounce("h1", "gone@x.com", T0 + 1);
    bounced.classification.bounce_type = BounceType::Hard;
    store
        .write(vec![
            reclassify(delivered, BounceType::Hard),
            reclassify(bounced, BounceType::Delivered),
        ])
        .await
        .unwrap();
    assert_eq!(bounce_ids(&*store, "acme"), ["d1"]);
    let by_source = BounceQuery {
        source: Some("signup-form".into()),
        ..BounceQuery::default()
    };
    let listed: Vec<String> = store
        .list_bounces(&tenant("acme"), &by_source, None, 100)
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(listed, ["d1"]);
    store.close().unwrap();
}

/// Many status lookups at once, as a busy server makes them, each get their own address's
/// record and their own domain's marks, whatever tenant and domain the others ask about.
async fn concurrent_status_lookups_each_get_their_own_answer(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    store.write(hard_bounces("acme", "k", 100)).await.unwrap();
    store
        .write_domain(suppress_domain("acme", "closed.example", true))
        .await
        .unwrap();
    let mut lookups = tokio::task::JoinSet::new();
    for i in 0..800usize {
        let store = store.clone();
        lookups.spawn(async move {
            let (t, a) = match i % 4 {
                0 => ("acme", format!("k{}@x.com", i / 8)),
                1 => ("globex", format!("k{}@x.com", i / 8)),
                2 => ("acme", format!("p{i}@mail.closed.example")),
                _ => ("globex", format!("p{i}@mail.closed.example")),
            };
            let (record, facts) = store.status_inputs(&tenant(t), &address(&a)).await.unwrap();
            let domain = facts.and_then(|f| f.suppressed).map(|(d, _)| d);
            (i, a, record, domain)
        });
    }
    let mut answered = 0;
    while let Some(done) = lookups.join_next().await {
        let (i, a, record, domain) = done.unwrap();
        let suppressed = record.as_ref().is_some_and(AddressRecord::is_suppressed);
        match i % 4 {
            0 => assert!(suppressed && domain.is_none(), "acme {a}"),
            1 | 3 => assert!(record.is_none() && domain.is_none(), "globex {a}"),
            _ => assert!(
                record.is_none() && domain.as_deref() == Some("closed.example"),
                "acme {a}"
            ),
        }
        answered += 1;
    }
    assert_eq!(answered, 800);
    store.close().unwrap();
}

/// Puts hourly counters in the layout of schema version 1 (one key per hour) straight into the
/// engine of directory `path`, as a store of that version left them: `(hour, hard bounces)`
/// of tenant acme, source signup-form.
fn write_schema_1_counters(engine: Engine, path: &Path, hours: &[(i64, u64)]) {
    fn put<E: KvEngine>(e: &E, hours: &[(i64, u64)]) {
        e.meta_put("schema_version", &[1]).unwrap();
        e.transact(|txn| {
            for &(hour, hard) in hours {
                let mut key = keys::dimension_prefix(
                    keys::HOURLY,
                    "acme",
                    Dimension::Source.code(),
                    "signup-form",
                );
                key.extend_from_slice(&keys::ordered_i64(hour));
                let counts = OutcomeCounts {
                    sent: hard,
                    hard,
                    ..OutcomeCounts::default()
                };
                txn.put(key, legacy::encode_counts(&counts))?;
            }
            Ok(())
        })
        .unwrap();
    }
    match engine {
        Engine::Sled => put(&SledEngine::open(path, 16 << 20).unwrap(), hours),
        Engine::Redb => put(&RedbEngine::open(path, 16 << 20).unwrap(), hours),
        Engine::Postgres => unreachable!("a test of the embedded engines"),
    }
}

/// Hourly counter keys of schema version 1 left in the engine of directory `path`.
fn schema_1_counter_keys(engine: Engine, path: &Path) -> usize {
    fn count<E: KvEngine>(e: &E) -> usize {
        let mut n = 0;
        kv_store::scan_prefix(e, &[keys::HOURLY], |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        n
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let opened = match engine {
            Engine::Sled => SledEngine::open(path, 16 << 20).map(|e| count(&e)),
            Engine::Redb => RedbEngine::open(path, 16 << 20).map(|e| count(&e)),
            Engine::Postgres => unreachable!("a test of the embedded engines"),
        };
        match opened {
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

/// A data directory of schema version 1 opens with its hourly counters moved into day rows:
/// the same counts come back, new events add to them, and nothing is counted twice.
async fn hourly_counters_of_schema_1_are_kept_at_open(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let h0 = Granularity::Hourly.bucket(Timestamp(T0));
    write_schema_1_counters(engine, dir.path(), &[(h0, 3), (h0 + 1, 4), (h0 + 30, 5)]);
    let hourly = |store: &dyn SuppressionStore| -> Vec<(i64, u64)> {
        store
            .counters(
                &tenant("acme"),
                Dimension::Source,
                "signup-form",
                Granularity::Hourly,
                h0 - 5,
                h0 + 48,
            )
            .unwrap()
            .into_iter()
            .map(|(bucket, c)| (bucket, c.hard))
            .collect()
    };
    {
        let store = reopen_at(engine, dir.path());
        assert_eq!(hourly(&*store), vec![(h0, 3), (h0 + 1, 4), (h0 + 30, 5)]);
        store
            .write(vec![event_write("acme", hard_bounce("e1", "a@x.com", T0))])
            .await
            .unwrap();
        assert_eq!(hourly(&*store), vec![(h0, 4), (h0 + 1, 4), (h0 + 30, 5)]);
        store.close().unwrap();
    }
    assert_eq!(schema_1_counter_keys(engine, dir.path()), 0);
    let store = reopen_at(engine, dir.path());
    assert_eq!(hourly(&*store), vec![(h0, 4), (h0 + 1, 4), (h0 + 30, 5)]);
    store.close().unwrap();
}

/// A send result whose decision panics, as a bug in policy code would.
fn panicking_write(t: &str, event: RecordedEvent) -> AddressWrite {
    AddressWrite {
        tenant: tenant(t),
        address: address(&event.address),
        event: Some(event),
        reclassified: Vec::new(),
        decide: Box::new(|_| panic!("policy bug: index out of range")),
    }
}

/// A decision that panics fails its own write, and only it: the other writes of the same call
/// and of a concurrent call are stored, nothing of the panicking write is, and the store goes
/// on taking writes.
async fn a_panicking_decision_fails_its_write_alone(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    // Queued together, so that they most likely share a group commit.
    let first = store
        .submit(vec![
            event_write("acme", hard_bounce("e1", "a@x.com", T0)),
            panicking_write("acme", hard_bounce("e2", "b@x.com", T0)),
            event_write("acme", hard_bounce("e3", "c@x.com", T0)),
        ])
        .await
        .unwrap();
    let second = store
        .submit(vec![event_write("acme", hard_bounce("e4", "d@x.com", T0))])
        .await
        .unwrap();
    match first.await {
        Err(StoreError::DecisionPanicked(message)) => {
            assert!(message.contains("policy bug"), "{message}")
        }
        Err(e) => panic!("expected DecisionPanicked, got {e}"),
        Ok(_) => panic!("a write whose decision panicked was answered as done"),
    }
    let second = second.await.unwrap();
    assert!(matches!(second[0], WriteOutcome::Applied { .. }));

    for a in ["a@x.com", "c@x.com", "d@x.com"] {
        assert!(suppressed(&*store, "acme", a), "{a}");
    }
    // Nothing of the panicking write: no event, record, history, index entry or count.
    assert!(store.get_event(&tenant("acme"), "e2").unwrap().is_none());
    assert!(store
        .get_record(&tenant("acme"), &address("b@x.com"))
        .unwrap()
        .is_none());
    assert!(history(&*store, "acme", "b@x.com").is_empty());
    let mut ids = bounce_ids(&*store, "acme");
    ids.sort();
    assert_eq!(ids, ["e1", "e3", "e4"]);
    assert_eq!(hard_count(&*store, "acme", T0), 3);
    assert_eq!(store.suppressed_count(), 3);

    // A two-address write whose decision panics fails the same way.
    let pair = store
        .write_pair(PairWrite {
            tenant: tenant("acme"),
            first: address("a@x.com"),
            second: address("z@x.com"),
            decide: Box::new(|_, _| -> PairDecision { panic!("replacement bug") }),
        })
        .await;
    assert!(
        matches!(&pair, Err(StoreError::DecisionPanicked(m)) if m.contains("replacement bug")),
        "{pair:?}"
    );
    assert!(store
        .get_record(&tenant("acme"), &address("z@x.com"))
        .unwrap()
        .is_none());

    // The writer is still there, and did not report an end.
    let later = store
        .write(vec![event_write("acme", hard_bounce("e2", "b@x.com", T0))])
        .await
        .unwrap();
    assert!(matches!(later[0], WriteOutcome::Applied { .. }));
    assert!(store.writer_failure().borrow().is_none());
    store.close().unwrap();
    assert!(
        store.writer_failure().borrow().is_none(),
        "close is no failure"
    );
}

/// A writer that ends by a panic (here injected in the engine's commit) is reported through
/// `writer_failure`, and writes fail from then on instead of waiting for it.
async fn a_writer_that_dies_is_reported_and_later_writes_fail(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = testing::open_with_commit_panic(
        StoreOptions {
            engine,
            path: dir.path().to_path_buf(),
            cache_bytes: 16 << 20,
            journal_bytes: 1 << 20,
            database_url: None,
        },
        2,
    )
    .unwrap();
    let mut failure = store.writer_failure();
    assert!(failure.borrow().is_none());
    store
        .write(vec![event_write("acme", hard_bounce("e1", "a@x.com", T0))])
        .await
        .unwrap();

    let bounded = Duration::from_secs(60);
    let dying = tokio::time::timeout(
        bounded,
        store.write(vec![event_write("acme", hard_bounce("e2", "b@x.com", T0))]),
    )
    .await
    .expect("the write in the dying commit is answered");
    assert!(matches!(dying, Err(StoreError::Closed)), "{dying:?}");
    let reason = tokio::time::timeout(bounded, failure.wait_for(Option::is_some))
        .await
        .expect("the end is reported")
        .unwrap()
        .clone()
        .unwrap();
    assert!(reason.contains("injected fault"), "{reason}");
    let later = tokio::time::timeout(
        bounded,
        store.write(vec![event_write("acme", hard_bounce("e3", "c@x.com", T0))]),
    )
    .await
    .expect("a later write is answered");
    assert!(matches!(later, Err(StoreError::Closed)), "{later:?}");
    // Reads go on; what was acknowledged is there.
    assert!(suppressed(&*store, "acme", "a@x.com"));
    store.close().unwrap();
    drop(store);

    let store = reopen_at(engine, dir.path());
    assert!(suppressed(&*store, "acme", "a@x.com"));
    assert!(store.get_event(&tenant("acme"), "e2").unwrap().is_none());
    store.close().unwrap();
}

/// An address's history pages one item at a time through entries that hold several (a
/// send result with the change it caused), in the order of the whole listing; a send result
/// that changes nothing still appears, and the record's other readers see one record.
async fn history_pages_item_by_item_through_entries_of_several(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    let a = "pat@example.com";
    store
        .write(vec![event_write("acme", hard_bounce("h1", a, T0))])
        .await
        .unwrap();
    store.write(vec![lift("acme", a, T0 + 10)]).await.unwrap();
    store
        .write(vec![event_write("acme", hard_bounce("h2", a, T0 + 20))])
        .await
        .unwrap();
    // A second hard bounce of a suppressed address changes nothing but is recorded.
    store
        .write(vec![event_write("acme", hard_bounce("h3", a, T0 + 30))])
        .await
        .unwrap();
    let whole = history(&*store, "acme", a);
    let kinds: Vec<String> = whole
        .iter()
        .map(|e| match e {
            HistoryEntry::SendResult(e) => e.event_id.clone(),
            HistoryEntry::StateChange(c) => format!("{:?}", c.kind),
        })
        .collect();
    assert_eq!(
        kinds,
        ["h3", "Suppressed", "h2", "Reactivated", "Suppressed", "h1"],
        "newest first, each change before the send result that caused it"
    );
    for limit in [1, 2, 4] {
        let mut paged = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = store
                .history(&tenant("acme"), &address(a), cursor.as_deref(), limit)
                .unwrap();
            assert!(page.items.len() <= limit);
            paged.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(paged, whole, "pages of {limit}");
    }
    assert_eq!(
        store
            .get_event(&tenant("acme"), "h3")
            .unwrap()
            .map(|e| e.event_id),
        Some("h3".to_string())
    );
    assert_eq!(bounce_ids(&*store, "acme"), ["h3", "h2", "h1"]);
    assert!(suppressed(&*store, "acme", a));
}

/// A manual suppression (every mail, or with `list` an unsubscribe from it) that ends at
/// `expires` (`None`: never).
fn suppress_until(t: &str, a: &str, list: &str, expires: Option<i64>) -> AddressWrite {
    let list = list.to_string();
    AddressWrite {
        tenant: tenant(t),
        address: address(a),
        event: None,
        reclassified: Vec::new(),
        decide: Box::new(move |current| {
            let reason = if list.is_empty() {
                BounceReason::Manual
            } else {
                BounceReason::Unsubscribed
            };
            let request = ManualSuppress {
                reason,
                source: "ops",
                note: "",
                actor: "ops",
                now: Timestamp(T0),
                expires_at: expires.map(Timestamp),
                list_id: &list,
            };
            match EscalationPolicy::default().suppress_manually(current, request) {
                Some(t) => Decision::Apply {
                    record: t.record,
                    changes: t.changes,
                },
                None => Decision::Unchanged,
            }
        }),
    }
}

/// What the expiry sweep would write to at `now`, as (tenant, address), paging by `limit`.
fn due(store: &dyn SuppressionStore, now: i64, limit: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page = store
            .due_expiries(Timestamp(now), cursor.as_deref(), limit)
            .unwrap();
        assert!(page.items.len() <= limit);
        out.extend(
            page.items
                .into_iter()
                .map(|(t, a)| (t.as_str().to_string(), a.as_str().to_string())),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

async fn what_expires_is_due_at_its_expiry_in_every_tenant_until_cleared(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let pair = |t: &str, a: &str| (t.to_string(), a.to_string());
    {
        let store = open_at(engine, dir.path()).unwrap();
        store
            .write(vec![
                suppress_until("acme", "a@x.com", "", Some(T0 + 10)),
                suppress_until("acme", "b@x.com", "weekly", Some(T0 + 20)),
                suppress_until("acme", "c@x.com", "", None),
                suppress_until("acme", "c@x.com", "daily", None),
                suppress_until("globex", "d@x.com", "", Some(T0 + 5)),
            ])
            .await
            .unwrap();
        assert!(due(&*store, T0 + 4, 10).is_empty());
        assert_eq!(due(&*store, T0 + 9, 10), [pair("globex", "d@x.com")]);
        assert_eq!(
            due(&*store, T0 + 10, 10),
            [pair("acme", "a@x.com"), pair("globex", "d@x.com")],
            "due at the instant of the expiry, tenant by tenant"
        );
        let all = [
            pair("acme", "a@x.com"),
            pair("acme", "b@x.com"),
            pair("globex", "d@x.com"),
        ];
        assert_eq!(due(&*store, i64::MAX, 10), all);
        assert_eq!(due(&*store, i64::MAX, 1), all, "pages of one");

        // Clearing what ended takes it out of the index.
        let clear = AddressWrite {
            tenant: tenant("acme"),
            address: address("a@x.com"),
            event: None,
            reclassified: Vec::new(),
            decide: Box::new(|current| {
                let mut record = current.cloned().unwrap_or_default();
                let changes = crate::policy::expire(&mut record, Timestamp(T0 + 10));
                Decision::Apply { record, changes }
            }),
        };
        store.write(vec![clear]).await.unwrap();
        assert_eq!(due(&*store, T0 + 10, 10), [pair("globex", "d@x.com")]);
        let kinds: Vec<String> = history(&*store, "acme", "a@x.com")
            .iter()
            .map(|e| match e {
                HistoryEntry::StateChange(c) => format!("{:?}", c.kind),
                HistoryEntry::SendResult(e) => e.event_id.clone(),
            })
            .collect();
        assert_eq!(kinds, ["Expired", "ManuallySuppressed"]);
        store.close().unwrap();
    }
    let store = reopen_at(engine, dir.path());
    assert_eq!(
        due(&*store, i64::MAX, 10),
        [pair("acme", "b@x.com"), pair("globex", "d@x.com")]
    );
    store.close().unwrap();
}

async fn list_unsubscribes_are_found_by_screens_that_name_a_list_after_a_reopen(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_at(engine, dir.path()).unwrap();
        store
            .write(vec![
                suppress_until("acme", "l0@x.com", "weekly", None),
                suppress_until("acme", "l1@x.com", "daily", None),
                suppress_until("acme", "s2@x.com", "", None),
                // Unsubscribed, then resubscribed: no longer in the index.
                suppress_until("acme", "l3@x.com", "weekly", None),
            ])
            .await
            .unwrap();
        let resubscribe = AddressWrite {
            tenant: tenant("acme"),
            address: address("l3@x.com"),
            event: None,
            reclassified: Vec::new(),
            decide: Box::new(|current| {
                match EscalationPolicy::default().reactivate(
                    current,
                    "ops",
                    "asked",
                    Timestamp(T0),
                    Some("weekly"),
                ) {
                    Ok((t, _)) => Decision::Apply {
                        record: t.record,
                        changes: t.changes,
                    },
                    Err(e) => Decision::Refuse(e.to_string()),
                }
            }),
        };
        store.write(vec![resubscribe]).await.unwrap();
        store.close().unwrap();
    }
    let store = reopen_at(engine, dir.path());
    let asked = ["l0@x.com", "l1@x.com", "s2@x.com", "l3@x.com", "n4@x.com"];
    let positions = |lists: bool| -> Vec<usize> {
        store
            .suppressed_records(&tenant("acme"), &asked, lists)
            .unwrap()
            .iter()
            .map(|(i, _)| *i)
            .collect()
    };
    assert_eq!(
        positions(false),
        [2],
        "without a list: suppressions of every mail"
    );
    assert_eq!(positions(true), [0, 1, 2]);
    let found = store
        .suppressed_records(&tenant("globex"), &asked, true)
        .unwrap();
    assert!(found.is_empty(), "another tenant's");
    store.close().unwrap();
}

/// The change log: every change of a tenant's list once, in commit order, only what is
/// durable, per tenant; retention removes old changes, and a position before them is refused
/// (also after a reopen).
async fn the_change_log_keeps_commit_order_and_refuses_positions_past_retention(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let acme = tenant("acme");
    let start;
    let middle;
    {
        let store = open_at(engine, dir.path()).unwrap();
        start = *store.change_head().borrow();
        assert!(store.changes(&acme, start, 100).unwrap().items.is_empty());
        // A position past the head was never given out by this log: it lost changes since.
        assert!(matches!(
            store.changes(&acme, start + 1, 100),
            Err(StoreError::PositionAhead { head }) if head == start
        ));
        store.write(hard_bounces("acme", "a", 3)).await.unwrap();
        store.write(hard_bounces("globex", "g", 2)).await.unwrap();
        middle = *store.change_head().borrow();
        store
            .write(vec![lift("acme", "a1@x.com", T0 + 10)])
            .await
            .unwrap();
        // Changing nothing of the list (a second bounce of a suppressed address) logs nothing.
        store
            .write(vec![event_write(
                "acme",
                hard_bounce("again", "a0@x.com", T0 + 20),
            )])
            .await
            .unwrap();
        store.close().unwrap();
    }
    let store = reopen_at(engine, dir.path());
    let page = store.changes(&acme, start, 100).unwrap();
    let got: Vec<(ChangeKind, String)> = page
        .items
        .iter()
        .map(|c| (c.kind, c.address.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (ChangeKind::Suppressed, "a0@x.com".to_string()),
            (ChangeKind::Suppressed, "a1@x.com".to_string()),
            (ChangeKind::Suppressed, "a2@x.com".to_string()),
            (ChangeKind::Lifted, "a1@x.com".to_string()),
        ]
    );
    assert!(page.items.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(page.items[3].actor, "ops");
    assert_eq!(page.items[3].note, "asked");
    assert!(!page.more);
    // Read in small steps from a change's position, nothing is given twice or skipped.
    let mut after = start;
    let mut stepped = Vec::new();
    loop {
        let p = store.changes(&acme, after, 1).unwrap();
        stepped.extend(p.items.iter().map(|c| c.seq));
        after = p.read_to;
        if !p.more {
            break;
        }
    }
    assert_eq!(
        stepped,
        page.items.iter().map(|c| c.seq).collect::<Vec<_>>()
    );
    assert_eq!(
        store
            .changes(&tenant("globex"), middle, 100)
            .unwrap()
            .items
            .len(),
        0
    );
    assert_eq!(
        store
            .changes(&tenant("globex"), start, 100)
            .unwrap()
            .items
            .len(),
        2
    );

    // Retention: the changes before T0 + 5 go (the three bounces of acme, both of globex).
    assert_eq!(
        store.prune_changes(Timestamp(T0 + 5), 100).await.unwrap(),
        5
    );
    assert!(matches!(
        store.changes(&acme, start, 100),
        Err(StoreError::ChangesPruned { .. })
    ));
    let kept = store.changes(&acme, page.items[2].seq, 100).unwrap();
    assert_eq!(kept.items.len(), 1);
    store.close().unwrap();
    drop(store);
    let store = reopen_at(engine, dir.path());
    assert!(matches!(
        store.changes(&acme, start, 100),
        Err(StoreError::ChangesPruned { .. })
    ));
    assert_eq!(
        store
            .changes(&acme, page.items[2].seq, 100)
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        store.prune_changes(Timestamp(T0 + 5), 100).await.unwrap(),
        0
    );
    store.close().unwrap();
}

/// Forgets `a` as `ForgetAddress` does.
fn forget_write(t: &str, a: &str, at: i64) -> ForgetWrite {
    ForgetWrite {
        tenant: tenant(t),
        address: address(a),
        decide: Box::new(move |current| {
            match crate::policy::forget::forget(current, "ops", "ticket 7", Timestamp(at)) {
                Some(next) => Decision::Apply {
                    record: next.record,
                    changes: next.changes,
                },
                None => Decision::Unchanged,
            }
        }),
    }
}

fn delivery(id: &str, to: &str, at: i64) -> RecordedEvent {
    let mut e = hard_bounce(id, to, at);
    e.classification.bounce_type = BounceType::Delivered;
    e.classification.reason = BounceReason::None;
    e.outcome = ReportedOutcome::Delivered;
    e.smtp_response = format!("250 OK <{to}>");
    e
}

/// How the store shows that an erasure reached its storage: on the embedded engines, how many
/// data keys the keyring of data directory `path` had destroyed (slots zeroed); on postgres,
/// how many columns of the database still hold the text `erased` somewhere in a live row.
fn erasure_marks(engine: Engine, path: &Path, erased: &str) -> usize {
    if engine == Engine::Postgres {
        let url = testing::postgres_test_database(&path.to_string_lossy());
        return testing::postgres_rows_holding(&url, erased).len();
    }
    destroyed_keys(path)
}

/// How many data keys the keyring of data directory `path` had destroyed (slots zeroed).
fn destroyed_keys(path: &Path) -> usize {
    let bytes = std::fs::read(path.join(super::keyring::KEYRING_FILE)).unwrap();
    bytes[32..]
        .chunks(32)
        .filter(|slot| slot.iter().all(|&b| b == 0))
        .count()
}

async fn forgetting_erases_an_address_and_destroys_its_key(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    let mut gone = hard_bounce("a-2", "gone@example.com", T0 + 2);
    gone.smtp_response = "550 5.1.1 <gone@example.com> unknown".into();
    store
        .write(vec![
            event_write("acme", delivery("a-1", "gone@example.com", T0 + 1)),
            event_write("acme", gone),
            event_write("acme", delivery("c-1", "kept@example.com", T0 + 1)),
            event_write("acme", hard_bounce("b-1", "other@example.com", T0 + 3)),
        ])
        .await
        .unwrap();
    let t = tenant("acme");
    assert_eq!(
        store.known_good_domains(&t, 10).unwrap(),
        [("example.com".to_string(), 2)]
    );
    let gone = "gone@example.com";
    if engine == Engine::Postgres {
        assert!(erasure_marks(engine, dir.path(), gone) > 0, "in the clear");
    } else {
        assert_eq!(erasure_marks(engine, dir.path(), gone), 0);
    }

    let outcome = store
        .forget(forget_write("acme", "gone@example.com", T0 + 9))
        .await;
    assert!(matches!(outcome.unwrap(), WriteOutcome::Applied { .. }));
    let erased = if engine == Engine::Postgres { 0 } else { 1 };
    assert_eq!(
        erasure_marks(engine, dir.path(), gone),
        erased,
        "its key is destroyed (embedded), its text in no row (postgres)"
    );
    the_forgotten_address_is_gone(&*store, "first open").await;
    store.close().unwrap();
    drop(store);
    let store = reopen_at(engine, dir.path());
    the_forgotten_address_is_gone(&*store, "after a reopen").await;
    store.close().unwrap();
    assert_eq!(erasure_marks(engine, dir.path(), gone), erased);
}

/// What `forgetting_erases_an_address_and_destroys_its_key` expects of its store afterwards.
async fn the_forgotten_address_is_gone(store: &dyn SuppressionStore, when: &str) {
    let t = tenant("acme");
    let record = store
        .get_record(&t, &address("gone@example.com"))
        .unwrap()
        .unwrap();
    assert!(record.forgotten && record.is_suppressed(), "{when}");
    assert_eq!(record.suppression.as_ref().unwrap().smtp_response, "");
    let entries = history(store, "acme", "gone@example.com");
    assert!(
        matches!(&entries[..], [HistoryEntry::StateChange(c)] if c.kind == StateChangeKind::Forgotten),
        "{when}: {entries:?}"
    );
    for id in ["a-1", "a-2"] {
        assert!(store.get_event(&t, id).unwrap().is_none(), "{id}");
    }
    assert_eq!(bounce_ids(store, "acme"), ["b-1"]);
    assert_eq!(
        store.known_good_locals(&t, "example.com", 10).unwrap(),
        ["kept"]
    );
    assert_eq!(
        store.known_good_domains(&t, 10).unwrap(),
        [("example.com".to_string(), 1)]
    );
    let listed = store
        .list_suppressions(&t, &SuppressionQuery::default(), None, 10)
        .unwrap()
        .items;
    let forgotten: Vec<_> = listed.iter().filter(|s| s.record.forgotten).collect();
    assert_eq!(forgotten.len(), 1);
    assert_eq!(forgotten[0].address, "");
    assert_eq!(
        forgotten[0].id,
        store.address_id(&t, &address("gone@example.com"))
    );
    assert_eq!(store.suppressed_count(), 2);
    assert!(suppressed(store, "acme", "other@example.com"));
    assert_eq!(
        store
            .get_record(&t, &address("kept@example.com"))
            .unwrap()
            .unwrap(),
        AddressRecord {
            last_delivered: Some(Timestamp(T0 + 1)),
            ..AddressRecord::default()
        }
    );

    // Once forgotten: nothing changes it, a send result is only counted.
    let again = store
        .forget(forget_write("acme", "gone@example.com", T0 + 10))
        .await;
    assert!(matches!(again.unwrap(), WriteOutcome::Unchanged { record: Some(r) } if r.forgotten));
    let hard = hard_count(store, "acme", T0 + 20);
    let id = format!("late-{when}");
    let late = store
        .write(vec![event_write(
            "acme",
            hard_bounce(&id, "gone@example.com", T0 + 20),
        )])
        .await
        .unwrap();
    assert!(matches!(&late[0], WriteOutcome::Unchanged { record: Some(r) } if r.forgotten));
    assert_eq!(hard_count(store, "acme", T0 + 20), hard + 1);
    assert!(store.get_event(&t, &id).unwrap().is_none());
    let lifted = store
        .write(vec![lift("acme", "gone@example.com", T0 + 21)])
        .await
        .unwrap();
    assert!(matches!(&lifted[0], WriteOutcome::Unchanged { .. }));
    assert_eq!(history(store, "acme", "gone@example.com").len(), 1);
}

/// An erasure whose key destruction reached the disk but whose commit did not (a crash in
/// between): the address's sealed data reads as empty, its state as it was, and forgetting it
/// again finishes the job.
async fn a_record_whose_key_is_gone_reads_without_personal_data(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_at(engine, dir.path()).unwrap();
        store
            .write(vec![event_write(
                "acme",
                hard_bounce("e1", "lost@example.com", T0),
            )])
            .await
            .unwrap();
        store.close().unwrap();
    }
    let path = dir.path().join(super::keyring::KEYRING_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[32..].fill(0);
    std::fs::write(&path, bytes).unwrap();

    let store = reopen_at(engine, dir.path());
    let t = tenant("acme");
    let record = store
        .get_record(&t, &address("lost@example.com"))
        .unwrap()
        .unwrap();
    assert!(record.is_suppressed() && !record.forgotten);
    assert_eq!(record.suppression.unwrap().smtp_response, "");
    assert!(history(&*store, "acme", "lost@example.com").is_empty());
    assert!(store.get_event(&t, "e1").unwrap().is_none());
    let listed = store
        .list_suppressions(&t, &SuppressionQuery::default(), None, 10)
        .unwrap()
        .items;
    assert_eq!(listed[0].address, "");
    let done = store
        .forget(forget_write("acme", "lost@example.com", T0 + 1))
        .await
        .unwrap();
    assert!(matches!(done, WriteOutcome::Applied { .. }));
    assert_eq!(history(&*store, "acme", "lost@example.com").len(), 1);
    store.close().unwrap();
}

/// A forget among a stream of writes to the same address: whatever the order, the address
/// ends forgotten with its erasure as its whole history.
async fn a_forget_among_concurrent_writes_leaves_only_the_erasure(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(engine, dir.path()).unwrap();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let id = format!("w{w}-{i}");
                store
                    .write(vec![event_write(
                        "acme",
                        hard_bounce(&id, "busy@example.com", T0 + i),
                    )])
                    .await
                    .unwrap();
            }
        }));
    }
    tokio::task::yield_now().await;
    let done = store
        .forget(forget_write("acme", "busy@example.com", T0 + 100))
        .await
        .unwrap();
    assert!(matches!(done, WriteOutcome::Applied { .. }));
    for t in tasks {
        t.await.unwrap();
    }
    let entries = history(&*store, "acme", "busy@example.com");
    assert!(
        matches!(&entries[..], [HistoryEntry::StateChange(c)] if c.kind == StateChangeKind::Forgotten),
        "{entries:?}"
    );
    assert!(bounce_ids(&*store, "acme").is_empty());
    store.close().unwrap();
}

/// The contract tests that the postgres engine passes, run on the cluster that
/// `SUPPRESSD_TEST_DATABASE_URL` names: ignored by a plain `cargo test` (they need a cluster),
/// run by `.ci/run` with `-- --ignored` (docs/postgres.md).
macro_rules! contract_postgres {
    ($($name:ident),* $(,)?) => {
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
                async fn $name() {
                    super::$name(super::Engine::Postgres).await
                }
            )*
        }
    };
}

contract_postgres!(
    each_write_is_atomic_and_refused_writes_store_nothing,
    event_ids_are_idempotent,
    everything_acknowledged_survives_a_reopen,
    the_suppressed_index_is_exact_after_a_reopen,
    inverted_or_empty_ranges_answer_nothing,
    concurrent_writers_share_commits_and_lose_nothing,
    status_lookups_know_every_record_once_the_index_is_loaded,
    concurrent_status_lookups_each_get_their_own_answer,
    a_reclassified_result_enters_or_leaves_the_bounce_listing,
    records_of_many_addresses_come_back_by_index,
    history_pages_item_by_item_through_entries_of_several,
    a_panicking_decision_fails_its_write_alone,
    the_change_log_keeps_commit_order_and_refuses_positions_past_retention,
    what_expires_is_due_at_its_expiry_in_every_tenant_until_cleared,
    list_unsubscribes_are_found_by_screens_that_name_a_list_after_a_reopen,
    forgetting_erases_an_address_and_destroys_its_key,
    a_forget_among_concurrent_writes_leaves_only_the_erasure,
    domain_writes_survive_a_reopen_and_refusals_store_nothing,
    send_results_update_their_domains_in_the_same_commit,
);

// Not on postgres, whose storage has none of what they test: a keyring file
// (a_record_whose_key_is_gone_reads_without_personal_data), an engine whose commit can be made to
// panic in the writer thread (a_writer_that_dies_is_reported_and_later_writes_fail), counter keys
// of schema 1 (hourly_counters_of_schema_1_are_kept_at_open), a data directory
// (a_second_open_of_the_same_directory_is_refused, the_other_engine_refuses_the_directory).
contract!(
    forgetting_erases_an_address_and_destroys_its_key,
    a_record_whose_key_is_gone_reads_without_personal_data,
    a_forget_among_concurrent_writes_leaves_only_the_erasure,
    the_change_log_keeps_commit_order_and_refuses_positions_past_retention,
    what_expires_is_due_at_its_expiry_in_every_tenant_until_cleared,
    list_unsubscribes_are_found_by_screens_that_name_a_list_after_a_reopen,
    domain_writes_survive_a_reopen_and_refusals_store_nothing,
    send_results_update_their_domains_in_the_same_commit,
    records_of_many_addresses_come_back_by_index,
    history_pages_item_by_item_through_entries_of_several,
    a_panicking_decision_fails_its_write_alone,
    a_writer_that_dies_is_reported_and_later_writes_fail,
    hourly_counters_of_schema_1_are_kept_at_open,
    each_write_is_atomic_and_refused_writes_store_nothing,
    event_ids_are_idempotent,
    everything_acknowledged_survives_a_reopen,
    the_suppressed_index_is_exact_after_a_reopen,
    a_second_open_of_the_same_directory_is_refused,
    the_other_engine_refuses_the_directory,
    inverted_or_empty_ranges_answer_nothing,
    concurrent_writers_share_commits_and_lose_nothing,
    status_lookups_know_every_record_once_the_index_is_loaded,
    concurrent_status_lookups_each_get_their_own_answer,
    a_reclassified_result_enters_or_leaves_the_bounce_listing,
);
