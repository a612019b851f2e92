//! Backups, restores and moves between engines, all through one stream format (`snapshot`):
//!
//! - online: [`StoreSnapshot`], a consistent cut of a running store
//!   ([`super::SuppressionStore::snapshot`]), written out while the store keeps taking writes;
//! - offline: [`export`] reads a data directory that no server holds;
//! - [`restore`] writes a stream into an empty data directory of any engine, in large sorted
//!   transactions, then checks what the engine holds against the stream (entries per kind of
//!   key, and a digest of every entry).
//!
//! `suppressd migrate` is [`export`] piped into [`restore`].
//!
//! A restore writes a marker file ([`RESTORE_MARKER`]) into the directory first and removes it
//! last: a store refuses to open a directory that still holds it, and a restore run again
//! over such a directory empties it and starts over. Any other non-empty directory is refused.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::journal;
use super::keyring::KEYRING_FILE;
use super::kv::{KvEngine, KvSnapshot};
use super::kv_store::SCHEMA_VERSION;
use super::snapshot::{EntryDigest, Header, Part, SnapshotReader, SnapshotWriter, Summary};
use super::{redb_engine, sled_engine, Engine, StoreError, StoreOptions, REDB_FILE};
use crate::domain::Timestamp;

/// The engine metadata a backup carries: what the stored keys and values mean (the
/// address-hash key, the schema version and whether old plain values may be present), the
/// page-token secret (tokens handed out before stay valid) and the id that ties the keyring
/// file to the data.
pub(super) const CARRIED_META: [&str; 5] = [
    "schema_version",
    "address_key",
    "token_secret",
    "keyring_id",
    "plain_data",
];

/// The file that marks a data directory whose restore has not finished.
pub const RESTORE_MARKER: &str = "RESTORE_INCOMPLETE";

/// Bytes of keys and values written per restore transaction.
const RESTORE_BATCH_BYTES: usize = 64 << 20;

/// How far a backup or restore has come.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Entries written.
    pub entries: u64,
    /// Bytes of the stream written or read.
    pub bytes: u64,
}

/// A consistent cut of a store: exactly the writes committed up to [`StoreSnapshot::seq`].
/// While it lives, the store's checkpoints wait (the journal keeps taking writes in memory; a
/// writer whose second table fills waits for the snapshot to be dropped).
pub struct StoreSnapshot {
    view: Box<dyn KvSnapshot>,
    keyring: Vec<u8>,
    meta: Vec<(String, Vec<u8>)>,
    engine: &'static str,
}

impl std::fmt::Debug for StoreSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSnapshot")
            .field("seq", &self.view.seq())
            .field("engine", &self.engine)
            .finish()
    }
}

impl StoreSnapshot {
    pub(super) fn new<E: KvEngine>(
        engine: &E,
        view: Box<dyn KvSnapshot>,
        keyring: Vec<u8>,
    ) -> Result<StoreSnapshot, StoreError> {
        let mut meta = Vec::new();
        for name in CARRIED_META {
            if let Some(value) = engine.meta_get(name)? {
                meta.push((name.to_string(), value));
            }
        }
        Ok(StoreSnapshot {
            view,
            keyring,
            meta,
            engine: engine.name(),
        })
    }

    /// A cut read by an engine without a [`KvEngine`] (postgres): its view, keyring file and
    /// carried metadata.
    pub(super) fn of_parts(
        view: Box<dyn KvSnapshot>,
        keyring: Vec<u8>,
        meta: Vec<(String, Vec<u8>)>,
        engine: &'static str,
    ) -> StoreSnapshot {
        StoreSnapshot {
            view,
            keyring,
            meta,
            engine,
        }
    }

    /// The last sequence number committed at the cut.
    pub fn seq(&self) -> u64 {
        self.view.seq()
    }

