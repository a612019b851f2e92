//! Command line and environment. Every flag is also an environment variable; the defaults run
//! locally with nothing else installed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::clock::Clock;
use crate::policy::ReasonTtl;

/// suppressd: email suppression lists as a gRPC service.
#[derive(Debug, Parser)]
#[command(name = "suppressd", version, about)]
pub struct Cli {
    /// Log line format.
    #[arg(long, env = "SUPPRESSD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Storage engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StorageEngine {
    /// sled 0.34 (the default).
    Sled,
    /// redb 2: faster durable ingest, less memory.
    Redb,
    /// A PostgreSQL database (`--database-url`), shared by several replicas (docs/postgres.md).
    Postgres,
}

impl From<StorageEngine> for crate::store::Engine {
    fn from(e: StorageEngine) -> Self {
        match e {
            StorageEngine::Sled => crate::store::Engine::Sled,
            StorageEngine::Redb => crate::store::Engine::Redb,
            StorageEngine::Postgres => crate::store::Engine::Postgres,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(ServeSettings),
    /// Exit 0 if a server answers SERVING on its health service, 1 otherwise.
    Healthcheck(HealthcheckSettings),
    /// Classify an SMTP response and print the outcome type, reason and rule id.
    Classify(ClassifySettings),
    /// Make bearer tokens for the auth file.
    Token(TokenSettings),
    /// Bring in an email provider's suppression export (docs/import-formats.md).
    Import(ImportSettings),
    /// Screen a CSV of contacts through CheckImport and write one verdict per row.
    Check(crate::cli::CheckArgs),
    /// Write every suppression of a tenant as CSV or JSON lines.
    Export(crate::cli::ExportArgs),
    /// Show whether addresses may be mailed, and why not.
    Status(crate::cli::StatusArgs),
    /// Show an address's history.
    History(crate::cli::HistoryArgs),
    /// Suppress an address by hand.
    Suppress(crate::cli::SuppressArgs),
    /// Lift an address's suppression.
    Reactivate(crate::cli::ReactivateArgs),
    /// Report one send result and show what it did.
    Report(crate::cli::ReportArgs),
    /// Take a consistent backup of the whole store from a running server (docs/operations.md).
    Backup(crate::cli::BackupArgs),
    /// Restore a backup into a new data directory or an empty database, of any engine (offline).
    Restore(crate::cli::RestoreArgs),
    /// Copy a store into a new one of another engine: data directories or databases (offline).
    Migrate(crate::cli::MigrateArgs),
    /// Read raw bounce messages (DSNs, ARF reports, auto-replies) offline and print what
    /// ParseBounceMessage would answer.
    ParseBounce(crate::cli::ParseBounceArgs),
}

/// Settings of `suppressd serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeSettings {
    /// Address to listen on.
    #[arg(long, env = "SUPPRESSD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Directory of the embedded database (created if missing).
    #[arg(long, env = "SUPPRESSD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Storage engine of the data directory. A directory keeps the engine it was created with.
    #[arg(long, env = "SUPPRESSD_ENGINE", value_enum, default_value_t = StorageEngine::Sled)]
    pub engine: StorageEngine,

    /// The database of `--engine postgres`, as a libpq URL
    /// (`postgres://user@host:5432/db?sslmode=verify-full&sslrootcert=ca.pem`); `pool_size=N`
    /// bounds the connections this replica keeps (16).
    #[arg(long, env = "SUPPRESSD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Most addresses per batch call, and results or contacts per stream message.
    #[arg(long, env = "SUPPRESSD_MAX_BATCH", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_batch: u32,

    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "SUPPRESSD_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Largest raw message ParseBounceMessage and ReportBounceMessage accept, in bytes (larger
    /// ones are RESOURCE_EXHAUSTED). Keep it below --max-message-bytes, which bounds every
    /// request.
    #[arg(long, env = "SUPPRESSD_MAX_BOUNCE_MESSAGE_BYTES", default_value_t = 10 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub max_bounce_message_bytes: u64,

    /// Soft bounces within the window that suppress an address.
    #[arg(long, env = "SUPPRESSD_SOFT_BOUNCE_THRESHOLD", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub soft_bounce_threshold: u32,

    /// How many days back soft bounces count toward suppression.
    #[arg(long, env = "SUPPRESSD_SOFT_BOUNCE_WINDOW_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub soft_bounce_window_days: u32,

    /// Days the change feed (WatchSuppressions) keeps changes; a follower whose cursor is older
    /// must list the suppressions again.
    #[arg(long, env = "SUPPRESSD_CHANGE_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub change_retention_days: u32,

    /// How long suppressions for a reason last: REASON=DURATION (e.g. repeated-soft-bounce=30d,
    /// mailbox-full=14d, manual=12h), repeatable. A reason not named never expires (a hard
    /// bounce stays until reactivated). Applies to suppressions made while it is set.
    #[arg(
        long = "suppression-ttl",
        env = "SUPPRESSD_SUPPRESSION_TTL",
        value_name = "REASON=DURATION",
        value_delimiter = ','
    )]
    pub suppression_ttl: Vec<ReasonTtl>,

    /// Distinct addresses at one domain that must hard-bounce with DOMAIN_NOT_FOUND within the
    /// window for the domain to be suppressed automatically.
    #[arg(long, env = "SUPPRESSD_DOMAIN_SUPPRESSION_THRESHOLD", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub domain_suppression_threshold: u32,

    /// How far back those DOMAIN_NOT_FOUND bounces count, e.g. 7d, 36h.
    #[arg(long, env = "SUPPRESSD_DOMAIN_SUPPRESSION_WINDOW", default_value = "7d", value_parser = window_duration)]
    pub domain_suppression_window: Duration,

    /// Addresses at one domain delivered to and later hard-bounced as missing mailboxes that
    /// mark the domain accept-all.
    #[arg(long, env = "SUPPRESSD_ACCEPT_ALL_INFERENCE_THRESHOLD", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub accept_all_inference_threshold: u32,

    /// Where to serve Prometheus metrics over HTTP (e.g. 127.0.0.1:9464); off when not set.
    #[arg(long, env = "SUPPRESSD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Page cache of the embedded database, in MiB.
    #[arg(long, env = "SUPPRESSD_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,

    /// MiB of written data that the write-ahead journal holds in memory before it is
    /// checkpointed into the database; up to about twice this while a checkpoint runs.
    /// Larger tables trade memory for faster sustained ingest.
    #[arg(long, env = "SUPPRESSD_JOURNAL_MB", default_value_t = 384, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub journal_mb: u64,

    /// Confidence (0..1) a replacement needs, and a suggestion needs to appear in import verdicts.
    #[arg(long, env = "SUPPRESSD_CORRECTION_THRESHOLD", default_value_t = 0.9, value_parser = unit_interval)]
    pub correction_threshold: f32,

    /// Hard-bounce rate (0..1) from which a source, campaign or segment is watched.
    #[arg(long, env = "SUPPRESSD_HARD_BOUNCE_WATCH_RATE", default_value_t = 0.02, value_parser = unit_interval_f64)]
    pub hard_bounce_watch_rate: f64,

    /// Hard-bounce rate (0..1) from which it is paused.
    #[arg(long, env = "SUPPRESSD_HARD_BOUNCE_PAUSE_RATE", default_value_t = 0.05, value_parser = unit_interval_f64)]
    pub hard_bounce_pause_rate: f64,

    /// Complaint rate (0..1) from which it is watched.
    #[arg(long, env = "SUPPRESSD_COMPLAINT_WATCH_RATE", default_value_t = 0.001, value_parser = unit_interval_f64)]
    pub complaint_watch_rate: f64,

    /// Complaint rate (0..1) from which it is paused.
    #[arg(long, env = "SUPPRESSD_COMPLAINT_PAUSE_RATE", default_value_t = 0.003, value_parser = unit_interval_f64)]
    pub complaint_pause_rate: f64,

    /// Fewest results in the window for a verdict other than healthy.
    #[arg(long, env = "SUPPRESSD_HEALTH_MIN_SAMPLE", default_value_t = 100)]
    pub health_min_sample: u64,

    /// Auth file (TOML) of the principals allowed to call, by bearer-token hash or client
    /// certificate, with their tenants and roles. Re-read when it changes and on SIGHUP.
    #[arg(long, env = "SUPPRESSD_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,

    /// Serve without authentication on a non-loopback address (every caller is trusted).
    #[arg(long, env = "SUPPRESSD_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// TLS certificate chain (PEM); with --tls-key, the server speaks TLS only.
    #[arg(long, env = "SUPPRESSD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "SUPPRESSD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA bundle (PEM) that client certificates must be signed by: clients must present one
    /// (mTLS). Needs --tls-cert and --tls-key.
    #[arg(long, env = "SUPPRESSD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Where every rule reads the time: the system clock, or (in tests) a clock moved by hand.
    #[arg(skip)]
    pub clock: Clock,
}

