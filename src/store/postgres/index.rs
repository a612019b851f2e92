//! The replica's in-memory suppressed index, kept exact across replicas by tailing the change
//! log, and the read barrier that screens pass before reading it.
//!
//! The index holds the keyed address hashes (tenant included) of the addresses that hold a
//! suppression (`suppressed_since IS NOT NULL`) and of those unsubscribed from a list
//! (`list_unsubscribed`): what an import screen asks of every contact. A screen reads the
//! records of only the contacts the index holds, as the embedded engines do with their
//! filters; the others are answered from memory.
//!
//! Why it is exact (see docs/postgres.md, "The replicas' in-memory index"):
//! - Every commit that puts an address in or out of either set writes a change log row for it
//!   in the same transaction (`writer::address_list_changes` logs every suppression that starts
//!   or ends and every list unsubscribe that is added or removed).
//! - Change numbers are taken by `UPDATE change_counter ... RETURNING`, the last statement
//!   before COMMIT, and the row lock is held until the transaction ends. A second writer waits
//!   on it until the first has committed (or rolled back, handing its numbers back), and
//!   PostgreSQL wakes lock waiters only once the commit is visible to new snapshots. So a
//!   snapshot that sees change `n` sees every change below `n`: the committed numbers always
//!   form a prefix `1..=last_seq`, and no change numbered at or below a snapshot's `last_seq`
//!   can commit later.
//! - A catch-up is one statement, hence one snapshot: it reads `last_seq`, the changes after
//!   the index's position up to it, and the current flags of their addresses. The index then
//!   holds exactly the sets as of that snapshot, and its position is that `last_seq`.
//! - A caller waits for a catch-up that *started after it arrived* (its snapshot is later than
//!   the call): every write acknowledged before the call was sent committed before it.
//!   Concurrent callers share one catch-up (single flight), so its cost per call falls as
//!   concurrency grows.
//! - Changes pruned past the index's position (a horizon above it) make the catch-up reload
//!   the whole index in one REPEATABLE READ snapshot, as at start.
//! - So does a change log that is no longer the one the index followed: a database that lost
//!   its last commits (a failover to an asynchronous standby, a restore of an older backup)
//!   numbers new changes again from a lower head, and a position-only comparison would take
//!   them for changes already applied. The index keeps what the change at its position was
//!   (tenant, time, address: `fingerprint!`); a catch-up that finds another change there, or
//!   a head below the position, reloads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_stream::StreamExt;

use super::{change_head, connection, read_snapshot, shared_error, sql_error, Inner};
use crate::fasthash::KeySet;
use crate::store::StoreError;

/// The sets and the change log position they are consistent with.
#[derive(Default)]
struct Sets {
    /// Addresses (keyed hash, tenant included) holding a suppression.
    suppressed: KeySet<u128>,
    /// Addresses unsubscribed from at least one list.
    listed: KeySet<u128>,
    /// The change log's `last_seq` in the snapshot the sets were read as of.
    position: u64,
    /// What the change numbered `position` was (`fingerprint!`; `None`: no such row).
    at_position: Option<String>,
}

/// A change log row as a text that tells it from any other change given the same number:
/// its tenant, time and address (a macro, so that the statements below are constants).
macro_rules! fingerprint {
    () => {
        "tenant || ':' || at::text || ':' || coalesce(encode(address_hash, 'hex'), '')"
    };
}

/// What the change numbered `$1` is (`fingerprint!`).
const AT_SEQ_SQL: &str = concat!("SELECT ", fingerprint!(), " FROM changes WHERE seq = $1");

