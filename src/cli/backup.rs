//! `suppressd backup` (online, from a running server), `suppressd restore` and `suppressd
//! migrate` (offline, on data directories no server holds). All three move the one backup
//! stream (`store::snapshot`): a backup is the stream in a file with a manifest beside it, a
//! restore reads it into an empty data directory of any engine, a migrate pipes an offline
//! store's stream straight into a restore. See docs/operations.md.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::connect::ClientArgs;
use super::{usage, Outcome};
use crate::clock::Clock;
use crate::config::StorageEngine;
use crate::domain::Timestamp;
use crate::grpc::proto as pb;
use crate::store::snapshot::{SnapshotReader, Summary, MAJOR, MINOR};
use crate::store::{self, Progress, StoreOptions};

/// The stream's file in a backup directory.
pub const STREAM_FILE: &str = "store.snap";
/// The manifest's file in a backup directory.
pub const MANIFEST_FILE: &str = "manifest.toml";

/// Take a consistent backup of the whole store from a running server (admin role, every
/// tenant) into a new directory: `store.snap` (the backup stream) and `manifest.toml`. The
/// server keeps serving meanwhile. The backup holds the store's secrets: keep it like one.
///
/// Exit codes: 0 done; 1 the backup cannot be written; 2 a usage error (the directory is not
/// empty); 3 the server cannot be reached, refused or failed the call.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = super::CLIENT_EXIT_CODES)]
pub struct BackupArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Directory to write the backup into: new, or empty.
    #[arg(long)]
    pub to: PathBuf,
}

/// Restore a backup (`suppressd backup --to`) into a new or empty data directory (sled, redb)
/// or into a PostgreSQL database without suppressd data (postgres), offline (no server may use
/// the target meanwhile). What is restored is checked against the backup: entries per kind of
/// key (and, in a data directory, a digest of all of them).
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// Directory of the backup.
    #[arg(long)]
    pub from: PathBuf,
    /// Data directory to restore into (sled, redb): new, empty, or one whose restore did not
    /// finish (it starts over).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Storage engine to restore into.
    #[arg(long, value_enum, default_value_t = StorageEngine::Sled)]
    pub engine: StorageEngine,
    /// Database to restore into (postgres), a libpq URL: one without suppressd data. The
    /// restore is one transaction: one that fails leaves the database as it was.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The engine's page cache while restoring, in MiB.
    #[arg(long, default_value_t = 256)]
    pub cache_mb: u64,
}

/// Copy a store into a new one of another engine (or the same), offline: everything (records,
/// events, history, counters, change logs, domains, the page-token secret and the address-hash
/// key, so page tokens and address ids stay valid), checked at the end by the entries per kind
/// of key, which it prints. A data directory is given with `--*-data-dir` (sled, redb), a
/// PostgreSQL database with `--*-database-url` (postgres). Safe to run again after a failure:
/// an unfinished target directory is emptied and started over, a database target is written in
/// one transaction (a failure leaves it as it was); the source is only read.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// Engine of the source.
    #[arg(long, value_enum)]
    pub from_engine: StorageEngine,
    /// The source data directory (sled, redb; no server may hold it).
    #[arg(long)]
    pub from_data_dir: Option<PathBuf>,
    /// The source database (postgres), a libpq URL. It is read in one consistent snapshot, so
    /// servers may keep using it; writes after the snapshot are not copied.
    #[arg(long)]
    pub from_database_url: Option<String>,
    /// Engine of the target.
    #[arg(long, value_enum)]
    pub to_engine: StorageEngine,
    /// The new data directory (sled, redb): new, empty, or an unfinished migration's.
    #[arg(long)]
    pub to_data_dir: Option<PathBuf>,
    /// The target database (postgres), a libpq URL: one without suppressd data, that no server
    /// uses meanwhile.
    #[arg(long)]
    pub to_database_url: Option<String>,
    /// Each engine's page cache, in MiB.
    #[arg(long, default_value_t = 256)]
    pub cache_mb: u64,
}

/// Where a store is: a data directory, or a database.
#[derive(Debug, Clone, PartialEq)]
enum Location {
    Dir(PathBuf),
    Database(String),
}

