//! Stored bytes are a contract: records written by earlier versions of the store must decode
//! in every later one. The fixtures in `tests/data/golden/` were written by the version that
//! wrote them (see `tests/data/README.md`); this module holds the values they encode, the
//! script that filled the fixture data directories, and the tests that read them: single
//! records of schema 2 (through the migration's decoder) and 3, records with fields added by a
//! later version, and whole data directories of schema 2 migrated at open.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::keys;
use super::kv::KvEngine;
use super::kv_store::{
    migrate_records, reencode, HourlyRow, StoredHistory, RECORD_KINDS, SCHEMA_VERSION,
};
use super::legacy;
use super::legacy::Legacy;
use super::records::{decode, encode, Record};
use super::{
    AddressWrite, Decision, ErrorChain, PairDecision, PairWrite, StoreError, StoreOptions,
    SuppressionStore,
};
use crate::domain::{
    AddressRecord, BounceReason, BounceType, Classification, EmailAddress, EvidenceKind,
    OutcomeCounts, RecordedEvent, Replacement, ReportedOutcome, StateChange, StateChangeKind,
    Suppression, Tenant, Timestamp,
};

/// 2026-01-01T10:00:00Z, in microseconds.
pub(super) const T0: i64 = 1_767_261_600_000_000;
/// One hour, in microseconds.
const HOUR: i64 = 3_600_000_000;

/// The directory of the golden fixtures.
pub(super) fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden")
}

/// One stored value of each kind the store encodes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Sample {
    Address(AddressRecord),
    Event(RecordedEvent),
    History(StoredHistory),
    Hourly(HourlyRow),
    Counts(OutcomeCounts),
    Count(u64),
}

const OUTCOMES: [ReportedOutcome; 6] = [
    ReportedOutcome::Delivered,
    ReportedOutcome::HardBounce,
    ReportedOutcome::SoftBounce,
    ReportedOutcome::Block,
    ReportedOutcome::Complaint,
    ReportedOutcome::Bounce,
];

const TYPES: [BounceType; 5] = [
    BounceType::Hard,
    BounceType::Soft,
    BounceType::Block,
    BounceType::Complaint,
    BounceType::Delivered,
];

const REASONS: [BounceReason; 17] = [
    BounceReason::None,
    BounceReason::MailboxNotFound,
    BounceReason::DomainNotFound,
    BounceReason::InvalidAddress,
    BounceReason::MailboxDisabled,
    BounceReason::RecipientRejected,
    BounceReason::MailboxFull,
    BounceReason::MessageTooLarge,
    BounceReason::RateLimited,
    BounceReason::TemporaryFailure,
    BounceReason::SenderBlocked,
    BounceReason::ContentRejected,
    BounceReason::AuthenticationFailed,
    BounceReason::Complaint,
    BounceReason::Manual,
    BounceReason::RepeatedSoftBounce,
    BounceReason::Unknown,
];

const EVIDENCE: [EvidenceKind; 4] = [
    EvidenceKind::CrmCorrection,
    EvidenceKind::CompanyPattern,
    EvidenceKind::VerifiedReplacement,
    EvidenceKind::TypoFix,
];

const KINDS: [StateChangeKind; 9] = [
    StateChangeKind::Suppressed,
    StateChangeKind::Escalated,
    StateChangeKind::ManuallySuppressed,
    StateChangeKind::Reactivated,
    StateChangeKind::Replaced,
    StateChangeKind::MarkedForEnrichment,
    StateChangeKind::ReplacementPending,
    StateChangeKind::Validated,
    StateChangeKind::Reclassified,
];

/// An event of every field set; `i` picks the outcome, type and reason so that the samples
/// cover every value of each.
fn event(i: usize) -> RecordedEvent {
    RecordedEvent {
        event_id: format!("evt-{i:02}"),
        address: format!("user{i}@example.com"),
        outcome: OUTCOMES[i % OUTCOMES.len()],
        smtp_response: format!("550 5.1.{i} sample response {i}"),
        enhanced_status: i.is_multiple_of(2).then(|| format!("5.1.{i}")),
        source: "signup-form".into(),
        campaign: format!("campaign-{i}"),
        segment: if i.is_multiple_of(3) {
            String::new()
        } else {
            "vip".into()
        },
        provider: "postfix".into(),
        occurred_at: Timestamp(T0 + i as i64 * HOUR),
        recorded_at: Timestamp(T0 + i as i64 * HOUR + 1_234),
        classification: Classification {
            bounce_type: TYPES[i % TYPES.len()],
            reason: REASONS[i % REASONS.len()],
            rule_id: format!("rule.{i}").into(),
            confidence: 0.25 + i as f32 / 32.0,
            disagrees_with_reporter: i % 2 == 1,
        },
        rules_version: 7 + i as u32,
        list_id: String::new(),
    }
}

/// An address record with every optional part set; `i` picks the evidence kind.
fn full_address(i: usize) -> AddressRecord {
    AddressRecord {
        suppression: Some(Suppression {
            reason: BounceReason::MailboxNotFound,
            bounce_type: Some(BounceType::Hard),
            since: Timestamp(T0 + 5 * HOUR),
            source: "signup-form".into(),
            smtp_response: "550 5.1.1 user unknown".into(),
            event_id: "evt-01".into(),
            rule_id: "status.5.1.1".into(),
            expires_at: None,
            list_id: String::new(),
        }),
        soft_bounces: vec![Timestamp(T0), Timestamp(T0 + HOUR)],
        last_delivered: Some(Timestamp(T0 - 24 * HOUR)),
        replaced_by: Some(format!("fixed{i}@example.com")),
        needs_enrichment: true,
        pending_validation: Some(Replacement {
            replaces: format!("broken{i}@example.com"),
            evidence: EVIDENCE[i],
            confidence: 0.875,
            at: Timestamp(T0 + 6 * HOUR),
        }),
        list_unsubscribes: Vec::new(),
        engaged_at: None,
        forgotten: false,
    }
}

