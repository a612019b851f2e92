//! Monitoring bounce rates by source, campaign and segment: window sums with their trend and
//! verdict, a ranking of every value of a dimension, and a feed of verdict changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::{blocking, AppError, Caller, Context, FieldViolation};
use crate::domain::{Dimension, Tenant, Timestamp};
use crate::monitor::{window_counts, HealthChange, HealthMonitor, WindowCounts};
use crate::policy::health::HealthVerdict;
use crate::store::Granularity;

/// The longest explicit range accepted.
const MAX_RANGE: Duration = Duration::from_secs(400 * 86_400);
/// Explicit ranges up to this long are bucketed hourly, longer ones daily.
const HOURLY_UP_TO: Duration = Duration::from_secs(7 * 86_400);

/// The window a caller asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowChoice {
    /// The last 24 hours, hourly (the default).
    Last24Hours,
    /// The last 7 days, hourly.
    Last7Days,
    /// The last 30 days, daily.
    Last30Days,
    /// An explicit range (start before end), hourly up to 7 days, daily beyond.
    Between(Timestamp, Timestamp),
}

/// A resolved window: where it is and how it is bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start (inclusive, on a bucket boundary).
    pub start: Timestamp,
    /// End (exclusive, on a bucket boundary).
    pub end: Timestamp,
    /// Width of its buckets.
    pub granularity: Granularity,
}

impl Window {
    /// The window of equal length just before this one (the trend's baseline).
    pub fn previous(self) -> Window {
        let len = self.end.micros() - self.start.micros();
        Window {
            start: Timestamp(self.start.micros() - len),
            end: self.start,
            granularity: self.granularity,
        }
    }
}

/// What ranks the values of a dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RankBy {
    /// Hard bounces per result (the default).
    #[default]
    HardBounceRate,
    /// Complaints per result.
    ComplaintRate,
    /// Results.
    Sent,
    /// Hard bounces.
    HardBounces,
}

/// What a ranking ranks, and which page of it.
#[derive(Debug, Clone, Copy)]
pub struct Ranking {
    /// The dimension whose values are ranked.
    pub dimension: Dimension,
    /// The window they are counted over.
    pub window: Window,
    /// The metric they are ranked by.
    pub rank_by: RankBy,
    /// How many ranked values to skip.
    pub offset: usize,
    /// How many to return.
    pub limit: usize,
}

/// The statistics of one value over a window.
#[derive(Debug, Clone)]
pub struct SourceStats {
    /// The window asked about.
    pub current: WindowCounts,
    /// The window of equal length before it.
    pub previous: WindowCounts,
    /// The verdict on the current window.
    pub verdict: HealthVerdict,
}

/// One value of a ranking.
#[derive(Debug, Clone)]
pub struct RankedValue {
    /// The value.
    pub value: String,
    /// Its counts over the window.
    pub counts: WindowCounts,
    /// Its verdict.
    pub verdict: HealthVerdict,
}

/// Bounce rates and health verdicts.
#[derive(Clone)]
pub struct Monitoring {
    context: Context,
    monitor: Arc<HealthMonitor>,
}

impl Monitoring {
    pub(super) fn new(context: Context, monitor: Arc<HealthMonitor>) -> Self {
        Monitoring { context, monitor }
    }

    /// Stops the health watcher.
    pub async fn stop(&self) {
        self.monitor.stop().await;
    }

    /// Where a window choice lies now.
    pub fn window(&self, choice: WindowChoice) -> Result<Window, FieldViolation> {
        let now = self.context.clock.now();
        let (granularity, buckets) = match choice {
            WindowChoice::Between(start, end) => {
                let len = Duration::from_micros((end.micros() - start.micros()).max(0) as u64);
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
                return Ok(Window {
                    start: granularity.start(first),
                    end: granularity.start(last + 1),
                    granularity,
                });
            }
            WindowChoice::Last24Hours => (Granularity::Hourly, 24),
            WindowChoice::Last7Days => (Granularity::Hourly, 7 * 24),
            WindowChoice::Last30Days => (Granularity::Daily, 30),
        };
        let end_bucket = granularity.bucket(now) + 1;
        Ok(Window {
            start: granularity.start(end_bucket - buckets),
            end: granularity.start(end_bucket),
            granularity,
        })
    }

