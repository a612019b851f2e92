//! Bounce-rate monitoring RPCs: GetSourceStats, ListSourceStats, WatchSourceHealth.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::Instrument;

use super::convert;
use super::error::{FieldViolation, ServiceError};
use super::proto as pb;
use super::service::{blocking, record_span, SuppressionApi};
use crate::domain::{parse_label, Dimension, Timestamp};
use crate::monitor::{window_counts, WindowCounts};
use crate::store::Granularity;

/// The longest explicit range accepted.
const MAX_RANGE: Duration = Duration::from_secs(400 * 86_400);
/// Explicit ranges up to this long are bucketed hourly, longer ones daily.
const HOURLY_UP_TO: Duration = Duration::from_secs(7 * 86_400);

/// A resolved window: where it is and how it is bucketed.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Timestamp,
    end: Timestamp,
    granularity: Granularity,
}

impl Window {
    fn previous(self) -> Window {
        let len = self.end.micros() - self.start.micros();
        Window {
            start: Timestamp(self.start.micros() - len),
            end: self.start,
            granularity: self.granularity,
        }
    }
}

fn resolve_window(
    window: i32,
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
    now: Timestamp,
) -> Result<Window, FieldViolation> {
    match convert::time_range(start, end)? {
        (Some(start), Some(end)) => {
            let len = Duration::from_micros((end.micros() - start.micros()) as u64);
            if len > MAX_RANGE {
                return Err(FieldViolation::new(
                    "start_time",
                    "range is longer than 400 days",
                ));
            }
            let granularity = if len <= HOURLY_UP_TO {
                Granularity::Hourly
            } else {
                Granularity::Daily
            };
            let first = granularity.bucket(start);
            let last = granularity.bucket(Timestamp(end.micros() - 1));
            Ok(Window {
                start: granularity.start(first),
                end: granularity.start(last + 1),
                granularity,
            })
        }
        (Some(_), None) => Err(FieldViolation::new(
            "end_time",
            "is required with start_time",
        )),
        (None, Some(_)) => Err(FieldViolation::new(
            "start_time",
            "is required with end_time",
        )),
        (None, None) => {
            let (granularity, buckets) = match pb::StatsWindow::try_from(window) {
                Ok(pb::StatsWindow::Unspecified | pb::StatsWindow::Last24Hours) => {
                    (Granularity::Hourly, 24)
                }
                Ok(pb::StatsWindow::Last7Days) => (Granularity::Hourly, 7 * 24),
                Ok(pb::StatsWindow::Last30Days) => (Granularity::Daily, 30),
                Err(_) => {
                    return Err(FieldViolation::new(
                        "window",
                        format!("unknown value {window}"),
                    ))
                }
            };
            let end_bucket = granularity.bucket(now) + 1;
            Ok(Window {
                start: granularity.start(end_bucket - buckets),
                end: granularity.start(end_bucket),
                granularity,
            })
        }
    }
}

fn required_dimension(raw: i32) -> Result<Dimension, FieldViolation> {
    convert::dimension("dimension", raw)?
        .ok_or_else(|| FieldViolation::new("dimension", "is required"))
}

impl SuppressionApi {
    fn counts(
        &self,
        tenant: &crate::domain::Tenant,
        dimension: Dimension,
        value: &str,
        w: Window,
    ) -> Result<WindowCounts, ServiceError> {
        Ok(window_counts(
            self.store.as_ref(),
            tenant,
            dimension,
            value,
            w.granularity,
            w.start,
            w.end,
        )?)
    }

    pub(super) async fn source_stats(
        &self,
        req: pb::GetSourceStatsRequest,
    ) -> Result<pb::GetSourceStatsResponse, ServiceError> {
        let tenant = convert::tenant(&req.tenant)?;
        record_span(&tenant, 1);
        let dimension = required_dimension(req.dimension)?;
        let value = parse_label(&req.value, true).map_err(|e| FieldViolation::new("value", e))?;
        let window = resolve_window(
            req.window,
            req.start_time.as_ref(),
            req.end_time.as_ref(),
            Timestamp::now(),
        )?;
        let api = self.clone();
        blocking(move || {
            let current = api.counts(&tenant, dimension, &value, window)?;
            let previous = api.counts(&tenant, dimension, &value, window.previous())?;
            let verdict = api.monitor.thresholds().evaluate(&current.total);
            Ok(pb::GetSourceStatsResponse {
                dimension: convert::proto_dimension(dimension) as i32,
                value,
                current: Some(convert::proto_window(&current)),
                previous: Some(convert::proto_window(&previous)),
                series: current
                    .series
                    .iter()
                    .map(|(start, c)| pb::StatsBucket {
                        start_time: Some(convert::proto_timestamp(*start)),
                        counts: Some(convert::proto_counts(c)),
                    })
                    .collect(),
                bucket_seconds: (window.granularity.micros() / 1_000_000) as u32,
                verdict: Some(convert::proto_verdict(&verdict)),
            })
        })
        .await
    }

