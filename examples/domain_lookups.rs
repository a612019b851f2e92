//! What suppressed domains cost the status lookup and the import screen of addresses at other
//! domains (most lookups), in process, without the network: two stores with the same 100,000
//! suppressed addresses, one with no suppressed domain and one with `domains` of them (every
//! tenth with its subdomains, so that lookups also walk up to the parent domains), measured in
//! alternating rounds so that the machine's drift falls on both alike.
//!
//! `cargo run --release --example domain_lookups -- [domains] [rounds] [lift]` (default 100,000
//! domains, 5 rounds). Prints, per round and store, the status lookups per second (one thread,
//! a pool of 100,000 addresses of which a tenth are suppressed), the contacts per second of an
//! import screen of 1,000,000 contacts in batches of 1,000 (as `address_lines`), and of the
//! domain-mark lookups alone. With `lift`, the domains are all reactivated before measuring:
//! no mark is left, so what remains of the difference is the bigger store, not the lookups.

use std::sync::Arc;
use std::time::Instant;

use suppressd::app::import_guard::{ImportBatch, ImportSession};
use suppressd::app::report::event_write;
use suppressd::app::{App, Caller, Settings};
use suppressd::classify::Classifier;
use suppressd::domain::{
    BounceReason, BounceType, Classification, EmailAddress, ListId, RecordedEvent, ReportedOutcome,
    Tenant, Timestamp,
};
use suppressd::policy::domains::DomainPolicy;
use suppressd::policy::EscalationPolicy;
use suppressd::store::{DomainDecision, DomainWrite, Engine, StoreOptions, SuppressionStore};

const SUPPRESSED: u64 = 100_000;
const POOL: u64 = 100_000;
const CONTACTS: u64 = 1_000_000;
const T0: i64 = 1_780_000_000_000_000;

/// The address of index `i`: a mix of big providers and 5,000 company domains, like the
/// bench's data set.
fn address(i: u64) -> String {
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20;
    let domain = match h % 10 {
        0..=2 => "gmail.com".to_string(),
        3 => "yahoo.com".to_string(),
        4 => "outlook.co.uk".to_string(),
        _ => format!("corp{}.example", h % 5_000),
    };
    format!("user.{i}@{domain}")
}

fn hard_bounce(i: u64) -> RecordedEvent {
    RecordedEvent {
        event_id: format!("e{i}"),
        address: address(i),
        outcome: ReportedOutcome::HardBounce,
        smtp_response: "550 5.1.1 user unknown".into(),
        enhanced_status: None,
        source: String::new(),
        campaign: String::new(),
        segment: String::new(),
        provider: String::new(),
        list_id: String::new(),
        occurred_at: Timestamp(T0),
        recorded_at: Timestamp(T0),
        classification: Classification {
            bounce_type: BounceType::Hard,
            reason: BounceReason::MailboxNotFound,
            rule_id: "bench".into(),
            confidence: 1.0,
            disagrees_with_reporter: false,
        },
        rules_version: 1,
    }
}

async fn store(dir: &tempfile::TempDir, domains: u64) -> Arc<dyn SuppressionStore> {
    let store = suppressd::store::open(StoreOptions {
        engine: Engine::Sled,
        path: dir.path().join("data"),
        cache_bytes: 256 << 20,
        journal_bytes: 384 << 20,
        database_url: None,
    })
    .expect("store opens");
    let tenant = Tenant::parse("bench").unwrap();
    for chunk in (0..SUPPRESSED).collect::<Vec<_>>().chunks(5_000) {
        let writes = chunk
            .iter()
            .map(|&i| {
                let event = hard_bounce(i);
                let to = EmailAddress::parse(&event.address).unwrap();
                event_write(&tenant, to, event, EscalationPolicy::default())
            })
            .collect();
        store.write(writes).await.expect("loaded");
    }
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..domains {
        let write = DomainWrite {
            tenant: tenant.clone(),
            domain: format!("d{i}.defunct-bench.example"),
            decide: Box::new(move |current| {
                let t = DomainPolicy::default()
                    .suppress(
                        current,
                        BounceReason::Manual,
                        "bench",
                        i % 10 == 0,
                        "bench",
                        Timestamp(T0),
                    )
                    .expect("a new suppression");
                DomainDecision::Apply {
                    record: t.record,
                    changes: t.changes,
                }
            }),
        };
        // Many at once: they share group commits.
        pending.spawn(store.write_domain(write));
        if pending.len() == 4_096 {
            while let Some(done) = pending.join_next().await {
                done.expect("task").expect("suppressed");
            }
        }
    }
    while let Some(done) = pending.join_next().await {
        done.expect("task").expect("suppressed");
    }
    store
}

/// Reactivates the `domains` suppressed domains.
async fn lift_all(store: &Arc<dyn SuppressionStore>, domains: u64) {
    let tenant = Tenant::parse("bench").unwrap();
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..domains {
        let write = DomainWrite {
            tenant: tenant.clone(),
            domain: format!("d{i}.defunct-bench.example"),
            decide: Box::new(move |current| {
                let (t, _) = DomainPolicy::default()
                    .reactivate(current, "bench", "bench", Timestamp(T0))
                    .expect("suppressed");
                DomainDecision::Apply {
                    record: t.record,
                    changes: t.changes,
                }
            }),
        };
        pending.spawn(store.write_domain(write));
    }
    while let Some(done) = pending.join_next().await {
        done.expect("task").expect("lifted");
    }
    assert!(!store.has_marked_domains(&tenant));
}