/// A duration from one hour to one year, written like `7d`, `36h` or `2weeks`.
fn window_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 7d, 36h)"))?;
    if d < Duration::from_secs(3600) || d > Duration::from_secs(366 * 86_400) {
        return Err("must be between 1h and 366d".into());
    }
    Ok(d)
}

fn unit_interval_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1".into())
    }
}

fn unit_interval(s: &str) -> Result<f32, String> {
    unit_interval_f64(s).map(|v| v as f32)
}

impl ServeSettings {
    /// Defaults for a server on `listen` with data in `data_dir` (used by tests and tools).
    pub fn local(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServeSettings {
            listen,
            data_dir,
            engine: StorageEngine::Sled,
            database_url: None,
            max_batch: 10_000,
            max_message_bytes: 16 * 1024 * 1024,
            max_bounce_message_bytes: 10 * 1024 * 1024,
            soft_bounce_threshold: 3,
            soft_bounce_window_days: 14,
            change_retention_days: 30,
            suppression_ttl: Vec::new(),
            domain_suppression_threshold: 3,
            domain_suppression_window: Duration::from_secs(7 * 86_400),
            accept_all_inference_threshold: 3,
            cache_mb: 256,
            journal_mb: 384,
            metrics_listen: None,
            correction_threshold: 0.9,
            hard_bounce_watch_rate: 0.02,
            hard_bounce_pause_rate: 0.05,
            complaint_watch_rate: 0.001,
            complaint_pause_rate: 0.003,
            health_min_sample: 100,
            auth_file: None,
            insecure_no_auth: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            clock: Clock::system(),
        }
    }
}

