//! Backup and restore throughput on a store of about a million events, and what a backup costs
//! the ingest that goes on meanwhile (bench/README.md, "Backup, restore and migrate").
//!
//! `cargo run --release --example backup_throughput -- [sled|redb] [EVENTS]`
//!
//! In process, on a temporary directory: a server of the chosen engine takes EVENTS events
//! (default 1,000,000; a mix of deliveries, soft and hard bounces, a new address every other
//! event) through ReportSendResults; then the ingest goes on alone for a while (the rate
//! without a backup), then again while `Backup` streams the whole store into a file (the rate
//! during a backup, and the backup's throughput); then the file is restored into an empty
//! directory of each engine, and the source directory migrated offline into the other engine.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use suppressd::config::{ServeSettings, StorageEngine};
use suppressd::grpc::proto::suppression_admin_service_client::SuppressionAdminServiceClient;
use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use suppressd::grpc::proto::{self as pb, Outcome};
use suppressd::startup::Application;
use suppressd::store::{self, Engine, StoreOptions};

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
        address: format!("user{}@domain{}.example", n / 2, n % 1000),
        outcome: outcome as i32,
        smtp_response: smtp.into(),
        source: format!("source-{}", n % 20),
        campaign: format!("campaign-{}", n % 50),
        ..Default::default()
    }
}

/// Reporters send batches of the event numbers from `next` until `stop` is set or `end` is
/// reached; `acked` counts the events acknowledged.
async fn ingest(
    client: SuppressionServiceClient<tonic::transport::Channel>,
    next: Arc<AtomicU64>,
    end: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) {
    let tasks: Vec<_> = (0..REPORTERS)
        .map(|_| {
            let (mut client, next, stop, acked) =
                (client.clone(), next.clone(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
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
                    acked.fetch_add(BATCH, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let engine = match args.first().map(String::as_str) {
        None | Some("redb") => StorageEngine::Redb,
        Some("sled") => StorageEngine::Sled,
        Some(other) => anyhow::bail!("unknown engine {other}"),
    };
    let events: u64 = args
        .get(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let work = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))?;
    let data = work.path().join("data");
    let backup_file = work.path().join("store.snap");
    let (backup_bytes, total, backup_secs, during, without) = runtime.block_on(async {
        let mut settings = ServeSettings::local("127.0.0.1:0".parse()?, data.clone());
        settings.engine = engine;
        let app = Application::build(settings).await?;
        let addr = format!("http://127.0.0.1:{}", app.port());
        let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let client = SuppressionServiceClient::connect(addr.clone()).await?;
        let next = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let never = Arc::new(AtomicBool::new(false));

        let started = Instant::now();
        ingest(
            client.clone(),
            next.clone(),
            events,
            never.clone(),
            acked.clone(),
        )
        .await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "load: {events} events in {secs:.1} s ({:.0} events/s)",
            events as f64 / secs
        );

        // The ingest alone, for the time a backup takes (measured below; first a guess).
        let alone = |window: Duration| {
            let (client, next, acked) = (client.clone(), next.clone(), acked.clone());
            async move {
                let stop = Arc::new(AtomicBool::new(false));
                let before = acked.load(Ordering::Relaxed);
                let started = Instant::now();
                let run = tokio::spawn(ingest(client, next, u64::MAX, stop.clone(), acked.clone()));
                tokio::time::sleep(window).await;
                let done = acked.load(Ordering::Relaxed) - before;
                let secs = started.elapsed().as_secs_f64();
                stop.store(true, Ordering::Relaxed);
                run.await.unwrap();
                done as f64 / secs
            }
        };
        let without = alone(Duration::from_secs(15)).await;
        println!("ingest without a backup: {without:.0} events/s (15 s)");

        // The backup, with the ingest going on.
        let stop = Arc::new(AtomicBool::new(false));
        let run = tokio::spawn(ingest(
            client.clone(),
            next.clone(),
            u64::MAX,
            stop.clone(),
            acked.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let acked_at_start = acked.load(Ordering::Relaxed);
        let mut admin = SuppressionAdminServiceClient::connect(addr.clone())
            .await?
            .max_decoding_message_size(64 << 20);
        let started = Instant::now();
        let mut stream = admin.backup(pb::BackupRequest {}).await?.into_inner();
        let mut out = std::io::BufWriter::new(std::fs::File::create(&backup_file)?);
        let mut bytes = 0u64;
        while let Some(m) = stream.message().await? {
            bytes += m.data.len() as u64;
            out.write_all(&m.data)?;
        }
        out.into_inner()?.sync_all()?;
        let backup_secs = started.elapsed().as_secs_f64();
        let during = (acked.load(Ordering::Relaxed) - acked_at_start) as f64 / backup_secs;
        stop.store(true, Ordering::Relaxed);
        run.await.unwrap();
        let total = next.load(Ordering::Relaxed);
        let _ = stop_server.send(());
        server.await??;
        Ok::<_, anyhow::Error>((bytes, total, backup_secs, during, without))
    })?;
    println!(
        "ingest during the backup: {during:.0} events/s ({:.0} % of {without:.0} without)",
        100.0 * during / without
    );
    println!(
        "source data directory: {:.1} MB",
        dir_bytes(&data) as f64 / 1e6
    );

    for target in [Engine::Sled, Engine::Redb] {
        let dir = work.path().join(format!("restored-{}", target.name()));
        let started = Instant::now();
        let restored = store::restore(
            &mut std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&backup_file)?),
            target,
            &dir,
            256 << 20,
            &mut |_| {},
        )?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "restore into {}: {} entries, {:.1} MB in {secs:.1} s ({:.1} MB/s, {:.0} entries/s), \
             {:.1} MB on disk",
            target.name(),
            restored.summary.entries,
            backup_bytes as f64 / 1e6,
            backup_bytes as f64 / 1e6 / secs,
            restored.summary.entries as f64 / secs,
            dir_bytes(&dir) as f64 / 1e6
        );
        std::fs::remove_dir_all(&dir)?;
        if target == Engine::Sled {
            println!(
                "backup: {:.1} MB, {} entries in {backup_secs:.1} s ({:.1} MB/s, {:.0} entries/s), \
                 store of {total} events",
                backup_bytes as f64 / 1e6,
                restored.summary.entries,
                backup_bytes as f64 / 1e6 / backup_secs,
                restored.summary.entries as f64 / backup_secs
            );
        }
    }

    let from: Engine = engine.into();
    let to = match from {
        Engine::Sled => Engine::Redb,
        Engine::Redb => Engine::Sled,
        Engine::Postgres => anyhow::bail!("the backup stream reads sled and redb only"),
    };
    let target = work.path().join("migrated");
    let started = Instant::now();
    let (reader, writer) = std::io::pipe()?;
    let source = StoreOptions {
        engine: from,
        path: data.clone(),
        cache_bytes: 256 << 20,
        journal_bytes: 64 << 20,
        database_url: None,
    };
    let exporter = std::thread::spawn(move || {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, writer);
        store::export(
            &source,
            &mut out,
            suppressd::domain::Timestamp(0),
            &mut |_| {},
        )
    });
    let restored = store::restore(
        &mut std::io::BufReader::with_capacity(1 << 20, reader),
        to,
        &target,
        256 << 20,
        &mut |_| {},
    )?;
    exporter.join().expect("export thread")?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "migrate {} -> {}: {} entries in {secs:.1} s ({:.0} entries/s)",
        from.name(),
        to.name(),
        restored.summary.entries,
        restored.summary.entries as f64 / secs
    );
    Ok(())
}
