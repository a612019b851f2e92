//! The measured phases, in the order `run` performs them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use suppressd::grpc::proto as pb;
use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::data::{self, DataSet, ImportPlan, Spread, LIST_SOURCE, TENANT};
use crate::driver::{closed_loop, Metrics};
use crate::svc::{Transport, Verdicts};
use crate::sys::{self, RssSampler};
use crate::{echo, pg, svc, tls};

const MIB: f64 = 1024.0 * 1024.0;
/// Every phase, in order.
pub const ALL_PHASES: &str =
    "load,storage,pgload,import,status,batch,bounces,feed,ingest,ingest-live,unary,tls";

/// Options of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// suppressd's address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// The echo baseline's address; without it the echo is not measured.
    #[arg(long)]
    pub echo_addr: Option<String>,
    /// PostgreSQL connection string; without it PostgreSQL is not measured.
    #[arg(long)]
    pub pg: Option<String>,
    /// Process id of the suppressd server (for its memory); 0 = unknown.
    #[arg(long, default_value_t = 0)]
    pub server_pid: u32,
    /// The server's data directory (for its size on disk).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The server's own PostgreSQL database, with `--engine postgres` (for its size, in place
    /// of a data directory's).
    #[arg(long)]
    pub server_db: Option<String>,
    /// A second suppressd replica on the same database (`--engine postgres`): the replicas
    /// phase splits its load across `--addr` and this one.
    #[arg(long)]
    pub replica_addr: Option<String>,
    /// Process id of that second replica (for its memory); 0 = unknown.
    #[arg(long, default_value_t = 0)]
    pub replica_pid: u32,
    /// Suppressed addresses in the data set.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: u64,
    /// Bounces of the listed source (default: min(100,000, n/10)).
    #[arg(long)]
    pub list_n: Option<u64>,
    /// Contacts in the CheckImport stream.
    #[arg(long, default_value_t = 1_000_000)]
    pub contacts: u64,
    /// Events of the mixed-outcome ingest.
    #[arg(long, default_value_t = 1_000_000)]
    pub ingest_events: u64,
    /// Event id prefix of the mixed-outcome ingest (another one re-runs it on the same store).
    #[arg(long, default_value = "ev")]
    pub ingest_prefix: String,
    /// Seconds each closed-loop measurement runs.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Connections (HTTP/2 channels) for the concurrent unary and batch calls.
    #[arg(long, default_value_t = 8)]
    pub channels: usize,
    /// Concurrent ReportSendResults streams that load the data set.
    #[arg(long, default_value_t = 4)]
    pub load_streams: usize,
    /// Results per stream message when loading the data set.
    #[arg(long, default_value_t = 5_000)]
    pub load_batch: usize,
    /// Comma-separated phases to run, of: load, storage, pgload, import, status, batch,
    /// bounces, ingest, ingest-live, unary, tls (without --tls-ca: its plaintext references;
    /// with it: over TLS with the token, and then the only phase); also import-packed (only the packed CheckImport on one stream, three
    /// times) and import-x4 (four streams, three times, see --x4-format): for profiling the
    /// server; and domains (status and import screens before and after suppressing --domains
    /// domains; it leaves them suppressed, so run it last); and replicas (with
    /// --replica-addr: status at 256, four-stream CheckImport and the ingest split across two
    /// replicas of one database).
    #[arg(long, default_value = ALL_PHASES)]
    pub phases: String,
    /// Comma-separated phases of --phases to leave out (run.sh runs them in another
    /// invocation).
    #[arg(long, default_value = "")]
    pub except: String,
    /// Domains the domains phase suppresses.
    #[arg(long, default_value_t = 100_000)]
    pub domains: u64,
    /// Verdict format of the import-x4 phase.
    #[arg(long, value_enum, default_value_t = Verdicts::Packed)]
    pub x4_format: Verdicts,
    /// Prefix of every metric name (e.g. "big.").
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Where to write the measurements (JSON); rewritten after every phase.
    #[arg(long)]
    pub out: PathBuf,
    /// Trust this CA certificate (PEM) and reach suppressd (--addr) and the echo (--echo-addr)
    /// over TLS, at https:// addresses: the tls phase's second half, the only phase it allows.
    #[arg(long, requires = "token_file")]
    pub tls_ca: Option<PathBuf>,
    /// File holding the bearer token to send to suppressd (and to the TLS echo, which ignores
    /// it), with --tls-ca.
    #[arg(long, requires = "tls_ca")]
    pub token_file: Option<PathBuf>,
}

impl RunArgs {
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
}

/// Splits `0..n` into `k` contiguous ranges.
fn ranges(n: u64, k: usize) -> Vec<std::ops::Range<u64>> {
    let k = k.max(1) as u64;
    (0..k).map(|j| n * j / k..n * (j + 1) / k).collect()
}

fn per_s(items: u64, d: Duration) -> f64 {
    items as f64 / d.as_secs_f64()
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut m = Metrics::new(&args.prefix);
    let list_n = args.list_n.unwrap_or((args.n / 10).min(100_000));
    let ds = DataSet::new(args.n, list_n);
    m.note("n", json!(args.n));
    m.note("list_n", json!(list_n));
    m.note("contacts", json!(args.contacts));
    m.note("ingest_events", json!(args.ingest_events));
    m.note("secs", json!(args.secs));
    m.note("channels", json!(args.channels));
    m.note("load_streams", json!(args.load_streams));
    m.note("load_batch", json!(args.load_batch));
    let phases: Vec<&str> = args
        .phases
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && !args.except.split(',').any(|e| e.trim() == *p))
        .collect();
    let tls = match &args.tls_ca {
        Some(ca) => {
            if phases != ["tls"] {
                bail!("with --tls-ca only the tls phase runs (asked for {phases:?})");
            }
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            Some(svc::tls_config(&pem))
        }
        None => None,
    };
    let chans = svc::channels_with(&args.addr, args.channels, tls.as_ref()).await?;
    for phase in phases {
        // The tls phase's two halves are two runs: keep both loads and times.
        let label = match (phase, &tls) {
            ("tls", Some(_)) => "tls.over_tls",
            _ => phase,
        };
        m.load_at(label);
        let started = Instant::now();
        match phase {
            "load" => load(&mut m, &args, &ds, &chans).await,
            "storage" => storage(&mut m, &args).await,
            "pgload" => pg_load(&mut m, &args, &ds).await,
            "import" => import(&mut m, &args, &ds, &chans).await,
            "import-packed" => import_packed(&mut m, &args, &ds, &chans).await,
            "import-x4" => import_x4(&mut m, &args, &ds, &chans).await,
            "status" => status(&mut m, &args, &ds, &chans).await,
            "batch" => batch(&mut m, &args, &ds, &chans).await,
            "bounces" => bounces(&mut m, &ds, &chans).await,
            "feed" => feed(&mut m, &ds, &chans).await,
            "ingest" => ingest(&mut m, &args, &ds, &chans, Spread::Days90).await,
            "ingest-live" => ingest(&mut m, &args, &ds, &chans, Spread::Live).await,
            "unary" => unary(&mut m, &args, &ds, &chans).await,
            "domains" => domains(&mut m, &args, &ds, &chans).await,
            "replicas" => replicas(&mut m, &args, &ds, &chans).await,
            "tls" => match &tls {
                None => tls_reference(&mut m, &args, &ds, &chans).await,
                Some(tls) => tls_phase(&mut m, &args, &ds, &chans, tls).await,
            },
            other => {
                bail!("unknown phase {other:?} (phases: {ALL_PHASES}; also domains, replicas)")
            }
        }
        .with_context(|| format!("phase {phase}"))?;
        m.note(
            &format!("phase_secs.{label}"),
            json!(started.elapsed().as_secs_f64()),
        );
        m.save(&args.out)?;
    }
    m.note("loadavg.end", json!(sys::loadavg()));
    m.save(&args.out)
}