fn state_change(i: usize) -> StateChange {
    StateChange {
        kind: KINDS[i],
        reason: REASONS[(i * 2) % REASONS.len()],
        actor: if i.is_multiple_of(2) {
            "system"
        } else {
            "ops@acme"
        }
        .into(),
        note: format!("note {i}"),
        event_id: if i.is_multiple_of(3) {
            String::new()
        } else {
            format!("evt-{i:02}")
        },
        at: Timestamp(T0 + i as i64 * HOUR),
        on_behalf_of: String::new(),
    }
}

/// The sample values, by name (`golden-schema<N>-<name>.bin`).
pub(super) fn samples() -> Vec<(String, Sample)> {
    let mut out = Vec::new();
    for (i, _) in EVIDENCE.iter().enumerate() {
        out.push((
            format!("address-full-{i}"),
            Sample::Address(full_address(i)),
        ));
    }
    out.push((
        "address-minimal".into(),
        Sample::Address(AddressRecord::default()),
    ));
    out.push((
        "address-manual".into(),
        Sample::Address(AddressRecord {
            suppression: Some(Suppression {
                reason: BounceReason::Manual,
                bounce_type: None,
                since: Timestamp(T0),
                source: "ops".into(),
                smtp_response: "customer asked".into(),
                event_id: String::new(),
                rule_id: String::new(),
                expires_at: None,
                list_id: String::new(),
            }),
            ..AddressRecord::default()
        }),
    ));
    for i in 0..REASONS.len() {
        out.push((format!("event-{i:02}"), Sample::Event(event(i))));
    }
    out.push((
        "history-event".into(),
        Sample::History(StoredHistory::Event("evt-03".into())),
    ));
    for i in 0..KINDS.len() {
        out.push((
            format!("history-change-{i}"),
            Sample::History(StoredHistory::Change(state_change(i))),
        ));
    }
    let mut row = HourlyRow::default();
    for (hour, hard) in [(0u8, 3u64), (9, 1), (23, 12)] {
        let counts = row.hour_mut(hour);
        counts.sent = hard + 2;
        counts.hard = hard;
        counts.delivered = 1;
        counts.complaint = 1;
    }
    out.push(("hourly-row".into(), Sample::Hourly(row)));
    out.push((
        "daily-counts".into(),
        Sample::Counts(OutcomeCounts {
            sent: 100,
            delivered: 80,
            hard: 9,
            soft: 6,
            block: 3,
            complaint: 2,
            unsubscribe: 0,
            to_accept_all: 0,
        }),
    ));
    out.push(("domain-count".into(), Sample::Count(300)));
    out
}

// ---------------------------------------------------------------------------------------------
// The fixture data directories
// ---------------------------------------------------------------------------------------------

fn tenant(t: &str) -> Tenant {
    Tenant::parse(t).unwrap()
}

fn address(a: &str) -> EmailAddress {
    EmailAddress::parse(a).unwrap()
}

/// A send result of the fixture script.
pub(super) fn script_event(
    id: &str,
    to: &str,
    bounce_type: BounceType,
    reason: BounceReason,
    at: i64,
    source: &str,
) -> RecordedEvent {
    RecordedEvent {
        event_id: id.into(),
        address: to.into(),
        outcome: ReportedOutcome::Bounce,
        smtp_response: format!("{reason:?} response"),
        enhanced_status: None,
        source: source.into(),
        campaign: "spring".into(),
        segment: if source == "import" {
            "vip".into()
        } else {
            String::new()
        },
        provider: "ses".into(),
        occurred_at: Timestamp(at),
        recorded_at: Timestamp(at + 1),
        classification: Classification {
            bounce_type,
            reason,
            rule_id: "fixture.rule".into(),
            confidence: 0.5,
            disagrees_with_reporter: false,
        },
        rules_version: 3,
        list_id: String::new(),
    }
}

fn suppression_by(event: &RecordedEvent) -> Suppression {
    Suppression {
        reason: event.classification.reason,
        bounce_type: Some(event.classification.bounce_type),
        since: event.occurred_at,
        source: event.source.clone(),
        smtp_response: event.smtp_response.clone(),
        event_id: event.event_id.clone(),
        rule_id: event.classification.rule_id.to_string(),
        expires_at: None,
        list_id: String::new(),
    }
}

fn change(kind: StateChangeKind, reason: BounceReason, event_id: &str, at: i64) -> StateChange {
    StateChange {
        kind,
        reason,
        actor: "system".into(),
        on_behalf_of: String::new(),
        note: format!("{kind:?}"),
        event_id: event_id.into(),
        at: Timestamp(at),
    }
}

/// A write that records `event` and stores `record` with `changes`, whatever was there.
fn apply(
    t: &str,
    event: Option<RecordedEvent>,
    to: &str,
    record: AddressRecord,
    changes: Vec<StateChange>,
) -> AddressWrite {
    AddressWrite {
        tenant: tenant(t),
        address: address(to),
        event,
        reclassified: Vec::new(),
        decide: Box::new(move |_| Decision::Apply {
            record: record.clone(),
            changes: changes.clone(),
        }),
    }
}