/// A catch-up (see [`SuppressedIndex::catch_up`]): the head, the retention horizon, the
/// changes after the position `$1` up to the head with their addresses' flags, and what the
/// changes at the position and at the head are (one probe each). `changes_by_seq` serves the
/// range. An address's flags come from a subquery per change (a probe of the primary key): as
/// a join, the planner, not knowing how many changes follow, hashes the whole `addresses`
/// table. A change whose address row is gone (or a domain's change, without an address)
/// leaves the address out of both sets.
const CATCH_UP_SQL: &str = concat!(
    "SELECT h.last_seq, z.horizon, c.address_hash,
            (SELECT CASE WHEN a.suppressed_since IS NOT NULL THEN 1 ELSE 0 END
                  + CASE WHEN a.list_unsubscribed THEN 2 ELSE 0 END
             FROM addresses a
             WHERE a.tenant = c.tenant AND a.address_hash = c.address_hash)::int2,
            h.at_head, (SELECT ",
    fingerprint!(),
    " FROM changes WHERE seq = $1)
     FROM (SELECT last_seq,
                  (SELECT ",
    fingerprint!(),
    " FROM changes WHERE seq = change_counter.last_seq) AS at_head
           FROM change_counter WHERE id = 1) h
     CROSS JOIN (SELECT coalesce(max(horizon), 0) AS horizon FROM change_horizons) z
     LEFT JOIN changes c ON c.seq > $1 AND c.seq <= h.last_seq
     ORDER BY c.seq"
);

impl Sets {
    fn set(&mut self, key: u128, suppressed: bool, listed: bool) {
        if suppressed {
            self.suppressed.insert(key);
        } else {
            self.suppressed.remove(key);
        }
        if listed {
            self.listed.insert(key);
        } else {
            self.listed.remove(key);
        }
    }
}

/// Catch-ups started and whether one runs (under the index's mutex).
#[derive(Default)]
struct Rounds {
    /// Number of the last catch-up started.
    started: u64,
    running: bool,
}

/// How the last catch-up ended: its number, and its error's kind and text (the error itself
/// went to its leader; waiters get a copy).
#[derive(Clone, Default)]
struct Finished {
    round: u64,
    failed: Option<(bool, String)>,
}

/// The index of one replica.
#[derive(Default)]
pub(super) struct SuppressedIndex {
    sets: RwLock<Sets>,
    /// Set once the first load is in (`indexes_loaded`); the store says ready only after.
    loaded: AtomicBool,
    rounds: Mutex<Rounds>,
    /// Moved when a catch-up ends; callers waiting for a later one watch it.
    finished: watch::Sender<Finished>,
}

/// A read view of the index; catch-ups wait while it is held, so hold it briefly.
pub(super) struct IndexReader<'a>(RwLockReadGuard<'a, Sets>);

impl IndexReader<'_> {
    /// Whether the address with this keyed hash holds a suppression, or (with `lists`) a list
    /// unsubscribe: `false` is exact as of the index's position.
    pub(super) fn may_block(&self, key: u128, lists: bool) -> bool {
        self.0.suppressed.contains(key) || (lists && self.0.listed.contains(key))
    }
}

/// The index key of a 16-byte address hash.
pub(super) fn key_of(hash: &[u8; 16]) -> u128 {
    u128::from_be_bytes(*hash)
}

fn key_from_column(bytes: &[u8]) -> Result<u128, StoreError> {
    <[u8; 16]>::try_from(bytes)
        .map(|h| key_of(&h))
        .map_err(|_| StoreError::corrupt(bytes, "an address hash of the wrong length"))
}