/// Loads the data set: `n` hard bounces through ReportSendResults, several streams at once.
async fn load(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
) -> anyhow::Result<()> {
    let ds = *ds;
    let streams: Vec<_> = ranges(ds.n, args.load_streams)
        .into_iter()
        .map(|r| {
            svc::Batcher::new(
                r.map(move |i| (ds.tenant(i), ds.load_result(i))),
                args.load_batch,
            )
        })
        .collect();
    let sampler = RssSampler::start(args.server_pid);
    let (sum, elapsed) = svc::ingest(chans, streams).await?;
    let peak = sampler.stop(args.server_pid).await;
    eprintln!("  load summary: {sum:?}");
    if sum.rejected > 0 || sum.accepted + sum.duplicates != ds.n {
        bail!("the load was not fully accepted: {sum:?}");
    }
    if sum.newly_suppressed != ds.n {
        eprintln!(
            "  warning: {} of {} addresses newly suppressed (data directory not fresh?)",
            sum.newly_suppressed, ds.n
        );
    }
    m.set("load.events", ds.n as f64);
    m.set("load.secs", elapsed.as_secs_f64());
    m.set("load.per_s", per_s(ds.n, elapsed));
    m.set("load.peak_rss_mib", peak as f64 / 1024.0);
    Ok(())
}

/// Size on disk and memory of the server once the data set is in.
async fn storage(m: &mut Metrics, args: &RunArgs) -> anyhow::Result<()> {
    // Let background flushing settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some(dir) = &args.data_dir {
        // As PostgreSQL gets a CHECKPOINT after its load: on redb, wait for the journal's
        // checkpoints to end, so that the phases after this one measure their own path.
        let waited = sys::settle_journal(dir, Duration::from_secs(180)).await;
        m.set("storage.settle_secs", waited.as_secs_f64());
        let du = sys::du_bytes(dir);
        m.set("storage.du_mib", du as f64 / MIB);
        m.set("storage.bytes_per_addr", du as f64 / args.n.max(1) as f64);
    }
    if let Some(dsn) = &args.server_db {
        // The server's database gets what the baseline's table got after its load (the
        // cluster runs without autovacuum): statistics, a vacuum and a checkpoint, so that the
        // phases after this one measure their own path. Its size stands for the data
        // directory's.
        let (settle, bytes) = pg::settle_database(dsn).await?;
        m.set("storage.settle_secs", settle.as_secs_f64());
        m.set("storage.db_mib", bytes as f64 / MIB);
        m.set(
            "storage.db_bytes_per_addr",
            bytes as f64 / args.n.max(1) as f64,
        );
    }
    if args.server_pid != 0 {
        m.set(
            "storage.rss_mib",
            sys::rss_kib(args.server_pid) as f64 / 1024.0,
        );
        m.set(
            "storage.hwm_mib",
            sys::hwm_kib(args.server_pid) as f64 / 1024.0,
        );
    }
    Ok(())
}

async fn pg_load(m: &mut Metrics, args: &RunArgs, ds: &DataSet) -> anyhow::Result<()> {
    let Some(dsn) = &args.pg else {
        eprintln!("  (no --pg: skipped)");
        return Ok(());
    };
    let elapsed = pg::load(dsn, ds).await?;
    m.set("pg.load.secs", elapsed.as_secs_f64());
    Ok(())
}

fn check_counts(
    what: &str,
    got: data::ImportCounts,
    want: data::ImportCounts,
) -> anyhow::Result<()> {
    if got != want {
        bail!("{what}: verdicts {got:?}, expected {want:?}");
    }
    Ok(())
}

/// Only the packed CheckImport stream at batch 1,000, three times in a row.
async fn import_packed(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
) -> anyhow::Result<()> {
    let plan = data::import_plan(ds, args.contacts);
    for round in 0..3 {
        let requests = svc::import_requests(&plan.contacts, 1000, Verdicts::Packed);
        let (counts, elapsed) = svc::check_import(&chans[0], requests).await?;
        check_counts("import-packed", counts, plan.expected)?;
        m.set(
            &format!("import.packed.b1000.round{round}.per_s"),
            per_s(args.contacts, elapsed),
        );
    }
    Ok(())
}

