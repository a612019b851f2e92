//! What the postgres engine's in-memory suppressed index and its read barrier cost and save:
//! the import screen of one replica while another wrote the suppressions, in process, against
//! the test cluster (`SUPPRESSD_TEST_DATABASE_URL`, see docs/postgres.md).
//!
//! `cargo run --release --example pg_index -- [suppressed] [seconds] [rounds]` (default
//! 100,000 suppressed addresses, 5 s per measurement, 3 rounds: the median is printed). Replica A loads the suppressions; replica B
//! (a second store on the same database, its index loaded after) screens messages of 1,000
//! contacts of which 2% are suppressed, at concurrency 1 and 64:
//! - `screen`: the whole import screen (`ImportGuard::screen`, complete verdicts), as a
//!   CheckImport message runs it: barrier, index, one query for the suppressed contacts;
//! - `index`: the store's call alone (`suppressed_records`);
//! - `query`: the query-per-screen form that `suppressed_records` ran before the index (every
//!   contact's keyed hash in one indexed `= ANY` query: `records`);
//! - `screen+writes`: the screen while A writes a hard bounce about every millisecond, so
//!   that catch-ups have changes to apply.
//!
//! Each line gives messages and contacts per second and the catch-up queries per message
//! (from the `suppressd_postgres_index_catch_ups_total` counter).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use suppressd::app::import_guard::{ImportBatch, ImportSession};
use suppressd::app::report::event_write;
use suppressd::app::{App, Caller, Settings};
use suppressd::classify::Classifier;
use suppressd::domain::{
    BounceReason, BounceType, Classification, EmailAddress, RecordedEvent, ReportedOutcome, Tenant,
    Timestamp,
};
use suppressd::policy::EscalationPolicy;
use suppressd::store::testing::{postgres_test_database, wait_until_ready};
use suppressd::store::{Engine, StoreOptions, SuppressionStore};

const T0: i64 = 1_780_000_000_000_000;
const BATCH: usize = 1_000;
/// One contact in this many is suppressed.
const HIT_EVERY: u64 = 50;

fn address(i: u64) -> String {
    format!("user.{i}@corp{}.example", i % 5_000)
}