/// The final record of each address the fixture script writes, by (tenant, address).
pub(super) fn script_records() -> Vec<(&'static str, &'static str, AddressRecord)> {
    let e1 = script_event(
        "e1",
        "hard@x.com",
        BounceType::Hard,
        BounceReason::MailboxNotFound,
        T0,
        "signup-form",
    );
    let e5 = script_event(
        "e5",
        "angry@x.com",
        BounceType::Complaint,
        BounceReason::Complaint,
        T0 + 4 * HOUR,
        "signup-form",
    );
    let g1 = script_event(
        "e1",
        "hard@x.com",
        BounceType::Hard,
        BounceReason::DomainNotFound,
        T0 + 30 * HOUR,
        "import",
    );
    vec![
        (
            "acme",
            "hard@x.com",
            AddressRecord {
                suppression: Some(suppression_by(&e1)),
                replaced_by: Some("fixed@x.com".into()),
                ..AddressRecord::default()
            },
        ),
        (
            "acme",
            "fixed@x.com",
            AddressRecord {
                pending_validation: Some(Replacement {
                    replaces: "hard@x.com".into(),
                    evidence: EvidenceKind::CrmCorrection,
                    confidence: 0.9,
                    at: Timestamp(T0 + 5 * HOUR),
                }),
                ..AddressRecord::default()
            },
        ),
        (
            "acme",
            "soft@x.com",
            AddressRecord {
                soft_bounces: vec![Timestamp(T0 + HOUR), Timestamp(T0 + 2 * HOUR)],
                ..AddressRecord::default()
            },
        ),
        (
            "acme",
            "good@y.com",
            AddressRecord {
                last_delivered: Some(Timestamp(T0 + 3 * HOUR)),
                ..AddressRecord::default()
            },
        ),
        (
            "acme",
            "manual@x.com",
            AddressRecord {
                suppression: Some(Suppression {
                    reason: BounceReason::Manual,
                    bounce_type: None,
                    since: Timestamp(T0 + 6 * HOUR),
                    source: "ops".into(),
                    smtp_response: "asked to stop".into(),
                    event_id: String::new(),
                    rule_id: String::new(),
                    expires_at: None,
                    list_id: String::new(),
                }),
                ..AddressRecord::default()
            },
        ),
        (
            "acme",
            "angry@x.com",
            AddressRecord {
                suppression: Some(suppression_by(&e5)),
                needs_enrichment: true,
                ..AddressRecord::default()
            },
        ),
        (
            "globex",
            "hard@x.com",
            AddressRecord {
                suppression: Some(suppression_by(&g1)),
                ..AddressRecord::default()
            },
        ),
    ]
}

/// Every event the fixture script records, by tenant.
pub(super) fn script_events() -> Vec<(&'static str, RecordedEvent)> {
    vec![
        (
            "acme",
            script_event(
                "e1",
                "hard@x.com",
                BounceType::Hard,
                BounceReason::MailboxNotFound,
                T0,
                "signup-form",
            ),
        ),
        (
            "acme",
            script_event(
                "e2",
                "soft@x.com",
                BounceType::Soft,
                BounceReason::MailboxFull,
                T0 + HOUR,
                "signup-form",
            ),
        ),
        (
            "acme",
            script_event(
                "e3",
                "soft@x.com",
                BounceType::Soft,
                BounceReason::MailboxFull,
                T0 + 2 * HOUR,
                "import",
            ),
        ),
        (
            "acme",
            script_event(
                "e4",
                "good@y.com",
                BounceType::Delivered,
                BounceReason::None,
                T0 + 3 * HOUR,
                "signup-form",
            ),
        ),
        (
            "acme",
            script_event(
                "e5",
                "angry@x.com",
                BounceType::Complaint,
                BounceReason::Complaint,
                T0 + 4 * HOUR,
                "signup-form",
            ),
        ),
        (
            "globex",
            script_event(
                "e1",
                "hard@x.com",
                BounceType::Hard,
                BounceReason::DomainNotFound,
                T0 + 30 * HOUR,
                "import",
            ),
        ),
    ]
}

