//! The one table: every measurement beside its baselines, ratios and target.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::driver::fmt_num;

/// Options of `report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Measurement files written by `run` and `startup` (missing files are skipped).
    #[arg(long = "in", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Extra facts for the header, as key=value (machine, git revision, load...).
    #[arg(long = "note")]
    pub notes: Vec<String>,
    /// Where to write the results JSON.
    #[arg(long)]
    pub out: PathBuf,
}

struct Data {
    metrics: Map<String, Value>,
    meta: Map<String, Value>,
}

impl Data {
    fn get(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).and_then(Value::as_f64)
    }
}

#[derive(Default)]
struct Row {
    name: String,
    value: String,
    latency: String,
    tonic: String,
    x_tonic: String,
    pg: String,
    x_pg: String,
    target: String,
    result: String,
}

impl Row {
    fn cells(&self) -> [&str; 9] {
        [
            &self.name,
            &self.value,
            &self.latency,
            &self.tonic,
            &self.x_tonic,
            &self.pg,
            &self.x_pg,
            &self.target,
            &self.result,
        ]
    }
}

const HEADER: [&str; 9] = [
    "measurement",
    "suppressd",
    "p50 / p99",
    "bare tonic",
    "x tonic",
    "PostgreSQL",
    "x PG",
    "target",
    "result",
];

fn rate(v: Option<f64>) -> String {
    v.map(|v| format!("{}/s", fmt_num(v))).unwrap_or_default()
}

fn mib(v: Option<f64>) -> String {
    v.map(|v| format!("{} MiB", fmt_num(v))).unwrap_or_default()
}

fn ratio(a: Option<f64>, b: Option<f64>) -> (String, Option<f64>) {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            let r = a / b;
            (format!("{r:.2}"), Some(r))
        }
        _ => (String::new(), None),
    }
}

fn latency(d: &Data, key: &str) -> String {
    match (
        d.get(&format!("{key}.p50_us")),
        d.get(&format!("{key}.p99_us")),
    ) {
        (Some(p50), Some(p99)) => format!("{:.2} / {:.2} ms", p50 / 1000.0, p99 / 1000.0),
        _ => String::new(),
    }
}

fn verdict(checks: &[Option<bool>]) -> String {
    if checks.iter().any(Option::is_none) {
        "not run".into()
    } else if checks.iter().all(|c| *c == Some(true)) {
        "PASS".into()
    } else {
        "MISS".into()
    }
}

fn section(title: &str) -> Row {
    Row {
        name: title.to_string(),
        ..Row::default()
    }
}

