//! The PostgreSQL baseline, at its best: prepared statements, binary parameters, arrays instead
//! of one statement per address, the data set bulk-loaded with binary COPY and vacuumed, every
//! insert committed (the cluster runs with `fsync=on`, `synchronous_commit=on`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use crate::data::{self, DataSet, ImportPlan, Spread, TENANT};
use crate::driver::{closed_loop, LoopResult};

/// One connection; its driver runs on a spawned task.
pub async fn connect(dsn: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(dsn, NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL ({dsn})"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("postgres connection error: {e}");
        }
    });
    Ok(client)
}

fn time_at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// Creates the `suppressions` table with the data set (one row per suppressed address, primary
/// key on tenant and normalized address), the same rows suppressd holds after the load.
pub async fn load(dsn: &str, ds: &DataSet) -> anyhow::Result<Duration> {
    let c = connect(dsn).await?;
    let start = Instant::now();
    c.batch_execute(
        "DROP TABLE IF EXISTS suppressions, events, events_state;
         CREATE TABLE suppressions (
             tenant text NOT NULL, address text NOT NULL, reason smallint NOT NULL,
             since timestamptz NOT NULL, source text NOT NULL, event_id text NOT NULL)",
    )
    .await?;
    let sink = c
        .copy_in("COPY suppressions (tenant, address, reason, since, source, event_id) FROM STDIN BINARY")
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::TEXT,
            Type::INT2,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::TEXT,
        ],
    );
    pin_mut!(writer);
    for i in 0..ds.n {
        let tenant = ds.tenant(i);
        let address = data::address(i);
        let since = time_at(ds.load_secs(i));
        let source = ds.source(i);
        let event_id = format!("load-{i}");
        writer
            .as_mut()
            .write(&[&tenant, &address, &1i16, &since, &source, &event_id])
            .await?;
    }
    writer.finish().await?;
    // One statement each: VACUUM cannot run inside the implicit transaction of a
    // multi-statement query.
    for sql in [
        "ALTER TABLE suppressions ADD PRIMARY KEY (tenant, address)",
        "VACUUM ANALYZE suppressions",
        "CHECKPOINT",
    ] {
        c.batch_execute(sql).await?;
    }
    Ok(start.elapsed())
}

/// `VACUUM ANALYZE` and `CHECKPOINT` on suppressd's own database (`--engine postgres`) after
/// its load; returns the time they took and the database's size afterwards, in bytes.
pub async fn settle_database(dsn: &str) -> anyhow::Result<(Duration, u64)> {
    let c = connect(dsn).await?;
    let start = Instant::now();
    // One statement each: VACUUM cannot run inside a transaction block.
    for sql in ["VACUUM ANALYZE", "CHECKPOINT"] {
        c.batch_execute(sql).await?;
    }
    let settled = start.elapsed();
    let bytes: i64 = c
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?
        .try_get(0)?;
    Ok((settled, u64::try_from(bytes).unwrap_or(0)))
}

/// The two ways to screen a batch of addresses.
#[derive(Debug, Clone, Copy)]
pub enum Screen {
    /// `WHERE tenant = $1 AND address = ANY($2)`.
    Any,
    /// `unnest($2) JOIN suppressions`.
    Join,
}

impl Screen {
    fn sql(self) -> &'static str {
        match self {
            Screen::Any => {
                "SELECT address, reason, since, source FROM suppressions \
                 WHERE tenant = $1 AND address = ANY($2::text[])"
            }
            Screen::Join => {
                "SELECT u.a, s.reason, s.since, s.source FROM unnest($2::text[]) AS u(a) \
                 JOIN suppressions s ON s.tenant = $1 AND s.address = u.a"
            }
        }
    }
}

/// Screens the plan's valid (normalized) addresses in batches of `batch` over `clients`
/// connections at once. Returns (suppressed found, addresses screened, elapsed).
pub async fn screen(
    dsn: &str,
    plan: &ImportPlan,
    how: Screen,
    clients: usize,
    batch: usize,
) -> anyhow::Result<(u64, u64, Duration)> {
    let valid: Vec<String> = plan.normalized.iter().flatten().cloned().collect();
    let addresses = valid.len() as u64;
    let batches: Arc<Vec<Vec<String>>> =
        Arc::new(valid.chunks(batch).map(|c| c.to_vec()).collect());
    let mut conns = Vec::new();
    for _ in 0..clients {
        let c = connect(dsn).await?;
        let stmt = c.prepare(how.sql()).await?;
        conns.push((c, stmt));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, stmt) in conns {
        let (batches, next) = (batches.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut found = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = batches.get(i) else { break };
                let rows = c.query(&stmt, &[&TENANT, b]).await?;
                for row in &rows {
                    let reason: i16 = row.try_get(1)?;
                    found += u64::from(reason > 0);
                }
            }
            anyhow::Ok(found)
        }));
    }
    let mut found = 0;
    for t in tasks {
        found += t.await.context("screen task panicked")??;
    }
    Ok((found, addresses, start.elapsed()))
}