/// Fills a store with the fixture script: suppressions (by event, manual, a complaint that
/// needs enrichment), soft bounces, a delivery, a replacement pending validation, history and
/// counters, in two tenants. Every decision is spelled out, so the result depends on the store
/// alone.
pub(super) async fn write_script(store: &dyn SuppressionStore) -> Result<(), StoreError> {
    let records = script_records();
    let record = |t: &str, a: &str| {
        records
            .iter()
            .find(|(rt, ra, _)| *rt == t && *ra == a)
            .map(|(_, _, r)| r.clone())
            .unwrap()
    };
    let events = script_events();
    let event = |t: &str, id: &str| {
        events
            .iter()
            .find(|(et, e)| *et == t && e.event_id == id)
            .map(|(_, e)| e.clone())
            .unwrap()
    };
    let hard = AddressRecord {
        replaced_by: None,
        ..record("acme", "hard@x.com")
    };
    let soft_once = AddressRecord {
        soft_bounces: vec![Timestamp(T0 + HOUR)],
        ..AddressRecord::default()
    };
    store
        .write(vec![
            apply(
                "acme",
                Some(event("acme", "e1")),
                "hard@x.com",
                hard,
                vec![change(
                    StateChangeKind::Suppressed,
                    BounceReason::MailboxNotFound,
                    "e1",
                    T0,
                )],
            ),
            apply(
                "acme",
                Some(event("acme", "e2")),
                "soft@x.com",
                soft_once,
                Vec::new(),
            ),
        ])
        .await?;
    store
        .write(vec![
            apply(
                "acme",
                Some(event("acme", "e3")),
                "soft@x.com",
                record("acme", "soft@x.com"),
                Vec::new(),
            ),
            apply(
                "acme",
                Some(event("acme", "e4")),
                "good@y.com",
                record("acme", "good@y.com"),
                Vec::new(),
            ),
            apply(
                "acme",
                Some(event("acme", "e5")),
                "angry@x.com",
                record("acme", "angry@x.com"),
                vec![
                    change(
                        StateChangeKind::Suppressed,
                        BounceReason::Complaint,
                        "e5",
                        T0 + 4 * HOUR,
                    ),
                    change(
                        StateChangeKind::MarkedForEnrichment,
                        BounceReason::Complaint,
                        "",
                        T0 + 4 * HOUR,
                    ),
                ],
            ),
            apply(
                "acme",
                None,
                "manual@x.com",
                record("acme", "manual@x.com"),
                vec![change(
                    StateChangeKind::ManuallySuppressed,
                    BounceReason::Manual,
                    "",
                    T0 + 6 * HOUR,
                )],
            ),
            apply(
                "globex",
                Some(event("globex", "e1")),
                "hard@x.com",
                record("globex", "hard@x.com"),
                vec![change(
                    StateChangeKind::Suppressed,
                    BounceReason::DomainNotFound,
                    "e1",
                    T0 + 30 * HOUR,
                )],
            ),
        ])
        .await?;
    let first = record("acme", "hard@x.com");
    let second = record("acme", "fixed@x.com");
    let outcome = store
        .write_pair(PairWrite {
            tenant: tenant("acme"),
            first: address("hard@x.com"),
            second: address("fixed@x.com"),
            decide: Box::new(move |_, _| PairDecision::Apply {
                first: Some((
                    first.clone(),
                    vec![change(
                        StateChangeKind::Replaced,
                        BounceReason::MailboxNotFound,
                        "",
                        T0 + 5 * HOUR,
                    )],
                )),
                second: Some((
                    second.clone(),
                    vec![change(
                        StateChangeKind::ReplacementPending,
                        BounceReason::None,
                        "",
                        T0 + 5 * HOUR,
                    )],
                )),
            }),
        })
        .await?;
    assert!(outcome.refused.is_none());
    Ok(())
}

/// Opens a store in `path` with small caches.
pub(super) fn open_small(
    engine: super::Engine,
    path: &Path,
) -> Result<Arc<dyn SuppressionStore>, StoreError> {
    super::open(StoreOptions {
        engine,
        path: path.to_path_buf(),
        cache_bytes: 4 << 20,
        journal_bytes: 1 << 20,
        database_url: None,
    })
}

/// Writes the schema-3 golden fixtures that are missing; never overwrites one (a fixture is
/// what an earlier version wrote: it is never regenerated). Run by hand once per new sample:
/// `cargo test --lib store::golden_tests::write_schema_3_fixtures -- --ignored`. The schema-2
/// fixtures were written the same way by the schema-2 store.
#[test]
#[ignore = "writes the golden fixtures; run by hand"]
fn write_schema_3_fixtures() {
    let dir = golden_dir();
    for (name, sample) in samples() {
        let path = dir.join(format!("golden-schema3-{name}.bin"));
        if !path.exists() {
            std::fs::write(path, encode_sample(&sample)).unwrap();
        }
    }
}