fn rows(d: &Data) -> Vec<Row> {
    let n = d.meta.get("n").and_then(Value::as_f64).unwrap_or(f64::NAN);
    let contacts = d
        .meta
        .get("contacts")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    let events = d
        .meta
        .get("ingest_events")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    let list_n = d
        .meta
        .get("list_n")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    let big_n = d.meta.get("big.n").and_then(Value::as_f64);
    let on_postgres = is_postgres(d);
    let mut out = Vec::new();

    out.push(section(&format!(
        "Data set: {} suppressed addresses (~90 % tenant bench), loaded as hard bounces",
        fmt_num(n)
    )));
    out.push(Row {
        name: "  load: ReportSendResults, 4 streams x 5,000".into(),
        value: rate(d.get("load.per_s")),
        pg: d
            .get("pg.load.secs")
            .map(|s| format!("COPY {s:.1} s"))
            .unwrap_or_default(),
        ..Row::default()
    });

    // 1. CheckImport
    out.push(section(&format!(
        "1. CheckImport of {} contacts (10 % suppressed, 1 % invalid, 2 % repeats), one stream or four sharing them; PG = best of ANY/JOIN, 4 clients x 1,000; echo = the same messages through a bare tonic stream answering ALLOW for every contact unscreened (a zero byte per line when packed)",
        fmt_num(contacts)
    )));
    let pg_best = d.get("pg.import.best.per_s");
    // One stream is one client; the PostgreSQL baseline has four. The targets are judged at the
    // same concurrency: four streams against four PostgreSQL clients.
    let info = |key: &str, name: &str| {
        let v = d.get(key);
        Row {
            name: name.into(),
            value: rate(v),
            pg: rate(pg_best),
            x_pg: ratio(v, pg_best).0,
            ..Row::default()
        }
    };
    for (key, name) in [
        ("import.b100.per_s", "  1 stream, batch 100 (info)"),
        ("import.b1000.per_s", "  1 stream, batch 1,000 (info)"),
        ("import.b10000.per_s", "  1 stream, batch 10,000 (info)"),
        (
            "import.compact.b1000.per_s",
            "  1 stream, batch 1,000, compact_allow (info)",
        ),
        (
            "import.packed.b1000.per_s",
            "  1 stream, batch 1,000, address_lines + packed_decisions (info)",
        ),
        (
            "import.packed.b10000.per_s",
            "  1 stream, batch 10,000, address_lines + packed_decisions (info)",
        ),
    ] {
        let mut row = info(key, name);
        if key == "import.packed.b1000.per_s" {
            let echo = d.get("echo.import.packed.b1000.per_s");
            row.tonic = rate(echo);
            row.x_tonic = ratio(d.get(key), echo).0;
        }
        out.push(row);
    }
    for (key, name) in [
        ("import.x4.b1000.per_s", "  4 streams at once, batch 1,000"),
        (
            "import.x4.compact.b1000.per_s",
            "  4 streams at once, batch 1,000, compact_allow",
        ),
        (
            "import.x4.packed.b1000.per_s",
            "  4 streams at once, batch 1,000, address_lines + packed_decisions",
        ),
    ] {
        let v = d.get(key);
        let r = ratio(v, pg_best).1;
        // The echo of the same messages at the same concurrency: the transport's ceiling.
        let echo = d.get(&format!("echo.{key}"));
        let (tonic, x_tonic) = (rate(echo), ratio(v, echo).0);
        out.push(Row {
            tonic,
            x_tonic,
            target: ">= 2,000,000/s; >= 2x PG".into(),
            result: format!(
                "{}; {}",
                verdict(&[v.map(|v| v >= 2_000_000.0)]),
                verdict(&[r.map(|r| r >= 2.0)])
            ),
            ..info(key, name)
        });
    }
    out.push(Row {
        name: "  server peak RSS during CheckImport".into(),
        value: mib(d.get("import.peak_rss_mib")),
        ..Row::default()
    });
    out.push(Row {
        name: "  PG: WHERE address = ANY($1)".into(),
        pg: rate(d.get("pg.import.any.per_s")),
        ..Row::default()
    });
    out.push(Row {
        name: "  PG: unnest($1) JOIN suppressions".into(),
        pg: rate(d.get("pg.import.join.per_s")),
        ..Row::default()
    });

    // 2. Status
    out.push(section(
        "2. GetSuppressionStatus unary, requests/s over 8 connections (10 % suppressed); PG = prepared single-row SELECT",
    ));
    for c in [1, 16, 256] {
        let v = d.get(&format!("status.c{c}.per_s"));
        let e = d.get(&format!("echo.c{c}.per_s"));
        let p = d.get(&format!("pg.status.c{c}.per_s"));
        let (xt, rt) = ratio(v, e);
        let mut row = Row {
            name: format!("  concurrency {c}"),
            value: rate(v),
            latency: latency(d, &format!("status.c{c}")),
            tonic: rate(e),
            x_tonic: xt,
            pg: rate(p),
            x_pg: ratio(v, p).0,
            ..Row::default()
        };
        if c == 256 {
            row.target = ">= 0.80x bare tonic".into();
            row.result = verdict(&[rt.map(|r| r >= 0.8)]);
        }
        out.push(row);
        let echo_lat = latency(d, &format!("echo.c{c}"));
        let pg_lat = latency(d, &format!("pg.status.c{c}"));
        if !echo_lat.is_empty() || !pg_lat.is_empty() {
            out.push(Row {
                name: format!("    latency of the baselines at {c}"),
                tonic: echo_lat,
                pg: pg_lat,
                ..Row::default()
            });
        }
    }

    // 3. Batch status
    out.push(section(
        "3. BatchGetSuppressionStatus, 1,000 addresses a call, 4 callers; PG = best import screen",
    ));
    let v = d.get("batch.b1000.per_s");
    out.push(Row {
        name: "  addresses/s (latency per call)".into(),
        value: rate(v),
        latency: latency(d, "batch.b1000"),
        pg: rate(pg_best),
        x_pg: ratio(v, pg_best).0,
        ..Row::default()
    });

    // 4. Ingest
    out.push(section(&format!(
        "4. Durable ingest of {} mixed events (70 % hard 5.1.1, 12 % soft, 5 % block, 10 % delivered, 3 % complaint)",
        fmt_num(events)
    )));
    let v = d.get("ingest.per_s");
    let p = d.get("pg.ingest.best.per_s");
    let (x, r) = ratio(v, p);
    // The echo of the same four streams: decoded and counted, nothing else.
    let echo = d.get("echo.ingest.per_s");
    out.push(Row {
        name: "  ReportSendResults, 4 streams x 1,000, events/s".into(),
        value: rate(v),
        tonic: rate(echo),
        x_tonic: ratio(v, echo).0,
        pg: rate(p),
        x_pg: x,
        target: if on_postgres {
            ">= 0.80x PG".into()
        } else {
            ">= 50,000/s and >= 3x PG".into()
        },
        result: if on_postgres {
            verdict(&[r.map(|r| r >= INGEST_X_PG)])
        } else {
            verdict(&[v.map(|v| v >= 50_000.0), r.map(|r| r >= 3.0)])
        },
        ..Row::default()
    });
    out.push(Row {
        name: "  PG: INSERT events ... ON CONFLICT DO NOTHING, 4 x 1,000".into(),
        pg: rate(d.get("pg.ingest.events_only.per_s")),
        ..Row::default()
    });
    out.push(Row {
        name: "  PG: same + INSERT suppressions in one statement".into(),
        pg: rate(d.get("pg.ingest.with_state.per_s")),
        ..Row::default()
    });
    // The same mix reported as it happens: time-keyed indexes and counters grow at their ends.
    let live = d.get("ingest_live.per_s");
    let live_pg = d.get("pg.ingest_live.best.per_s");
    out.push(Row {
        name: "  same, occurred within the last 10 min (info)".into(),
        value: rate(live),
        pg: rate(live_pg),
        x_pg: ratio(live, live_pg).0,
        ..Row::default()
    });
    out.push(Row {
        name: "  ReportSendResult unary, concurrency 64, events/s".into(),
        value: rate(d.get("unary.c64.per_s")),
        latency: latency(d, "unary.c64"),
        ..Row::default()
    });
    out.push(Row {
        name: "  server peak RSS during the ingest".into(),
        value: mib(d.get("ingest.peak_rss_mib")),
        ..Row::default()
    });

    // 5. ListBounces
    out.push(section(&format!(
        "5. ListBounces: all {} bounces of one source, page size 1,000",
        fmt_num(list_n)
    )));
    out.push(Row {
        name: "  time to page through (bounces/s)".into(),
        value: match (d.get("bounces.secs"), d.get("bounces.per_s")) {
            (Some(s), Some(r)) => format!("{s:.2} s ({}/s)", fmt_num(r)),
            _ => String::new(),
        },
        ..Row::default()
    });

    out.push(Row {
        name: "  WatchSuppressions: one follower reads tenant bench's whole change log".into(),
        value: match (d.get("feed.changes"), d.get("feed.per_s")) {
            (Some(n), Some(r)) => format!("{} changes ({}/s)", fmt_num(n), fmt_num(r)),
            _ => String::new(),
        },
        ..Row::default()
    });

    // 6. Storage
    out.push(section("6. Storage and memory"));
    out.push(Row {
        name: format!("  disk per suppressed address, {} loaded", fmt_num(n)),
        value: if on_postgres {
            NOT_APPLICABLE.into()
        } else {
            d.get("storage.bytes_per_addr")
                .map(|b| format!("{} B", fmt_num(b)))
                .unwrap_or_default()
        },
        ..Row::default()
    });
    if on_postgres {
        out.push(Row {
            name: "  database size per suppressed address (pg_database_size, after VACUUM ANALYZE and CHECKPOINT)".into(),
            value: d
                .get("storage.db_bytes_per_addr")
                .map(|b| format!("{} B", fmt_num(b)))
                .unwrap_or_default(),
            ..Row::default()
        });
    }
    out.push(Row {
        name: format!("  server RSS after loading {}", fmt_num(n)),
        value: mib(d.get("storage.rss_mib")),
        ..Row::default()
    });
    out.push(Row {
        name: format!("  server peak RSS (VmHWM) while loading {}", fmt_num(n)),
        value: mib(d.get("storage.hwm_mib")),
        ..Row::default()
    });
    out.push(Row {
        name: "  start-up on that data dir after the ingest (--startup)".into(),
        value: d
            .get("startup.secs")
            .map(|s| format!("{s:.2} s"))
            .unwrap_or_default(),
        ..Row::default()
    });
    out.push(Row {
        name: "  server RSS 2 s after that start-up".into(),
        value: mib(d.get("startup.rss_settled_mib")),
        ..Row::default()
    });
    let big = big_n.map(fmt_num).unwrap_or_else(|| "10M".into());
    out.push(Row {
        name: format!("  load {big} (--big): events/s"),
        value: rate(d.get("big.load.per_s")),
        ..Row::default()
    });
    out.push(Row {
        name: format!("  disk per suppressed address, {big} loaded"),
        value: match (on_postgres, d.get("big.storage.db_bytes_per_addr")) {
            (true, Some(b)) => format!("{} B (database)", fmt_num(b)),
            (true, None) => NOT_APPLICABLE.into(),
            (false, _) => d
                .get("big.storage.bytes_per_addr")
                .map(|b| format!("{} B", fmt_num(b)))
                .unwrap_or_default(),
        },
        ..Row::default()
    });
    let rss_loaded = d.get("big.storage.rss_mib");
    let rss_restart = d.get("big.startup.rss_settled_mib");
    out.push(Row {
        name: format!("  server RSS after loading {big}"),
        value: mib(rss_loaded),
        target: "<= 2 GiB".into(),
        result: verdict(&[rss_loaded.map(|v| v <= 2048.0)]),
        ..Row::default()
    });
    out.push(Row {
        name: format!("  server peak RSS (VmHWM) while loading {big}"),
        value: mib(d.get("big.storage.hwm_mib")),
        ..Row::default()
    });
    out.push(Row {
        name: format!("  start-up on the {big} data dir (start -> SERVING)"),
        value: d
            .get("big.startup.secs")
            .map(|s| format!("{s:.2} s"))
            .unwrap_or_default(),
        ..Row::default()
    });
    out.push(Row {
        name: format!("  server RSS after restart on {big}"),
        value: mib(rss_restart),
        target: "<= 2 GiB".into(),
        result: verdict(&[rss_restart.map(|v| v <= 2048.0)]),
        ..Row::default()
    });
    out.push(Row {
        name: format!("  CheckImport batch 1,000 on the {big} store"),
        value: rate(d.get("big.import.b1000.per_s")),
        ..Row::default()
    });
    out.push(Row {
        name: format!("  CheckImport batch 1,000, compact_allow, on the {big} store"),
        value: rate(d.get("big.import.compact.b1000.per_s")),
        ..Row::default()
    });
    out.push(Row {
        name: format!("  CheckImport batch 1,000, packed, on the {big} store"),
        value: rate(d.get("big.import.packed.b1000.per_s")),
        ..Row::default()
    });

    // 7. TLS and a bearer token
    out.push(section(
        "7. TLS (rustls) and a bearer token: the same data directory restarted with --tls-cert, --tls-key and --auth-file; echo = the bare echo over TLS, sent the same token, checking none; plaintext = the same calls just before the restart",
    ));
    let (v, e) = (d.get(TLS_STATUS), d.get("tls.echo.c256.per_s"));
    let (xt, rt) = ratio(v, e);
    out.push(Row {
        name: "  GetSuppressionStatus, concurrency 256, over TLS with the token".into(),
        value: rate(v),
        latency: latency(d, "tls.status.c256"),
        tonic: rate(e),
        x_tonic: xt,
        target: ">= 0.90x the TLS echo".into(),
        result: verdict(&[rt.map(|r| r >= 0.9)]),
        ..Row::default()
    });
    let (plain, plain_echo) = (
        d.get("tls.ref.status.c256.per_s"),
        d.get("tls.ref.echo.c256.per_s"),
    );
    out.push(Row {
        name: format!(
            "    plaintext, no token{}",
            of_plain("TLS + token", ratio(v, plain).1)
        ),
        value: rate(plain),
        latency: latency(d, "tls.ref.status.c256"),
        tonic: rate(plain_echo),
        x_tonic: ratio(plain, plain_echo).0,
        ..Row::default()
    });
    let echo_lat = latency(d, "tls.echo.c256");
    if !echo_lat.is_empty() {
        out.push(Row {
            name: format!(
                "    latency of the TLS echo{}",
                of_plain("its requests/s", ratio(e, plain_echo).1)
            ),
            tonic: echo_lat,
            ..Row::default()
        });
    }
    let (v, plain) = (d.get(TLS_IMPORT), d.get(TLS_IMPORT_REF));
    let e = d.get("tls.echo.import.x4.packed.b1000.per_s");
    let r = ratio(v, plain).1;
    out.push(Row {
        name: "  CheckImport, 4 streams, batch 1,000, packed, over TLS with the token".into(),
        value: rate(v),
        tonic: rate(e),
        x_tonic: ratio(v, e).0,
        target: ">= 0.90x plaintext".into(),
        result: verdict(&[r.map(|r| r >= 0.9)]),
        ..Row::default()
    });
    let plain_echo = d.get("tls.ref.echo.import.x4.packed.b1000.per_s");
    out.push(Row {
        name: format!("    plaintext, no token{}", of_plain("TLS + token", r)),
        value: rate(plain),
        tonic: rate(plain_echo),
        x_tonic: ratio(plain, plain_echo).0,
        ..Row::default()
    });
    // 8. Domain marks
    out.push(section(
        "8. Suppressed domains: the same calls with none, with --domains suppressed domains (every tenth with its subdomains, none of them a domain of the data set), and with none again once they are reactivated",
    ));
    for (name, key) in [
        ("GetSuppressionStatus, concurrency 16", "status.c16"),
        ("GetSuppressionStatus, concurrency 256", "status.c256"),
        (
            "CheckImport, 4 streams, batch 1,000, packed",
            "import.x4.packed.b1000",
        ),
    ] {
        let per_s = |label: &str| d.get(&format!("domains.{label}.{key}.per_s"));
        let none = match (per_s("none"), per_s("none_again")) {
            (Some(a), Some(b)) => Some((a + b) / 2.0),
            (a, b) => a.or(b),
        };
        for (label, title) in [
            ("none", format!("  {name}, no suppressed domain")),
            ("with", "    with the suppressed domains".to_string()),
            (
                "none_again",
                "    none again, after reactivating them".to_string(),
            ),
        ] {
            let r = (label == "with")
                .then(|| ratio(per_s(label), none).1)
                .flatten();
            out.push(Row {
                name: format!(
                    "{title}{}",
                    r.map(|r| format!(" = {r:.2}x the mean of none"))
                        .unwrap_or_default()
                ),
                value: rate(per_s(label)),
                latency: latency(d, &format!("domains.{label}.{key}")),
                ..Row::default()
            });
        }
    }
    for (name, key) in [
        (
            "SuppressDomain, 64 callers",
            "domains.suppress_domain.per_s",
        ),
        (
            "ReactivateDomain, 64 callers",
            "domains.reactivate_domain.per_s",
        ),
    ] {
        out.push(Row {
            name: format!("  {name}"),
            value: rate(d.get(key)),
            ..Row::default()
        });
    }
    if on_postgres {
        replica_rows(d, &mut out);
    }
    out
}