impl SuppressedIndex {
    /// Whether the first load is in.
    pub(super) fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// A read view, as of the last catch-up.
    pub(super) fn reader(&self) -> IndexReader<'_> {
        IndexReader(self.sets.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Number of suppressed addresses, every tenant's, as of the last catch-up.
    pub(super) fn suppressed_len(&self) -> u64 {
        self.reader().0.suppressed.len() as u64
    }

    /// The change log position the index is consistent with.
    pub(super) fn position(&self) -> u64 {
        self.reader().0.position
    }

    /// Loads both sets and the change log position in one REPEATABLE READ snapshot (the
    /// position is read first, so the rows are exactly those of that position), and swaps
    /// them in.
    pub(super) async fn load(&self, pool: &Pool) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut client = connection(pool).await?;
        let tx = read_snapshot(&mut client, "loading the suppressed index").await?;
        let head = change_head(&tx, "loading the suppressed index").await?;
        let at_position: Option<String> = tx
            .query_opt(AT_SEQ_SQL, &[&head])
            .await
            .map_err(sql_error("loading the suppressed index"))?
            .map(|r| r.get(0));
        let rows = tx
            .query_raw(
                "SELECT address_hash, suppressed_since IS NOT NULL, list_unsubscribed
                 FROM addresses WHERE suppressed_since IS NOT NULL OR list_unsubscribed",
                std::iter::empty::<&(dyn ToSql + Sync)>(),
            )
            .await
            .map_err(sql_error("loading the suppressed index"))?;
        let mut rows = std::pin::pin!(rows);
        let mut sets = Sets {
            position: u64::try_from(head).unwrap_or(0),
            at_position,
            ..Sets::default()
        };
        while let Some(row) = rows.next().await {
            let row = row.map_err(sql_error("loading the suppressed index"))?;
            let key = key_from_column(row.get::<_, &[u8]>(0))?;
            sets.set(key, row.get(1), row.get(2));
        }
        tx.commit()
            .await
            .map_err(sql_error("loading the suppressed index"))?;
        let (suppressed, listed, position) =
            (sets.suppressed.len(), sets.listed.len(), sets.position);
        *self.sets.write().unwrap_or_else(|e| e.into_inner()) = sets;
        metrics::counter!("suppressd_postgres_index_loads_total").increment(1);
        self.loaded.store(true, Ordering::Release);
        tracing::info!(
            suppressed,
            listed,
            position,
            elapsed = ?started.elapsed(),
            "loaded the suppressed index"
        );
        Ok(())
    }

