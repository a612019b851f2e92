//! Logging: `RUST_LOG` filters (default `info`), text or JSON lines on stderr. Metrics: the
//! `metrics` facade, exported for Prometheus when a listen address is given.

use std::net::SocketAddr;

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

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

/// Serves Prometheus metrics on `addr` (`/metrics`, or any path). Must run inside a tokio
/// runtime. Only one exporter per process: a second call fails.
pub fn serve_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    describe_metrics();
    tracing::info!(%addr, "serving Prometheus metrics");
    Ok(())
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
        "suppressd_import_verdicts_total",
        "Import-guard verdicts, by decision"
    );
    describe_gauge!(
        "suppressd_suppressed_addresses",
        "Suppressed addresses across all tenants"
    );
    describe_histogram!("suppressd_group_commit_writes", "Writes per group commit");
    describe_histogram!(
        "suppressd_group_commit_seconds",
        Unit::Seconds,
        "Time to apply and flush one group commit"
    );
}