impl Location {
    /// The location that `engine` needs, from the flags given (named in usage errors).
    fn of(
        engine: StorageEngine,
        dir: Option<&PathBuf>,
        url: Option<&String>,
        dir_flag: &str,
        url_flag: &str,
    ) -> anyhow::Result<Location> {
        match (engine, dir, url) {
            (StorageEngine::Postgres, None, Some(url)) => Ok(Location::Database(url.clone())),
            (StorageEngine::Postgres, _, _) => Err(usage(format!(
                "the postgres engine is reached by {url_flag} (and takes no {dir_flag})"
            ))),
            (_, Some(dir), None) => Ok(Location::Dir(dir.clone())),
            (engine, _, _) => Err(usage(format!(
                "the {} engine keeps a data directory: give {dir_flag} (and no {url_flag})",
                crate::store::Engine::from(engine).name()
            ))),
        }
    }

    /// How messages name it: the directory, or the database URL without its password.
    fn describe(&self) -> String {
        match self {
            Location::Dir(dir) => dir.display().to_string(),
            Location::Database(url) => without_password(url),
        }
    }
}

/// `url` with the password of its user part (`user:password@`) left out.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// `manifest.toml`: what a backup directory holds, for people and for `restore`, which checks
/// the stream against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// The stream's format version, `major.minor`.
    format: String,
    /// The stream's file.
    file: String,
    /// When the snapshot was taken (RFC 3339).
    created_at: String,
    /// The last sequence number committed at the snapshot.
    snapshot_seq: u64,
    /// The stored data's schema version.
    schema_version: u32,
    /// The engine it was read from.
    source_engine: String,
    /// Bytes of the stream.
    bytes: u64,
    /// Entries in all.
    entries: u64,
    /// Bytes of the keyring (per-address data keys).
    keyring_bytes: u64,
    /// xxh3 of the stream before its trailer, in hex.
    digest: String,
    /// Entries per kind of key.
    counts: BTreeMap<String, u64>,
}

/// Entries per kind of key, by name.
fn counts(summary: &Summary) -> BTreeMap<String, u64> {
    summary
        .kinds
        .iter()
        .map(|(&kind, &n)| {
            let name = store::kind_name(kind)
                .map(str::to_string)
                .unwrap_or_else(|| format!("kind_{kind:02x}"));
            (name, n)
        })
        .collect()
}

/// Progress on stderr: a bar on a terminal, a plain line every few seconds otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    what: &'static str,
    last_line: Instant,
}

impl Reporter {
    fn new(what: &'static str, total_bytes: Option<u64>) -> Reporter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(total_bytes, ProgressDrawTarget::stderr());
            let template = if total_bytes.is_some() {
                "{bar:30} {percent:>3}% {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}"
            } else {
                "{spinner} {bytes} ({bytes_per_sec}) {msg}"
            };
            bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
            bar
        });
        Reporter {
            bar,
            what,
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, p: Progress) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(p.bytes);
                bar.set_message(format!("{} entries", p.entries));
            }
            None if self.last_line.elapsed() >= Duration::from_secs(5) => {
                self.last_line = Instant::now();
                eprintln!(
                    "{}: {} entries, {:.1} MB",
                    self.what,
                    p.entries,
                    p.bytes as f64 / 1e6
                );
            }
            None => {}
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Creates `dir` if missing; refuses it if it holds anything.
fn empty_directory(dir: &Path, flag: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if entries.next().is_some() {
        return Err(usage(format!(
            "{flag} {} is not empty: give a new or empty directory",
            dir.display()
        )));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Reads a whole stream, checking it; its header and summary.
fn check_stream(path: &Path) -> anyhow::Result<(store::snapshot::Header, Summary)> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = SnapshotReader::open(BufReader::with_capacity(1 << 20, file))?;
    let header = reader.header().clone();
    loop {
        if let store::snapshot::Part::End(summary) = reader.next_part()? {
            return Ok((header, summary));
        }
    }
}

/// `suppressd backup`.
pub async fn backup(args: BackupArgs) -> Outcome {
    use tokio_stream::StreamExt;
    empty_directory(&args.to, "--to")?;
    let started = Instant::now();
    let mut client = args.client.connect_admin().await?;
    let mut stream = client
        .backup(pb::BackupRequest {})
        .await
        .context("the server refused the backup")?
        .into_inner();
    let partial = args.to.join(format!("{STREAM_FILE}.partial"));
    let mut out = BufWriter::with_capacity(
        1 << 20,
        File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?,
    );
    let mut reporter = Reporter::new("backup", None);
    let mut received = Progress::default();
    let mut seq = None;
    let outcome: anyhow::Result<()> = async {
        while let Some(message) = stream.next().await {
            let message = message.context("the backup failed on the server")?;
            if seq.is_none() {
                seq = Some(message.snapshot_seq);
            }
            out.write_all(&message.data)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            received.bytes += message.data.len() as u64;
            reporter.update(received);
        }
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", partial.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot write {}", partial.display()))?;
        Ok(())
    }
    .await;
    reporter.done();
    if let Err(e) = outcome {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    // Read back from the disk: what is kept is a whole, readable stream.
    let (header, summary) = match check_stream(&partial) {
        Ok(checked) => checked,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.context("the backup as written does not read back"));
        }
    };
    let path = args.to.join(STREAM_FILE);
    std::fs::rename(&partial, &path)
        .with_context(|| format!("cannot rename {}", partial.display()))?;
    let manifest = Manifest {
        format: format!("{MAJOR}.{MINOR}"),
        file: STREAM_FILE.into(),
        created_at: Timestamp(header.created_at_micros).to_rfc3339(),
        snapshot_seq: header.seq,
        schema_version: header.schema_version,
        source_engine: header.source_engine.clone(),
        bytes: summary.bytes,
        entries: summary.entries,
        keyring_bytes: summary.keyring_bytes,
        digest: format!("{:016x}", summary.digest),
        counts: counts(&summary),
    };
    let text = toml::to_string(&manifest).context("cannot write the manifest")?;
    let manifest_path = args.to.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, text)
        .and_then(|_| File::open(&manifest_path)?.sync_all())
        .with_context(|| format!("cannot write {}", manifest_path.display()))?;
    sync_dir(&args.to)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "backup of snapshot seq {} written to {}: {} entries, {:.1} MB in {:.1} s ({:.1} MB/s)",
        header.seq,
        args.to.display(),
        summary.entries,
        summary.bytes as f64 / 1e6,
        secs,
        summary.bytes as f64 / 1e6 / secs.max(1e-9)
    );
    print_counts(&summary);
    Ok(0)
}