fn hard_bounce(id: String, address: String) -> RecordedEvent {
    RecordedEvent {
        event_id: id,
        address,
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

fn open(url: &str) -> Arc<dyn SuppressionStore> {
    let dir = tempfile::tempdir().expect("a directory");
    let store = suppressd::store::open(StoreOptions {
        engine: Engine::Postgres,
        path: dir.path().join("unused"),
        cache_bytes: 0,
        journal_bytes: 0,
        database_url: Some(url.to_string()),
    })
    .expect("store opens");
    wait_until_ready(&*store, Duration::from_secs(600));
    store
}

/// Message `m` of a screener: `BATCH` contacts, one in `HIT_EVERY` suppressed (index below
/// `suppressed`), the others never seen.
fn message(m: u64, suppressed: u64) -> Vec<String> {
    (0..BATCH as u64)
        .map(|k| {
            let n = m * BATCH as u64 + k;
            if n.is_multiple_of(HIT_EVERY) {
                address((n / HIT_EVERY).wrapping_mul(7_919) % suppressed)
            } else {
                address(1 << 40 | n)
            }
        })
        .collect()
}

fn catch_ups(metrics: &metrics_exporter_prometheus::PrometheusHandle) -> u64 {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("suppressd_postgres_index_catch_ups_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Screen,
    Index,
    Query,
}

/// Runs `threads` screeners for `seconds`; returns messages per second.
fn measure(
    app: &App,
    store: &Arc<dyn SuppressionStore>,
    mode: Mode,
    threads: usize,
    seconds: u64,
    suppressed: u64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tenant = Tenant::parse("bench").unwrap();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (stop, done, tenant) = (stop.clone(), done.clone(), tenant.clone());
            scope.spawn(move || {
                let mut session = ImportSession::new(Caller::trusted("bench"));
                let mut m = t as u64 * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let contacts = message(m, suppressed);
                    let lines: Vec<&str> = contacts.iter().map(String::as_str).collect();
                    let blocked = match mode {
                        Mode::Screen => {
                            if m.is_multiple_of(1_000) {
                                // A session remembers every address it saw (duplicates).
                                session = ImportSession::new(Caller::trusted("bench"));
                            }
                            let screened = app
                                .import_guard
                                .screen(
                                    &mut session,
                                    &ImportBatch {
                                        tenant: "bench",
                                        contacts: Vec::new(),
                                        lines,
                                        field: "address_lines",
                                        list_id: "",
                                    },
                                )
                                .expect("screened");
                            screened.verdicts.len()
                        }
                        Mode::Index => store
                            .suppressed_records(&tenant, &lines, false)
                            .expect("screened")
                            .len(),
                        Mode::Query => store
                            .records(&tenant, &lines)
                            .expect("read")
                            .iter()
                            .filter(|(_, r)| r.suppression.is_some())
                            .count(),
                    };
                    assert!(blocked >= BATCH / HIT_EVERY as usize, "{blocked} blocked");
                    done.fetch_add(1, Ordering::Relaxed);
                    m += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let suppressed: u64 = args
        .next()
        .map_or(100_000, |a| a.parse().expect("suppressed"));
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("seconds"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("rounds"));
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("a metrics recorder");
    let url = postgres_test_database(&format!(
        "pg_index bench {suppressed} {}",
        std::process::id()
    ));
    let a = open(&url);
    let tenant = Tenant::parse("bench").unwrap();
    let started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for chunk in (0..suppressed).collect::<Vec<_>>().chunks(1_000) {
        let writes = chunk
            .iter()
            .map(|&i| {
                let to = EmailAddress::parse(&address(i)).unwrap();
                event_write(
                    &tenant,
                    to,
                    hard_bounce(format!("e{i}"), address(i)),
                    EscalationPolicy::default(),
                )
            })
            .collect();
        pending.spawn(a.write(writes));
        if pending.len() >= 8 {
            pending
                .join_next()
                .await
                .expect("a write")
                .expect("task")
                .expect("loaded");
        }
    }
    while let Some(done) = pending.join_next().await {
        done.expect("task").expect("loaded");
    }
    eprintln!(
        "replica A wrote {suppressed} suppressions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let b = open(&url);
    eprintln!(
        "replica B loaded its index in {:.2} s (ready)",
        started.elapsed().as_secs_f64()
    );
    let app = App::new(b.clone(), Arc::new(Classifier::new()), Settings::default());

    // A writer on replica A, for the `screen+writes` lines.
    let writing = Arc::new(AtomicBool::new(false));
    {
        let (a, writing, tenant) = (a.clone(), writing.clone(), tenant.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            loop {
                if writing.load(Ordering::Relaxed) {
                    let n = suppressed + i;
                    let to = EmailAddress::parse(&address(n)).unwrap();
                    let write = event_write(
                        &tenant,
                        to,
                        hard_bounce(format!("w{n}"), address(n)),
                        EscalationPolicy::default(),
                    );
                    a.write(vec![write]).await.expect("written");
                    i += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }

    // Warm-up: connections made, pages cached, code paths taken once.
    for mode in [Mode::Screen, Mode::Query] {
        measure(&app, &b, mode, 8, 1, suppressed);
    }
    let configs = [
        ("screen", Mode::Screen, false),
        ("index", Mode::Index, false),
        ("query", Mode::Query, false),
        ("screen+writes", Mode::Screen, true),
    ];
    // Rounds alternate over the configurations, so that the machine's drift falls on all.
    let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); configs.len() * 2];
    for _ in 0..rounds {
        for (c, threads) in [1, 64].into_iter().enumerate() {
            for (k, (_, mode, writes)) in configs.iter().enumerate() {
                writing.store(*writes, Ordering::Relaxed);
                let before = catch_ups(&metrics);
                let rate = measure(&app, &b, *mode, threads, seconds, suppressed);
                let queries = catch_ups(&metrics) - before;
                results[c * configs.len() + k]
                    .push((rate, queries as f64 / (rate * seconds as f64)));
            }
        }
    }
    writing.store(false, Ordering::Relaxed);
    println!("mode           concurrency  messages/s  contacts/s  catch-ups/message  (median of {rounds})");
    for (c, threads) in [1, 64].into_iter().enumerate() {
        for (k, (name, _, _)) in configs.iter().enumerate() {
            let mut runs = results[c * configs.len() + k].clone();
            runs.sort_by(|x, y| x.0.total_cmp(&y.0));
            let (rate, per_message) = runs[runs.len() / 2];
            println!(
                "{name:<14} {threads:>11}  {rate:>10.0}  {:>10.0}  {per_message:>17.3}",
                rate * BATCH as f64
            );
        }
    }
}
