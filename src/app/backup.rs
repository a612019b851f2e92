//! Online backups (`Backup`): a consistent cut of the whole store, written out as the backup
//! stream (`store::snapshot`) while the service keeps serving and ingesting. The cut holds
//! exactly the writes committed up to its sequence number; writes acknowledged after it are not
//! in it.
//!
//! A backup holds every tenant's data and the store's secrets (the page-token secret, the
//! address-hash key, the data keys of every address not forgotten at the cut), so only an
//! admin of every tenant may take one.

use tokio::sync::mpsc;

use super::{AppError, Caller, Context};
use crate::domain::{Role, TenantScope, Timestamp};

/// Bytes of the stream per message.
const CHUNK_BYTES: usize = 1 << 20;
/// Messages buffered between the scan and the caller: a slow caller slows the scan.
const BUFFERED_CHUNKS: usize = 4;
/// How long the scan waits for a caller that stopped reading before it gives the backup up:
/// while a backup is read no checkpoint runs, so a stalled caller would stop the ingest once
/// the journal's tables are full.
const STALLED_CALLER: std::time::Duration = std::time::Duration::from_secs(60);

/// Takes backups.
#[derive(Clone)]
pub struct Backups {
    context: Context,
}

/// A backup being written: its cut, and its bytes as they come.
#[derive(Debug)]
pub struct BackupStream {
    /// The last sequence number committed at the cut.
    pub seq: u64,
    /// When the cut was taken.
    pub created_at: Timestamp,
    /// The stream's bytes in order, in pieces; an error ends it (what came before is not a
    /// whole backup).
    pub chunks: mpsc::Receiver<Result<Vec<u8>, AppError>>,
}

/// The bytes of the stream, sent on in pieces of [`CHUNK_BYTES`].
struct ChunkSender {
    tx: mpsc::Sender<Result<Vec<u8>, AppError>>,
    buf: Vec<u8>,
    runtime: tokio::runtime::Handle,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.runtime
            .block_on(self.tx.send_timeout(Ok(piece), STALLED_CALLER))
            .map_err(|e| match e {
                mpsc::error::SendTimeoutError::Timeout(_) => std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the caller read nothing for {} s: backup given up",
                        STALLED_CALLER.as_secs()
                    ),
                ),
                mpsc::error::SendTimeoutError::Closed(_) => std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the caller of the backup went away",
                ),
            })
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Backups {
    pub(super) fn new(context: Context) -> Self {
        Backups { context }
    }

    /// Takes the cut (between two group commits) and starts writing it out on a blocking
    /// thread. Dropping the stream's receiver stops the scan.
    pub async fn start(&self, caller: &Caller) -> Result<BackupStream, AppError> {
        caller.require(Role::Admin)?;
        if !matches!(caller.principal().tenants(), TenantScope::All) {
            return Err(AppError::PermissionDenied(format!(
                "a backup holds every tenant's data: principal {} is not one of every tenant",
                caller.principal().name()
            )));
        }
        let snapshot = self.context.store.snapshot().await?;
        let created_at = self.context.clock.now();
        let seq = snapshot.seq();
        let (tx, chunks) = mpsc::channel(BUFFERED_CHUNKS);
        let actor = caller.actor().to_string();
        tracing::info!(seq, by = %actor, "backup started");
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut out = ChunkSender {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK_BYTES),
                runtime,
            };
            match snapshot.write_to(&mut out, created_at, &mut |_| {}) {
                Ok(summary) => tracing::info!(
                    seq,
                    entries = summary.entries,
                    bytes = summary.bytes,
                    secs = started.elapsed().as_secs_f64(),
                    "backup written"
                ),
                Err(e) => {
                    tracing::warn!(seq, error = %crate::store::ErrorChain(&e), "backup stopped");
                    let _ = tx.blocking_send(Err(AppError::Store(e)));
                }
            }
        });
        Ok(BackupStream {
            seq,
            created_at,
            chunks,
        })
    }
}
