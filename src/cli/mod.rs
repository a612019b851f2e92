//! The command line's client commands: `check`, `export`, `report`, `backup` and the operator
//! commands (`status`, `history`, `suppress`, `reactivate`); beside them the offline `restore`
//! and `migrate` of data directories. Each is a gRPC client of a running server; the
//! connection (`--addr`, `--tenant`, `--token`, TLS) is shared with `healthcheck`. Beside them,
//! the suppression exports of email providers that `suppressd import` reads ([`import`]), and
//! `parse-bounce`, which reads raw bounce messages offline.
//!
//! Exit codes of every client command:
//! - 0: done.
//! - 1: a local failure: a file cannot be read or written, a CSV row is bad under `--strict`.
//! - 2: a usage error: a flag or argument that makes no sense (no such column, unknown reason).
//! - 3: the server: it cannot be reached, or it refused or failed a call.
//! - 4: `check --fail-on-blocked` screened at least one contact that must not be imported.

mod backup;
mod check;
mod connect;
mod export;
pub mod import;
mod operator;
mod parse_bounce;
mod report;
mod text;

use std::process::ExitCode;

pub use backup::{BackupArgs, MigrateArgs, RestoreArgs};
pub use check::CheckArgs;
pub use connect::{endpoint, ClientArgs, TlsFlags};
pub use export::ExportArgs;
pub use operator::{HistoryArgs, ReactivateArgs, StatusArgs, SuppressArgs};
pub use parse_bounce::{parse_bounce, ParseBounceArgs};
pub use report::ReportArgs;

/// The exit codes, as `--help` shows them.
pub(crate) const CLIENT_EXIT_CODES: &str =
    "Exit codes: 0 done; 1 a file cannot be read or written; \
2 a usage error; 3 the server cannot be reached, refused or failed the call.";

/// The exit codes of `check`, as `--help` shows them.
pub(crate) const CHECK_EXIT_CODES: &str = "Exit codes: 0 done; 1 a file cannot be read or written, \
or a bad row under --strict; 2 a usage error (such as no such column); 3 the server cannot be \
reached, refused or failed the call; 4 with --fail-on-blocked, at least one contact is not `allow`.";

/// A command's outcome when it ran to its end: success, or the exit code it chose (4).
pub(crate) type Outcome = anyhow::Result<u8>;

/// A mistake in the command line that clap cannot see (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit code 2 with `message`.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// The exit code of a failed command.
fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return 2;
        }
        if cause.downcast_ref::<tonic::Status>().is_some()
            || cause.downcast_ref::<tonic::transport::Error>().is_some()
        {
            return 3;
        }
    }
    1
}

/// Runs a client command on its own runtime and turns its outcome into the exit code.
pub fn run(command: impl std::future::Future<Output = Outcome>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `check`.
pub fn check(args: CheckArgs) -> ExitCode {
    run(check::run(args))
}

/// `export`.
pub fn export(args: ExportArgs) -> ExitCode {
    run(export::run(args))
}

/// `status`.
pub fn status(args: StatusArgs) -> ExitCode {
    run(operator::status(args))
}

/// `history`.
pub fn history(args: HistoryArgs) -> ExitCode {
    run(operator::history(args))
}

/// `suppress`.
pub fn suppress(args: SuppressArgs) -> ExitCode {
    run(operator::suppress(args))
}

/// `reactivate`.
pub fn reactivate(args: ReactivateArgs) -> ExitCode {
    run(operator::reactivate(args))
}

/// `report`.
pub fn report(args: ReportArgs) -> ExitCode {
    run(report::run(args))
}

/// `backup`.
pub fn backup(args: BackupArgs) -> ExitCode {
    run(backup::backup(args))
}

/// `restore` (offline: no runtime needed, but one gives the same exit codes).
pub fn restore(args: RestoreArgs) -> ExitCode {
    run(async move { backup::restore(args) })
}

/// `migrate`.
pub fn migrate(args: MigrateArgs) -> ExitCode {
    run(async move { backup::migrate(args) })
}
