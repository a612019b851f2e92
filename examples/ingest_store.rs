//! Durable ingest straight into the store, without gRPC: what the writer thread costs per send
//! result (record read, decision, history entry, indexes, counters, group commit), to compare
//! two builds of the store on the same machine without the network's noise.
//!
//! `cargo run --release --example ingest_store -- [sled|redb|postgres] [addresses] [events]`
//! (postgres: the database that `SUPPRESSD_DATABASE_URL` names)
//! (defaults: sled, 200,000 addresses loaded by one result each, then 200,000 mixed results:
//! 60 % delivered, 20 % soft, 10 % hard, 10 % block; half of them for loaded addresses).
//! Writes go in batches of 1,000, four batches queued at a time, as an ingest stream does.

use std::collections::VecDeque;
use std::time::Instant;

use suppressd::app::report::event_write;
use suppressd::domain::{
    BounceReason, BounceType, Classification, EmailAddress, RecordedEvent, ReportedOutcome, Tenant,
    Timestamp,
};
use suppressd::policy::EscalationPolicy;
use suppressd::store::{open, Engine, StoreOptions, SuppressionStore};

const BATCH: usize = 1_000;
const IN_FLIGHT: usize = 4;

fn event(i: u64, address: &str, kind: u64, at: i64) -> RecordedEvent {
    let (outcome, bounce_type, reason, smtp) = match kind % 10 {
        0..=5 => (
            ReportedOutcome::Delivered,
            BounceType::Delivered,
            BounceReason::None,
            "250 2.0.0 OK queued".to_string(),
        ),
        6 | 7 => (
            ReportedOutcome::SoftBounce,
            BounceType::Soft,
            BounceReason::MailboxFull,
            format!("452 4.2.2 <{address}>: mailbox over quota, try again later"),
        ),
        8 => (
            ReportedOutcome::HardBounce,
            BounceType::Hard,
            BounceReason::MailboxNotFound,
            format!("550 5.1.1 <{address}>: recipient address rejected: user unknown"),
        ),
        _ => (
            ReportedOutcome::Block,
            BounceType::Block,
            BounceReason::SenderBlocked,
            "550 5.7.1 message rejected by policy".to_string(),
        ),
    };
    RecordedEvent {
        event_id: format!("evt-{i:012}"),
        address: address.to_string(),
        outcome,
        smtp_response: smtp,
        enhanced_status: None,
        source: format!("source-{}", i % 20),
        campaign: format!("campaign-{}", i % 50),
        segment: String::new(),
        provider: "bench".into(),
        list_id: String::new(),
        occurred_at: Timestamp(at),
        recorded_at: Timestamp(at),
        classification: Classification {
            bounce_type,
            reason,
            rule_id: "bench.rule".into(),
            confidence: 1.0,
            disagrees_with_reporter: false,
        },
        rules_version: 1,
    }
}

/// Writes `events` in batches, `IN_FLIGHT` queued at a time; returns events per second.
async fn ingest(
    store: &dyn SuppressionStore,
    tenant: &Tenant,
    events: Vec<(EmailAddress, RecordedEvent)>,
) -> f64 {
    let policy = EscalationPolicy::default();
    let n = events.len();
    let started = Instant::now();
    let mut queued = VecDeque::new();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let writes = events
            .by_ref()
            .take(BATCH)
            .map(|(address, e)| event_write(tenant, address, e, policy))
            .collect();
        queued.push_back(store.submit(writes).await.expect("queued"));
        if queued.len() > IN_FLIGHT {
            queued.pop_front().unwrap().await.expect("durable");
        }
    }
    for outcomes in queued {
        outcomes.await.expect("durable");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine: Engine = args
        .get(1)
        .map_or("sled", String::as_str)
        .parse()
        .expect("engine");
    let addresses: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let events: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let dir = std::env::temp_dir().join(format!("ingest-store-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = open(StoreOptions {
            engine,
            path: dir.clone(),
            cache_bytes: 256 << 20,
            journal_bytes: 384 << 20,
            // `postgres`: the database that SUPPRESSD_DATABASE_URL names.
            database_url: std::env::var("SUPPRESSD_DATABASE_URL").ok(),
        })
        .expect("store opens");
        suppressd::store::testing::wait_until_ready(&*store, std::time::Duration::from_secs(30));
        let tenant = Tenant::parse("bench").unwrap();
        let address = |i: u64| {
            EmailAddress::parse(&format!("first.last{i}@domain{}.example", i % 997)).unwrap()
        };
        let t0 = 1_767_261_600_000_000i64;
        let load: Vec<_> = (0..addresses)
            .map(|i| {
                let a = address(i);
                let e = event(i, a.as_str(), if i % 10 == 0 { 8 } else { 0 }, t0);
                (a, e)
            })
            .collect();
        let loaded = ingest(&*store, &tenant, load).await;
        let mix: Vec<_> = (0..events)
            .map(|j| {
                let i = addresses + j;
                // Half for loaded addresses, half for new ones.
                let a = if j % 2 == 0 {
                    address((j * 7919) % addresses)
                } else {
                    address(i)
                };
                let e = event(i, a.as_str(), j, t0 + 1_000 + j as i64);
                (a, e)
            })
            .collect();
        let ingested = ingest(&*store, &tenant, mix).await;
        println!(
            "{}: load {addresses} addresses {loaded:.0} ev/s; ingest {events} mixed {ingested:.0} ev/s",
            engine.name()
        );
        store.close().expect("close");
    });
    let _ = std::fs::remove_dir_all(&dir);
}