/// Settings of `suppressd healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckSettings {
    /// Server to ask: `host:port`, or a URL (`http://…`, `https://…`). `host:port` is reached
    /// over TLS when `--tls-ca` is given, in plaintext otherwise.
    #[arg(
        long,
        env = "SUPPRESSD_HEALTHCHECK_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub addr: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
    /// PEM bundle of the CA(s) the server's certificate must chain to; turns TLS on.
    #[arg(long, env = "SUPPRESSD_HEALTHCHECK_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a server that requires one (mTLS); needs `--tls-key`.
    #[arg(long, env = "SUPPRESSD_HEALTHCHECK_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SUPPRESSD_HEALTHCHECK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry, when it is not the host of `--addr` (a probe
    /// that dials 127.0.0.1 of a server whose certificate names its service, say).
    #[arg(
        long,
        env = "SUPPRESSD_HEALTHCHECK_TLS_SERVER_NAME",
        requires = "tls_ca"
    )]
    pub tls_server_name: Option<String>,
}

/// Settings of `suppressd import`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportSettings {
    /// The export's format.
    #[arg(long, value_enum)]
    pub format: crate::cli::import::Format,
    /// Which export of the provider (SendGrid: bounces, blocks, spam_reports, unsubscribes;
    /// Mailgun: bounces, complaints, unsubscribes); told from the file name and columns when
    /// not given.
    #[arg(long)]
    pub kind: Option<String>,
    /// The tenant to import into; empty means "default".
    #[arg(long, env = "SUPPRESSD_TENANT", default_value = "")]
    pub tenant: String,
    /// Bearer token of an operator.
    #[arg(long, env = "SUPPRESSD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Suppressions per stream message (one store write each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// The server and how to reach it (as for `suppressd healthcheck`; `--timeout-secs` bounds
    /// the connection only).
    #[command(flatten)]
    pub server: HealthcheckSettings,
    /// The export file.
    pub file: PathBuf,
}

