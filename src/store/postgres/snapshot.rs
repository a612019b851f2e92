//! The postgres engine's consistent cut (`snapshot()`): the relational rows read back as the
//! logical key space of the embedded engines (`keys`), so that the one backup stream
//! (`snapshot`) carries a postgres store as it carries a sled or redb one.
//!
//! The cut is one `REPEATABLE READ READ ONLY` transaction on a connection of its own, taken
//! before `snapshot()` returns; its rows are read through portals a few thousand at a time and
//! handed over in chunks on a bounded channel, so a backup of any size holds a few chunks in
//! memory while the engine goes on taking writes. Each kind of key is one query ordered as its
//! keys sort (text in byte order, `COLLATE "C"`); the stream's writer refuses keys out of
//! order, so an ordering mistake stops a backup instead of corrupting it.
//!
//! Personal fields are kept in the clear on this engine: the stream says so (`plain_data`) and
//! carries no keyring, and a store restored from it reads them as it reads data written before
//! the keyring (each address's fields are sealed on its next write). Delivered addresses are
//! written in that older form too (`keys::plain_good_address`).
//!
//! [`scan`] also counts the cut's keys per kind without sending them: the restore into
//! postgres checks itself with it before it commits (`restore`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

use super::read::decoded;
use super::{change_head, connection, read_snapshot, sql_error, Inner};
use crate::domain::{AddressRecord, OutcomeCounts, RecordedEvent, Timestamp};
use crate::store::address_hash::AddressHash;
use crate::store::keys;
use crate::store::kv::{KvSnapshot, Visit};
use crate::store::kv_store::{
    encode, hourly_slot, HourlyRow, Position, StoredAddress, StoredEntry,
};
use crate::store::{StoreError, StoreSnapshot};

/// Rows fetched from a portal at a time.
const PORTAL_ROWS: i32 = 4096;
/// A chunk handed to the stream's writer is closed at about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks read ahead of the stream's writer.
const CHUNKS_AHEAD: usize = 4;
/// The schema version of the logical stream this engine writes (`kv_store::SCHEMA_VERSION`).
const STREAM_SCHEMA: u8 = 5;

/// What the reading task hands over.
enum Message {
    Chunk(Vec<(Vec<u8>, Vec<u8>)>),
    Failed(StoreError),
    Done,
}

/// What is known once the cut is taken.
struct Cut {
    seq: u64,
    meta: Vec<(String, Vec<u8>)>,
}

/// Where [`scan`] puts the keys: a channel to the stream's writer, or nowhere (counting only).
pub(super) struct Sink {
    out: Option<mpsc::Sender<Message>>,
    chunk: Vec<(Vec<u8>, Vec<u8>)>,
    chunk_bytes: usize,
    /// Keys per kind so far.
    pub(super) kinds: BTreeMap<u8, u64>,
}

impl Sink {
    /// A sink that only counts.
    pub(super) fn counting() -> Sink {
        Sink {
            out: None,
            chunk: Vec::new(),
            chunk_bytes: 0,
            kinds: BTreeMap::new(),
        }
    }

    fn sending(out: mpsc::Sender<Message>) -> Sink {
        Sink {
            out: Some(out),
            ..Sink::counting()
        }
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        *self.kinds.entry(key[0]).or_default() += 1;
        if self.out.is_none() {
            return Ok(());
        }
        self.chunk_bytes += key.len() + value.len();
        self.chunk.push((key, value));
        if self.chunk_bytes >= CHUNK_BYTES {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<(), StoreError> {
        let Some(out) = &self.out else {
            return Ok(());
        };
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.chunk);
        self.chunk_bytes = 0;
        // The stream's reader is gone: the backup was stopped.
        out.send(Message::Chunk(chunk))
            .await
            .map_err(|_| StoreError::Closed)
    }
}

/// A cut taken, its rows still to be read.
pub(super) struct Begun {
    cut: Cut,
    chunks: mpsc::Receiver<Message>,
}

impl Begun {
    /// The cut as a [`StoreSnapshot`]; `keep` lives as long as it (the engine that reads it,
    /// for an offline export).
    pub(super) fn into_snapshot(self, keep: Option<Box<dyn Send>>) -> StoreSnapshot {
        let view = PostgresView {
            seq: self.cut.seq,
            chunks: Mutex::new(Some(self.chunks)),
            _keep: keep,
        };
        StoreSnapshot::of_parts(Box::new(view), Vec::new(), self.cut.meta, "postgres")
    }
}

/// Takes a cut of the database on a connection of its own and starts reading it (on the
/// engine's runtime); returns once the cut is taken (writes committed later are not in it).
pub(super) async fn begin(inner: Arc<Inner>) -> Result<Begun, StoreError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (out, chunks) = mpsc::channel(CHUNKS_AHEAD);
    tokio::spawn(read_cut(inner, ready_tx, out));
    let cut = ready_rx.await.map_err(|_| StoreError::Closed)??;
    Ok(Begun { cut, chunks })
}