/// A figure that does not exist on this engine (a data directory's size on postgres).
const NOT_APPLICABLE: &str = "n/a (postgres: no data directory)";

/// Issue 21's targets for the postgres engine, as ratios within one run.
const IMPORT_X_PG: f64 = 2.0;
const STATUS_X_ECHO: f64 = 0.8;
const INGEST_X_PG: f64 = 0.8;

/// Whether the run's server stored into PostgreSQL (`--engine postgres`).
fn is_postgres(d: &Data) -> bool {
    d.meta.get("engine").and_then(Value::as_str) == Some("postgres")
}

/// Section 9: the postgres engine's three targets, with one replica (the main run's figures)
/// and with two replicas of the same database sharing the load (the replicas phase), each
/// against its baseline of the same run.
fn replica_rows(d: &Data, out: &mut Vec<Row>) {
    out.push(section(
        "9. Postgres engine, one replica and two on the same database (the harness's load split across both): the targets as ratios to their baselines of this run",
    ));
    let pg_import = d.get("pg.import.best.per_s");
    let pg_ingest = d.get("pg.ingest.best.per_s");
    for (label, prefix, echo) in [
        ("1 replica", "", "echo.c256"),
        ("2 replicas", "replicas.", "replicas.echo.c256"),
    ] {
        let v = d.get(&format!("{prefix}import.x4.b1000.per_s"));
        let (x, r) = ratio(v, pg_import);
        out.push(Row {
            name: format!("  CheckImport, 4 streams, batch 1,000, full verdicts, {label}"),
            value: rate(v),
            pg: rate(pg_import),
            x_pg: x,
            target: format!(">= {IMPORT_X_PG:.1}x PG (best of ANY / JOIN)"),
            result: verdict(&[r.map(|r| r >= IMPORT_X_PG)]),
            ..Row::default()
        });
        let v = d.get(&format!("{prefix}status.c256.per_s"));
        let e = d.get(&format!("{echo}.per_s"));
        let (x, r) = ratio(v, e);
        out.push(Row {
            name: format!("  GetSuppressionStatus, concurrency 256, {label}"),
            value: rate(v),
            latency: latency(d, &format!("{prefix}status.c256")),
            tonic: rate(e),
            x_tonic: x,
            target: format!(">= {STATUS_X_ECHO:.2}x bare tonic"),
            result: verdict(&[r.map(|r| r >= STATUS_X_ECHO)]),
            ..Row::default()
        });
        let v = d.get(&format!("{prefix}ingest.per_s"));
        let (x, r) = ratio(v, pg_ingest);
        out.push(Row {
            name: format!("  durable ingest, 4 streams x 1,000, {label}"),
            value: rate(v),
            pg: rate(pg_ingest),
            x_pg: x,
            target: format!(">= {INGEST_X_PG:.2}x PG batched INSERT ... ON CONFLICT"),
            result: verdict(&[r.map(|r| r >= INGEST_X_PG)]),
            ..Row::default()
        });
    }
}