/// Settings of `suppressd token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenSettings {
    /// What to do with tokens.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// The `token` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token once, and the `[[principal]]` block to paste into the auth
    /// file (it holds only the token's SHA-256).
    New(TokenNewSettings),
    /// Read a token on stdin and print its hex SHA-256, as the auth file's `token_sha256`.
    Hash,
}

/// Settings of `suppressd token new`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenNewSettings {
    /// The principal's name, recorded as the actor in history.
    #[arg(long, value_name = "NAME", value_parser = principal_name)]
    pub name: String,
    /// A tenant the principal may use (repeat for more), or `*` for every tenant.
    #[arg(long = "tenant", value_name = "TENANT", required = true, value_parser = tenant_grant)]
    pub tenants: Vec<String>,
    /// A role of the principal (repeat for more).
    #[arg(long = "role", value_name = "ROLE", required = true, value_enum)]
    pub roles: Vec<TokenRole>,
}

/// The roles a principal can be given (what each allows is listed in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum TokenRole {
    /// Reports send results.
    Reporter,
    /// Reads statuses, histories, lists and statistics.
    Reader,
    /// Screens imports.
    Importer,
    /// Suppresses, reactivates and replaces addresses.
    Operator,
    /// Everything, including the admin service.
    Admin,
}

impl TokenRole {
    /// The role as the auth file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Reporter => "reporter",
            TokenRole::Reader => "reader",
            TokenRole::Importer => "importer",
            TokenRole::Operator => "operator",
            TokenRole::Admin => "admin",
        }
    }
}

fn principal_name(s: &str) -> Result<String, String> {
    crate::domain::Label::required(s).map_err(|e| format!("the name {e}"))
}

fn tenant_grant(s: &str) -> Result<String, String> {
    if s == "*" {
        return Ok(s.to_string());
    }
    if s.is_empty() {
        return Err("must name a tenant, or be * for every tenant".into());
    }
    crate::domain::Tenant::parse(s)
        .map(|t| t.as_str().to_string())
        .map_err(|e| format!("{e}, or be * for every tenant"))
}

/// Settings of `suppressd classify`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClassifySettings {
    /// The SMTP response or diagnostic text.
    pub smtp_response: String,
    /// Enhanced status code given separately (e.g. 5.1.1).
    #[arg(long)]
    pub status: Option<String>,
    /// The reporter's label: delivered, hard, soft, block, complaint, bounce or unsubscribe.
    #[arg(long, default_value = "bounce")]
    pub label: String,
    /// Which ESP or MTA reported it.
    #[arg(long, default_value = "")]
    pub provider: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeSettings, clap::Error> {
        let cli = Cli::try_parse_from(["suppressd", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(settings) => Ok(settings),
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn suppression_lifetimes_are_repeatable_and_a_bad_one_is_refused_naming_the_flag() {
        let settings = serve(&[
            "--suppression-ttl",
            "repeated-soft-bounce=30d",
            "--suppression-ttl",
            "mailbox-full=14d,manual=12h",
        ])
        .unwrap();
        let reasons: Vec<&str> = settings
            .suppression_ttl
            .iter()
            .map(|e| e.reason.name())
            .collect();
        assert_eq!(reasons, ["repeated-soft-bounce", "mailbox-full", "manual"]);
        assert!(
            serve(&[]).unwrap().suppression_ttl.is_empty(),
            "none by default"
        );
        for bad in ["mailbox-fool=1d", "mailbox-full=soon", "mailbox-full"] {
            let err = serve(&["--suppression-ttl", bad]).unwrap_err().to_string();
            assert!(err.contains("--suppression-ttl"), "{err}");
            assert!(err.contains(bad.split('=').next().unwrap_or(bad)), "{err}");
        }
    }
}