/// CheckImport at batch 100, 1,000 and 10,000 on one stream, then 4 streams at 1,000; then
/// the PostgreSQL screens.
async fn import(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
) -> anyhow::Result<()> {
    let plan = data::import_plan(ds, args.contacts);
    eprintln!("  plan: {:?}", plan.expected);
    let requests = svc::import_requests(&plan.contacts, 1000, Verdicts::Full);
    let (counts, elapsed) = svc::check_import(&chans[0], requests).await?;
    check_counts("warm-up", counts, plan.expected)?;
    eprintln!("  warm-up: {:.0}/s", per_s(args.contacts, elapsed));

    // One stream: full verdicts at three batch sizes, then compact ALLOW verdicts, then bare
    // address lines with packed decisions.
    let mut peak_all = 0u64;
    for (b, format) in [
        (100usize, Verdicts::Full),
        (1_000, Verdicts::Full),
        (10_000, Verdicts::Full),
        (1_000, Verdicts::Compact),
        (1_000, Verdicts::Packed),
        (10_000, Verdicts::Packed),
    ] {
        let key = format!("import.{}b{b}", format.key());
        let requests = svc::import_requests(&plan.contacts, b, format);
        let sampler = RssSampler::start(args.server_pid);
        let (counts, elapsed) = svc::check_import(&chans[0], requests).await?;
        let peak = sampler.stop(args.server_pid).await;
        peak_all = peak_all.max(peak);
        check_counts(&key, counts, plan.expected)?;
        m.set(&format!("{key}.per_s"), per_s(args.contacts, elapsed));
        m.set(&format!("{key}.peak_rss_mib"), peak as f64 / 1024.0);
    }
    m.set("import.peak_rss_mib", peak_all as f64 / 1024.0);
    if args.server_pid != 0 {
        m.set(
            "import.hwm_mib",
            sys::hwm_kib(args.server_pid) as f64 / 1024.0,
        );
    }

    // Four streams at once, a quarter of the contacts each (as the PostgreSQL baseline uses
    // four clients), in each verdict format.
    for format in [Verdicts::Full, Verdicts::Compact, Verdicts::Packed] {
        let elapsed = four_streams(chans, &plan, format).await?;
        let key = format!("import.x4.{}b1000", format.key());
        m.set(&format!("{key}.per_s"), per_s(args.contacts, elapsed));
    }

    if let Some(addr) = &args.echo_addr {
        echo_screens(m, addr, &plan).await?;
    }
    if let Some(dsn) = &args.pg {
        pg_screens(m, dsn, &plan).await?;
    }
    Ok(())
}

/// Screens the plan's contacts on four streams at once, a quarter each, at batch 1,000; returns
/// the time until the last stream ended. The request messages are built before the clock
/// starts, as for one stream and for PostgreSQL's batches.
async fn four_streams(
    chans: &[Channel],
    plan: &data::ImportPlan,
    format: Verdicts,
) -> anyhow::Result<Duration> {
    let clients: Vec<svc::Client> = chans.iter().map(svc::client).collect();
    four_streams_with(&clients, plan, format).await
}

/// [`four_streams`] through the clients `clients` (stream k on client k modulo their number).
async fn four_streams_with<T: Transport>(
    clients: &[SuppressionServiceClient<T>],
    plan: &data::ImportPlan,
    format: Verdicts,
) -> anyhow::Result<Duration> {
    let streams: Vec<Vec<pb::CheckImportRequest>> = ranges(plan.contacts.len() as u64, 4)
        .into_iter()
        .map(|r| {
            svc::import_requests(
                &plan.contacts[r.start as usize..r.end as usize],
                1000,
                format,
            )
        })
        .collect();
    let mut tasks = Vec::new();
    let start = Instant::now();
    for (k, requests) in streams.into_iter().enumerate() {
        let c = clients[k % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            svc::check_import_with(c, requests).await
        }));
    }
    let mut suppressed = 0;
    for t in tasks {
        suppressed += t.await.context("import task panicked")??.0.suppressed;
    }
    let elapsed = start.elapsed();
    if suppressed != plan.expected.suppressed {
        bail!(
            "4 streams: {suppressed} suppressed, expected {}",
            plan.expected.suppressed
        );
    }
    Ok(elapsed)
}

/// Only CheckImport on four streams at batch 1,000, three times in a row, in the verdict format
/// of `--x4-format`.
async fn import_x4(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
) -> anyhow::Result<()> {
    let plan = data::import_plan(ds, args.contacts);
    let format = args.x4_format;
    for round in 0..3 {
        let elapsed = four_streams(chans, &plan, format).await?;
        m.set(
            &format!("import.x4.{}b1000.round{round}.per_s", format.key()),
            per_s(args.contacts, elapsed),
        );
    }
    Ok(())
}

/// The transport ceiling of packed screening: the packed messages of the plan through the echo
/// server's lines stream (one zero byte back per line, nothing looked up), on one stream and on
/// four at once.
async fn echo_screens(m: &mut Metrics, addr: &str, plan: &ImportPlan) -> anyhow::Result<()> {
    let chans = svc::channels(addr, 4).await?;
    let lines_of = echo_lines_of;
    let contacts_of =
        |contacts: &[pb::ImportContact], compact: bool| -> Vec<echo::proto::EchoContactsRequest> {
            contacts
                .chunks(1000)
                .map(|c| echo::proto::EchoContactsRequest {
                    tenant: TENANT.to_string(),
                    contacts: c
                        .iter()
                        .map(|c| echo::proto::EchoContact {
                            address: c.address.clone(),
                            external_id: c.external_id.clone(),
                            source: c.source.clone(),
                            given_name: c.given_name.clone(),
                            family_name: c.family_name.clone(),
                        })
                        .collect(),
                    compact_allow: compact,
                })
                .collect()
        };
    let total = plan.contacts.len() as u64;
    let (lines, elapsed) = echo::echo_lines(&chans[0], lines_of(&plan.contacts)).await?;
    if lines != total {
        bail!("echo lines: {lines} answered of {total}");
    }
    m.set("echo.import.packed.b1000.per_s", per_s(total, elapsed));

    // Four streams at once, a quarter each, the messages built before the clock starts (as
    // for suppressd): bare lines, then envelope contacts with complete and compact verdicts.
    let quarters = ranges(total, 4);
    let quarter = |r: &std::ops::Range<u64>| &plan.contacts[r.start as usize..r.end as usize];
    let streams = quarters.iter().map(|r| lines_of(quarter(r))).collect();
    let elapsed = echo_four(&chans, streams, total, |ch, requests| async move {
        echo::echo_lines(&ch, requests).await
    })
    .await?;
    m.set("echo.import.x4.packed.b1000.per_s", per_s(total, elapsed));
    for (compact, key) in [
        (false, "echo.import.x4.b1000.per_s"),
        (true, "echo.import.x4.compact.b1000.per_s"),
    ] {
        let streams = quarters
            .iter()
            .map(|r| contacts_of(quarter(r), compact))
            .collect();
        let elapsed = echo_four(&chans, streams, total, |ch, requests| async move {
            echo::echo_contacts(&ch, requests).await
        })
        .await?;
        m.set(key, per_s(total, elapsed));
    }
    Ok(())
}

