//! Command line and environment. Every flag is also an environment variable; the defaults run
//! locally with nothing else installed.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(ServeSettings),
    /// Exit 0 if a server answers SERVING on its health service, 1 otherwise.
    Healthcheck(HealthcheckSettings),
    /// Classify an SMTP response and print the outcome type, reason and rule id.
    Classify(ClassifySettings),
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

    /// Most addresses per batch call, and results or contacts per stream message.
    #[arg(long, env = "SUPPRESSD_MAX_BATCH", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_batch: u32,

    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "SUPPRESSD_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Soft bounces within the window that suppress an address.
    #[arg(long, env = "SUPPRESSD_SOFT_BOUNCE_THRESHOLD", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub soft_bounce_threshold: u32,

    /// How many days back soft bounces count toward suppression.
    #[arg(long, env = "SUPPRESSD_SOFT_BOUNCE_WINDOW_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub soft_bounce_window_days: u32,

    /// Page cache of the embedded database, in MiB.
    #[arg(long, env = "SUPPRESSD_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,
}

impl ServeSettings {
    /// Defaults for a server on `listen` with data in `data_dir` (used by tests and tools).
    pub fn local(listen: SocketAddr, data_dir: PathBuf) -> Self {
        ServeSettings {
            listen,
            data_dir,
            max_batch: 10_000,
            max_message_bytes: 16 * 1024 * 1024,
            soft_bounce_threshold: 3,
            soft_bounce_window_days: 14,
            cache_mb: 256,
        }
    }
}

/// Settings of `suppressd healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckSettings {
    /// Server to ask.
    #[arg(
        long,
        env = "SUPPRESSD_HEALTHCHECK_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

/// Settings of `suppressd classify`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClassifySettings {
    /// The SMTP response or diagnostic text.
    pub smtp_response: String,
    /// Enhanced status code given separately (e.g. 5.1.1).
    #[arg(long)]
    pub status: Option<String>,
    /// The reporter's label: delivered, hard, soft, block, complaint or bounce.
    #[arg(long, default_value = "bounce")]
    pub label: String,
    /// Which ESP or MTA reported it.
    #[arg(long, default_value = "")]
    pub provider: String,
}