    fn counts(
        &self,
        tenant: &Tenant,
        dimension: Dimension,
        value: &str,
        w: Window,
    ) -> Result<WindowCounts, AppError> {
        Ok(window_counts(
            self.context.store.as_ref(),
            tenant,
            dimension,
            value,
            w.granularity,
            w.start,
            w.end,
        )?)
    }

    /// The counts of one value over a window and the window before, with the verdict.
    pub async fn stats(
        &self,
        caller: &Caller,
        tenant: Tenant,
        dimension: Dimension,
        value: String,
        window: Window,
    ) -> Result<SourceStats, AppError> {
        caller.check_tenant(&tenant)?;
        let this = self.clone();
        blocking(move || {
            let current = this.counts(&tenant, dimension, &value, window)?;
            let previous = this.counts(&tenant, dimension, &value, window.previous())?;
            let verdict = this.monitor.thresholds().evaluate(&current.total);
            Ok(SourceStats {
                current,
                previous,
                verdict,
            })
        })
        .await
    }

    /// Every value of a dimension with results in the window, ranked (highest first), from
    /// `offset`, at most `limit`; and whether more follow.
    pub async fn ranked(
        &self,
        caller: &Caller,
        tenant: Tenant,
        ranking: Ranking,
    ) -> Result<(Vec<RankedValue>, bool), AppError> {
        caller.check_tenant(&tenant)?;
        let Ranking {
            dimension,
            window,
            rank_by,
            offset,
            limit,
        } = ranking;
        let this = self.clone();
        blocking(move || {
            let mut rows = Vec::new();
            for value in this.context.store.dimension_values(&tenant, dimension)? {
                let counts = this.counts(&tenant, dimension, &value, window)?;
                if counts.total.sent > 0 {
                    rows.push((value, counts));
                }
            }
            let key = |c: &WindowCounts| -> f64 {
                match rank_by {
                    RankBy::HardBounceRate => c.total.hard_bounce_rate(),
                    RankBy::ComplaintRate => c.total.complaint_rate(),
                    RankBy::Sent => c.total.sent as f64,
                    RankBy::HardBounces => c.total.hard as f64,
                }
            };
            rows.sort_by(|a, b| key(&b.1).total_cmp(&key(&a.1)).then_with(|| a.0.cmp(&b.0)));
            let more = rows.len() > offset + limit;
            let page = rows
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(value, counts)| RankedValue {
                    verdict: this.monitor.thresholds().evaluate(&counts.total),
                    value,
                    counts,
                })
                .collect();
            Ok((page, more))
        })
        .await
    }

    /// Verdict changes of the last-24-hours window of a tenant's values, optionally of one
    /// dimension and one value.
    pub fn watch(
        &self,
        caller: &Caller,
        tenant: Tenant,
        dimension: Option<Dimension>,
        value: String,
    ) -> Result<HealthWatch, AppError> {
        caller.check_tenant(&tenant)?;
        Ok(HealthWatch {
            changes: self.monitor.subscribe(),
            stopped: self.monitor.stopped(),
            tenant,
            dimension,
            value,
        })
    }
}

/// A subscription to verdict changes.
pub struct HealthWatch {
    changes: broadcast::Receiver<HealthChange>,
    /// Turns true when the service stops: the subscription ends then.
    stopped: tokio::sync::watch::Receiver<bool>,
    tenant: Tenant,
    dimension: Option<Dimension>,
    value: String,
}

impl HealthWatch {
    /// The next change this subscription asked for; `None` once the watcher has stopped.
    pub async fn next(&mut self) -> Option<HealthChange> {
        loop {
            if *self.stopped.borrow() {
                return None;
            }
            let received = tokio::select! {
                received = self.changes.recv() => received,
                _ = self.stopped.changed() => return None,
            };
            match received {
                Ok(change) => {
                    let s = &change.subject;
                    if s.tenant == self.tenant
                        && self.dimension.is_none_or(|d| d == s.dimension)
                        && (self.value.is_empty() || self.value == s.value)
                    {
                        return Some(change);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "health watcher fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