/// Writes the schema-3 data directory fixtures (`golden-schema3-datadir-<engine>.tar.gz`) if
/// they are missing: the fixture script run through the public API of the schema-3 store,
/// closed cleanly. Run by hand once, by the schema-3 store:
/// `cargo test --lib store::golden_tests::write_schema_3_datadir_fixtures -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the golden fixtures; run by hand"]
async fn write_schema_3_datadir_fixtures() {
    let dir = golden_dir();
    for engine in [super::Engine::Sled, super::Engine::Redb] {
        let archive = dir.join(format!("golden-schema3-datadir-{}.tar.gz", engine.name()));
        if archive.exists() {
            continue;
        }
        let work = tempfile::tempdir().unwrap();
        let data = work.path().join("data");
        let store = open_small(engine, &data).unwrap();
        write_script(&*store).await.unwrap();
        store.close().unwrap();
        drop(store);
        // sled lets go of its files from background threads a moment after the last handle.
        std::thread::sleep(std::time::Duration::from_secs(2));
        let status = std::process::Command::new("tar")
            .arg("czf")
            .arg(&archive)
            .arg("-C")
            .arg(work.path())
            .arg("data")
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The schema-3 bytes of a sample.
fn encode_sample(sample: &Sample) -> Vec<u8> {
    match sample {
        Sample::Address(v) => encode(v),
        Sample::Event(v) => encode(v),
        Sample::History(v) => encode(v),
        Sample::Hourly(v) => encode(v),
        Sample::Counts(v) => encode(v),
        Sample::Count(v) => encode(v),
    }
    .unwrap()
}

/// Decodes `bytes` as the kind of value `like` is, with `decode` (schema 3) or the schema-2
/// decoder.
fn decode_like(like: &Sample, bytes: &[u8], schema: u8) -> Result<Sample, String> {
    fn one<T: Record + Legacy>(bytes: &[u8], schema: u8) -> Result<T, String> {
        match schema {
            2 => T::from_legacy(bytes).map_err(|e| e.to_string()),
            _ => decode::<T>(b"golden", bytes).map_err(|e| ErrorChain(&e).to_string()),
        }
    }
    Ok(match like {
        Sample::Address(_) => Sample::Address(one(bytes, schema)?),
        Sample::Event(_) => Sample::Event(one(bytes, schema)?),
        Sample::History(_) => Sample::History(one(bytes, schema)?),
        Sample::Hourly(_) => Sample::Hourly(one(bytes, schema)?),
        Sample::Counts(_) => Sample::Counts(one(bytes, schema)?),
        Sample::Count(_) => Sample::Count(one(bytes, schema)?),
    })
}

/// Every golden file of `schema`, checked against its sample value.
fn check_golden(schema: u8, alter: impl Fn(Vec<u8>) -> Vec<u8>) {
    let samples = samples();
    assert!(samples.len() > 30);
    for (name, sample) in samples {
        let path = golden_dir().join(format!("golden-schema{schema}-{name}.bin"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let decoded = decode_like(&sample, &alter(bytes), schema)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(decoded, sample, "{}", path.display());
    }
}

#[test]
fn golden_records_of_schema_2_decode_to_the_values_they_were_written_from() {
    check_golden(2, |bytes| bytes);
}

#[test]
fn golden_records_of_schema_3_decode_to_the_values_they_were_written_from() {
    check_golden(3, |bytes| bytes);
}

/// What a later version may add: fields this one does not know, of every wire type.
fn with_unknown_fields(mut bytes: Vec<u8>) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    encode_key(1000, WireType::Varint, &mut bytes);
    encode_varint(123_456, &mut bytes);
    encode_key(1001, WireType::LengthDelimited, &mut bytes);
    encode_varint(5, &mut bytes);
    bytes.extend_from_slice(b"later");
    encode_key(1002, WireType::SixtyFourBit, &mut bytes);
    bytes.extend_from_slice(&7u64.to_le_bytes());
    bytes
}

/// The records written on every write are encoded straight from the domain values, not
/// through the prost messages; both must give the same bytes, those of the golden files.
#[test]
fn records_encode_to_the_bytes_of_their_schema_3_golden_files() {
    use prost::Message;
    for (name, sample) in samples() {
        let golden =
            std::fs::read(golden_dir().join(format!("golden-schema3-{name}.bin"))).unwrap();
        assert_eq!(encode_sample(&sample), golden, "{name}");
        let through_message = match &sample {
            Sample::Address(v) => v.to_message().encode_to_vec(),
            Sample::Event(v) => v.to_message().encode_to_vec(),
            _ => continue,
        };
        assert_eq!(through_message, golden[1..], "{name}");
    }
}

#[test]
fn golden_records_of_schema_3_with_fields_added_later_still_decode() {
    check_golden(3, with_unknown_fields);
}

#[test]
fn a_record_with_an_unknown_field_in_a_nested_message_still_decodes() {
    use prost::Message;
    let record = full_address(0);
    let mut message = record.to_message();
    // A field added later to the suppression: a nested message of its own, skipped whole.
    let mut suppression = message.suppression.take().unwrap().encode_to_vec();
    suppression = with_unknown_fields(suppression);
    let mut bytes = vec![super::records::RECORD_VERSION];
    message.encode(&mut bytes).unwrap();
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut bytes);
    prost::encoding::encode_varint(suppression.len() as u64, &mut bytes);
    bytes.extend_from_slice(&suppression);
    assert_eq!(decode::<AddressRecord>(b"k", &bytes).unwrap(), record);
}

/// Everything a store answers about the fixture script's data, read through the public API.
#[derive(Debug, PartialEq)]
struct Answers {
    records: Vec<Option<AddressRecord>>,
    events: Vec<Option<RecordedEvent>>,
    bounces: Vec<Vec<RecordedEvent>>,
    histories: Vec<Vec<crate::domain::HistoryEntry>>,
    counters: Vec<Vec<(i64, OutcomeCounts)>>,
    values: Vec<Vec<String>>,
    good: (Vec<(String, u64)>, Vec<String>),
    suppressed: Vec<Vec<(usize, AddressRecord)>>,
    /// (address, record): the ids are keyed hashes under each store's own key.
    suppressions: Vec<Vec<(String, AddressRecord)>>,
    suppressed_count: u64,
}

fn answers(store: &dyn SuppressionStore) -> Answers {
    use super::{BounceQuery, Granularity, SuppressionQuery};
    use crate::domain::Dimension;
    let records = script_records();
    let tenants = ["acme", "globex"];
    let addresses: Vec<&str> = records.iter().map(|(_, a, _)| *a).collect();
    let mut counters = Vec::new();
    let mut values = Vec::new();
    for t in tenants {
        for dimension in Dimension::ALL {
            let found = store.dimension_values(&tenant(t), dimension).unwrap();
            for value in &found {
                for granularity in [Granularity::Hourly, Granularity::Daily] {
                    let from = granularity.bucket(Timestamp(T0 - 48 * HOUR));
                    let to = granularity.bucket(Timestamp(T0 + 96 * HOUR));
                    counters.push(
                        store
                            .counters(&tenant(t), dimension, value, granularity, from, to)
                            .unwrap(),
                    );
                }
            }
            values.push(found);
        }
    }
    Answers {
        records: records
            .iter()
            .map(|(t, a, _)| store.get_record(&tenant(t), &address(a)).unwrap())
            .collect(),
        events: script_events()
            .iter()
            .map(|(t, e)| store.get_event(&tenant(t), &e.event_id).unwrap())
            .collect(),
        bounces: tenants
            .iter()
            .flat_map(|t| {
                [None, Some("import".to_string())].map(|source| {
                    let query = BounceQuery {
                        source,
                        ..BounceQuery::default()
                    };
                    store
                        .list_bounces(&tenant(t), &query, None, 100)
                        .unwrap()
                        .items
                })
            })
            .collect(),
        histories: records
            .iter()
            .map(|(t, a, _)| {
                store
                    .history(&tenant(t), &address(a), None, 100)
                    .unwrap()
                    .items
            })
            .collect(),
        counters,
        values,
        good: (
            store.known_good_domains(&tenant("acme"), 10).unwrap(),
            store
                .known_good_locals(&tenant("acme"), "y.com", 10)
                .unwrap(),
        ),
        suppressed: tenants
            .iter()
            .map(|t| {
                store
                    .suppressed_records(&tenant(t), &addresses, false)
                    .unwrap()
            })
            .collect(),
        suppressions: tenants
            .iter()
            .map(|t| {
                store
                    .list_suppressions(&tenant(t), &SuppressionQuery::default(), None, 100)
                    .unwrap()
                    .items
                    .into_iter()
                    .map(|s| (s.address, s.record))
                    .collect()
            })
            .collect(),
        suppressed_count: store.suppressed_count(),
    }
}

/// Unpacks fixture archive `name` into a new temporary directory; the data directory is its
/// `data` subdirectory. The archives are small tarballs, unpacked with the system's `tar`.
fn unpack(name: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(golden_dir().join(name))
        .arg("-C")
        .arg(work.path())
        .status()
        .expect("the tar command unpacks the fixture data directories");
    assert!(status.success(), "cannot unpack {name}");
    work
}

/// Runs `open` on a directory that a store of this process used and closed: sled lets go of
/// its file lock from background threads a moment after its last handle is dropped, so a
/// refusal as locked is retried, for a few seconds at most.
fn while_locked<T>(mut open: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Opens the store in `path` (see [`while_locked`]).
fn reopen(engine: super::Engine, path: &Path) -> Arc<dyn SuppressionStore> {
    while_locked(|| open_small(engine, path)).unwrap()
}

/// Runs `$body` with `$e` bound to the bare engine (no store, no journal) of data directory
/// `$path`, retrying while a store of this process that used it lets go of it.
macro_rules! with_engine {
    ($engine:expr, $path:expr, |$e:ident| $body:expr) => {{
        while_locked(|| match $engine {
            super::Engine::Sled => {
                super::sled_engine::SledEngine::open($path, 4 << 20).map(|$e| $body)
            }
            super::Engine::Redb => {
                super::redb_engine::RedbEngine::open($path, 4 << 20).map(|$e| $body)
            }
            super::Engine::Postgres => unreachable!("a test of the embedded engines"),
        })
        .unwrap()
    }};
}

/// The values of record keys in `engine` by encoding, (schema 2, schema 3 and later), and its
/// schema version.
fn census<E: KvEngine>(engine: &E) -> ((usize, usize), Option<Vec<u8>>) {
    let (mut old, mut new) = (0, 0);
    engine
        .scan(Bound::Unbounded, Bound::Unbounded, &mut |k, v| {
            if RECORD_KINDS.contains(&k[0]) || [keys::RECORD, keys::LOG].contains(&k[0]) {
                match v[0] {
                    legacy::RECORD_VERSION => old += 1,
                    super::records::RECORD_VERSION => new += 1,
                    other => panic!("version byte {other} under {k:?}"),
                }
            }
            Ok(true)
        })
        .unwrap();
    ((old, new), engine.meta_get("schema_version").unwrap())
}

/// How many keys of the schema-3 layout's kinds `engine` holds (events, records and history
/// by address text, the old indexes).
fn schema_3_keys<E: KvEngine>(engine: &E) -> usize {
    let mut n = 0;
    engine
        .scan(Bound::Unbounded, Bound::Unbounded, &mut |k, _| {
            if [
                keys::OLD_EVENT,
                keys::OLD_ADDRESS,
                keys::OLD_HISTORY,
                keys::OLD_BY_SOURCE,
                keys::OLD_BOUNCES,
                keys::OLD_SUPPRESSED,
            ]
            .contains(&k[0])
            {
                n += 1;
            }
            Ok(true)
        })
        .unwrap();
    n
}

/// Rewrites every other schema-2 value in the new encoding, as a migration stopped midway
/// leaves it.
fn migrate_every_other_value<E: KvEngine>(engine: &E) {
    let mut rewrites = Vec::new();
    engine
        .scan(Bound::Unbounded, Bound::Unbounded, &mut |k, v| {
            if RECORD_KINDS.contains(&k[0]) && v[0] == legacy::RECORD_VERSION {
                rewrites.push((k.to_vec(), reencode(k[0], k, v)?));
            }
            Ok(true)
        })
        .unwrap();
    engine
        .transact(|txn| {
            for (k, v) in rewrites.into_iter().step_by(2) {
                txn.put(k, v)?;
            }
            Ok(())
        })
        .unwrap();
}

/// What a fresh store answers after the fixture script.
async fn answers_of_a_fresh_store(engine: super::Engine) -> Answers {
    let dir = tempfile::tempdir().unwrap();
    let fresh = open_small(engine, dir.path()).unwrap();
    write_script(&*fresh).await.unwrap();
    let want = answers(&*fresh);
    fresh.close().unwrap();
    want
}

async fn a_data_directory_of_schema_2_is_migrated_and_answers_as_written(engine: super::Engine) {
    let work = unpack(&format!("golden-schema2-datadir-{}.tar.gz", engine.name()));
    let data = work.path().join("data");
    let ((old, new), version) = with_engine!(engine, &data, |e| census(&e));
    assert_eq!(
        (new, version),
        (0, Some(vec![2])),
        "the fixture is of schema 2"
    );
    assert!(old > 30, "the fixture holds records: {old}");

    let want = answers_of_a_fresh_store(engine).await;
    // The values the script wrote, spelled out: the comparison with a fresh store is not all.
    let records: Vec<Option<AddressRecord>> = script_records()
        .into_iter()
        .map(|(_, _, r)| Some(r))
        .collect();
    assert_eq!(want.records, records);
    let events: Vec<Option<RecordedEvent>> =
        script_events().into_iter().map(|(_, e)| Some(e)).collect();
    assert_eq!(want.events, events);
    assert_eq!(want.suppressed_count, 4);
    assert_eq!(
        want.histories.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 1, 2, 1, 1, 3, 2]
    );
    assert_eq!(
        want.bounces.iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 1, 1, 1]
    );
    assert!(want.counters.iter().all(|c| !c.is_empty()) && want.counters.len() >= 12);
    assert_eq!(want.good.1, ["good"]);

    for round in 0..2 {
        let store = reopen(engine, &data);
        assert_eq!(answers(&*store), want, "open {round}");
        store.close().unwrap();
        drop(store);
        let ((old_after, new_after), version) = with_engine!(engine, &data, |e| census(&e));
        assert_eq!(old_after, 0, "every value is rewritten");
        assert!(new_after > 0);
        assert_eq!(with_engine!(engine, &data, |e| schema_3_keys(&e)), 0);
        assert_eq!(version, Some(vec![SCHEMA_VERSION]));
    }
}

async fn a_migration_stopped_midway_is_finished_at_the_next_open(engine: super::Engine) {
    let work = unpack(&format!("golden-schema2-datadir-{}.tar.gz", engine.name()));
    let data = work.path().join("data");
    with_engine!(engine, &data, |e| migrate_every_other_value(&e));
    let ((old, new), version) = with_engine!(engine, &data, |e| census(&e));
    assert!(old > 10 && new > 10, "a mix: {old} old, {new} new");
    assert_eq!(version, Some(vec![2]));

    let want = answers_of_a_fresh_store(engine).await;
    let store = reopen(engine, &data);
    assert_eq!(answers(&*store), want);
    store.close().unwrap();
    drop(store);
    let ((old, _), version) = with_engine!(engine, &data, |e| census(&e));
    assert_eq!((old, version), (0, Some(vec![SCHEMA_VERSION])));
}

async fn the_migration_goes_batch_by_batch_and_a_second_run_changes_nothing(engine: super::Engine) {
    let work = unpack(&format!("golden-schema2-datadir-{}.tar.gz", engine.name()));
    let data = work.path().join("data");
    let ((old, _), _) = with_engine!(engine, &data, |e| census(&e));
    let (first, second) = with_engine!(engine, &data, |e| (
        migrate_records(&e, 3).unwrap(),
        migrate_records(&e, 3).unwrap()
    ));
    assert_eq!((first, second), (old, 0));
    let ((old_after, new), _) = with_engine!(engine, &data, |e| census(&e));
    assert_eq!((old_after, new), (0, old));

    let want = answers_of_a_fresh_store(engine).await;
    let store = reopen(engine, &data);
    assert_eq!(answers(&*store), want);
    store.close().unwrap();
}

async fn a_data_directory_of_schema_3_is_migrated_and_answers_as_written(engine: super::Engine) {
    let work = unpack(&format!("golden-schema3-datadir-{}.tar.gz", engine.name()));
    let data = work.path().join("data");
    let ((old, new), version) = with_engine!(engine, &data, |e| census(&e));
    assert_eq!(
        (old, version),
        (0, Some(vec![3])),
        "the fixture is of schema 3"
    );
    assert!(new > 30, "the fixture holds records: {new}");
    let before = with_engine!(engine, &data, |e| schema_3_keys(&e));
    assert!(before > 30, "{before}");

    let want = answers_of_a_fresh_store(engine).await;
    for round in 0..2 {
        let store = reopen(engine, &data);
        assert_eq!(answers(&*store), want, "open {round}");
        store.close().unwrap();
        drop(store);
        assert_eq!(with_engine!(engine, &data, |e| schema_3_keys(&e)), 0);
        let (_, version) = with_engine!(engine, &data, |e| census(&e));
        assert_eq!(version, Some(vec![SCHEMA_VERSION]));
    }
}

async fn a_layout_migration_stopped_midway_is_finished_at_the_next_open(engine: super::Engine) {
    let work = unpack(&format!("golden-schema3-datadir-{}.tar.gz", engine.name()));
    let data = work.path().join("data");
    let before = with_engine!(engine, &data, |e| schema_3_keys(&e));
    // Two old keys a transaction; the fourth transaction stops the process.
    let stopped = with_engine!(engine, &data, |e| {
        let key = super::kv_store::secret::<_, 16>(&e, "address_key").unwrap();
        let hasher = super::address_hash::AddressHasher::new(&key);
        let e = super::testing::PanicOnCommit::new(e, 4);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::layout::migrate(&e, &hasher, 2)
        }))
        .is_err()
    });
    assert!(stopped, "the migration was stopped");
    let left = with_engine!(engine, &data, |e| schema_3_keys(&e));
    assert!(
        left > 0 && left < before,
        "a mix: {left} of {before} old keys left"
    );
    let (_, version) = with_engine!(engine, &data, |e| census(&e));
    assert_eq!(version, Some(vec![3]));

    let want = answers_of_a_fresh_store(engine).await;
    let store = reopen(engine, &data);
    assert_eq!(answers(&*store), want);
    store.close().unwrap();
    drop(store);
    assert_eq!(with_engine!(engine, &data, |e| schema_3_keys(&e)), 0);
    let (_, version) = with_engine!(engine, &data, |e| census(&e));
    assert_eq!(version, Some(vec![SCHEMA_VERSION]));
}

