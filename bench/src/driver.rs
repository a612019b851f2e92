//! The closed-loop load driver shared by every request/response measurement, and the metrics
//! file that every phase writes into.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// What a closed loop measured.
pub struct LoopResult {
    /// Calls completed.
    pub calls: u64,
    /// Items those calls carried (addresses of a batch call; 1 for unary calls).
    pub items: u64,
    /// From the start until the last call returned.
    pub elapsed: Duration,
    /// Latency of each call, in microseconds.
    pub hist: Histogram<u64>,
}

impl LoopResult {
    pub fn calls_per_s(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
    pub fn items_per_s(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }
    pub fn p50_us(&self) -> u64 {
        self.hist.value_at_quantile(0.50)
    }
    pub fn p99_us(&self) -> u64 {
        self.hist.value_at_quantile(0.99)
    }
}

fn histogram() -> Histogram<u64> {
    // 1 us .. 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Runs `concurrency` tasks, each calling `call(task, seq)` back to back until `duration` has
/// passed, and merges their latency histograms. `call` returns the number of items it carried.
/// The first error stops the measurement.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    duration: Duration,
    call: F,
) -> anyhow::Result<LoopResult>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let (mut calls, mut items) = (0u64, 0u64);
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                items += call(task, seq).await?;
                let us = t0.elapsed().as_micros().max(1) as u64;
                hist.saturating_record(us);
                calls += 1;
                seq += 1;
            }
            anyhow::Ok((calls, items, hist))
        }));
    }
    let mut total = LoopResult {
        calls: 0,
        items: 0,
        elapsed: Duration::ZERO,
        hist: histogram(),
    };
    for t in tasks {
        let (calls, items, hist) = t.await.context("load task panicked")??;
        total.calls += calls;
        total.items += items;
        total
            .hist
            .add(&hist)
            .map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// The metrics of one invocation: flat `key -> number` plus free-form `meta`, saved as JSON.
pub struct Metrics {
    pub metrics: Map<String, Value>,
    pub meta: Map<String, Value>,
    prefix: String,
}

impl Metrics {
    pub fn new(prefix: &str) -> Metrics {
        Metrics {
            metrics: Map::new(),
            meta: Map::new(),
            prefix: prefix.to_string(),
        }
    }

    /// Sets `prefix + key` to `value`, and says so on stderr as it goes.
    pub fn set(&mut self, key: &str, value: impl Into<f64>) {
        let value: f64 = value.into();
        let key = format!("{}{key}", self.prefix);
        eprintln!("  {key} = {}", fmt_num(value));
        self.metrics.insert(key, json!(value));
    }

    pub fn set_loop(&mut self, key: &str, r: &LoopResult, items: bool) {
        self.set(
            &format!("{key}.per_s"),
            if items {
                r.items_per_s()
            } else {
                r.calls_per_s()
            },
        );
        self.set(&format!("{key}.p50_us"), r.p50_us() as f64);
        self.set(&format!("{key}.p99_us"), r.p99_us() as f64);
    }

    pub fn note(&mut self, key: &str, value: Value) {
        self.meta.insert(format!("{}{key}", self.prefix), value);
    }

    /// Records the load average under `meta.loadavg.<phase>`.
    pub fn load_at(&mut self, phase: &str) {
        let load = crate::sys::loadavg();
        eprintln!("== {phase} (load {load})");
        self.note(&format!("loadavg.{phase}"), json!(load));
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let doc = json!({ "meta": self.meta, "metrics": self.metrics });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A number with thousands separators (integers) or three significant decimals.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "N".into();
    }
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        let s = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