    /// One catch-up: the changes after the index's position, with the current flags of their
    /// addresses, read with the change log's head and retention horizon in one statement (one
    /// snapshot); reloads when changes after the position were pruned.
    async fn catch_up(&self, pool: &Pool) -> Result<(), StoreError> {
        let position = self.position();
        metrics::counter!("suppressd_postgres_index_catch_ups_total").increment(1);
        let client = connection(pool).await?;
        let from = i64::try_from(position).unwrap_or(i64::MAX);
        let statement = client
            .prepare_cached(CATCH_UP_SQL)
            .await
            .map_err(sql_error("catching up with the change log"))?;
        let rows = client
            .query(&statement, &[&from])
            .await
            .map_err(sql_error("catching up with the change log"))?;
        drop(client);
        let Some(first) = rows.first() else {
            return Err(StoreError::corrupt(
                b"change_counter",
                "the change log's counter row is missing",
            ));
        };
        let head = u64::try_from(first.get::<_, i64>(0)).unwrap_or(0);
        let horizon = u64::try_from(first.get::<_, i64>(1)).unwrap_or(0);
        let at_head: Option<String> = first.get(4);
        let now_at_position: Option<String> = first.get(5);
        if position < horizon {
            tracing::warn!(
                position,
                horizon,
                "changes after the suppressed index's position were pruned: reloading it"
            );
            return self.load(pool).await;
        }
        // The change at the position is checked unless retention removed it (a horizon at the
        // position): then only a head below the position shows a log that went back.
        let followed = self
            .sets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .at_position
            .clone();
        let rewritten = head < position || (position > horizon && now_at_position != followed);
        if rewritten {
            tracing::warn!(
                position,
                head,
                "the change log is not the one the suppressed index followed (the database \
                 lost commits: a failover, a restore): reloading it"
            );
            metrics::counter!("suppressd_postgres_index_rewritten_logs_total").increment(1);
            return self.load(pool).await;
        }
        let mut updates = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(hash) = row.get::<_, Option<&[u8]>>(2) {
                let flags = row.get::<_, Option<i16>>(3).unwrap_or(0);
                updates.push((key_from_column(hash)?, flags & 1 != 0, flags & 2 != 0));
            }
        }
        let mut sets = self.sets.write().unwrap_or_else(|e| e.into_inner());
        // A reload meanwhile (not possible while rounds run one at a time, but cheap to rule
        // out): never move the index back. (A head below the position reloaded above.)
        if sets.position != position {
            return Ok(());
        }
        for (key, suppressed, listed) in updates {
            sets.set(key, suppressed, listed);
        }
        sets.position = head;
        sets.at_position = at_head;
        Ok(())
    }

    /// The read barrier: returns once the index has applied every change committed before this
    /// call, sharing catch-ups with concurrent callers (see the module's documentation). Its
    /// error is the catch-up's (the database lost: [`StoreError::Unavailable`]).
    pub(super) async fn barrier(inner: &Arc<Inner>) -> Result<(), StoreError> {
        let index = &inner.index;
        let mut finished = index.finished.subscribe();
        // Only a catch-up numbered after every one started so far started after this call.
        let needed = index.lock_rounds().started + 1;
        loop {
            {
                let last = finished.borrow_and_update();
                if last.round >= needed {
                    return match &last.failed {
                        None => Ok(()),
                        Some((unavailable, text)) => Err(shared_error(
                            "catching up with the change log",
                            *unavailable,
                            text,
                        )),
                    };
                }
            }
            let lead = {
                let mut rounds = index.lock_rounds();
                if rounds.running {
                    None
                } else {
                    rounds.running = true;
                    rounds.started += 1;
                    Some(rounds.started)
                }
            };
            let Some(round) = lead else {
                if finished.changed().await.is_err() {
                    return Err(StoreError::Closed);
                }
                continue;
            };
            // Run by this caller; the guard ends the round even if the caller goes away.
            let mut guard = RoundGuard {
                index,
                round,
                outcome: None,
            };
            let result = index.catch_up(&inner.pool).await;
            guard.outcome = Some(
                result
                    .as_ref()
                    .err()
                    .map(|e| (e.is_unavailable(), crate::store::ErrorChain(e).to_string())),
            );
            drop(guard);
            if result.is_ok() {
                let head = index.position();
                inner.head.send_if_modified(|h| {
                    let moved = head > *h;
                    if moved {
                        *h = head;
                    }
                    moved
                });
            }
            return result;
        }
    }

    fn lock_rounds(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ends a catch-up round: marks none running and tells the waiters how it ended (as failed
/// if its leader went away before it ended).
struct RoundGuard<'a> {
    index: &'a SuppressedIndex,
    round: u64,
    /// `Some(None)`: it succeeded; `Some(Some(..))`: it failed; `None`: it was abandoned.
    outcome: Option<Option<(bool, String)>>,
}

impl Drop for RoundGuard<'_> {
    fn drop(&mut self) {
        let failed = self
            .outcome
            .take()
            .unwrap_or_else(|| Some((true, "the catch-up was abandoned".to_string())));
        // `running` first: a waiter woken by the message below must be able to lead the next.
        self.index.lock_rounds().running = false;
        let round = self.round;
        self.index.finished.send_if_modified(|f| {
            let later = round > f.round;
            if later {
                *f = Finished { round, failed };
            }
            later
        });
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::{
        BounceReason, BounceType, Classification, EmailAddress, RecordedEvent, ReportedOutcome,
        Tenant, Timestamp,
    };
    use crate::policy::EscalationPolicy;
    use crate::store::{testing, AddressWrite, Decision, Engine, StoreOptions, SuppressionStore};

    pub(in crate::store::postgres) fn replica(url: &str) -> Arc<dyn SuppressionStore> {
        let store = crate::store::open(StoreOptions {
            engine: Engine::Postgres,
            path: "unused".into(),
            cache_bytes: 0,
            journal_bytes: 0,
            database_url: Some(url.to_string()),
        })
        .unwrap();
        testing::wait_until_ready(&*store, std::time::Duration::from_secs(30));
        store
    }

    fn hard_bounce(i: usize) -> AddressWrite {
        hard_bounce_with_id(i, &format!("e{i}"))
    }

    /// A hard bounce of `gone{i}@example.com` (tenant `race`) with the event id `id`.
    pub(in crate::store::postgres) fn hard_bounce_with_id(i: usize, id: &str) -> AddressWrite {
        bounce(i, id, true)
    }

    /// A hard or (`hard` false) soft bounce of `gone{i}@example.com` (tenant `race`) with the
    /// event id `id`.
    pub(in crate::store::postgres) fn bounce(i: usize, id: &str, hard: bool) -> AddressWrite {
        let event = RecordedEvent {
            event_id: id.to_string(),
            address: format!("gone{i}@example.com"),
            outcome: if hard {
                ReportedOutcome::HardBounce
            } else {
                ReportedOutcome::SoftBounce
            },
            smtp_response: if hard {
                "550 5.1.1 user unknown".into()
            } else {
                "452 4.2.2 mailbox full".into()
            },
            enhanced_status: None,
            source: String::new(),
            campaign: String::new(),
            segment: String::new(),
            provider: String::new(),
            list_id: String::new(),
            occurred_at: Timestamp(1_767_261_600_000_000),
            recorded_at: Timestamp(1_767_261_600_000_000),
            classification: Classification {
                bounce_type: if hard {
                    BounceType::Hard
                } else {
                    BounceType::Soft
                },
                reason: if hard {
                    BounceReason::MailboxNotFound
                } else {
                    BounceReason::MailboxFull
                },
                rule_id: "test".into(),
                confidence: 1.0,
                disagrees_with_reporter: false,
            },
            rules_version: 1,
        };
        let for_policy = event.clone();
        AddressWrite {
            tenant: Tenant::parse("race").unwrap(),
            address: EmailAddress::parse(&event.address).unwrap(),
            event: Some(event),
            reclassified: Vec::new(),
            decide: Box::new(move |current| {
                let next = EscalationPolicy::default().apply_event(current, &for_policy);
                Decision::Apply {
                    record: next.record,
                    changes: next.changes,
                }
            }),
        }
    }

    // The single flight's edge: B screens without a pause, so a catch-up is nearly always in
    // flight when a write on A is acknowledged; the screen that follows the acknowledgement
    // must wait for a catch-up that started after it, not join the one in flight.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
    async fn on_postgres_a_screen_after_an_acknowledged_write_on_another_replica_never_joins_an_older_catch_up(
    ) {
        const ROUNDS: usize = 2_000;
        let dir = tempfile::tempdir().unwrap();
        let url = testing::postgres_test_database(&format!("index race {}", dir.path().display()));
        let (a, b) = (replica(&url), replica(&url));
        let tenant = Tenant::parse("race").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let busy: Vec<_> = (0..3)
            .map(|t| {
                let (b, stop, tenant) = (b.clone(), stop.clone(), tenant.clone());
                std::thread::spawn(move || {
                    let clean = format!("clean{t}@example.com");
                    let mut screens = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let found = b.suppressed_records(&tenant, &[clean.as_str()], true);
                        assert!(found.unwrap().is_empty());
                        screens += 1;
                    }
                    screens
                })
            })
            .collect();
        for i in 0..ROUNDS {
            a.write(vec![hard_bounce(i)]).await.unwrap();
            let gone = format!("gone{i}@example.com");
            let b = b.clone();
            let tenant = tenant.clone();
            let found = tokio::task::spawn_blocking(move || {
                b.suppressed_records(&tenant, &[gone.as_str(), "clean@example.com"], false)
            })
            .await
            .unwrap()
            .unwrap();
            assert_eq!(
                found.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
                [0],
                "round {i}: acknowledged on A before B was asked"
            );
        }
        stop.store(true, Ordering::Relaxed);
        for t in busy {
            assert!(t.join().unwrap() > 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
    async fn on_postgres_an_index_behind_the_pruned_changes_reloads_and_misses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = testing::postgres_test_database(&format!("index prune {}", dir.path().display()));
        let a = replica(&url);
        let b = super::super::open(&url).unwrap();
        testing::wait_until_ready(&b, std::time::Duration::from_secs(30));
        a.write((0..50).map(hard_bounce).collect()).await.unwrap();
        let pruned = a
            .prune_changes(Timestamp(i64::MAX), usize::MAX)
            .await
            .unwrap();
        assert_eq!(pruned, 50);
        // B as if it had last caught up before those writes (its watch may have caught up
        // meanwhile): the changes it would need are gone.
        *b.inner.index.sets.write().unwrap() = Sets::default();
        let tenant = Tenant::parse("race").unwrap();
        let b = Arc::new(b);
        let found = {
            let b = b.clone();
            tokio::task::spawn_blocking(move || {
                let asked: Vec<String> = (0..50).map(|i| format!("gone{i}@example.com")).collect();
                let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
                b.suppressed_records(&tenant, &asked, false)
            })
            .await
            .unwrap()
            .unwrap()
        };
        assert_eq!(found.len(), 50, "reloaded: every suppression is found");
        assert_eq!(b.inner.index.suppressed_len(), 50);
    }

    // A failover to a standby that missed the last commits: the database's change log goes
    // back, and new writes number their changes again from there, up to and past B's
    // position. B must read them as new (reload), not take them for the changes it applied.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
    async fn on_postgres_an_index_whose_database_lost_commits_reloads_and_misses_nothing_new() {
        let dir = tempfile::tempdir().unwrap();
        let url = testing::postgres_test_database(&format!("lost {}", dir.path().display()));
        let (a, b) = (replica(&url), replica(&url));
        a.write((0..10).map(hard_bounce).collect()).await.unwrap();
        let tenant = Tenant::parse("race").unwrap();
        let screen = |b: Arc<dyn SuppressionStore>, names: Vec<String>| {
            let tenant = tenant.clone();
            tokio::task::spawn_blocking(move || {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                b.suppressed_records(&tenant, &names, false)
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>()
            })
        };
        let gone: Vec<String> = (0..10).map(|i| format!("gone{i}@example.com")).collect();
        assert_eq!(screen(b.clone(), gone.clone()).await.unwrap().len(), 10);

        // The database as a standby that missed the last five commits would have it.
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let lost: Vec<String> = gone[5..].to_vec();
        let head: i64 = client
            .query_one("SELECT last_seq FROM change_counter WHERE id = 1", &[])
            .await
            .unwrap()
            .get(0);
        client
            .execute("DELETE FROM changes WHERE seq > $1", &[&(head - 5)])
            .await
            .unwrap();
        client
            .execute(
                "UPDATE change_counter SET last_seq = $1 WHERE id = 1",
                &[&(head - 5)],
            )
            .await
            .unwrap();
        client
            .execute("DELETE FROM addresses WHERE address = ANY($1)", &[&lost])
            .await
            .unwrap();

        // A follower of the change feed holding a position past the lower head is told so.
        let b2 = b.clone();
        let (t2, old_head) = (tenant.clone(), u64::try_from(head).unwrap());
        let ahead = tokio::task::spawn_blocking(move || b2.changes(&t2, old_head, 10))
            .await
            .unwrap();
        assert!(
            matches!(ahead, Err(StoreError::PositionAhead { head }) if head == old_head - 5),
            "{ahead:?}"
        );

        // After the failover: new suppressions numbered from the lower head, past B's position.
        a.write((100..106).map(hard_bounce).collect())
            .await
            .unwrap();
        let asked: Vec<String> = (100..106).map(|i| format!("gone{i}@example.com")).collect();
        assert_eq!(
            screen(b.clone(), asked).await.unwrap(),
            (0..6).collect::<Vec<_>>(),
            "every suppression made after the failover blocks on B"
        );
        assert_eq!(
            screen(b.clone(), gone).await.unwrap(),
            (0..5).collect::<Vec<_>>(),
            "B agrees with the database on the commits it lost"
        );
    }

    #[test]
    fn an_address_leaves_a_set_when_its_flag_clears_and_keys_are_exact() {
        let mut sets = Sets::default();
        let (a, b) = (key_of(&[1; 16]), key_of(&[2; 16]));
        sets.set(a, true, false);
        sets.set(b, false, true);
        let index = SuppressedIndex::default();
        *index.sets.write().unwrap() = sets;
        {
            let r = index.reader();
            assert!(r.may_block(a, false));
            assert!(!r.may_block(b, false));
            assert!(r.may_block(b, true));
            // Same low half, other high half: another address.
            let mut other = [1u8; 16];
            other[0] = 9;
            assert!(!r.may_block(key_of(&other), true));
        }
        index.sets.write().unwrap().set(a, false, false);
        assert!(!index.reader().may_block(a, true));
        assert_eq!(index.suppressed_len(), 0);
    }
}