/// The packed CheckImport messages of `contacts` at batch 1,000, as the echo's lines messages.
fn echo_lines_of(contacts: &[pb::ImportContact]) -> Vec<echo::proto::EchoLinesRequest> {
    svc::import_requests(contacts, 1000, Verdicts::Packed)
        .into_iter()
        .map(|r| echo::proto::EchoLinesRequest {
            tenant: r.tenant,
            address_lines: r.address_lines,
        })
        .collect()
}

/// Runs four prepared request streams through the echo at once (`run` sends one on a channel);
/// checks that all `total` contacts were answered and returns the time until the last was.
async fn echo_four<C, R, F, Fut>(
    chans: &[C],
    streams: Vec<Vec<R>>,
    total: u64,
    run: F,
) -> anyhow::Result<Duration>
where
    C: Clone,
    R: Send + 'static,
    F: Fn(C, Vec<R>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u64, Duration)>> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(k, requests)| tokio::spawn(run(chans[k % chans.len()].clone(), requests)))
        .collect();
    let mut answered = 0;
    for t in tasks {
        answered += t.await.context("echo task panicked")??.0;
    }
    let elapsed = start.elapsed();
    if answered != total {
        bail!("echo, 4 streams: {answered} answered of {total}");
    }
    Ok(elapsed)
}

async fn pg_screens(m: &mut Metrics, dsn: &str, plan: &ImportPlan) -> anyhow::Result<()> {
    let mut best = 0f64;
    for (name, how) in [("any", pg::Screen::Any), ("join", pg::Screen::Join)] {
        // One untimed pass to warm the caches, as suppressd had.
        pg::screen(dsn, plan, how, 4, 1000).await?;
        let (found, addresses, elapsed) = pg::screen(dsn, plan, how, 4, 1000).await?;
        if found != plan.expected.suppressed {
            bail!(
                "PostgreSQL {name}: {found} suppressed, expected {}",
                plan.expected.suppressed
            );
        }
        let rate = per_s(addresses, elapsed);
        best = best.max(rate);
        m.set(&format!("pg.import.{name}.per_s"), rate);
    }
    m.set("pg.import.best.per_s", best);
    Ok(())
}

/// GetSuppressionStatus at concurrency 1, 16, 256, beside the echo and PostgreSQL at the same
/// concurrency, interleaved so that the three see the same machine.
async fn status(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
) -> anyhow::Result<()> {
    let pool = Arc::new(data::status_pool(ds, 100_000));
    let clients: Arc<Vec<svc::Client>> = Arc::new(chans.iter().map(svc::client).collect());

    check_pool(clients[0].clone(), &pool).await?;

    let echo_clients = match &args.echo_addr {
        Some(addr) => {
            let chs = svc::channels(addr, args.channels).await?;
            Some(Arc::new(chs.iter().map(echo::client).collect::<Vec<_>>()))
        }
        None => None,
    };

    // Warm-up, untimed.
    status_loop(clients.clone(), pool.clone(), 16, Duration::from_secs(1)).await?;

    for c in [1usize, 16, 256] {
        let r = status_loop(clients.clone(), pool.clone(), c, args.duration()).await?;
        m.set_loop(&format!("status.c{c}"), &r, false);
        if let Some(ec) = &echo_clients {
            let r = echo_loop(ec.clone(), pool.clone(), c, args.duration()).await?;
            m.set_loop(&format!("echo.c{c}"), &r, false);
        }
        if let Some(dsn) = &args.pg {
            let r = pg::status(dsn, pool.clone(), c, args.duration()).await?;
            m.set_loop(&format!("pg.status.c{c}"), &r, false);
        }
    }
    Ok(())
}

