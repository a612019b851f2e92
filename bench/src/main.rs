//! `suppressd-bench`: the benchmark harness of suppressd. See `bench/README.md`; `bench/run.sh`
//! runs everything end to end.
//!
//! Sub-commands, as `run.sh` uses them:
//! - `free-port`: prints a free TCP port on 127.0.0.1.
//! - `echo-server`: the bare tonic baseline server (over TLS with `--tls-cert`/`--tls-key`).
//! - `tls-setup`: the TLS phase's CA, server certificate, bearer token and auth file.
//! - `serving`: whether a server answers health SERVING (over TLS with `--tls-ca`).
//! - `run`: loads the data set into a running suppressd (and PostgreSQL) and measures.
//! - `startup`: starts suppressd on an existing data directory and measures start-up.
//! - `report`: merges the measurements, prints the table and writes the results JSON.

mod data;
mod driver;
mod echo;
mod pg;
mod phases;
mod report;
mod svc;
mod sys;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Benchmark harness of suppressd.
#[derive(Debug, Parser)]
#[command(name = "suppressd-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the largest variant (run's options) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// Serve the bare tonic echo baseline.
    EchoServer {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Serve over TLS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Write a throw-away CA, a server certificate for 127.0.0.1 and localhost, a random bearer
    /// token and an auth file granting it every tenant and role, for the TLS phase.
    TlsSetup(tls::SetupArgs),
    /// Exit 0 if the server at --addr answers health SERVING, 1 otherwise.
    Serving {
        /// The server's address (https:// with --tls-ca).
        #[arg(long)]
        addr: String,
        /// Trust this CA certificate (PEM) and connect over TLS.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
    },
    /// Load the data set into a running suppressd and measure.
    Run(phases::RunArgs),
    /// Start suppressd on an existing data directory and measure start-up.
    Startup(phases::StartupArgs),
    /// Merge measurement files, print the table and write the results JSON.
    Report(report::ReportArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::FreePort => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", l.local_addr()?.port());
            Ok(())
        }
        Command::EchoServer {
            listen,
            tls_cert,
            tls_key,
        } => echo::serve(listen, tls_cert.as_deref().zip(tls_key.as_deref())).await,
        Command::TlsSetup(args) => tls::setup(args),
        Command::Serving { addr, tls_ca } => {
            let tls = match tls_ca {
                Some(ca) => Some(svc::tls_config(&std::fs::read(&ca)?)),
                None => None,
            };
            if phases::serving(&addr, tls.as_ref()).await {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Run(args) => phases::run(args).await,
        Command::Startup(args) => phases::startup(args).await,
        Command::Report(args) => report::report(args),
    }
}