/// The postgres engine's target ratios, into the metrics.
fn replica_ratios(d: &mut Data) {
    if !is_postgres(d) {
        return;
    }
    for prefix in ["", "replicas."] {
        for (key, a, b) in [
            (
                "import.x4.b1000.x_pg",
                format!("{prefix}import.x4.b1000.per_s"),
                "pg.import.best.per_s".to_string(),
            ),
            (
                "status.c256.x_echo",
                format!("{prefix}status.c256.per_s"),
                format!("{prefix}echo.c256.per_s"),
            ),
            (
                "ingest.x_pg",
                format!("{prefix}ingest.per_s"),
                "pg.ingest.best.per_s".to_string(),
            ),
        ] {
            if let (_, Some(r)) = ratio(d.get(&a), d.get(&b)) {
                d.metrics.insert(format!("{prefix}{key}"), json!(r));
            }
        }
    }
}

/// Keys of the TLS phase's two judged figures and the plaintext reference of the second.
const TLS_STATUS: &str = "tls.status.c256.per_s";
const TLS_IMPORT: &str = "tls.import.x4.packed.b1000.per_s";
const TLS_IMPORT_REF: &str = "tls.ref.import.x4.packed.b1000.per_s";

/// "; `what` = 0.93x plaintext", or nothing without the ratio.
fn of_plain(what: &str, r: Option<f64>) -> String {
    r.map(|r| format!("; {what} = {r:.2}x plaintext"))
        .unwrap_or_default()
}

