//! The change feed of suppression lists: every change of a tenant's list in commit order, for
//! followers that keep their own copy (WatchSuppressions), and the retention that prunes it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{blocking, AppError, Caller, Context};
use crate::clock::Clock;
use crate::domain::{ChangeKind, ListChange, Tenant, Timestamp};
use crate::store::{StoreError, SuppressionStore};

/// Changes read from the log at a time.
const READ_BATCH: usize = 1_000;
/// Changes removed by retention in one durable write.
const PRUNE_BATCH: usize = 10_000;
/// How often retention runs on the system clock (and whenever a manual clock moves).
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// A position in the change feed: the commit sequence number of the last change a follower
/// processed. Changes after it are the follower's to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedPosition(pub u64);

/// What a follower reads at a time.
#[derive(Debug, Clone)]
pub struct FeedPage {
    /// The changes of the asked kinds, in commit order.
    pub changes: Vec<ListChange>,
    /// Where to read on from (past the changes of other kinds too).
    pub position: FeedPosition,
    /// True when more changes are already committed after `position`.
    pub more: bool,
}

/// Reads the change feed and keeps its retention. Cheap to clone.
#[derive(Clone)]
pub struct Feed {
    context: Context,
    retention: Duration,
    stop: watch::Sender<bool>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Feed {
    /// The feed over the context's store; starts its retention on the current runtime.
    pub(crate) fn spawn(context: Context, retention: Duration) -> Feed {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(prune_loop(
            context.store.clone(),
            context.clock.clone(),
            retention,
            stopped,
        ));
        Feed {
            context,
            retention,
            stop,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// How long changes are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The position of the latest durable change: a follower starting here gets every change
    /// committed after this call.
    pub fn head(&self) -> FeedPosition {
        FeedPosition(*self.context.store.change_head().borrow())
    }

    /// Moves whenever new changes become durable.
    pub fn follow(&self) -> watch::Receiver<u64> {
        self.context.store.change_head()
    }

    /// The tenant's changes after `after`, of the given kinds (empty: every kind).
    /// `OUT_OF_RANGE` when retention removed changes after `after`, or when `after` is past
    /// the log's end (the store lost changes since the cursor was given).
    pub async fn read(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        after: FeedPosition,
        kinds: &[ChangeKind],
    ) -> Result<FeedPage, AppError> {
        caller.check_tenant(tenant)?;
        let store = self.context.store.clone();
        let t = tenant.clone();
        let read = blocking(move || Ok(store.changes(&t, after.0, READ_BATCH)?)).await;
        let page = match read {
            Err(AppError::Store(StoreError::ChangesPruned { .. })) => {
                return Err(AppError::OutOfRange(format!(
                    "the cursor is older than the change feed's retention ({} days): list the \
                     suppressions again with ListSuppressions and watch from its feed_cursor",
                    self.retention.as_secs() / 86_400
                )))
            }
            Err(AppError::Store(StoreError::PositionAhead { .. })) => {
                return Err(AppError::OutOfRange(
                    "the cursor is past the change feed's end: the store lost changes after it \
                     was given (restored from an older backup, or a database failover that lost \
                     commits). List the suppressions again with ListSuppressions and watch from \
                     its feed_cursor"
                        .to_string(),
                ))
            }
            other => other?,
        };
        Ok(FeedPage {
            changes: page
                .items
                .into_iter()
                .filter(|c| kinds.is_empty() || kinds.contains(&c.kind))
                .collect(),
            position: FeedPosition(page.read_to),
            more: page.more,
        })
    }

    /// Stops the retention task and waits for it.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Removes changes older than the retention, every hour and whenever a manual clock moves.
async fn prune_loop(
    store: Arc<dyn SuppressionStore>,
    clock: Clock,
    retention: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut moves = clock.moves();
    let keep = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Ok(()) = crate::clock::moved(&mut moves) => {}
            _ = stopped.changed() => return,
        }
        // A store that cannot serve yet (a database not reached or not migrated) is pruned at
        // the first tick after it can.
        if !*store.ready().borrow() {
            continue;
        }
        let before = Timestamp(clock.now().micros().saturating_sub(keep));
        loop {
            match store.prune_changes(before, PRUNE_BATCH).await {
                Ok(removed) if removed as usize == PRUNE_BATCH => continue,
                Ok(removed) => {
                    if removed > 0 {
                        tracing::info!(removed, "pruned the change feed");
                    }
                    break;
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::error!(error = %crate::store::ErrorChain(&e), "cannot prune the change feed");
                    break;
                }
            }
        }
    }
}
