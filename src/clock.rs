//! Where the product reads the time. Every rule that depends on the time (soft-bounce windows,
//! stats windows, the health watcher's sliding window, timestamps of records and history)
//! reads it from a [`Clock`] handed in through the settings, never from the system directly,
//! so that tests can set and advance the time instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::domain::Timestamp;

/// The source of the current time: the system clock, or a clock moved by hand (tests). Cheap to
/// clone; clones share one time.
#[derive(Clone, Default)]
pub struct Clock(Source);

#[derive(Clone, Default)]
enum Source {
    /// The system's wall clock.
    #[default]
    System,
    /// A time set by hand, with a channel that tells watchers when it moved.
    Manual(Arc<ManualTime>),
}

struct ManualTime {
    /// Microseconds since the epoch.
    micros: AtomicI64,
    /// Announces each move, so that background work that runs "every minute" runs at once.
    moved: watch::Sender<i64>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that stands at `start` until it is moved with [`Clock::advance`] or
    /// [`Clock::set`].
    pub fn manual(start: Timestamp) -> Clock {
        let (moved, _) = watch::channel(start.micros());
        Clock(Source::Manual(Arc::new(ManualTime {
            micros: AtomicI64::new(start.micros()),
            moved,
        })))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match &self.0 {
            Source::System => {
                let d = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO);
                Timestamp(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            }
            Source::Manual(m) => Timestamp(m.micros.load(Ordering::SeqCst)),
        }
    }

    /// Moves a manual clock forward by `d`; the system clock cannot be moved (ignored).
    pub fn advance(&self, d: Duration) {
        if let Source::Manual(m) = &self.0 {
            let step = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
            let now = m
                .micros
                .fetch_add(step, Ordering::SeqCst)
                .saturating_add(step);
            m.moved.send_replace(now);
        }
    }

    /// Sets a manual clock to `t`; the system clock cannot be set (ignored).
    pub fn set(&self, t: Timestamp) {
        if let Source::Manual(m) = &self.0 {
            m.micros.store(t.micros(), Ordering::SeqCst);
            m.moved.send_replace(t.micros());
        }
    }

    /// For a manual clock, a receiver that sees every move; `None` for the system clock.
    pub fn moves(&self) -> Option<watch::Receiver<i64>> {
        match &self.0 {
            Source::System => None,
            Source::Manual(m) => Some(m.moved.subscribe()),
        }
    }

    /// True for a clock moved by hand.
    pub fn is_manual(&self) -> bool {
        matches!(self.0, Source::Manual(_))
    }
}

/// Resolves when a manual clock moves (given its [`Clock::moves`]); never for the system clock.
pub async fn moved(
    moves: &mut Option<watch::Receiver<i64>>,
) -> Result<(), watch::error::RecvError> {
    match moves {
        Some(m) => m.changed().await,
        None => std::future::pending().await,
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::System"),
            Source::Manual(_) => write!(f, "Clock::Manual({})", self.now().to_rfc3339()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_announces_each_move() {
        let clock = Clock::manual(Timestamp(1_000_000));
        let mut moves = clock.moves().expect("a manual clock has moves");
        assert_eq!(clock.now(), Timestamp(1_000_000));
        assert_eq!(clock.clone().now(), Timestamp(1_000_000));
        clock.advance(Duration::from_secs(60));
        assert_eq!(clock.now(), Timestamp(61_000_000));
        assert!(moves.has_changed().unwrap());
        assert_eq!(*moves.borrow_and_update(), 61_000_000);
        clock.set(Timestamp(5));
        assert_eq!(clock.now(), Timestamp(5));
        assert!(moves.has_changed().unwrap());
    }

    #[test]
    fn the_system_clock_reads_the_wall_time_and_ignores_moves() {
        let clock = Clock::system();
        let before = clock.now();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now() >= before);
        assert!(clock.now().micros() - before.micros() < 3_600_000_000);
        assert!(clock.moves().is_none());
        assert!(before.micros() > 1_700_000_000_000_000, "after 2023");
    }
}
