//! `suppressd migrate`, `backup` and `restore` to and from the postgres engine, as an operator
//! runs them: the binary, between servers of the test process. These need a PostgreSQL cluster
//! (`SUPPRESSD_TEST_DATABASE_URL`, see docs/postgres.md): a plain `cargo test` lists them as
//! ignored; the module's name puts them under `postgres::`, which `.ci/run` runs with
//! `--ignored` on the cluster `.ci/postgres.sh` starts.

use std::path::Path;

use suppressd::config::StorageEngine;
use suppressd::grpc::proto::{self as pb, AddressState, Outcome, StatsDimension, StatsWindow};
use suppressd::store::testing::postgres_test_database;

use crate::cli::{counts, path, run, text};
use crate::helpers::*;

const TENANT: &str = "acme";
const SOURCE: &str = "crm-sync";

/// A database of the test cluster of its own, named after `name` and `dir`.
fn database(name: &str, dir: &Path) -> String {
    postgres_test_database(&format!("{name} {}", dir.display()))
}

/// A server on `engine`, on the data directory `dir` or the database `url`.
async fn serve(engine: StorageEngine, dir: &Path, url: Option<&str>) -> TestApp {
    let url = url.map(str::to_string);
    spawn_app_in(dir.to_path_buf(), move |s| {
        s.engine = engine;
        s.database_url = url;
    })
    .await
}

/// The addresses whose state and history are compared across engines.
const GONE: [&str; 4] = [
    "gone0@example.com",
    "gone1@example.com",
    "gone2@example.com",
    "gone3@example.com",
];
const DELIVERED: &str = "fine@orchard-mailers.example";
const UNSUBSCRIBED: &str = "leaver@example.org";
const MANUAL: &str = "manual@example.net";
const FORGOTTEN: &str = "erase.me@example.com";

/// Fills a store: hard bounces (records, events, history, the bounce index, counters), a
/// delivery (delivered addresses, domain activity), a list unsubscribe, a manual suppression
/// that expires, and an address that was forgotten.
async fn fill(app: &mut TestApp) {
    for (i, address) in GONE.iter().enumerate() {
        app.report(
            TENANT,
            pb::SendResult {
                source: SOURCE.into(),
                campaign: "spring".into(),
                ..result(
                    &format!("evt-{i}"),
                    address,
                    Outcome::HardBounce,
                    USER_UNKNOWN,
                )
            },
        )
        .await;
    }
    app.report(
        TENANT,
        pb::SendResult {
            source: SOURCE.into(),
            ..result("evt-ok", DELIVERED, Outcome::Delivered, "250 2.0.0 OK")
        },
    )
    .await;
    app.report(
        TENANT,
        pb::SendResult {
            source: SOURCE.into(),
            list_id: "newsletter".into(),
            ..result("evt-unsub", UNSUBSCRIBED, Outcome::Unsubscribe, "")
        },
    )
    .await;
    app.client
        .suppress(pb::SuppressRequest {
            tenant: TENANT.into(),
            address: MANUAL.into(),
            note: "asked on the phone".into(),
            expires_at: seconds_before(&app.clock, -30 * 24 * 3600),
            ..Default::default()
        })
        .await
        .expect("suppressed by hand");
    app.report(
        TENANT,
        pb::SendResult {
            source: SOURCE.into(),
            ..result("evt-erase", FORGOTTEN, Outcome::HardBounce, USER_UNKNOWN)
        },
    )
    .await;
    let mut forget = tonic::Request::new(pb::ForgetAddressRequest {
        tenant: TENANT.into(),
        address: FORGOTTEN.into(),
        justification: "erasure request, ticket 77".into(),
    });
    forget
        .metadata_mut()
        .insert("x-caller-id", "privacy-officer".parse().unwrap());
    app.client.forget_address(forget).await.expect("forgotten");
}

/// What a user of the store sees of it: every address's status (with its id) and history, the
/// suppression list, the source's counts, and every bounce.
#[derive(Debug, PartialEq)]
struct Seen {
    statuses: Vec<pb::AddressStatus>,
    histories: Vec<Vec<pb::HistoryEntry>>,
    suppressions: Vec<String>,
    stats: Option<pb::WindowStats>,
    bounces: Vec<String>,
    /// Suggestions for a typo of the delivered address's domain (from delivered addresses).
    suggestions: Vec<String>,
}

