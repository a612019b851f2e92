//! `suppressd migrate` to and from the postgres engine on a store of about a million addresses
//! (bench/README.md, "Backup, restore and migrate").
//!
//! `SUPPRESSD_TEST_DATABASE_URL=postgres://... cargo run --release --example migrate_throughput -- [ADDRESSES]`
//!
//! In process, on a temporary directory (under `BENCH_DIR`, default `.`): a sled server takes
//! ADDRESSES events (default 1,000,000; each to an address of its own: 70 % deliveries, 20 %
//! soft and 10 % hard bounces) through ReportSendResults and stops; then `migrate` (what
//! `suppressd migrate` runs) copies it into a new database of the cluster, and from there into
//! a new redb data directory. Each migrate prints its counts; this prints the times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use suppressd::cli::MigrateArgs;
use suppressd::config::{ServeSettings, StorageEngine};
use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use suppressd::grpc::proto::{self as pb, Outcome};
use suppressd::startup::Application;

const REPORTERS: u64 = 4;
const BATCH: u64 = 5_000;

fn result(n: u64) -> pb::SendResult {
    let (outcome, smtp) = match n % 10 {
        0 => (Outcome::HardBounce, "550 5.1.1 user unknown"),
        1 | 2 => (Outcome::SoftBounce, "452 4.2.2 mailbox full"),
        _ => (Outcome::Delivered, "250 2.0.0 OK"),
    };
    pb::SendResult {
        event_id: format!("ev-{n}"),
        address: format!("user{n}@domain{}.example", n % 1000),
        outcome: outcome as i32,
        smtp_response: smtp.into(),
        source: format!("source-{}", n % 20),
        campaign: format!("campaign-{}", n % 50),
        ..Default::default()
    }
}

/// Sends events `0..end` in batches from a few concurrent reporters.
async fn ingest(client: SuppressionServiceClient<tonic::transport::Channel>, end: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..REPORTERS)
        .map(|_| {
            let (mut client, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let first = next.fetch_add(BATCH, Ordering::Relaxed);
                    if first >= end {
                        break;
                    }
                    let results = (first..(first + BATCH).min(end)).map(result).collect();
                    client
                        .report_send_results(tokio_stream::iter(vec![
                            pb::ReportSendResultsRequest {
                                tenant: "bench".into(),
                                results,
                            },
                        ]))
                        .await
                        .expect("batch acknowledged");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

fn migrate(args: MigrateArgs) -> anyhow::Result<f64> {
    let started = Instant::now();
    let code = suppressd::cli::migrate(args);
    anyhow::ensure!(code == std::process::ExitCode::SUCCESS, "migrate failed");
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let addresses: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let work = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))?;
    let sled = work.path().join("sled");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ingest_secs = runtime.block_on(async {
        let mut settings = ServeSettings::local("127.0.0.1:0".parse()?, sled.clone());
        settings.engine = StorageEngine::Sled;
        let app = Application::build(settings).await?;
        let addr = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let client = SuppressionServiceClient::connect(addr).await?;
        let started = Instant::now();
        ingest(client, addresses).await;
        let secs = started.elapsed().as_secs_f64();
        let _ = stop.send(());
        server.await??;
        anyhow::Ok(secs)
    })?;
    drop(runtime);
    eprintln!("ingested {addresses} events in {ingest_secs:.1} s");

    let url = suppressd::store::testing::postgres_test_database(&format!(
        "migrate throughput {}",
        work.path().display()
    ));
    let into_postgres = migrate(MigrateArgs {
        from_engine: StorageEngine::Sled,
        from_data_dir: Some(sled.clone()),
        from_database_url: None,
        to_engine: StorageEngine::Postgres,
        to_data_dir: None,
        to_database_url: Some(url.clone()),
        cache_mb: 256,
    })?;
    let redb = work.path().join("redb");
    let out_of_postgres = migrate(MigrateArgs {
        from_engine: StorageEngine::Postgres,
        from_data_dir: None,
        from_database_url: Some(url),
        to_engine: StorageEngine::Redb,
        to_data_dir: Some(redb),
        to_database_url: None,
        cache_mb: 256,
    })?;
    println!(
        "{addresses} addresses: sled -> postgres {into_postgres:.1} s, postgres -> redb \
         {out_of_postgres:.1} s"
    );
    Ok(())
}
