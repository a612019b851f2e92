//! Bounce-rate monitoring: window sums over the store's counters, and a background watcher
//! that re-judges a source, campaign or segment whenever its counters change (and every minute,
//! so a verdict also recovers as bad hours slide out of the window) and announces verdict
//! changes to subscribers. The values currently WATCH or PAUSE, over every running watcher, are
//! what the metrics endpoint publishes ([`unhealthy_values`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::domain::{Dimension, OutcomeCounts, Tenant, Timestamp};
use crate::policy::health::{Health, HealthThresholds, HealthVerdict};
use crate::store::{CounterTouch, Granularity, StoreError, SuppressionStore};

/// The window the watcher judges: the last 24 hours.
pub const WATCH_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Counts over a window, with the per-bucket series.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowCounts {
    /// Window start (inclusive, on a bucket boundary).
    pub start: Timestamp,
    /// Window end (exclusive, on a bucket boundary).
    pub end: Timestamp,
    /// Sum over the window.
    pub total: OutcomeCounts,
    /// Every bucket of the window, oldest first (empty buckets included).
    pub series: Vec<(Timestamp, OutcomeCounts)>,
    /// Width of the buckets.
    pub granularity: Granularity,
}

/// Sums the counters of a dimension value over `start..end`, rounded out to whole buckets of
/// `granularity`.
pub fn window_counts(
    store: &dyn SuppressionStore,
    tenant: &Tenant,
    dimension: Dimension,
    value: &str,
    granularity: Granularity,
    start: Timestamp,
    end: Timestamp,
) -> Result<WindowCounts, StoreError> {
    let from = granularity.bucket(start);
    let last = granularity.bucket(Timestamp(end.micros().saturating_sub(1)));
    let to = last.max(from) + 1;
    let found: HashMap<i64, OutcomeCounts> = store
        .counters(tenant, dimension, value, granularity, from, to)?
        .into_iter()
        .collect();
    let mut total = OutcomeCounts::default();
    let series = (from..to)
        .map(|b| {
            let c = found.get(&b).copied().unwrap_or_default();
            total.add(&c);
            (granularity.start(b), c)
        })
        .collect();
    Ok(WindowCounts {
        start: granularity.start(from),
        end: granularity.start(to),
        total,
        series,
        granularity,
    })
}

/// The last-24-hours window ending with the current hour.
pub fn last_24_hours(
    store: &dyn SuppressionStore,
    tenant: &Tenant,
    dimension: Dimension,
    value: &str,
    now: Timestamp,
) -> Result<WindowCounts, StoreError> {
    let end = Granularity::Hourly.start(Granularity::Hourly.bucket(now) + 1);
    window_counts(
        store,
        tenant,
        dimension,
        value,
        Granularity::Hourly,
        end.minus(WATCH_WINDOW),
        end,
    )
}

/// A verdict that changed.
#[derive(Debug, Clone)]
pub struct HealthChange {
    /// Whose verdict.
    pub subject: CounterTouch,
    /// The verdict before (HEALTHY for a value not judged before).
    pub previous: Health,
    /// The verdict now.
    pub verdict: HealthVerdict,
    /// The counts that led to it.
    pub window: WindowCounts,
    /// When the change was seen.
    pub at: Timestamp,
}

/// Every watcher started in this process (one per server), for [`unhealthy_values`].
static RUNNING: Mutex<Vec<Weak<HealthMonitor>>> = Mutex::new(Vec::new());

/// The dimension values that are WATCH or PAUSE right now, over every watcher of this process
/// that has not stopped, sorted by tenant, dimension and value. A value is listed from the
/// judgement that found it not healthy until the one that finds it healthy again.
pub fn unhealthy_values() -> Vec<(CounterTouch, Health)> {
    let monitors: Vec<Arc<HealthMonitor>> = {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|m| m.upgrade().is_some_and(|m| !*m.stop.borrow()));
        running.iter().filter_map(Weak::upgrade).collect()
    };
    let mut values: Vec<(CounterTouch, Health)> = monitors
        .iter()
        .flat_map(|m| {
            let verdicts = m.verdicts.lock().unwrap_or_else(|e| e.into_inner());
            verdicts
                .iter()
                .map(|(subject, health)| (subject.clone(), *health))
                .collect::<Vec<_>>()
        })
        .collect();
    values.sort_by(|(a, _), (b, _)| {
        (a.tenant.as_str(), a.dimension, a.value.as_str()).cmp(&(
            b.tenant.as_str(),
            b.dimension,
            b.value.as_str(),
        ))
    });
    values
}