async fn seen(app: &mut TestApp) -> Seen {
    let mut everyone: Vec<&str> = GONE.to_vec();
    everyone.extend([
        DELIVERED,
        UNSUBSCRIBED,
        MANUAL,
        FORGOTTEN,
        "never@example.com",
    ]);
    let mut statuses = Vec::new();
    let mut histories = Vec::new();
    for address in &everyone {
        statuses.push(app.status(TENANT, address).await);
        histories.push(app.history(TENANT, address).await);
    }
    let suppressions = app
        .client
        .list_suppressions(pb::ListSuppressionsRequest {
            tenant: TENANT.into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("suppressions listed")
        .into_inner()
        .suppressions
        .into_iter()
        .map(|s| s.address)
        .collect();
    let stats = app
        .client
        .get_source_stats(pb::GetSourceStatsRequest {
            tenant: TENANT.into(),
            dimension: StatsDimension::Source as i32,
            value: SOURCE.into(),
            window: StatsWindow::Last7Days as i32,
            ..Default::default()
        })
        .await
        .expect("stats read")
        .into_inner()
        .current;
    let bounces = bounce_page(app, 100, "").await.0;
    let suggestions = app
        .client
        .suggest_corrections(pb::SuggestCorrectionsRequest {
            tenant: TENANT.into(),
            address: "fine@orchard-mialers.example".into(),
            ..Default::default()
        })
        .await
        .expect("suggestions")
        .into_inner()
        .suggestions
        .into_iter()
        .map(|s| s.address)
        .collect();
    Seen {
        statuses,
        histories,
        suppressions,
        stats,
        bounces,
        suggestions,
    }
}

const CLOSED_DOMAIN: &str = "closed-down.example";

/// The status and history of a domain.
async fn domain_status(app: &mut TestApp) -> pb::GetDomainStatusResponse {
    app.client
        .get_domain_status(pb::GetDomainStatusRequest {
            tenant: TENANT.into(),
            domain: CLOSED_DOMAIN.into(),
        })
        .await
        .expect("domain status")
        .into_inner()
}

/// A page of an address's history (its items as text) and the next page's token.
async fn history_page(app: &mut TestApp, address: &str, token: &str) -> (Vec<String>, String) {
    let page = app
        .client
        .get_address_history(pb::GetAddressHistoryRequest {
            tenant: TENANT.into(),
            address: address.into(),
            page_size: 1,
            page_token: token.into(),
        })
        .await
        .expect("history read")
        .into_inner();
    (
        page.entries.iter().map(|e| format!("{e:?}")).collect(),
        page.next_page_token,
    )
}

/// A page of the suppression list and the next page's token.
async fn suppression_page(app: &mut TestApp, token: &str) -> (Vec<String>, String) {
    let page = app
        .client
        .list_suppressions(pb::ListSuppressionsRequest {
            tenant: TENANT.into(),
            page_size: 2,
            page_token: token.into(),
            ..Default::default()
        })
        .await
        .expect("suppressions listed")
        .into_inner();
    (
        page.suppressions.into_iter().map(|s| s.address).collect(),
        page.next_page_token,
    )
}

/// A page of the tenant's bounces: the event ids and the next page's token.
async fn bounce_page(app: &mut TestApp, size: u32, token: &str) -> (Vec<String>, String) {
    let page = app
        .client
        .list_bounces(pb::ListBouncesRequest {
            tenant: TENANT.into(),
            page_size: size,
            page_token: token.into(),
            ..Default::default()
        })
        .await
        .expect("bounces listed")
        .into_inner();
    (
        page.bounces.into_iter().map(|b| b.event_id).collect(),
        page.next_page_token,
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
async fn a_store_migrates_from_sled_to_postgres_and_on_to_redb_with_everything_and_its_page_tokens()
{
    let dir = tempfile::tempdir().unwrap();
    let sled_dir = dir.path().join("sled");
    let mut sled = serve(StorageEngine::Sled, &sled_dir, None).await;
    fill(&mut sled).await;
    let before = seen(&mut sled).await;
    assert_eq!(before.bounces.len(), 4, "{before:?}");
    assert_eq!(before.suggestions, [DELIVERED], "{before:?}");
    assert_eq!(before.statuses[4].state(), AddressState::Allowed);
    assert_eq!(before.statuses[5].state(), AddressState::Allowed);
    assert!(!before.statuses[5].unsubscribed_lists.is_empty());
    // Page tokens handed out before the migration: bounces, a history and the suppression list
    // (a history entry holds a send result and the change it caused: a page of one item ends
    // inside it).
    let (first, token) = bounce_page(&mut sled, 2, "").await;
    let second = bounce_page(&mut sled, 2, &token).await.0;
    assert_eq!(second.len(), 2);
    let (_, history_token) = history_page(&mut sled, GONE[0], "").await;
    let history_next = history_page(&mut sled, GONE[0], &history_token).await.0;
    assert_eq!(history_next.len(), 1);
    let (_, listed_token) = suppression_page(&mut sled, "").await;
    let listed_next = suppression_page(&mut sled, &listed_token).await.0;
    assert_eq!(listed_next.len(), 2);
    // A domain suppressed by an operator: its mark is copied through postgres (which does not
    // act on marks yet) and in force again on redb.
    let mut mark = tonic::Request::new(pb::SuppressDomainRequest {
        tenant: TENANT.into(),
        domain: CLOSED_DOMAIN.into(),
        note: "closed down".into(),
        ..Default::default()
    });
    mark.metadata_mut()
        .insert("x-caller-id", "ops-7".parse().unwrap());
    sled.client
        .suppress_domain(mark)
        .await
        .expect("domain suppressed");
    let closed = domain_status(&mut sled).await;
    assert!(
        closed
            .status
            .as_ref()
            .is_some_and(|s| s.suppression.is_some()),
        "{closed:?}"
    );
    sled.stop().await;

    let url = database("migrate sled to postgres", dir.path());
    let to_postgres = [
        "migrate",
        "--from-engine",
        "sled",
        "--from-data-dir",
        path(&sled_dir),
        "--to-engine",
        "postgres",
        "--to-database-url",
        &url,
    ];
    let there = run(&to_postgres).await;
    assert!(there.status.success(), "{}", text(&there.stderr));
    assert!(text(&there.stdout).contains("counts per kind checked"));
    assert!(
        counts(&there).iter().any(|l| l == "  events: 6"),
        "{:?}",
        counts(&there)
    );

    // Served from postgres: the same statuses (address ids too), histories, suppression list,
    // counts and bounces.
    let mut pg = serve(StorageEngine::Postgres, &dir.path().join("pg"), Some(&url)).await;
    let on_postgres = seen(&mut pg).await;
    assert_eq!(on_postgres, before);
    assert_eq!(bounce_page(&mut pg, 2, &token).await.0, second);
    assert_eq!(
        history_page(&mut pg, GONE[0], &history_token).await.0,
        history_next
    );
    assert_eq!(
        suppression_page(&mut pg, &listed_token).await.0,
        listed_next
    );
    // The store goes on: a replayed event is a duplicate, a new one is taken.
    let replay = pg
        .report(
            TENANT,
            result("evt-0", GONE[0], Outcome::HardBounce, USER_UNKNOWN),
        )
        .await;
    assert!(replay.duplicate);
    pg.stop().await;

    // Migrating into a database that holds data is refused, and leaves it as it is.
    let again = run(&to_postgres).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("holds suppressd data already"),
        "{}",
        text(&again.stderr)
    );

    let redb_dir = dir.path().join("redb");
    let back = run(&[
        "migrate",
        "--from-engine",
        "postgres",
        "--from-database-url",
        &url,
        "--to-engine",
        "redb",
        "--to-data-dir",
        path(&redb_dir),
    ])
    .await;
    assert!(back.status.success(), "{}", text(&back.stderr));
    assert_eq!(counts(&there), counts(&back), "the same entries both ways");

    // Served from redb: the same again, and the page token sled handed out reads the same
    // next page.
    let mut redb = serve(StorageEngine::Redb, &redb_dir, None).await;
    assert_eq!(seen(&mut redb).await, before);
    assert_eq!(domain_status(&mut redb).await, closed);
    assert_eq!(bounce_page(&mut redb, 2, "").await.0, first);
    assert_eq!(bounce_page(&mut redb, 2, &token).await.0, second);
    assert_eq!(
        history_page(&mut redb, GONE[0], &history_token).await.0,
        history_next
    );
    assert_eq!(
        suppression_page(&mut redb, &listed_token).await.0,
        listed_next
    );
    redb.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
async fn a_restore_into_postgres_cut_short_keeps_nothing_and_runs_again_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let source_url = database("restore source", dir.path());
    let mut source = serve(
        StorageEngine::Postgres,
        &dir.path().join("source"),
        Some(&source_url),
    )
    .await;
    // Enough rows that the restore writes some of them before the cut.
    for batch in 0..10 {
        let results = (0..500)
            .map(|i| pb::SendResult {
                source: SOURCE.into(),
                ..result(
                    &format!("b{batch}-e{i}"),
                    &format!("b{batch}-i{i}@bulk.example"),
                    Outcome::HardBounce,
                    USER_UNKNOWN,
                )
            })
            .collect();
        source
            .client
            .report_send_results(tokio_stream::iter(vec![pb::ReportSendResultsRequest {
                tenant: TENANT.into(),
                results,
            }]))
            .await
            .expect("the batch is taken");
    }
    let (_, token) = bounce_page(&mut source, 100, "").await;
    let next = bounce_page(&mut source, 100, &token).await.0;

    // A backup through the Backup call of the postgres server.
    let backup_dir = dir.path().join("backup");
    let addr = source.addr.trim_start_matches("http://").to_string();
    let taken = run(&["backup", "--to", path(&backup_dir), "--addr", &addr]).await;
    assert!(taken.status.success(), "{}", text(&taken.stderr));
    let manifest = std::fs::read_to_string(backup_dir.join("manifest.toml")).unwrap();
    assert!(manifest.contains("events = 5000"), "{manifest}");
    assert!(
        manifest.contains("source_engine = \"postgres\""),
        "{manifest}"
    );
    source.stop().await;

    // The same backup cut short, as a copy interrupted midway.
    let cut_dir = dir.path().join("cut");
    std::fs::create_dir(&cut_dir).unwrap();
    std::fs::copy(
        backup_dir.join("manifest.toml"),
        cut_dir.join("manifest.toml"),
    )
    .unwrap();
    let stream = std::fs::read(backup_dir.join("store.snap")).unwrap();
    std::fs::write(cut_dir.join("store.snap"), &stream[..stream.len() * 9 / 10]).unwrap();

    let target = database("restore target", dir.path());
    let restore = |from: &Path| {
        let from = path(from).to_string();
        let target = target.clone();
        async move {
            run(&[
                "restore",
                "--from",
                &from,
                "--engine",
                "postgres",
                "--database-url",
                &target,
            ])
            .await
        }
    };
    let failed = restore(&cut_dir).await;
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        text(&failed.stderr).contains("cut short"),
        "{}",
        text(&failed.stderr)
    );

    // Nothing of it was kept: the whole backup restores into the same database.
    let done = restore(&backup_dir).await;
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(
        counts(&done).iter().any(|l| l == "  events: 5000"),
        "{:?}",
        counts(&done)
    );
    let mut restored = serve(
        StorageEngine::Postgres,
        &dir.path().join("restored"),
        Some(&target),
    )
    .await;
    assert_eq!(
        restored.state(TENANT, "b7-i123@bulk.example").await,
        AddressState::Suppressed
    );
    // A page token of the source reads the same page from the copy.
    assert_eq!(bounce_page(&mut restored, 100, &token).await.0, next);
    restored.stop().await;

    // Once restored, the database is not restored into again.
    let twice = restore(&backup_dir).await;
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        text(&twice.stderr).contains("holds suppressd data already"),
        "{}",
        text(&twice.stderr)
    );
}