/// The task behind a cut: takes it, says so, then reads every kind of key into `out`.
async fn read_cut(
    inner: Arc<Inner>,
    ready: oneshot::Sender<Result<Cut, StoreError>>,
    out: mpsc::Sender<Message>,
) {
    let mut client = match connection(&inner.pool).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let tx = match read_snapshot(&mut client, "starting a snapshot").await {
        Ok(tx) => tx,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    match cut_of(&tx).await {
        Ok(cut) => {
            if ready.send(Ok(cut)).is_err() {
                return;
            }
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    }
    let mut sink = Sink::sending(out.clone());
    let read = async {
        scan(&tx, &mut sink).await?;
        sink.send().await
    }
    .await;
    let last = match read {
        Ok(()) => Message::Done,
        Err(StoreError::Closed) => return,
        Err(e) => Message::Failed(e),
    };
    let _ = out.send(last).await;
    // The read-only transaction ends when `tx` is dropped (a rollback).
}

/// The cut's sequence number (above every change and history entry in it) and the metadata the
/// stream carries.
async fn cut_of(tx: &deadpool_postgres::Transaction<'_>) -> Result<Cut, StoreError> {
    let changes = change_head(tx, "reading the change log's head").await?;
    // Sequences are outside transactions: this is at least every number the cut holds.
    let history: i64 = tx
        .query_one("SELECT last_value FROM history_seq", &[])
        .await
        .map_err(sql_error("reading the history's sequence"))?
        .get(0);
    let mut meta = vec![
        ("schema_version".to_string(), vec![STREAM_SCHEMA]),
        ("plain_data".to_string(), vec![1]),
    ];
    for row in tx
        .query(
            "SELECT name, value FROM suppressd_meta
             WHERE name IN ('address_key', 'token_secret') ORDER BY name",
            &[],
        )
        .await
        .map_err(sql_error("reading the store's keys"))?
    {
        meta.push((row.get(0), row.get(1)));
    }
    Ok(Cut {
        seq: u64::try_from(changes.max(history)).unwrap_or(0),
        meta,
    })
}

/// The cut as the backup stream reads it.
struct PostgresView {
    seq: u64,
    chunks: Mutex<Option<mpsc::Receiver<Message>>>,
    /// What must live while the cut is read (the engine of an offline export).
    _keep: Option<Box<dyn Send>>,
}

impl KvSnapshot for PostgresView {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn scan(&self, visit: Visit<'_>) -> Result<(), StoreError> {
        let mut chunks = self
            .chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| StoreError::engine("snapshot", "a cut is read once"))?;
        // Blocking: `write_to` runs off the async workers.
        while let Some(message) = chunks.blocking_recv() {
            match message {
                Message::Chunk(entries) => {
                    for (k, v) in &entries {
                        if !visit(k, v)? {
                            return Ok(());
                        }
                    }
                }
                Message::Failed(e) => return Err(e),
                Message::Done => return Ok(()),
            }
        }
        Err(StoreError::engine(
            "reading the snapshot",
            "the postgres engine stopped before the end",
        ))
    }
}

/// The 16 bytes of a timed key's instant: `inv(at) inv(seq)` (`keys::timed`).
fn instant(at: i64, seq: i64) -> [u8; 16] {
    let mut i = [0u8; 16];
    i[..8].copy_from_slice(&keys::inv_ts(Timestamp(at)));
    i[8..].copy_from_slice(&(!(seq as u64)).to_be_bytes());
    i
}

/// `inv(at) inv(seq)` (the last 16 bytes of a timed key) back to (at, seq).
pub(super) fn instant_parts(instant: [u8; 16]) -> (i64, i64) {
    let (t, s) = instant.split_at(8);
    let t = u64::from_be_bytes(t.try_into().expect("8 bytes"));
    let s = u64::from_be_bytes(s.try_into().expect("8 bytes"));
    let at = ((!t) ^ (1u64 << 63)) as i64;
    (at, i64::try_from(!s).unwrap_or(i64::MAX))
}

/// A page cursor of the embedded engines (one of their keys, as the page tokens of a store
/// migrated here hold it) as this engine's (at, seq, skip): the bounce listings' `T` keys, and
/// the history's `L` keys followed by the count of the entry's items given. `None` for any
/// other cursor (this engine's start with a time's first byte, never a kind's letter).
pub(super) fn embedded_cursor(cursor: &[u8]) -> Option<(i64, i64, u32)> {
    match *cursor.first()? {
        keys::BOUNCES if cursor.len() >= 19 => {
            let (at, seq) = instant_parts(keys::instant_of(cursor)?);
            Some((at, seq, 0))
        }
        keys::LOG if cursor.len() >= 36 => {
            let (key, given) = cursor.split_at(cursor.len() - 1);
            let (at, seq) = instant_parts(keys::instant_of(key)?);
            Some((at, seq, u32::from(given[0])))
        }
        _ => None,
    }
}

/// A suppression listing's cursor of the embedded engines (a `Y tenant 0 inv(since) ah` key)
/// as this engine's (since, address hash); `None` for any other.
pub(super) fn embedded_suppression_cursor(cursor: &[u8]) -> Option<Vec<u8>> {
    if *cursor.first()? != keys::SUPPRESSED || cursor.len() < 27 {
        return None;
    }
    let n = cursor.len();
    let inv = u64::from_be_bytes(cursor[n - 24..n - 16].try_into().ok()?);
    let since = ((!inv) ^ (1u64 << 63)) as i64;
    let mut c = since.to_be_bytes().to_vec();
    c.extend_from_slice(&cursor[n - 16..]);
    Some(c)
}

fn hash(row: &Row, at: usize) -> Result<AddressHash, StoreError> {
    let bytes: Vec<u8> = row.get(at);
    AddressHash::from_slice(&bytes)
        .ok_or_else(|| StoreError::corrupt(&bytes, "an address hash of the wrong length"))
}

fn counts(row: &Row, from: usize) -> OutcomeCounts {
    let n = |i: usize| u64::try_from(row.get::<_, i64>(from + i)).unwrap_or(0);
    OutcomeCounts {
        sent: n(0),
        delivered: n(1),
        hard: n(2),
        soft: n(3),
        block: n(4),
        complaint: n(5),
        unsubscribe: n(6),
        to_accept_all: n(7),
    }
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Runs `sql` through a portal, turning each row into entries with `each`, into `sink`.
async fn rows(
    tx: &Transaction<'_>,
    sink: &mut Sink,
    what: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    mut each: impl FnMut(&Row, &mut Entries) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let portal = tx
        .bind(sql, params)
        .await
        .map_err(sql_error(format!("reading {what}")))?;
    let mut out = Vec::new();
    loop {
        let batch = tx
            .query_portal(&portal, PORTAL_ROWS)
            .await
            .map_err(sql_error(format!("reading {what}")))?;
        for row in &batch {
            each(row, &mut out)?;
        }
        for (k, v) in out.drain(..) {
            sink.put(k, v).await?;
        }
        if batch.len() < PORTAL_ROWS as usize {
            return Ok(());
        }
    }
}

const COUNTER_COLUMNS: &str =
    "sent, delivered, hard, soft, block, complaint, unsubscribe, to_accept_all";

/// Reads every kind of key of the cut into `sink`, kind after kind in key order.
pub(super) async fn scan(tx: &Transaction<'_>, sink: &mut Sink) -> Result<(), StoreError> {
    // D: daily counters.
    rows(
        tx,
        sink,
        "daily counters",
        &format!(
            "SELECT tenant, dimension, value, bucket, {COUNTER_COLUMNS} FROM counters
             WHERE granularity = 1
             ORDER BY tenant COLLATE \"C\", dimension, value COLLATE \"C\", bucket"
        ),
        &[],
        |row, out| {
            // Rows of zeros too (a reclassification can take every count of a bucket away):
            // a copy holds the rows its source held.
            let mut k = keys::dimension_prefix(
                keys::DAILY,
                row.get(0),
                row.get::<_, i16>(1) as u8,
                row.get(2),
            );
            k.extend_from_slice(&keys::ordered_i64(row.get(3)));
            out.push((k, encode(&counts(row, 4))?));
            Ok(())
        },
    )
    .await?;
    // F: the change log.
    rows(
        tx,
        sink,
        "the change log",
        "SELECT tenant, seq, change FROM changes ORDER BY tenant COLLATE \"C\", seq",
        &[],
        |row, out| {
            let seq = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            out.push((keys::change(row.get(0), seq), row.get(2)));
            Ok(())
        },
    )
    .await?;
    // G: delivered addresses, in the form without a keyring (the local part in the key).
    rows(
        tx,
        sink,
        "delivered addresses",
        "SELECT tenant, domain, local_part FROM delivered_addresses WHERE local_part <> ''
         ORDER BY tenant COLLATE \"C\", domain COLLATE \"C\", local_part COLLATE \"C\"",
        &[],
        |row, out| {
            out.push((
                keys::plain_good_address(row.get(0), row.get(1), row.get(2)),
                Vec::new(),
            ));
            Ok(())
        },
    )
    .await?;
    // I: change log horizons.
    rows(
        tx,
        sink,
        "change log horizons",
        "SELECT tenant, horizon FROM change_horizons ORDER BY tenant COLLATE \"C\"",
        &[],
        |row, out| {
            let horizon = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            out.push((keys::horizon(row.get(0)), encode(&horizon)?));
            Ok(())
        },
    )
    .await?;
    // K: delivered addresses per domain.
    rows(
        tx,
        sink,
        "delivered domains",
        "SELECT tenant, domain, count(*) FROM delivered_addresses WHERE local_part <> ''
         GROUP BY tenant, domain ORDER BY tenant COLLATE \"C\", domain COLLATE \"C\"",
        &[],
        |row, out| {
            let n = u64::try_from(row.get::<_, i64>(2)).unwrap_or(0);
            out.push((
                keys::exact(keys::GOOD_DOMAIN, &[row.get(0)], row.get(1)),
                encode(&n)?,
            ));
            Ok(())
        },
    )
    .await?;
    // L: history entries, a send result's with its event.
    rows(
        tx,
        sink,
        "history",
        "SELECT h.tenant, h.address_hash, h.at, h.seq, h.entry, e.event FROM history h
         LEFT JOIN events e ON e.tenant = h.tenant AND e.event_id = h.event_id
         ORDER BY h.tenant COLLATE \"C\", h.address_hash, h.at DESC, h.seq DESC",
        &[],
        |row, out| {
            let ah = hash(row, 1)?;
            let mut entry: StoredEntry = decoded("history.entry", &row.get::<_, Vec<u8>>(4))?;
            if let Some(event) = row.get::<_, Option<Vec<u8>>>(5) {
                entry.event = Some(decoded::<RecordedEvent>("events.event", &event)?);
            }
            let key = keys::at_instant(
                &keys::history(row.get(0), &ah),
                &instant(row.get(2), row.get(3)),
            );
            out.push((key, encode(&entry)?));
            Ok(())
        },
    )
    .await?;
    // M: domain marks.
    rows(
        tx,
        sink,
        "domain marks",
        "SELECT tenant, domain, marks FROM domains WHERE marks IS NOT NULL
         ORDER BY tenant COLLATE \"C\", domain COLLATE \"C\"",
        &[],
        |row, out| {
            out.push((keys::domain(row.get(0), row.get(1)), row.get(2)));
            Ok(())
        },
    )
    .await?;
    // N: each domain's activity, then its history entries.
    rows(
        tx,
        sink,
        "domain activity and history",
        "SELECT * FROM (
             SELECT tenant, domain, 0 AS h, 0::int8 AS at, 0::int8 AS seq, activity AS v
             FROM domains WHERE activity IS NOT NULL
             UNION ALL
             SELECT tenant, domain, 1, at, seq, change FROM domain_history) u
         ORDER BY tenant COLLATE \"C\", domain COLLATE \"C\", h, at DESC, seq DESC",
        &[],
        |row, out| {
            let prefix = keys::domain_log(row.get(0), row.get(1));
            let key = if row.get::<_, i32>(2) == 0 {
                prefix
            } else {
                keys::at_instant(&prefix, &instant(row.get(3), row.get(4)))
            };
            out.push((key, row.get(5)));
            Ok(())
        },
    )
    .await?;
    // P: where each event's history entry is.
    rows(
        tx,
        sink,
        "events",
        "SELECT tenant, event_id, address_hash, occurred_at, seq FROM events
         ORDER BY tenant COLLATE \"C\", event_id COLLATE \"C\"",
        &[],
        |row, out| {
            let position = Position {
                ah: hash(row, 2)?,
                instant: instant(row.get(3), row.get(4)),
            };
            out.push((keys::position(row.get(0), row.get(1)), position.to_bytes()));
            Ok(())
        },
    )
    .await?;
    // R: address records.
    rows(
        tx,
        sink,
        "addresses",
        "SELECT tenant, address_hash, address, record FROM addresses WHERE record IS NOT NULL
         ORDER BY tenant COLLATE \"C\", address_hash",
        &[],
        |row, out| {
            let record: AddressRecord = decoded("addresses.record", &row.get::<_, Vec<u8>>(3))?;
            let stored = StoredAddress::plain(row.get(2), record);
            out.push((keys::record(row.get(0), &hash(row, 1)?), encode(&stored)?));
            Ok(())
        },
    )
    .await?;
    // T: bounces by source.
    rows(
        tx,
        sink,
        "bounces",
        "SELECT tenant, source, occurred_at, seq, address_hash FROM events WHERE is_bounce
         ORDER BY tenant COLLATE \"C\", source COLLATE \"C\", occurred_at DESC, seq DESC",
        &[],
        |row, out| {
            let prefix = keys::prefix(keys::BOUNCES, &[row.get(0), row.get(1)]);
            let key = keys::at_instant(&prefix, &instant(row.get(2), row.get(3)));
            out.push((key, hash(row, 4)?.bytes().to_vec()));
            Ok(())
        },
    )
    .await?;
    // U: addresses unsubscribed from a list.
    rows(
        tx,
        sink,
        "list unsubscribes",
        "SELECT tenant, address_hash FROM addresses WHERE list_unsubscribed AND record IS NOT NULL
         ORDER BY tenant COLLATE \"C\", address_hash",
        &[],
        |row, out| {
            out.push((
                keys::list_unsubscribed(row.get(0), &hash(row, 1)?),
                Vec::new(),
            ));
            Ok(())
        },
    )
    .await?;
    // V: dimension values.
    rows(
        tx,
        sink,
        "dimension values",
        "SELECT tenant, dimension, value FROM dimension_values
         ORDER BY tenant COLLATE \"C\", dimension, value COLLATE \"C\"",
        &[],
        |row, out| {
            out.push((
                keys::dimension_prefix(
                    keys::VALUES,
                    row.get(0),
                    row.get::<_, i16>(1) as u8,
                    row.get(2),
                ),
                Vec::new(),
            ));
            Ok(())
        },
    )
    .await?;
    // W: hourly counters, a row per dimension value and UTC day.
    let mut day: Option<(Vec<u8>, HourlyRow)> = None;
    let mut done: Entries = Vec::new();
    rows(
        tx,
        sink,
        "hourly counters",
        &format!(
            "SELECT tenant, dimension, value, bucket, {COUNTER_COLUMNS} FROM counters
             WHERE granularity = 0
             ORDER BY tenant COLLATE \"C\", dimension, value COLLATE \"C\", bucket"
        ),
        &[],
        |row, out| {
            let c = counts(row, 4);
            let prefix = keys::dimension_prefix(
                keys::HOURS,
                row.get(0),
                row.get::<_, i16>(1) as u8,
                row.get(2),
            );
            let (key, hour) = hourly_slot(prefix, row.get(3));
            if day.as_ref().is_some_and(|(k, _)| *k != key) {
                if let Some((k, r)) = day.take() {
                    out.push((k, encode(&r)?));
                }
            }
            let (_, r) = day.get_or_insert_with(|| (key, HourlyRow::default()));
            r.hour_mut(hour).add(&c);
            Ok(())
        },
    )
    .await?;
    if let Some((k, r)) = day.take() {
        done.push((k, encode(&r)?));
    }
    for (k, v) in done {
        sink.put(k, v).await?;
    }
    // Y: suppressed addresses by time, newest first.
    rows(
        tx,
        sink,
        "suppressions",
        "SELECT tenant, suppressed_since, address_hash FROM addresses
         WHERE suppressed_since IS NOT NULL AND record IS NOT NULL
         ORDER BY tenant COLLATE \"C\", suppressed_since DESC, address_hash",
        &[],
        |row, out| {
            out.push((
                keys::suppressed(row.get(0), Timestamp(row.get(1)), &hash(row, 2)?),
                Vec::new(),
            ));
            Ok(())
        },
    )
    .await?;
    // Z: what ends by itself, soonest first.
    rows(
        tx,
        sink,
        "expiries",
        "SELECT tenant, ends_at, address_hash FROM expiries
         ORDER BY tenant COLLATE \"C\", ends_at, address_hash",
        &[],
        |row, out| {
            out.push((
                keys::expiry(row.get(0), Timestamp(row.get(1)), &hash(row, 2)?),
                Vec::new(),
            ));
            Ok(())
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::read::cursor_of;

    #[test]
    fn an_instant_reads_back_as_its_time_and_sequence_number() {
        for (at, seq) in [(0, 1), (1_764_900_000_123_456, 42), (-5, i64::MAX)] {
            assert_eq!(instant_parts(instant(at, seq)), (at, seq));
        }
    }

    #[test]
    fn cursors_of_the_embedded_engines_read_as_this_engines() {
        let at = Timestamp(1_764_900_000_123_456);
        let ah = AddressHash::from_slice(&[7; 16]).unwrap();
        let by_source = keys::timed(&keys::prefix(keys::BOUNCES, &["acme", "crm"]), at, 99);
        assert_eq!(embedded_cursor(&by_source), Some((at.micros(), 99, 0)));
        let all = keys::timed(&keys::prefix(keys::BOUNCES, &["acme"]), at, 99);
        assert_eq!(embedded_cursor(&all), Some((at.micros(), 99, 0)));
        let mut history = keys::timed(&keys::history("acme", &ah), at, 12);
        history.push(1);
        assert_eq!(embedded_cursor(&history), Some((at.micros(), 12, 1)));
        let listed = keys::suppressed("acme", at, &ah);
        let mut expected = at.micros().to_be_bytes().to_vec();
        expected.extend_from_slice(&[7; 16]);
        assert_eq!(embedded_suppression_cursor(&listed), Some(expected));
        // This engine's own cursors are left as they are.
        assert_eq!(embedded_cursor(&cursor_of(at.micros(), 99, 0)), None);
        assert_eq!(
            embedded_suppression_cursor(&cursor_of(at.micros(), 99, 0)),
            None
        );
    }
}