/// Single-row status selects from `concurrency` tasks over `min(concurrency, 8)` connections
/// (tokio-postgres pipelines the queries of tasks sharing a connection).
pub async fn status(
    dsn: &str,
    pool: Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LoopResult> {
    let k = concurrency.clamp(1, 8);
    let mut conns = Vec::new();
    for _ in 0..k {
        let c = connect(dsn).await?;
        let stmt = c
            .prepare(
                "SELECT reason, since, source, event_id FROM suppressions \
                 WHERE tenant = $1 AND address = $2",
            )
            .await?;
        conns.push((Arc::new(c), stmt));
    }
    let conns = Arc::new(conns);
    closed_loop(concurrency, duration, move |task, seq| {
        let (c, stmt) = conns[task % k].clone();
        let pool = pool.clone();
        async move {
            let addr = &pool[(seq as usize * concurrency + task) % pool.len()];
            let row = c.query_opt(&stmt, &[&TENANT, addr]).await?;
            if let Some(row) = row {
                let _reason: i16 = row.try_get(0)?;
            }
            Ok(1)
        }
    })
    .await
}

/// How the ingest is stored.
#[derive(Debug, Clone, Copy)]
pub enum Ingest {
    /// Events only: `INSERT INTO events ... ON CONFLICT DO NOTHING`, primary key (tenant,
    /// event_id) plus an index by (tenant, source, occurred_at) for the bounce listing.
    EventsOnly,
    /// The same, and in the same statement the hard bounces and complaints inserted into
    /// `suppressions` (what suppressd also does: event and address state in one commit).
    WithState,
}

/// Columns of one batch of events.
#[derive(Default)]
struct EventBatch {
    tenant: Vec<&'static str>,
    event_id: Vec<String>,
    address: Vec<String>,
    outcome: Vec<i16>,
    smtp: Vec<String>,
    source: Vec<String>,
    campaign: Vec<String>,
    occurred: Vec<SystemTime>,
}

const INSERT_EVENTS: &str = "INSERT INTO {T} \
    (tenant, event_id, address, outcome, smtp_response, source, campaign, occurred_at) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::text[], \
                         $6::text[], $7::text[], $8::timestamptz[]) \
    ON CONFLICT DO NOTHING";

/// Inserts the same mixed-outcome events as the suppressd ingest, `batch` per statement,
/// from `clients` connections at once, each statement its own (durable) transaction.
/// Returns (rows inserted into the events table, elapsed).
/// The events of an ingest: `count` mixed results (see [`DataSet::mixed_result_within`]).
pub struct Events<'a> {
    pub prefix: &'a str,
    pub base: u64,
    pub spread: Spread,
    pub count: u64,
}

pub async fn ingest(
    dsn: &str,
    ds: &DataSet,
    events: &Events<'_>,
    how: Ingest,
    clients: usize,
    batch: usize,
) -> anyhow::Result<(u64, Duration)> {
    let table = match how {
        Ingest::EventsOnly => "events",
        Ingest::WithState => "events_state",
    };
    let setup = connect(dsn).await?;
    setup
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table};
             CREATE TABLE {table} (
                 tenant text NOT NULL, event_id text NOT NULL, address text NOT NULL,
                 outcome smallint NOT NULL, smtp_response text NOT NULL, source text NOT NULL,
                 campaign text NOT NULL, occurred_at timestamptz NOT NULL,
                 PRIMARY KEY (tenant, event_id));
             CREATE INDEX {table}_by_source ON {table} (tenant, source, occurred_at DESC);
             CHECKPOINT"
        ))
        .await?;
    let insert = INSERT_EVENTS.replace("{T}", table);
    let sql = match how {
        Ingest::EventsOnly => insert,
        Ingest::WithState => format!(
            "WITH ins AS ({insert} RETURNING tenant, address, outcome, occurred_at, source, event_id) \
             INSERT INTO suppressions (tenant, address, reason, since, source, event_id) \
             SELECT tenant, address, 1, occurred_at, source, event_id FROM ins \
             WHERE outcome IN (2, 5) \
             ON CONFLICT DO NOTHING"
        ),
    };

    let mut batches = Vec::new();
    let mut current = EventBatch::default();
    for k in 0..events.count {
        let (idx, r) = ds.mixed_result_within(events.prefix, events.base, k, events.spread);
        current.tenant.push(ds.tenant(idx));
        current.event_id.push(r.event_id);
        current.address.push(r.address);
        current.outcome.push(r.outcome as i16);
        current.smtp.push(r.smtp_response);
        current.source.push(r.source);
        current.campaign.push(r.campaign);
        current
            .occurred
            .push(time_at(r.occurred_at.map(|t| t.seconds).unwrap_or(ds.now)));
        if current.event_id.len() >= batch {
            batches.push(std::mem::take(&mut current));
        }
    }
    if !current.event_id.is_empty() {
        batches.push(current);
    }
    let batches = Arc::new(batches);

    let mut conns = Vec::new();
    for _ in 0..clients {
        let c = connect(dsn).await?;
        let stmt = c.prepare(&sql).await?;
        conns.push((c, stmt));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, stmt) in conns {
        let (batches, next) = (batches.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = batches.get(i) else { break };
                c.execute(
                    &stmt,
                    &[
                        &b.tenant,
                        &b.event_id,
                        &b.address,
                        &b.outcome,
                        &b.smtp,
                        &b.source,
                        &b.campaign,
                        &b.occurred,
                    ],
                )
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("ingest task panicked")??;
    }
    let elapsed = start.elapsed();
    let row = setup
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?;
    let inserted: i64 = row.try_get(0)?;
    if inserted as u64 != events.count {
        bail!("PostgreSQL holds {inserted} of {} events", events.count);
    }
    Ok((inserted as u64, elapsed))
}