/// Sanity: the pool's suppressed tenth answers SUPPRESSED.
async fn check_pool<T: Transport>(
    mut c: SuppressionServiceClient<T>,
    pool: &[String],
) -> anyhow::Result<()> {
    let mut suppressed = 0;
    for a in pool.iter().take(1000) {
        let r = c
            .get_suppression_status(pb::GetSuppressionStatusRequest {
                tenant: TENANT.to_string(),
                address: a.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if r.status
            .is_some_and(|s| s.state == pb::AddressState::Suppressed as i32)
        {
            suppressed += 1;
        }
    }
    eprintln!("  {suppressed} of the first 1,000 pool addresses are suppressed");
    if suppressed == 0 {
        bail!("no address of the status pool is suppressed: is the data set loaded?");
    }
    Ok(())
}

/// The echo's unary call at concurrency `c`, on the addresses of the status pool.
async fn echo_loop<T: Transport>(
    clients: Arc<Vec<echo::proto::echo_client::EchoClient<T>>>,
    pool: Arc<Vec<String>>,
    c: usize,
    duration: Duration,
) -> anyhow::Result<crate::driver::LoopResult> {
    let k = c.min(clients.len());
    closed_loop(c, duration, move |task, seq| {
        let mut cl = clients[task % k].clone();
        let address = pool[(seq as usize * c + task) % pool.len()].clone();
        async move {
            cl.echo(echo::proto::EchoRequest {
                tenant: TENANT.to_string(),
                address,
            })
            .await?;
            Ok(1)
        }
    })
    .await
}

async fn status_loop<T: Transport>(
    clients: Arc<Vec<SuppressionServiceClient<T>>>,
    pool: Arc<Vec<String>>,
    c: usize,
    duration: Duration,
) -> anyhow::Result<crate::driver::LoopResult> {
    let k = c.min(clients.len());
    closed_loop(c, duration, move |task, seq| {
        let mut cl = clients[task % k].clone();
        let address = pool[(seq as usize * c + task) % pool.len()].clone();
        async move {
            let r = cl
                .get_suppression_status(pb::GetSuppressionStatusRequest {
                    tenant: TENANT.to_string(),
                    address,
                    ..Default::default()
                })
                .await?;
            if r.into_inner().status.is_none() {
                bail!("GetSuppressionStatus answered without a status");
            }
            Ok(1)
        }
    })
    .await
}

/// The `i`-th domain the domains phase suppresses; none is a domain of the data set.
fn bench_domain(i: u64) -> String {
    format!("d{i}.defunct-bench.example")
}

/// What suppressed domains cost the lookups of addresses at other domains (most lookups):
/// GetSuppressionStatus at concurrency 16 and 256 and CheckImport on 4 streams (batch 1,000,
/// packed) with no suppressed domain, then once `--domains` domains of the main tenant are
/// suppressed (every tenth with its subdomains, so that each lookup also walks up to the
/// parent domains), then again once they are all reactivated (no mark left: the bracket shows
/// the machine's drift). No domain of the data set is suppressed: every answer stays the same.
async fn domains(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
) -> anyhow::Result<()> {
    let pool = Arc::new(data::status_pool(ds, 100_000));
    let clients: Arc<Vec<svc::Client>> = Arc::new(chans.iter().map(svc::client).collect());
    let plan = data::import_plan(ds, args.contacts);
    let listed = clients[0]
        .clone()
        .list_suppressed_domains(pb::ListSuppressedDomainsRequest {
            tenant: TENANT.to_string(),
            page_size: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    if !listed.domains.is_empty() {
        bail!(
            "tenant {TENANT} has suppressed domains already: run the domains phase once per load"
        );
    }
    check_pool(clients[0].clone(), &pool).await?;
    status_loop(clients.clone(), pool.clone(), 16, Duration::from_secs(1)).await?;

    for label in ["none", "with", "none_again"] {
        match label {
            "with" => {
                let rate = domain_calls(&clients, args.domains, true).await?;
                eprintln!("  {} domains suppressed at {rate:.0}/s", args.domains);
                m.set("domains.suppress_domain.per_s", rate);
                for probe in [
                    format!("someone@{}", bench_domain(args.domains / 2 + 1)),
                    format!("someone@mail.{}", bench_domain(0)),
                ] {
                    let status = clients[0]
                        .clone()
                        .get_suppression_status(pb::GetSuppressionStatusRequest {
                            tenant: TENANT.to_string(),
                            address: probe.clone(),
                            ..Default::default()
                        })
                        .await?
                        .into_inner()
                        .status
                        .context("no status")?;
                    if !status.domain_level {
                        bail!("{probe} is not suppressed by its domain");
                    }
                }
            }
            "none_again" => {
                let rate = domain_calls(&clients, args.domains, false).await?;
                eprintln!("  {} domains reactivated at {rate:.0}/s", args.domains);
                m.set("domains.reactivate_domain.per_s", rate);
            }
            _ => {}
        }
        // The journal checkpoints the domain writes once idle: not during the measurement.
        tokio::time::sleep(Duration::from_secs(8)).await;
        for c in [16usize, 256] {
            let r = status_loop(clients.clone(), pool.clone(), c, args.duration()).await?;
            eprintln!("  {label}: status c{c} {:.0}/s", r.calls_per_s());
            m.set_loop(&format!("domains.{label}.status.c{c}"), &r, false);
        }
        let elapsed = four_streams(chans, &plan, Verdicts::Packed).await?;
        let rate = per_s(args.contacts, elapsed);
        eprintln!("  {label}: import x4 packed {rate:.0}/s");
        m.set(
            &format!("domains.{label}.import.x4.packed.b1000.per_s"),
            rate,
        );
    }
    Ok(())
}

/// Two suppressd replicas of one database (`--engine postgres`), the load split across both:
/// `--addr` and `--replica-addr` get alternate connections, so that alternate callers of the
/// status loop, streams 0 and 2 of CheckImport and of the ingest go to the first and streams 1
/// and 3 to the second. GetSuppressionStatus at concurrency 256 (then the echo at 256 beside
/// it), CheckImport of the plan on four streams with full verdicts (after one untimed pass,
/// as the one-replica figure had its warm-up stream), then a durable ingest of the main
/// ingest's size and mix to new addresses and event ids (`REPLICAS_BASE`). Keys `replicas.*`.
async fn replicas(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
) -> anyhow::Result<()> {
    let Some(second) = &args.replica_addr else {
        eprintln!("  (no --replica-addr: skipped)");
        return Ok(());
    };
    let others = svc::channels(second, chans.len()).await?;
    let both: Vec<Channel> = chans
        .iter()
        .zip(&others)
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let pool = Arc::new(data::status_pool(ds, 100_000));
    // Each replica answers from the shared database: the pool's suppressed tenth on both.
    check_pool(svc::client(&chans[0]), &pool).await?;
    check_pool(svc::client(&others[0]), &pool).await?;
    let clients: Arc<Vec<svc::Client>> = Arc::new(both.iter().map(svc::client).collect());
    status_loop(clients.clone(), pool.clone(), 16, Duration::from_secs(1)).await?;
    const C: usize = 256;
    let r = status_loop(clients.clone(), pool.clone(), C, args.duration()).await?;
    m.set_loop(&format!("replicas.status.c{C}"), &r, false);
    if let Some(addr) = &args.echo_addr {
        let chs = svc::channels(addr, args.channels).await?;
        let echo_clients = Arc::new(chs.iter().map(echo::client).collect::<Vec<_>>());
        let r = echo_loop(echo_clients, pool.clone(), C, args.duration()).await?;
        m.set_loop(&format!("replicas.echo.c{C}"), &r, false);
    }

    let plan = data::import_plan(ds, args.contacts);
    four_streams_with(&clients, &plan, Verdicts::Full).await?;
    let sampler = RssSampler::start(args.replica_pid);
    let elapsed = four_streams_with(&clients, &plan, Verdicts::Full).await?;
    let peak = sampler.stop(args.replica_pid).await;
    m.set(
        "replicas.import.x4.b1000.per_s",
        per_s(args.contacts, elapsed),
    );
    m.set("replicas.import.second_peak_rss_mib", peak as f64 / 1024.0);

    let events = args.ingest_events;
    let d = *ds;
    let prefix = format!("{}-replicas", args.ingest_prefix);
    let prefix = prefix.as_str();
    let streams: Vec<Vec<pb::ReportSendResultsRequest>> = ranges(events, 4)
        .into_iter()
        .map(|r| {
            svc::Batcher::new(
                r.map(move |k| {
                    let (idx, result) =
                        d.mixed_result_within(prefix, data::REPLICAS_BASE, k, Spread::Days90);
                    (d.tenant(idx), result)
                }),
                1000,
            )
            .collect()
        })
        .collect();
    let (sum, elapsed) =
        svc::ingest(&both, streams.into_iter().map(Vec::into_iter).collect()).await?;
    eprintln!("  replicas.ingest summary: {sum:?}");
    if sum.rejected > 0 || sum.accepted + sum.duplicates != events {
        bail!("the two-replica ingest was not fully accepted: {sum:?}");
    }
    m.set("replicas.ingest.events", events as f64);
    m.set("replicas.ingest.secs", elapsed.as_secs_f64());
    m.set("replicas.ingest.per_s", per_s(events, elapsed));
    Ok(())
}

/// Suppresses (or reactivates) the first `n` bench domains from 64 callers; returns calls/s.
async fn domain_calls(clients: &[svc::Client], n: u64, suppress: bool) -> anyhow::Result<f64> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..64 {
        let mut c = clients[k % clients.len()].clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                if suppress {
                    c.suppress_domain(pb::SuppressDomainRequest {
                        tenant: TENANT.to_string(),
                        domain: bench_domain(i),
                        note: "bench".into(),
                        include_subdomains: i.is_multiple_of(10),
                        ..Default::default()
                    })
                    .await?;
                } else {
                    c.reactivate_domain(pb::ReactivateDomainRequest {
                        tenant: TENANT.to_string(),
                        domain: bench_domain(i),
                        justification: "bench".into(),
                    })
                    .await?;
                }
            }
        }));
    }
    for t in tasks {
        t.await.context("domain call task panicked")??;
    }
    Ok(per_s(n, started.elapsed()))
}