/// The TLS phase's ratios, into the metrics (the two halves were measured by two `run`s).
fn tls_ratios(d: &mut Data) {
    for (key, a, b) in [
        ("tls.status.c256.x_echo", TLS_STATUS, "tls.echo.c256.per_s"),
        (
            "tls.status.c256.x_plain",
            TLS_STATUS,
            "tls.ref.status.c256.per_s",
        ),
        (
            "tls.echo.c256.x_plain",
            "tls.echo.c256.per_s",
            "tls.ref.echo.c256.per_s",
        ),
        (
            "tls.import.x4.packed.b1000.x_plain",
            TLS_IMPORT,
            TLS_IMPORT_REF,
        ),
    ] {
        if let (_, Some(r)) = ratio(d.get(a), d.get(b)) {
            d.metrics.insert(key.to_string(), json!(r));
        }
    }
}

fn render(rows: &[Row]) -> String {
    let mut widths = HEADER.map(str::len);
    for r in rows
        .iter()
        .filter(|r| !r.value.is_empty() || r.name.starts_with(' '))
    {
        for (w, c) in widths.iter_mut().zip(r.cells()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 9]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str(" | ");
            }
            let pad = w.saturating_sub(c.chars().count());
            if i == 0 || i == 7 || i == 8 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    let total: usize = widths.iter().sum::<usize>() + 3 * (widths.len() - 1);
    let mut out = String::new();
    out.push_str(&line(HEADER));
    out.push('\n');
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for r in rows {
        let is_section = !r.name.starts_with(' ');
        if is_section {
            out.push_str(&r.name);
        } else {
            out.push_str(&line(r.cells()));
        }
        out.push('\n');
    }
    out
}

