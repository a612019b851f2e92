//! `suppressd-bench`: the benchmark harness of suppressd. See `bench/README.md`; `bench/run.sh`
//! runs everything end to end.
//!
//! Sub-commands, as `run.sh` uses them:
//! - `free-port`: prints a free TCP port on 127.0.0.1.
//! - `echo-server`: the bare tonic baseline server.
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

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

/// Benchmark harness of suppressd.
#[derive(Debug, Parser)]
#[command(name = "suppressd-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// Serve the bare tonic echo baseline.
    EchoServer {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
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
        Command::EchoServer { listen } => echo::serve(listen).await,
        Command::Run(args) => phases::run(args).await,
        Command::Startup(args) => phases::startup(args).await,
        Command::Report(args) => report::report(args),
    }
}