    pub(super) async fn ranked_source_stats(
        &self,
        req: pb::ListSourceStatsRequest,
    ) -> Result<pb::ListSourceStatsResponse, ServiceError> {
        let tenant = convert::tenant(&req.tenant)?;
        let dimension = required_dimension(req.dimension)?;
        let window = resolve_window(
            req.window,
            req.start_time.as_ref(),
            req.end_time.as_ref(),
            Timestamp::now(),
        )?;
        let metric = pb::StatsMetric::try_from(req.order_by).map_err(|_| {
            FieldViolation::new("order_by", format!("unknown value {}", req.order_by))
        })?;
        let scope = format!(
            "ListSourceStats|{tenant}|{dimension:?}|{}|{}|{metric:?}",
            window.start.micros(),
            window.end.micros()
        );
        let offset = match self.tokens.check(&scope, &req.page_token)? {
            None => 0usize,
            Some(c) => {
                let bytes: [u8; 8] = c
                    .as_slice()
                    .try_into()
                    .map_err(|_| FieldViolation::new("page_token", "is malformed"))?;
                u64::from_be_bytes(bytes) as usize
            }
        };
        let limit = self.page_size(req.page_size);
        record_span(&tenant, limit);
        let api = self.clone();
        let (rows, more) = blocking(move || {
            let mut rows = Vec::new();
            for value in api.store.dimension_values(&tenant, dimension)? {
                let counts = api.counts(&tenant, dimension, &value, window)?;
                if counts.total.sent > 0 {
                    rows.push((value, counts));
                }
            }
            let key = |c: &WindowCounts| -> f64 {
                match metric {
                    pb::StatsMetric::Unspecified | pb::StatsMetric::HardBounceRate => {
                        c.total.hard_bounce_rate()
                    }
                    pb::StatsMetric::ComplaintRate => c.total.complaint_rate(),
                    pb::StatsMetric::Sent => c.total.sent as f64,
                    pb::StatsMetric::HardBounces => c.total.hard as f64,
                }
            };
            rows.sort_by(|a, b| key(&b.1).total_cmp(&key(&a.1)).then_with(|| a.0.cmp(&b.0)));
            let more = rows.len() > offset + limit;
            let page = rows
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(value, counts)| {
                    let verdict = api.monitor.thresholds().evaluate(&counts.total);
                    pb::SourceStatsRow {
                        value,
                        stats: Some(convert::proto_window(&counts)),
                        verdict: Some(convert::proto_verdict(&verdict)),
                    }
                })
                .collect::<Vec<_>>();
            Ok((page, more))
        })
        .await?;
        let next_page_token = if more {
            self.tokens
                .issue(&scope, &((offset + limit) as u64).to_be_bytes())
        } else {
            String::new()
        };
        Ok(pb::ListSourceStatsResponse {
            rows,
            next_page_token,
        })
    }

    pub(super) fn watch_health(
        &self,
        req: pb::WatchSourceHealthRequest,
    ) -> Result<ReceiverStream<Result<pb::WatchSourceHealthResponse, Status>>, ServiceError> {
        let tenant = convert::tenant(&req.tenant)?;
        record_span(&tenant, 0);
        let dimension = convert::dimension("dimension", req.dimension)?;
        let value = parse_label(&req.value, false).map_err(|e| FieldViolation::new("value", e))?;
        let mut changes = self.monitor.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(
            async move {
                loop {
                    let change = tokio::select! {
                        change = changes.recv() => change,
                        _ = tx.closed() => return,
                    };
                    let change = match change {
                        Ok(c) => c,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "health watcher fell behind");
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    let s = &change.subject;
                    if s.tenant != tenant
                        || dimension.is_some_and(|d| d != s.dimension)
                        || (!value.is_empty() && value != s.value)
                    {
                        continue;
                    }
                    let message = pb::WatchSourceHealthResponse {
                        dimension: convert::proto_dimension(s.dimension) as i32,
                        value: s.value.clone(),
                        previous: convert::proto_health(change.previous) as i32,
                        verdict: Some(convert::proto_verdict(&change.verdict)),
                        stats: Some(convert::proto_window(&change.window)),
                        at: Some(convert::proto_timestamp(change.at)),
                    };
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            }
            .in_current_span(),
        );
        Ok(ReceiverStream::new(rx))
    }
}