pub fn report(args: ReportArgs) -> anyhow::Result<()> {
    let mut data = Data {
        metrics: Map::new(),
        meta: Map::new(),
    };
    for path in &args.inputs {
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("(no {}: skipped)", path.display());
            continue;
        };
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        for (section, target) in [("metrics", &mut data.metrics), ("meta", &mut data.meta)] {
            if let Some(Value::Object(o)) = doc.get(section) {
                target.extend(o.clone());
            }
        }
    }
    for note in &args.notes {
        let (k, v) = note.split_once('=').unwrap_or((note.as_str(), ""));
        data.meta.insert(k.to_string(), json!(v));
    }

    tls_ratios(&mut data);
    replica_ratios(&mut data);
    let rows = rows(&data);
    let mut header = String::new();
    for key in [
        "started",
        "engine",
        "mode",
        "machine",
        "git",
        "tls",
        "load.start",
        "load.end",
    ] {
        if let Some(v) = data.meta.get(key).and_then(Value::as_str) {
            header.push_str(&format!("{key}: {v}\n"));
        }
    }
    let loads: Vec<String> = data
        .meta
        .iter()
        .filter_map(|(k, v)| {
            let phase = k.replace("loadavg.", "");
            (phase != *k).then(|| v.as_str().map(|v| format!("{phase} {v}")))?
        })
        .collect();
    if !loads.is_empty() {
        header.push_str(&format!(
            "load average (1 5 15 min) per phase: {}\n",
            loads.join("; ")
        ));
    }
    let table = format!("{header}\n{}", render(&rows));
    println!("{table}");

    let json_rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let c = r.cells();
            let mut o = Map::new();
            for (h, v) in HEADER.iter().zip(c) {
                if !v.is_empty() {
                    o.insert(h.to_string(), json!(v));
                }
            }
            Value::Object(o)
        })
        .collect();
    let doc = json!({
        "meta": data.meta,
        "metrics": data.metrics,
        "rows": json_rows,
        "table": table,
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("results written to {}", args.out.display());
    Ok(())
}