/// BatchGetSuppressionStatus, 1,000 addresses a call, 4 callers.
async fn batch(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
) -> anyhow::Result<()> {
    let pool = Arc::new(data::status_pool(ds, 100_000));
    let clients: Arc<Vec<svc::Client>> = Arc::new(chans.iter().map(svc::client).collect());
    const CALLERS: usize = 4;
    const BATCH: usize = 1000;
    let r = closed_loop(CALLERS, args.duration(), move |task, seq| {
        let mut cl = clients[task % clients.len()].clone();
        let start = (seq as usize * CALLERS + task) * BATCH;
        let addresses: Vec<String> = (0..BATCH)
            .map(|j| pool[(start + j) % pool.len()].clone())
            .collect();
        async move {
            let r = cl
                .batch_get_suppression_status(pb::BatchGetSuppressionStatusRequest {
                    tenant: TENANT.to_string(),
                    addresses,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if r.statuses.len() != BATCH {
                bail!(
                    "BatchGetSuppressionStatus answered {} statuses",
                    r.statuses.len()
                );
            }
            Ok(BATCH as u64)
        }
    })
    .await?;
    m.set_loop("batch.b1000", &r, true);
    Ok(())
}

/// Pages through the bounces of one source at page size 1,000.
async fn bounces(m: &mut Metrics, ds: &DataSet, chans: &[Channel]) -> anyhow::Result<()> {
    let (events, pages, elapsed) = svc::list_bounces(&chans[0], TENANT, LIST_SOURCE, 1000).await?;
    if events != ds.list_n {
        bail!(
            "ListBounces gave {events} bounces of {LIST_SOURCE}, expected {}",
            ds.list_n
        );
    }
    m.set("bounces.events", events as f64);
    m.set("bounces.pages", pages as f64);
    m.set("bounces.secs", elapsed.as_secs_f64());
    m.set("bounces.per_s", per_s(events, elapsed));
    Ok(())
}

/// The change feed: one follower reads tenant `bench`'s change log from its start: one change
/// per address of the tenant that the load suppressed.
async fn feed(m: &mut Metrics, ds: &DataSet, chans: &[Channel]) -> anyhow::Result<()> {
    let mut client =
        SuppressionServiceClient::new(chans[0].clone()).max_decoding_message_size(64 * 1024 * 1024);
    let expected = (0..ds.n).filter(|&i| ds.tenant(i) == TENANT).count() as u64;
    let started = Instant::now();
    let mut stream = client
        .watch_suppressions(pb::WatchSuppressionsRequest {
            tenant: TENANT.into(),
            // The position before the first change.
            after_cursor: "c1.0000000000000000".into(),
            kinds: vec![],
        })
        .await?
        .into_inner();
    let mut changes = 0u64;
    while changes < expected {
        match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
            Ok(Ok(Some(_))) => changes += 1,
            _ => bail!("the change feed stopped after {changes} of {expected} changes"),
        }
    }
    let elapsed = started.elapsed();
    if changes == 0 {
        bail!("the change feed gave nothing");
    }
    m.set("feed.changes", changes as f64);
    m.set("feed.secs", elapsed.as_secs_f64());
    m.set("feed.per_s", per_s(changes, elapsed));
    Ok(())
}

/// Durable batched ingest of mixed outcomes (4 ReportSendResults streams, 1,000 a message),
/// then PostgreSQL's batched inserts of the same events: the main one (`Spread::Days90`: events
/// of the last 90 days, a backfill and the worst case for every index keyed by time; also
/// through the echo), or `ingest-live` (`Spread::Live`: the same number of events to new
/// addresses, reported as they happen).
async fn ingest(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
    spread: Spread,
) -> anyhow::Result<()> {
    let (key, prefix, base) = match spread {
        Spread::Days90 => ("ingest", args.ingest_prefix.clone(), data::INGEST_BASE),
        Spread::Live => (
            "ingest_live",
            format!("{}-live", args.ingest_prefix),
            data::LIVE_BASE,
        ),
    };
    let events = args.ingest_events;
    let d = *ds;
    let prefix = prefix.as_str();
    // Built before the clock starts, as the PostgreSQL batches are.
    let streams: Vec<Vec<pb::ReportSendResultsRequest>> = ranges(events, 4)
        .into_iter()
        .map(|r| {
            svc::Batcher::new(
                r.map(move |k| {
                    let (idx, result) = d.mixed_result_within(prefix, base, k, spread);
                    (d.tenant(idx), result)
                }),
                1000,
            )
            .collect()
        })
        .collect();
    // The same messages for the echo (main ingest only), converted now while the copies are
    // cheap to make.
    let echo_addr = args.echo_addr.as_ref().filter(|_| spread == Spread::Days90);
    let echo_streams: Vec<Vec<echo::proto::EchoResultsRequest>> = match echo_addr {
        Some(_) => streams
            .iter()
            .map(|s| s.iter().map(echo_results_request).collect())
            .collect(),
        None => Vec::new(),
    };
    let sampler = RssSampler::start(args.server_pid);
    let (sum, elapsed) =
        svc::ingest(chans, streams.into_iter().map(Vec::into_iter).collect()).await?;
    let peak = sampler.stop(args.server_pid).await;
    eprintln!("  {key} summary: {sum:?}");
    if sum.rejected > 0 || sum.accepted + sum.duplicates != events {
        bail!("the ingest was not fully accepted: {sum:?}");
    }
    m.set(&format!("{key}.events"), events as f64);
    m.set(&format!("{key}.secs"), elapsed.as_secs_f64());
    m.set(&format!("{key}.per_s"), per_s(events, elapsed));
    m.set(
        &format!("{key}.newly_suppressed"),
        sum.newly_suppressed as f64,
    );
    m.set(&format!("{key}.peak_rss_mib"), peak as f64 / 1024.0);

    if let Some(addr) = echo_addr {
        echo_ingest(m, addr, &echo_streams).await?;
    }
    if let Some(dsn) = &args.pg {
        let mut best = 0f64;
        for (name, how) in [
            ("events_only", pg::Ingest::EventsOnly),
            ("with_state", pg::Ingest::WithState),
        ] {
            let events = pg::Events {
                prefix,
                base,
                spread,
                count: events,
            };
            let (rows, elapsed) = pg::ingest(dsn, ds, &events, how, 4, 1000).await?;
            let rate = per_s(rows, elapsed);
            best = best.max(rate);
            m.set(&format!("pg.{key}.{name}.per_s"), rate);
        }
        m.set(&format!("pg.{key}.best.per_s"), best);
    }
    Ok(())
}

/// A ReportSendResults message as the echo's equivalent.
fn echo_results_request(r: &pb::ReportSendResultsRequest) -> echo::proto::EchoResultsRequest {
    echo::proto::EchoResultsRequest {
        tenant: r.tenant.clone(),
        results: r
            .results
            .iter()
            .map(|x| echo::proto::EchoResult {
                event_id: x.event_id.clone(),
                address: x.address.clone(),
                outcome: x.outcome,
                smtp_response: x.smtp_response.clone(),
                enhanced_status: x.enhanced_status.clone(),
                source: x.source.clone(),
                campaign: x.campaign.clone(),
                segment: x.segment.clone(),
                provider: x.provider.clone(),
                occurred_at: x.occurred_at,
            })
            .collect(),
    }
}

/// The transport ceiling of the ingest: the same four streams through the echo, which decodes
/// and counts the results and does nothing else.
async fn echo_ingest(
    m: &mut Metrics,
    addr: &str,
    streams: &[Vec<echo::proto::EchoResultsRequest>],
) -> anyhow::Result<()> {
    let chans = svc::channels(addr, 4).await?;
    let total = streams
        .iter()
        .flatten()
        .map(|r| r.results.len() as u64)
        .sum();
    let elapsed = echo_four(&chans, streams.to_vec(), total, |ch, requests| async move {
        echo::echo_results(&ch, requests).await
    })
    .await?;
    m.set("echo.ingest.per_s", per_s(total, elapsed));
    Ok(())
}

/// Unary ReportSendResult from 64 callers.
async fn unary(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
) -> anyhow::Result<()> {
    let clients: Arc<Vec<svc::Client>> = Arc::new(chans.iter().map(svc::client).collect());
    let d = *ds;
    const CALLERS: usize = 64;
    let r = closed_loop(CALLERS, args.duration(), move |task, seq| {
        let mut cl = clients[task % clients.len()].clone();
        let (idx, result) = d.mixed_result("u", data::UNARY_BASE, ((task as u64) << 32) | seq);
        let tenant = d.tenant(idx).to_string();
        async move {
            let r = cl
                .report_send_result(pb::ReportSendResultRequest {
                    tenant,
                    result: Some(result),
                })
                .await?
                .into_inner();
            if r.duplicate {
                bail!("unary report answered duplicate for a new event id");
            }
            Ok(1)
        }
    })
    .await?;
    m.set_loop("unary.c64", &r, false);
    Ok(())
}

/// The tls phase on the plaintext server (no --tls-ca): the plaintext references of its
/// comparisons, measured as [`tls_phase`] measures over TLS, right before `run.sh` restarts
/// the server with TLS and a token, so that both halves see the same store and nearly the
/// same machine.
async fn tls_reference(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
) -> anyhow::Result<()> {
    let pool = Arc::new(data::status_pool(ds, 100_000));
    let clients: Vec<svc::Client> = chans.iter().map(svc::client).collect();
    check_pool(clients[0].clone(), &pool).await?;
    let echo_clients = match &args.echo_addr {
        Some(addr) => {
            let chs = svc::channels(addr, args.channels).await?;
            Some(chs.iter().map(echo::client).collect())
        }
        None => None,
    };
    m.note("tls.ref", json!("plaintext, no token"));
    tls_measure(m, "tls.ref", args, ds, pool, clients, echo_clients).await
}

/// The tls phase over TLS (--tls-ca): suppressd with the bearer token on every call, and the
/// echo over TLS (the same token sent, no check).
async fn tls_phase(
    m: &mut Metrics,
    args: &RunArgs,
    ds: &DataSet,
    chans: &[Channel],
    tls: &ClientTlsConfig,
) -> anyhow::Result<()> {
    let token_file = args
        .token_file
        .as_deref()
        .context("--tls-ca needs --token-file")?;
    let bearer = svc::Bearer::new(&tls::read_token(token_file)?)?;
    let pool = Arc::new(data::status_pool(ds, 100_000));

    // The figure must include the token check: a call without the token is refused.
    let anonymous = svc::client(&chans[0])
        .get_suppression_status(pb::GetSuppressionStatusRequest {
            tenant: TENANT.to_string(),
            address: pool[0].clone(),
            ..Default::default()
        })
        .await;
    match anonymous {
        Err(s) if s.code() == tonic::Code::Unauthenticated => {}
        Err(s) => bail!(
            "a call without a token failed with {:?} ({}), where UNAUTHENTICATED was due",
            s.code(),
            s.message()
        ),
        Ok(_) => bail!(
            "suppressd answered a call without a token: it checks no tokens (started without \
             --auth-file?), so this would not measure TLS with a token"
        ),
    }
    let clients: Vec<_> = chans
        .iter()
        .map(|c| svc::authed_client(c, &bearer))
        .collect();
    check_pool(clients[0].clone(), &pool)
        .await
        .with_context(|| {
            format!(
                "a call with the token of {} (is it the token of suppressd's --auth-file?)",
                token_file.display()
            )
        })?;
    let echo_clients = match &args.echo_addr {
        Some(addr) => {
            let chs = svc::channels_with(addr, args.channels, Some(tls)).await?;
            Some(
                chs.iter()
                    .map(|c| echo::authed_client(c, &bearer))
                    .collect(),
            )
        }
        None => None,
    };
    m.note(
        "tls",
        json!("TLS (rustls, ring), bearer token on every call"),
    );
    tls_measure(m, "tls", args, ds, pool, clients, echo_clients).await
}

/// The tls phase's figures under `prefix`: GetSuppressionStatus at concurrency 256, then the
/// echo's unary call at 256, then packed CheckImport on four streams at batch 1,000, then the
/// same messages through the echo's lines stream; each after an untimed warm-up (a restarted
/// server's first calls and streams pay for cold caches and fresh buffers).
async fn tls_measure<T: Transport, E: Transport>(
    m: &mut Metrics,
    prefix: &str,
    args: &RunArgs,
    ds: &DataSet,
    pool: Arc<Vec<String>>,
    clients: Vec<SuppressionServiceClient<T>>,
    echo_clients: Option<Vec<echo::proto::echo_client::EchoClient<E>>>,
) -> anyhow::Result<()> {
    const C: usize = 256;
    let warm = Duration::from_secs(1);
    let clients = Arc::new(clients);
    status_loop(clients.clone(), pool.clone(), 16, warm).await?;
    let r = status_loop(clients.clone(), pool.clone(), C, args.duration()).await?;
    m.set_loop(&format!("{prefix}.status.c{C}"), &r, false);
    let echo_clients = echo_clients.map(Arc::new);
    if let Some(ec) = &echo_clients {
        echo_loop(ec.clone(), pool.clone(), 16, warm).await?;
        let r = echo_loop(ec.clone(), pool.clone(), C, args.duration()).await?;
        m.set_loop(&format!("{prefix}.echo.c{C}"), &r, false);
    }

    let plan = data::import_plan(ds, args.contacts);
    four_streams_with(&clients, &plan, Verdicts::Packed).await?;
    let elapsed = four_streams_with(&clients, &plan, Verdicts::Packed).await?;
    let total = plan.contacts.len() as u64;
    m.set(
        &format!("{prefix}.import.x4.packed.b1000.per_s"),
        per_s(total, elapsed),
    );
    if let Some(ec) = &echo_clients {
        let streams: Vec<_> = ranges(total, 4)
            .iter()
            .map(|r| echo_lines_of(&plan.contacts[r.start as usize..r.end as usize]))
            .collect();
        let ec: Vec<_> = ec.iter().cloned().map(echo::sized).collect();
        let run = |c, requests| async move { echo::echo_lines_with(c, requests).await };
        echo_four(&ec, streams.clone(), total, run).await?;
        let elapsed = echo_four(&ec, streams, total, run).await?;
        m.set(
            &format!("{prefix}.echo.import.x4.packed.b1000.per_s"),
            per_s(total, elapsed),
        );
    }
    Ok(())
}

/// Options of `startup`.
#[derive(Debug, Clone, clap::Args)]
pub struct StartupArgs {
    /// The suppressd binary.
    #[arg(long)]
    pub suppressd: PathBuf,
    /// An existing data directory (no server may be running on it).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Suppressed addresses in it (for the CheckImport sanity check).
    #[arg(long, default_value_t = 10_000_000)]
    pub n: u64,
    /// Contacts to screen once started (0: none).
    #[arg(long, default_value_t = 1_000_000)]
    pub contacts: u64,
    /// Where the server's output goes.
    #[arg(long)]
    pub log: PathBuf,
    /// Prefix of every metric name.
    #[arg(long, default_value = "big.")]
    pub prefix: String,
    /// Where to write the measurements (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// Whether the server at `addr` answers health SERVING (over TLS with `tls`), within a second.
pub async fn serving(addr: &str, tls: Option<&ClientTlsConfig>) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let Ok(mut endpoint) = tonic::transport::Endpoint::from_shared(addr.to_string()) else {
        return false;
    };
    if let Some(tls) = tls {
        let Ok(with_tls) = endpoint.tls_config(tls.clone()) else {
            return false;
        };
        endpoint = with_tls;
    }
    let Ok(ch) = endpoint
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_secs(1))
        .connect()
        .await
    else {
        return false;
    };
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: suppressd::startup::SERVICE_NAME.to_string(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving)
}