fn print_counts(summary: &Summary) {
    for (name, n) in counts(summary) {
        println!("  {name}: {n}");
    }
}

/// `suppressd restore`.
pub fn restore(args: RestoreArgs) -> Outcome {
    let manifest_path = args.from.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "cannot read {}: is {} a backup directory?",
            manifest_path.display(),
            args.from.display()
        )
    })?;
    let manifest: Manifest = toml::from_str(&text)
        .with_context(|| format!("{} is not a backup manifest", manifest_path.display()))?;
    let path = args.from.join(&manifest.file);
    let file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let total = file.metadata().map(|m| m.len()).ok();
    let target = Location::of(
        args.engine,
        args.data_dir.as_ref(),
        args.database_url.as_ref(),
        "--data-dir",
        "--database-url",
    )?;
    let started = Instant::now();
    let mut reporter = Reporter::new("restore", total);
    let mut input = BufReader::with_capacity(1 << 20, file);
    let restored = match &target {
        Location::Dir(dir) => store::restore(
            &mut input,
            args.engine.into(),
            dir,
            args.cache_mb * 1024 * 1024,
            &mut |p| reporter.update(p),
        ),
        Location::Database(url) => {
            store::restore_postgres(&mut input, url, &mut |p| reporter.update(p))
        }
    };
    reporter.done();
    let restored = restored?;
    if restored.header.seq != manifest.snapshot_seq
        || restored.summary.entries != manifest.entries
        || counts(&restored.summary) != manifest.counts
    {
        anyhow::bail!(
            "{} does not describe {} (snapshot seq {} and {} entries, the stream holds seq {} \
             and {}); the target holds the stream's",
            manifest_path.display(),
            path.display(),
            manifest.snapshot_seq,
            manifest.entries,
            restored.header.seq,
            restored.summary.entries
        );
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "restored snapshot seq {} into {} ({}): {} entries, {:.1} MB in {:.1} s ({:.1} MB/s); counts checked",
        restored.header.seq,
        target.describe(),
        crate::store::Engine::from(args.engine).name(),
        restored.summary.entries,
        restored.summary.bytes as f64 / 1e6,
        secs,
        restored.summary.bytes as f64 / 1e6 / secs.max(1e-9)
    );
    print_counts(&restored.summary);
    Ok(0)
}

