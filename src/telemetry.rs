//! Logging: `RUST_LOG` filters (default `info`), text or JSON lines on stderr. Metrics: the
//! `metrics` facade, exported for Prometheus when a listen address is given, with a few gauges
//! read at scrape time (health verdicts, free disk space).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::body::Bytes;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;
use crate::policy::health::Health;
use crate::store::CounterTouch;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal: formatting them costs time on every request.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Upper bounds (seconds) of the group-commit latency buckets: a histogram rather than a
/// summary, so that Prometheus can take quantiles over any window and across instances (the
/// group-commit p99 alert); 1 s is a bound so that "p99 over 1 s" is exact.
const GROUP_COMMIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The recorder behind every metrics listener of this process (the `metrics` facade has one).
static RECORDER: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// Serves Prometheus metrics on `addr` (`/metrics`, or any path) and returns the address bound
/// (port 0 picks a free one). Besides the facade's counters, gauges and histograms, each scrape
/// reads, at that moment, the health verdicts that are WATCH or PAUSE
/// (`suppressd_source_health`) and the free space of the file system holding `data_dir` (none
/// without one: the postgres engine keeps no data directory). Must run inside a tokio runtime;
/// the listener lives as long as the runtime.
pub fn serve_metrics(addr: SocketAddr, data_dir: Option<PathBuf>) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let handle = match RECORDER.get() {
        Some(handle) => handle.clone(),
        None => install_recorder().map_err(|e| anyhow::anyhow!("cannot serve metrics: {e}"))?,
    };
    // Histogram samples are folded into their buckets here as well as at each scrape, so that
    // they do not pile up when nobody scrapes.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let data_dir = Arc::new(data_dir);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: cannot accept a connection");
                    continue;
                }
            };
            let handle = handle.clone();
            let data_dir = data_dir.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let body = render(&handle, data_dir.as_deref());
                    async move {
                        let mut response =
                            hyper::Response::new(http_body_util::Full::new(Bytes::from(body)));
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(
                                "text/plain; version=0.0.4; charset=utf-8",
                            ),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(error = %e, "metrics listener: connection ended with an error");
                }
            });
        }
    });
    tracing::info!(addr = %bound, "serving Prometheus metrics");
    Ok(bound)
}

/// Builds the Prometheus recorder and makes it the `metrics` facade's.
fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("suppressd_group_commit_seconds".to_string()),
            GROUP_COMMIT_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow::anyhow!("another metrics recorder is installed"))?;
    describe_metrics();
    // A concurrent first call may have won: both handles then render the same (the facade's).
    Ok(RECORDER.get_or_init(|| handle).clone())
}

/// One scrape: the facade's metrics, then the families read at scrape time.
fn render(handle: &PrometheusHandle, data_dir: Option<&Path>) -> String {
    let mut out = handle.render();
    render_source_health(&mut out, &crate::monitor::unhealthy_values());
    if let Some(dir) = data_dir {
        render_data_disk(&mut out, dir);
    }
    out
}

/// `suppressd_source_health{tenant,dimension,value}`: 1 for WATCH, 2 for PAUSE, one series per
/// value that is not healthy right now. A value that recovers drops out of the next scrape, so
/// the series count is the number of unhealthy values, however many values come and go.
fn render_source_health(out: &mut String, values: &[(CounterTouch, Health)]) {
    family(
        out,
        "suppressd_source_health",
        "Verdicts that are not healthy: 1 = WATCH, 2 = PAUSE, by tenant, dimension and value",
    );
    for (subject, health) in values {
        let level = match health {
            Health::Healthy => continue,
            Health::Watch => 1,
            Health::Pause => 2,
        };
        let _ = writeln!(
            out,
            "suppressd_source_health{{tenant=\"{}\",dimension=\"{}\",value=\"{}\"}} {level}",
            label_value(subject.tenant.as_str()),
            subject.dimension.name(),
            label_value(&subject.value),
        );
    }
}

/// Free and total bytes of the file system that holds the data directory.
fn render_data_disk(out: &mut String, data_dir: &Path) {
    let (Ok(avail), Ok(size)) = (fs2::available_space(data_dir), fs2::total_space(data_dir)) else {
        return;
    };
    family(
        out,
        "suppressd_data_fs_avail_bytes",
        "Bytes free to the server on the file system of the data directory",
    );
    let _ = writeln!(out, "suppressd_data_fs_avail_bytes {avail}");
    family(
        out,
        "suppressd_data_fs_size_bytes",
        "Size of the file system of the data directory",
    );
    let _ = writeln!(out, "suppressd_data_fs_size_bytes {size}");
}

/// The HELP and TYPE lines of a gauge family read at scrape time.
fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// A label value escaped for the text exposition format.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "suppressd_send_results_total",
        "Send results recorded, by the service's outcome type and reason"
    );
    describe_counter!(
        "suppressd_classification_disagreements_total",
        "Send results whose reporter label disagrees with the service's classification, by provider, label and type"
    );
    describe_counter!(
        "suppressd_duplicate_send_results_total",
        "Replayed event ids (nothing changed)"
    );
    describe_counter!(
        "suppressd_rejected_send_results_total",
        "Send results refused as invalid, by field"
    );
    describe_counter!(
        "suppressd_suppressions_total",
        "Addresses that became suppressed, by reason"
    );
    describe_counter!(
        "suppressd_bounce_messages_total",
        "Raw bounce messages read, by kind and outcome (parsed, recorded, duplicate, nothing_to_record)"
    );
    describe_counter!(
        "suppressd_import_verdicts_total",
        "Import-guard verdicts, by decision"
    );
    describe_gauge!(
        "suppressd_suppressed_addresses",
        "Suppressed addresses across all tenants"
    );
    describe_gauge!(
        "suppressd_serving",
        "1 while the health service answers SERVING, 0 once it answers NOT_SERVING"
    );
    describe_counter!(
        "suppressd_auth_failures_total",
        "Calls refused by authentication or authorization, by reason"
    );
    describe_gauge!(
        "suppressd_journal_table_bytes",
        "Written data held in memory by the journal before the next checkpoint"
    );
    describe_histogram!(
        "suppressd_checkpoint_seconds",
        Unit::Seconds,
        "Time to write one journal checkpoint into the database"
    );
    describe_histogram!(
        "suppressd_checkpoint_entries",
        "Keys per journal checkpoint"
    );
    describe_histogram!("suppressd_group_commit_writes", "Writes per group commit");
    describe_histogram!(
        "suppressd_group_commit_seconds",
        Unit::Seconds,
        "Time to apply and flush one group commit"
    );
}