/// Starts suppressd on an existing data directory, times process start -> health SERVING,
/// reads its memory, screens a contact list against it, and stops it with SIGTERM.
pub async fn startup(args: StartupArgs) -> anyhow::Result<()> {
    let mut m = Metrics::new(&args.prefix);
    m.load_at("startup");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(&args.log)?;
    let start = Instant::now();
    let mut child = tokio::process::Command::new(&args.suppressd)
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&args.data_dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", args.suppressd.display()))?;
    let pid = child.id().context("server exited at once")?;
    let mut peak = 0u64;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "suppressd exited during start-up ({status}); see {}",
                args.log.display()
            );
        }
        peak = peak.max(sys::rss_kib(pid));
        if serving(&addr, None).await {
            break;
        }
        if start.elapsed() > Duration::from_secs(3600) {
            bail!("suppressd did not answer SERVING within an hour");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    m.set("startup.secs", secs);
    m.set("startup.rss_mib", sys::rss_kib(pid) as f64 / 1024.0);
    m.set(
        "startup.hwm_mib",
        (sys::hwm_kib(pid).max(peak)) as f64 / 1024.0,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    m.set("startup.rss_settled_mib", sys::rss_kib(pid) as f64 / 1024.0);

    if args.contacts > 0 {
        let ds = DataSet::new(args.n, (args.n / 10).min(100_000));
        let plan = data::import_plan(&ds, args.contacts);
        let ch = svc::channel(&addr).await?;
        let sampler = RssSampler::start(pid);
        for format in [Verdicts::Full, Verdicts::Compact, Verdicts::Packed] {
            let key = &format!("import.{}b1000", format.key());
            let requests = svc::import_requests(&plan.contacts, 1000, format);
            let (counts, elapsed) = svc::check_import(&ch, requests).await?;
            check_counts(key, counts, plan.expected)?;
            m.set(&format!("{key}.per_s"), per_s(args.contacts, elapsed));
        }
        let peak = sampler.stop(pid).await;
        m.set("import.peak_rss_mib", peak as f64 / 1024.0);
    }

    let stop = Instant::now();
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    if !killed.success() {
        bail!("cannot send SIGTERM to {pid}");
    }
    let status = tokio::time::timeout(Duration::from_secs(600), child.wait())
        .await
        .context("suppressd did not stop within 10 minutes of SIGTERM")??;
    m.set("shutdown.secs", stop.elapsed().as_secs_f64());
    if !status.success() {
        eprintln!("  warning: suppressd exited with {status}");
    }
    m.save(&args.out)
}