async fn a_data_directory_of_a_newer_schema_is_refused(engine: super::Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small(engine, dir.path()).unwrap();
    write_script(&*store).await.unwrap();
    store.close().unwrap();
    drop(store);
    with_engine!(engine, dir.path(), |e| e
        .meta_put("schema_version", &[SCHEMA_VERSION + 1])
        .unwrap());
    let Err(refused) = while_locked(|| open_small(engine, dir.path())) else {
        panic!("a store of a newer schema was opened");
    };
    assert!(
        matches!(refused, StoreError::SchemaTooNew { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{refused}"
    );
    assert!(refused.to_string().contains("newer"), "{refused}");
}

/// The record values of `engine` by how their personal fields are kept: (in the clear, sealed).
fn sealed_census<E: KvEngine>(engine: &E) -> (usize, usize) {
    let (mut plain, mut sealed) = (0, 0);
    engine
        .scan(Bound::Unbounded, Bound::Unbounded, &mut |k, v| {
            if k[0] == keys::RECORD {
                let stored: super::kv_store::StoredAddress = decode(k, v)?;
                match stored.key_slot {
                    Some(_) => sealed += 1,
                    None if !stored.record.forgotten => plain += 1,
                    None => {}
                }
            }
            Ok(true)
        })
        .unwrap();
    (plain, sealed)
}

/// Data written before the keyring (schema 4, here migrated from the schema-3 fixture) keeps
/// personal fields in the clear: it is read as it is, sealed at an address's next write, and
/// forgetting an address of it erases its record, history and delivered entry all the same.
async fn data_from_before_the_keyring_is_read_sealed_on_write_and_forgotten(engine: super::Engine) {
    let work = unpack(&format!("golden-schema3-datadir-{}.tar.gz", engine.name()));
    let data = work.path().join("data");
    let store = reopen(engine, &data);
    let acme = tenant("acme");
    assert_eq!(
        store.known_good_locals(&acme, "y.com", 10).unwrap(),
        ["good"]
    );
    let fixed = store.get_record(&acme, &address("fixed@x.com")).unwrap();
    assert_eq!(
        fixed.unwrap().pending_validation.unwrap().replaces,
        "hard@x.com"
    );
    store.close().unwrap();
    drop(store);
    let (plain, sealed) = with_engine!(engine, &data, |e| sealed_census(&e));
    assert!(plain >= 7 && sealed == 0, "({plain}, {sealed})");

    let store = reopen(engine, &data);
    for gone in ["hard@x.com", "good@y.com"] {
        let done = store
            .forget(super::ForgetWrite {
                tenant: acme.clone(),
                address: address(gone),
                decide: Box::new(|current| {
                    let next =
                        crate::policy::forget::forget(current, "ops", "ticket", Timestamp(T0))
                            .unwrap();
                    Decision::Apply {
                        record: next.record,
                        changes: next.changes,
                    }
                }),
            })
            .await
            .unwrap();
        assert!(
            matches!(done, super::WriteOutcome::Applied { .. }),
            "{gone}"
        );
        assert_eq!(
            store
                .history(&acme, &address(gone), None, 10)
                .unwrap()
                .items
                .len(),
            1
        );
    }
    assert!(store
        .known_good_locals(&acme, "y.com", 10)
        .unwrap()
        .is_empty());
    assert!(store.known_good_domains(&acme, 10).unwrap().is_empty());
    let fixed = store
        .get_record(&acme, &address("fixed@x.com"))
        .unwrap()
        .unwrap();
    assert!(fixed.pending_validation.is_none(), "{fixed:?}");
    assert!(!format!(
        "{:?}",
        store
            .history(&acme, &address("fixed@x.com"), None, 10)
            .unwrap()
    )
    .contains("hard@x.com"));
    // A write seals the record it touches.
    let event = script_event(
        "e-new",
        "soft@x.com",
        BounceType::Soft,
        BounceReason::MailboxFull,
        T0 + 3 * HOUR,
        "signup-form",
    );
    let for_policy = event.clone();
    store
        .write(vec![AddressWrite {
            tenant: acme.clone(),
            address: address("soft@x.com"),
            event: Some(event),
            reclassified: Vec::new(),
            decide: Box::new(move |current| {
                let next =
                    crate::policy::EscalationPolicy::default().apply_event(current, &for_policy);
                Decision::Apply {
                    record: next.record,
                    changes: next.changes,
                }
            }),
        }])
        .await
        .unwrap();
    let soft = store
        .get_record(&acme, &address("soft@x.com"))
        .unwrap()
        .unwrap();
    assert_eq!(soft.soft_bounces.len(), 3);
    assert_eq!(
        store.get_event(&acme, "e-new").unwrap().unwrap().address,
        "soft@x.com"
    );
    store.close().unwrap();
    drop(store);
    let (plain_after, sealed_after) = with_engine!(engine, &data, |e| sealed_census(&e));
    // Two forgotten, and two sealed: the one written and the replacement the erasure unlinked.
    assert_eq!((plain_after, sealed_after), (plain - 4, 2));
}

macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod on_sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::super::Engine::Sled).await
                }
            )*
        }
        mod on_redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::super::Engine::Redb).await
                }
            )*
        }
    };
}

on_both_engines!(
    a_data_directory_of_schema_2_is_migrated_and_answers_as_written,
    a_migration_stopped_midway_is_finished_at_the_next_open,
    a_data_directory_of_a_newer_schema_is_refused,
    the_migration_goes_batch_by_batch_and_a_second_run_changes_nothing,
    a_data_directory_of_schema_3_is_migrated_and_answers_as_written,
    a_layout_migration_stopped_midway_is_finished_at_the_next_open,
    data_from_before_the_keyring_is_read_sealed_on_write_and_forgotten,
);