    /// Writes the snapshot as a backup stream into `out` (blocking: run it off the async
    /// workers). `progress` is called every few thousand entries.
    pub fn write_to(
        self,
        out: &mut dyn Write,
        created_at: Timestamp,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Summary, StoreError> {
        let schema_version = self
            .meta
            .iter()
            .find(|(n, _)| n == "schema_version")
            .and_then(|(_, v)| v.first().copied())
            .unwrap_or(SCHEMA_VERSION);
        let header = Header {
            created_at_micros: created_at.micros(),
            seq: self.view.seq(),
            schema_version: u32::from(schema_version),
            source_engine: self.engine.to_string(),
        };
        let mut writer = SnapshotWriter::new(out, &header)?;
        for (name, value) in &self.meta {
            writer.meta(name, value)?;
        }
        writer.keyring(&self.keyring)?;
        self.view.scan(&mut |k, v| {
            writer.entry(k, v)?;
            if writer.entries() % 8192 == 0 {
                progress(Progress {
                    entries: writer.entries(),
                    bytes: writer.bytes(),
                });
            }
            Ok(true)
        })?;
        let (summary, _) = writer.finish()?;
        progress(Progress {
            entries: summary.entries,
            bytes: summary.bytes,
        });
        Ok(summary)
    }
}

fn io(what: String, e: std::io::Error) -> StoreError {
    StoreError::engine(what, e)
}

/// Whether `dir` holds a store of `engine`.
fn holds_data(engine: Engine, dir: &Path) -> bool {
    match engine {
        Engine::Sled => sled_engine::holds_sled_data(dir),
        Engine::Redb => dir.join(REDB_FILE).is_file(),
        Engine::Postgres => false,
    }
}

/// Writes the store in `options.path`, which no server may hold, as a backup stream into `out`
/// (what is journaled is replayed into the engine first, as a server's start would).
pub fn export(
    options: &StoreOptions,
    out: &mut dyn Write,
    created_at: Timestamp,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary, StoreError> {
    if options.engine == Engine::Postgres {
        let url = options.database_url.as_deref().ok_or_else(needs_url)?;
        return super::postgres::export_cut(url)?.write_to(out, created_at, progress);
    }
    if !holds_data(options.engine, &options.path) {
        return Err(StoreError::Backup(format!(
            "{} holds no {} data directory",
            options.path.display(),
            options.engine.name()
        )));
    }
    refuse_unfinished_restore(&options.path)?;
    let keyring = match std::fs::read(options.path.join(KEYRING_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(io(
                format!("cannot read the keyring of {}", options.path.display()),
                e,
            ))
        }
    };
    fn run<E: KvEngine>(
        engine: E,
        keyring: Vec<u8>,
        out: &mut dyn Write,
        created_at: Timestamp,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Summary, StoreError> {
        let view = engine.snapshot()?;
        StoreSnapshot::new(&engine, view, keyring)?.write_to(out, created_at, progress)
    }
    match options.engine {
        Engine::Sled => run(
            super::sled_engine(options)?,
            keyring,
            out,
            created_at,
            progress,
        ),
        Engine::Redb => run(
            super::redb_engine(options)?,
            keyring,
            out,
            created_at,
            progress,
        ),
        Engine::Postgres => Err(needs_url()),
    }
}

/// The postgres engine is reached by a URL, not a directory.
fn needs_url() -> StoreError {
    StoreError::Backup("the postgres engine needs a database URL".into())
}

/// Refuses a data directory whose restore did not finish.
pub(super) fn refuse_unfinished_restore(dir: &Path) -> Result<(), StoreError> {
    if dir.join(RESTORE_MARKER).exists() {
        return Err(StoreError::Backup(format!(
            "{} holds a restore that did not finish: run the restore again (it starts over) or \
             remove the directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Makes `dir` ready for a restore: created if missing; if it holds anything, it must be an
/// unfinished restore (its marker), whose contents are removed. Leaves the marker in it.
fn prepare_target(dir: &Path) -> Result<(), StoreError> {
    let cannot = |what: &str, e| io(format!("cannot {what} {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| cannot("create", e))?;
    let entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| cannot("read", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| cannot("read", e))?;
    if !entries.is_empty() {
        if !dir.join(RESTORE_MARKER).exists() {
            return Err(StoreError::Backup(format!(
                "{} is not empty: restore only into a new or empty directory",
                dir.display()
            )));
        }
        tracing::info!(dir = %dir.display(), "starting over an unfinished restore");
        for entry in entries {
            let path = entry.path();
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| io(format!("cannot remove {}", path.display()), e))?;
        }
    }
    File::create(dir.join(RESTORE_MARKER))
        .and_then(|f| f.sync_all())
        .map_err(|e| cannot("write into", e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(format!("cannot sync {}", dir.display()), e))
}

/// What a restore wrote and checked.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The stream's header.
    pub header: Header,
    /// The stream's summary (its trailer, checked).
    pub summary: Summary,
}

/// Restores a backup stream into `dir` (new, empty, or an unfinished restore) with `engine`,
/// then checks the engine's entries per kind of key and their digest against the stream.
pub fn restore(
    input: &mut dyn Read,
    engine: Engine,
    dir: &Path,
    cache_bytes: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<Restored, StoreError> {
    let mut reader = SnapshotReader::open(input)?;
    let header = reader.header().clone();
    if header.schema_version > u32::from(SCHEMA_VERSION) {
        return Err(StoreError::SchemaTooNew {
            path: "the backup".into(),
            found: header.schema_version.min(255) as u8,
            supported: SCHEMA_VERSION,
        });
    }
    if engine == Engine::Postgres {
        return Err(needs_url());
    }
    prepare_target(dir)?;
    let restored = match engine {
        Engine::Sled => write_into(
            sled_engine::SledEngine::open(dir, cache_bytes)?,
            &mut reader,
            dir,
            progress,
        ),
        Engine::Redb => write_into(
            redb_engine::RedbEngine::open(dir, usize::try_from(cache_bytes).unwrap_or(usize::MAX))?,
            &mut reader,
            dir,
            progress,
        ),
        Engine::Postgres => Err(needs_url()),
    }?;
    std::fs::remove_file(dir.join(RESTORE_MARKER))
        .map_err(|e| io(format!("cannot finish the restore in {}", dir.display()), e))?;
    sync_dir(dir)?;
    Ok(Restored {
        header,
        summary: restored,
    })
}

/// Restores a backup stream into the postgres database at `url`, which must hold no suppressd
/// data: in one transaction, checked before it commits by the entries per kind of key that the
/// restored rows read back as (see `postgres::restore`). A restore that fails leaves the
/// database as it was; running it again starts over.
pub fn restore_postgres(
    input: &mut dyn Read,
    url: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<Restored, StoreError> {
    let mut reader = SnapshotReader::open(input)?;
    let header = reader.header().clone();
    if header.schema_version > u32::from(SCHEMA_VERSION) {
        return Err(StoreError::SchemaTooNew {
            path: "the backup".into(),
            found: header.schema_version.min(255) as u8,
            supported: SCHEMA_VERSION,
        });
    }
    if header.schema_version < u32::from(SCHEMA_VERSION) {
        return Err(StoreError::Backup(format!(
            "the backup holds schema version {} data, which the postgres engine does not take: \
             restore it into sled or redb, open it there once (it is brought up to date), then \
             migrate",
            header.schema_version
        )));
    }
    let (parts, received) = std::sync::mpsc::sync_channel(4);
    let target = url.to_string();
    let seq = header.seq;
    let worker = std::thread::Builder::new()
        .name("suppressd-restore".into())
        .spawn(move || super::postgres::restore_stream(&target, seq, received))
        .map_err(|e| StoreError::engine("cannot start the restore", e))?;
    let mut entries = 0u64;
    let read = loop {
        let part = match reader.next_part() {
            Ok(part) => part,
            Err(e) => break Err(e),
        };
        let end = match &part {
            Part::End(summary) => Some(summary.clone()),
            Part::Data(chunk) => {
                entries += chunk.entries().count() as u64;
                progress(Progress {
                    entries,
                    bytes: reader.offset(),
                });
                None
            }
            _ => None,
        };
        // A send fails once the restore stopped: its own error says why.
        if parts.send(part).is_err() {
            break Err(StoreError::Closed);
        }
        if let Some(summary) = end {
            break Ok(summary);
        }
    };
    // A stream that cannot be read to its end stops the restore, which then keeps nothing.
    drop(parts);
    let written = worker
        .join()
        .map_err(|_| StoreError::engine("restoring", "the restore thread panicked"))?;
    match (read, written) {
        (Err(e), _) if !matches!(e, StoreError::Closed) => Err(e),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
        (Ok(summary), Ok(_)) => {
            progress(Progress {
                entries: summary.entries,
                bytes: summary.bytes,
            });
            Ok(Restored { header, summary })
        }
    }
}

/// Writes the stream's parts into `engine` (data in sorted transactions of about
/// [`RESTORE_BATCH_BYTES`]), then checks it.
fn write_into<E: KvEngine>(
    engine: E,
    reader: &mut SnapshotReader<&mut dyn Read>,
    dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary, StoreError> {
    let seq = reader.header().seq;
    let mut meta: Vec<(String, Vec<u8>)> = Vec::new();
    let mut keyring: Option<File> = None;
    let keyring_path = dir.join(KEYRING_FILE);
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut written = 0u64;
    let mut digest = EntryDigest::default();
    let flush = |batch: &mut Vec<(Vec<u8>, Vec<u8>)>| -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        engine.transact(|txn| {
            txn.write_sorted(
                &mut batch
                    .iter()
                    .map(|(k, v)| (k.as_slice(), Some(v.as_slice()))),
            )
        })?;
        batch.clear();
        Ok(())
    };
    let summary = loop {
        match reader.next_part()? {
            Part::Meta(name, value) => meta.push((name, value)),
            Part::Keyring(bytes) => {
                let file =
                    match &mut keyring {
                        Some(f) => f,
                        None => keyring.insert(File::create(&keyring_path).map_err(|e| {
                            io(format!("cannot create {}", keyring_path.display()), e)
                        })?),
                    };
                file.write_all(&bytes)
                    .map_err(|e| io(format!("cannot write {}", keyring_path.display()), e))?;
            }
            Part::Data(chunk) => {
                for (k, v) in chunk.entries() {
                    digest.add(k, v);
                    batch_bytes += k.len() + v.len();
                    batch.push((k.to_vec(), v.to_vec()));
                    written += 1;
                }
                if batch_bytes >= RESTORE_BATCH_BYTES {
                    flush(&mut batch)?;
                    batch_bytes = 0;
                }
                progress(Progress {
                    entries: written,
                    bytes: reader.offset(),
                });
            }
            Part::End(summary) => break summary,
        }
    };
    flush(&mut batch)?;
    // The journal state: the store goes on from the snapshot's sequence number.
    let (state_key, state) = journal::restored_state(seq);
    engine.transact(|txn| txn.put(state_key, state))?;
    for (name, value) in &meta {
        engine.meta_put(name, value)?;
    }
    if let Some(file) = keyring {
        file.sync_all()
            .map_err(|e| io(format!("cannot sync {}", keyring_path.display()), e))?;
    }
    engine.flush()?;
    verify(&engine, &summary, digest.value())?;
    sync_dir(dir)?;
    Ok(summary)
}

/// Reads everything back from the engine: the entries of each kind of key and the digest of
/// all of them must be the stream's.
fn verify<E: KvEngine>(engine: &E, summary: &Summary, expected: u64) -> Result<(), StoreError> {
    let mut kinds = std::collections::BTreeMap::<u8, u64>::new();
    let mut digest = EntryDigest::default();
    let journal_state = journal::restored_state(0).0;
    engine.scan(
        std::ops::Bound::Unbounded,
        std::ops::Bound::Unbounded,
        &mut |k, v| {
            if k != journal_state.as_slice() {
                *kinds.entry(k[0]).or_default() += 1;
                digest.add(k, v);
            }
            Ok(true)
        },
    )?;
    if kinds != summary.kinds {
        let describe = |m: &std::collections::BTreeMap<u8, u64>| {
            m.iter()
                .map(|(k, n)| format!("{}={n}", char::from(*k)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        return Err(StoreError::Backup(format!(
            "the restored store holds other counts than the backup: {} instead of {}",
            describe(&kinds),
            describe(&summary.kinds)
        )));
    }
    if digest.value() != expected {
        return Err(StoreError::Backup(
            "the restored store's entries differ from the backup's".into(),
        ));
    }
    Ok(())
}

/// Names of the kinds of keys (`keys`), for summaries.
pub fn kind_name(kind: u8) -> Option<&'static str> {
    use super::keys::*;
    Some(match kind {
        RECORD => "address_records",
        LOG => "history_entries",
        POSITION => "events",
        BOUNCES => "bounce_index",
        SUPPRESSED => "suppressed_index",
        EXPIRY => "expiry_index",
        LIST_UNSUBSCRIBED => "list_unsubscribe_index",
        GOOD_ADDRESS => "delivered_addresses",
        GOOD_DOMAIN => "delivered_per_domain",
        HOURS => "hourly_counters",
        DAILY => "daily_counters",
        VALUES => "dimension_values",
        CHANGES => "change_log",
        HORIZON => "change_log_horizons",
        DOMAIN => "domain_marks",
        DOMAIN_LOG => "domain_activity_and_history",
        OLD_EVENT => "schema3_events",
        OLD_ADDRESS => "schema3_address_records",
        OLD_HISTORY => "schema3_history_entries",
        OLD_BY_SOURCE => "schema3_bounces_by_source",
        OLD_BOUNCES => "schema3_bounces",
        OLD_SUPPRESSED => "schema3_suppressed_index",
        HOURLY => "schema1_hourly_counters",
        _ => return None,
    })
}