/// `suppressd migrate`.
pub fn migrate(args: MigrateArgs) -> Outcome {
    let from = Location::of(
        args.from_engine,
        args.from_data_dir.as_ref(),
        args.from_database_url.as_ref(),
        "--from-data-dir",
        "--from-database-url",
    )?;
    let to = Location::of(
        args.to_engine,
        args.to_data_dir.as_ref(),
        args.to_database_url.as_ref(),
        "--to-data-dir",
        "--to-database-url",
    )?;
    let same = match (&from, &to) {
        (Location::Dir(a), Location::Dir(b)) => match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        (Location::Database(a), Location::Database(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(usage("the source and the target are the same store"));
    }
    let cache_bytes = args.cache_mb * 1024 * 1024;
    let source = StoreOptions {
        engine: args.from_engine.into(),
        path: match &from {
            Location::Dir(dir) => dir.clone(),
            Location::Database(_) => PathBuf::new(),
        },
        cache_bytes,
        journal_bytes: 64 * 1024 * 1024,
        database_url: match &from {
            Location::Database(url) => Some(url.clone()),
            Location::Dir(_) => None,
        },
    };
    let started = Instant::now();
    let (reader, writer) = std::io::pipe().context("cannot make a pipe")?;
    let now = Clock::system().now();
    let exporter = std::thread::Builder::new()
        .name("suppressd-export".into())
        .spawn(move || -> Result<Summary, store::StoreError> {
            let mut out = BufWriter::with_capacity(1 << 20, writer);
            store::export(&source, &mut out, now, &mut |_| {})
        })
        .context("cannot start the export")?;
    let mut reporter = Reporter::new("migrate", None);
    let mut input = BufReader::with_capacity(1 << 20, reader);
    let restored = match &to {
        Location::Dir(dir) => store::restore(
            &mut input,
            args.to_engine.into(),
            dir,
            cache_bytes,
            &mut |p| reporter.update(p),
        ),
        Location::Database(url) => {
            store::restore_postgres(&mut input, url, &mut |p| reporter.update(p))
        }
    };
    // The export may still be writing into the pipe: without a reader it stops.
    drop(input);
    reporter.done();
    let exported = exporter
        .join()
        .map_err(|_| anyhow::anyhow!("the export thread panicked"))?;
    let read_failed = |e| anyhow::Error::new(e).context(format!("cannot read {}", from.describe()));
    let write_failed = |e| anyhow::Error::new(e).context(format!("cannot write {}", to.describe()));
    let (exported, restored) = match (exported, restored) {
        (Ok(e), Ok(r)) => (e, r),
        // A stream cut short: the export stopped, and its error says why.
        (Err(e), Err(r)) if r.to_string().contains("cut short") => return Err(read_failed(e)),
        // Otherwise the restore stopped first, and the export only lost its reader.
        (_, Err(r)) => return Err(write_failed(r)),
        (Err(e), Ok(_)) => return Err(read_failed(e)),
    };
    if exported.kinds != restored.summary.kinds {
        anyhow::bail!("the counts read and written differ");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "migrated {} ({}) into {} ({}) at seq {}: {} entries in {:.1} s; counts per kind checked",
        from.describe(),
        crate::store::Engine::from(args.from_engine).name(),
        to.describe(),
        crate::store::Engine::from(args.to_engine).name(),
        restored.header.seq,
        restored.summary.entries,
        secs
    );
    print_counts(&restored.summary);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_named_without_its_password() {
        assert_eq!(
            without_password("postgres://app:s3cret@db:5432/suppressd?sslmode=require"),
            "postgres://app:***@db:5432/suppressd?sslmode=require"
        );
        assert_eq!(
            without_password("postgres://app@db/suppressd"),
            "postgres://app@db/suppressd"
        );
    }

    #[test]
    fn each_engine_asks_for_its_own_kind_of_location() {
        let dir = PathBuf::from("/data");
        let url = "postgres://db/x".to_string();
        let of = |engine, d, u| Location::of(engine, d, u, "--data-dir", "--database-url");
        assert_eq!(
            of(StorageEngine::Postgres, None, Some(&url)).unwrap(),
            Location::Database(url.clone())
        );
        assert_eq!(
            of(StorageEngine::Redb, Some(&dir), None).unwrap(),
            Location::Dir(dir.clone())
        );
        let err = of(StorageEngine::Postgres, Some(&dir), None).unwrap_err();
        assert!(err.to_string().contains("--database-url"), "{err}");
        let err = of(StorageEngine::Sled, None, Some(&url)).unwrap_err();
        assert!(err.to_string().contains("--data-dir"), "{err}");
    }
}