/// Watches counters and announces verdict changes.
pub struct HealthMonitor {
    store: Arc<dyn SuppressionStore>,
    thresholds: HealthThresholds,
    /// Where "now" comes from: the window slides with it.
    clock: Clock,
    /// Last verdict per dimension value that is not HEALTHY (absent means HEALTHY).
    verdicts: Mutex<HashMap<CounterTouch, Health>>,
    changes: broadcast::Sender<HealthChange>,
    /// Tells the watcher task to stop (it holds the store, which must close with the server).
    stop: tokio::sync::watch::Sender<bool>,
    /// The watcher task, awaited on stop.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl HealthMonitor {
    /// Starts the watcher on the current tokio runtime.
    /// Every value not healthy is judged again every minute, and, with a clock moved by hand,
    /// whenever it moves.
    pub fn spawn(
        store: Arc<dyn SuppressionStore>,
        thresholds: HealthThresholds,
        clock: Clock,
    ) -> Arc<HealthMonitor> {
        let (changes, _) = broadcast::channel(4096);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let monitor = Arc::new(HealthMonitor {
            store: store.clone(),
            thresholds,
            clock: clock.clone(),
            verdicts: Mutex::new(HashMap::new()),
            changes,
            stop,
            task: Mutex::new(None),
        });
        let mut touches = store.subscribe_counters();
        let watcher = monitor.clone();
        let mut moves = clock.moves();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                let subjects: Vec<CounterTouch> = tokio::select! {
                    touched = touches.recv() => match touched {
                        Ok(t) => t.as_ref().clone(),
                        // Missed notifications: re-judge everything not healthy; the touched
                        // values will be seen again with their next results.
                        Err(broadcast::error::RecvError::Lagged(_)) => watcher.judged(),
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = tick.tick() => watcher.judged(),
                    Ok(()) = crate::clock::moved(&mut moves) => watcher.judged(),
                    _ = stopped.changed() => break,
                };
                let w = watcher.clone();
                let judged = tokio::task::spawn_blocking(move || w.rejudge(subjects)).await;
                if let Ok(Err(e)) = judged {
                    tracing::error!(error = %e, "health monitor cannot read counters");
                }
            }
        });
        *monitor.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&monitor));
        monitor
    }

    /// Stops the watcher task and waits for it; verdict changes are no longer announced.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Subscribes to verdict changes.
    pub fn subscribe(&self) -> broadcast::Receiver<HealthChange> {
        self.changes.subscribe()
    }

    /// Turns true once the watcher is stopped: subscribers should end then.
    pub fn stopped(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> &HealthThresholds {
        &self.thresholds
    }

    fn judged(&self) -> Vec<CounterTouch> {
        self.verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn rejudge(&self, subjects: Vec<CounterTouch>) -> Result<(), StoreError> {
        let now = self.clock.now();
        for subject in subjects {
            let window = last_24_hours(
                self.store.as_ref(),
                &subject.tenant,
                subject.dimension,
                &subject.value,
                now,
            )?;
            let verdict = self.thresholds.evaluate(&window.total);
            let previous = {
                let mut verdicts = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
                let previous = verdicts.get(&subject).copied().unwrap_or(Health::Healthy);
                if verdict.health == Health::Healthy {
                    verdicts.remove(&subject);
                } else {
                    verdicts.insert(subject.clone(), verdict.health);
                }
                previous
            };
            if previous != verdict.health {
                tracing::info!(
                    tenant = %subject.tenant,
                    dimension = subject.dimension.name(),
                    value = %subject.value,
                    ?previous,
                    health = ?verdict.health,
                    reason = %verdict.reason,
                    "health verdict changed"
                );
                // Nobody listening is fine.
                let _ = self.changes.send(HealthChange {
                    subject,
                    previous,
                    verdict,
                    window,
                    at: now,
                });
            }
        }
        Ok(())
    }
}