/// Status lookups per second over the pool, on this task (the embedded engine answers each at
/// once).
async fn status_rate(app: &App, pool: &[EmailAddress]) -> f64 {
    let caller = Caller::trusted("bench");
    let tenant = Tenant::parse("bench").unwrap();
    let started = Instant::now();
    let mut suppressed = 0;
    for a in pool {
        if app
            .lookup
            .status(&caller, &tenant, a.clone(), &ListId::default())
            .await
            .unwrap()
            .is_suppressed()
        {
            suppressed += 1;
        }
    }
    assert_eq!(suppressed, pool.len() / 10, "a tenth of the pool");
    pool.len() as f64 / started.elapsed().as_secs_f64()
}

/// Contacts screened per second, batches of 1,000 on this thread.
fn import_rate(app: &App, contacts: &[String]) -> f64 {
    let mut session = ImportSession::new(Caller::trusted("bench"));
    let started = Instant::now();
    for batch in contacts.chunks(1_000) {
        let screened = app
            .import_guard
            .screen(
                &mut session,
                &ImportBatch {
                    tenant: "bench",
                    contacts: Vec::new(),
                    lines: batch.iter().map(String::as_str).collect(),
                    field: "address_lines",
                    list_id: "",
                },
            )
            .unwrap();
        assert_eq!(screened.len(), batch.len());
    }
    contacts.len() as f64 / started.elapsed().as_secs_f64()
}

/// Domain-mark lookups alone (the import screen's part), contacts per second, batches of
/// 1,000 on this thread.
fn marks_rate(store: &dyn SuppressionStore, contacts: &[String]) -> f64 {
    let tenant = Tenant::parse("bench").unwrap();
    let started = Instant::now();
    let mut found = 0;
    for batch in contacts.chunks(1_000) {
        let domains: Vec<&str> = batch
            .iter()
            .map(|a| a.rsplit_once('@').map_or(a.as_str(), |(_, d)| d))
            .collect();
        if store.has_marked_domains(&tenant) {
            found += store.domain_facts(&tenant, &domains).len();
        }
    }
    assert_eq!(found, 0, "no contact is at a suppressed domain");
    contacts.len() as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let domains: u64 = args.next().map_or(100_000, |a| a.parse().expect("domains"));
    let rounds: usize = args.next().map_or(5, |a| a.parse().expect("rounds"));
    let lift = args.next().is_some_and(|a| a == "lift");
    let (dir_none, dir_with) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let started = Instant::now();
    let none = store(&dir_none, 0).await;
    let with = store(&dir_with, domains).await;
    eprintln!(
        "two stores of {SUPPRESSED} suppressed addresses, {domains} suppressed domains in one: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if lift {
        lift_all(&with, domains).await;
    }
    for s in [&none, &with] {
        // Status lookups use the known-address index once it is loaded.
        while !s.indexes_loaded() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let app = |store: &Arc<dyn SuppressionStore>| {
        App::new(
            store.clone(),
            Arc::new(Classifier::new()),
            Settings::default(),
        )
    };
    let apps = [("none", app(&none), &none), ("with", app(&with), &with)];
    // A tenth suppressed, the rest never seen, like the bench's status pool.
    let pool: Vec<EmailAddress> = (0..POOL)
        .map(|i| {
            let i = if i % 10 == 0 { i } else { 1 << 40 | i };
            EmailAddress::parse(&address(i)).unwrap()
        })
        .collect();
    let contacts: Vec<String> = (0..CONTACTS)
        .map(|i| {
            address(if i % 10 == 0 {
                i % SUPPRESSED
            } else {
                2 << 40 | i
            })
        })
        .collect();
    let mut rates: [(Vec<f64>, Vec<f64>, Vec<f64>); 2] = Default::default();
    for round in 0..rounds {
        for (k, (label, app, store)) in apps.iter().enumerate() {
            let (s, i) = (status_rate(app, &pool).await, import_rate(app, &contacts));
            let d = marks_rate(store.as_ref(), &contacts);
            println!(
                "round {round} {label:>4}: status {s:>10.0}/s   import {i:>10.0}/s   marks alone {d:>10.0}/s"
            );
            rates[k].0.push(s);
            rates[k].1.push(i);
            rates[k].2.push(d);
        }
    }
    let [(s0, i0, d0), (s1, i1, d1)] = rates;
    let (s0, i0, s1, i1) = (median(s0), median(i0), median(s1), median(i1));
    let (d0, d1) = (median(d0), median(d1));
    println!(
        "median: status {s0:.0}/s none, {s1:.0}/s with {domains} domains = {:.3}x ({:+.0} ns per lookup)",
        s1 / s0,
        (1e9 / s1) - (1e9 / s0)
    );
    println!(
        "median: import {i0:.0}/s none, {i1:.0}/s with {domains} domains = {:.3}x ({:+.0} ns per contact)",
        i1 / i0,
        (1e9 / i1) - (1e9 / i0)
    );
    println!(
        "median: domain marks alone {d0:.0}/s none, {d1:.0}/s with {domains} domains ({:+.0} ns per contact)",
        (1e9 / d1) - (1e9 / d0)
    );
    for (_, app, _) in &apps {
        app.shutdown().await;
    }
    none.close().unwrap();
    with.close().unwrap();
}
