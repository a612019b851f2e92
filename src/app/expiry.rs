//! The expiry sweep: clears suppressions (and list unsubscribes) whose expiry has come.
//!
//! Reads never wait for it: a suppression stops blocking at its expiry by the rule every read
//! applies ([`crate::domain::Suppression::blocks_at`]). The sweep then makes the end visible
//! where a reader of changes looks: for each address with something due in the store's expiry
//! index, one write, decided on the record as it is when the write applies, clears what has
//! ended with an `Expired` change by the system ([`crate::policy::expire`]); a suppression that
//! was replaced or lifted meanwhile is not touched. It runs when the server starts, every
//! minute, and, with a clock moved by hand (tests), whenever the clock moves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{blocking, AppError, Context};
use crate::clock::moved as clock_moved;
use crate::domain::StateChangeKind;
use crate::policy::expire;
use crate::store::{AddressWrite, Decision, ErrorChain, WriteOutcome};

/// How often the sweep runs on the system clock.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Addresses read from the expiry index, and written, at a time.
const SWEEP_PAGE: usize = 1_000;

/// The background sweep.
pub struct ExpirySweep {
    /// Tells the task to stop (it holds the store, which must close with the server).
    stop: watch::Sender<bool>,
    /// The task, awaited on stop.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ExpirySweep {
    /// Starts the sweep on the current tokio runtime; it runs once at once.
    pub(super) fn spawn(context: Context) -> Arc<ExpirySweep> {
        let (stop, mut stopped) = watch::channel(false);
        let mut moves = context.clock.moves();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    Ok(()) = clock_moved(&mut moves) => {}
                    _ = stopped.changed() => break,
                }
                // A store that cannot serve yet (a database not reached or not migrated) is
                // swept at the first tick after it can.
                if !*context.store.ready().borrow() {
                    continue;
                }
                if let Err(e) = sweep(&context).await {
                    tracing::error!(error = %ErrorChain(&e), "the expiry sweep failed; it runs again later");
                }
            }
        });
        Arc::new(ExpirySweep {
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// Stops the task and waits for it (a sweep under way finishes its write first).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Clears everything whose expiry has come by now, address by address; returns how many
/// suppressions and list unsubscribes ended.
pub(crate) async fn sweep(context: &Context) -> Result<usize, AppError> {
    let now = context.clock.now();
    let mut cursor: Option<Vec<u8>> = None;
    let mut ended = 0;
    loop {
        let store = context.store.clone();
        let after = cursor.take();
        let page =
            blocking(move || Ok(store.due_expiries(now, after.as_deref(), SWEEP_PAGE)?)).await?;
        let writes: Vec<AddressWrite> = page
            .items
            .into_iter()
            .map(|(tenant, address)| AddressWrite {
                tenant,
                address,
                event: None,
                reclassified: Vec::new(),
                decide: Box::new(move |current| {
                    let Some(mut record) = current.cloned() else {
                        return Decision::Unchanged;
                    };
                    let changes = expire(&mut record, now);
                    if changes.is_empty() {
                        Decision::Unchanged
                    } else {
                        Decision::Apply { record, changes }
                    }
                }),
            })
            .collect();
        for outcome in context.store.write(writes).await? {
            if let WriteOutcome::Applied { changes, .. } = outcome {
                for c in changes
                    .iter()
                    .filter(|c| c.kind == StateChangeKind::Expired)
                {
                    ended += 1;
                    metrics::counter!("suppressd_expired_total", "reason" => c.reason.name())
                        .increment(1);
                }
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if ended > 0 {
        tracing::info!(ended, "suppressions reached their expiry");
    }
    Ok(ended)
}
