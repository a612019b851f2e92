//! `suppressd`: thin entry point. Parses the command line, sets up logging, and hands over to
//! [`suppressd::startup`].

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use clap::Parser;
use sha2::{Digest, Sha256};
use suppressd::classify::Classifier;
use suppressd::config::{
    ClassifySettings, Cli, Command, HealthcheckSettings, ImportSettings, TokenCommand,
    TokenNewSettings,
};
use suppressd::domain::{ReportedOutcome, SmtpEvidence};
use suppressd::startup::{shutdown_signal, Application};
use suppressd::telemetry;

/// The server allocates and frees many small buffers per request on every thread (decoded
/// messages, normalized addresses, verdicts); mimalloc's per-thread free lists serve them
/// without the global allocator's locking and heap consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(settings) => run_async(
            async move {
                let app = Application::build(settings).await?;
                app.run_until_stopped(shutdown_signal()).await
            },
            ErrorOutput::Log,
        ),
        Command::Healthcheck(settings) => run_async(healthcheck(settings), ErrorOutput::Stderr),
        Command::Classify(settings) => classify(settings),
        Command::Token(settings) => match settings.command {
            TokenCommand::New(settings) => token_new(settings),
            TokenCommand::Hash => token_hash(),
        },
        Command::Import(settings) => run_async(import(settings), ErrorOutput::Stderr),
        Command::Check(args) => suppressd::cli::check(args),
        Command::Export(args) => suppressd::cli::export(args),
        Command::Status(args) => suppressd::cli::status(args),
        Command::History(args) => suppressd::cli::history(args),
        Command::Suppress(args) => suppressd::cli::suppress(args),
        Command::Reactivate(args) => suppressd::cli::reactivate(args),
        Command::Report(args) => suppressd::cli::report(args),
        Command::Backup(args) => suppressd::cli::backup(args),
        Command::Restore(args) => suppressd::cli::restore(args),
        Command::Migrate(args) => suppressd::cli::migrate(args),
        Command::ParseBounce(args) => suppressd::cli::parse_bounce(args),
    }
}

/// Where a command's final error goes: once, either way.
#[derive(Clone, Copy)]
enum ErrorOutput {
    /// The server's log, in the chosen log format (log collectors read it).
    Log,
    /// A plain line for a person or a script at a terminal.
    Stderr,
}

fn run_async(
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
    output: ErrorOutput,
) -> ExitCode {
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
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match output {
                ErrorOutput::Log => tracing::error!("{e:#}"),
                ErrorOutput::Stderr => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(settings: HealthcheckSettings) -> anyhow::Result<()> {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let timeout = Duration::from_secs(settings.timeout_secs);
    let channel = healthcheck_endpoint(&settings)?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", settings.addr))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: suppressd::startup::SERVICE_NAME.to_string(),
        })
        .await?
        .into_inner();
    if response.status() == ServingStatus::Serving {
        println!("SERVING");
        Ok(())
    } else {
        anyhow::bail!("{} answers {:?}", settings.addr, response.status())
    }
}

/// `suppressd import`: reads the export, sends its suppressions, and prints a summary: rows
/// imported, already suppressed, skipped (with why) and invalid (with line numbers and why).
/// Progress goes to stderr. Fails (exit 1) only when the server cannot be reached or refuses
/// the stream.
async fn import(settings: ImportSettings) -> anyhow::Result<()> {
    use suppressd::cli::import::{parse, Parsed};
    use suppressd::grpc::import_client::import_rows;
    use suppressd::grpc::proto::{
        suppression_service_client::SuppressionServiceClient, ImportOutcome,
    };
    let file = std::fs::File::open(&settings.file)
        .with_context(|| format!("cannot read {}", settings.file.display()))?;
    let name = settings
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rows = parse(
        settings.format,
        settings.kind.as_deref(),
        &name,
        std::io::BufReader::new(file),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", settings.file.display()))?;
    let mut lines = Vec::new();
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    let mut invalid = Vec::new();
    for row in rows {
        match row.parsed {
            Parsed::Import(item) => {
                lines.push(row.line);
                items.push(item);
            }
            Parsed::Skipped(why) => skipped.push((row.line, why)),
            Parsed::Invalid(why) => invalid.push((row.line, why)),
        }
    }
    let timeout = Duration::from_secs(settings.server.timeout_secs);
    let channel = healthcheck_endpoint(&settings.server)?
        .connect_timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", settings.server.addr))?;
    let mut client = SuppressionServiceClient::new(channel);
    let total = items.len();
    let answer = import_rows(
        &mut client,
        settings.token.as_deref(),
        &settings.tenant,
        settings.format.source(),
        &items,
        settings.batch as usize,
        move |sent| eprintln!("sent {sent} of {total}"),
    )
    .await
    .context("the server refused the import")?;
    let mut already = Vec::new();
    for v in &answer.verdicts {
        let line = lines.get(v.index as usize).copied().unwrap_or(0);
        match v.outcome() {
            ImportOutcome::Invalid => invalid.push((line, v.message.clone())),
            _ => already.push(line),
        }
    }
    invalid.sort();
    println!("imported: {}", answer.imported);
    println!("already suppressed: {}", answer.already_suppressed);
    println!("skipped: {}", skipped.len());
    for (line, why) in &skipped {
        println!("  line {line}: {why}");
    }
    println!("invalid: {}", invalid.len());
    for (line, why) in &invalid {
        println!("  line {line}: {why}");
    }
    Ok(())
}

/// The endpoint `--addr` names: `host:port` gets `https://` with `--tls-ca`, `http://` without;
/// a URL is taken as written, and its scheme must agree with `--tls-ca`.
/// The endpoint `--addr` names, with the health check's TLS flags.
fn healthcheck_endpoint(
    settings: &HealthcheckSettings,
) -> anyhow::Result<tonic::transport::Endpoint> {
    suppressd::cli::endpoint(
        &settings.addr,
        suppressd::cli::TlsFlags {
            ca: settings.tls_ca.as_deref(),
            cert: settings.tls_cert.as_deref(),
            key: settings.tls_key.as_deref(),
            server_name: settings.tls_server_name.as_deref(),
        },
    )
}

/// Random bytes in a token: 256 bits, beyond any guessing.
const TOKEN_BYTES: usize = 32;

/// The auth file's `[[principal]]` entry, as `suppressd token new` prints it.
#[derive(serde::Serialize)]
struct PrincipalEntry<'a> {
    name: &'a str,
    token_sha256: String,
    tenants: Vec<&'a str>,
    roles: Vec<&'static str>,
}

#[derive(serde::Serialize)]
struct AuthFileSnippet<'a> {
    principal: [PrincipalEntry<'a>; 1],
}

fn token_new(settings: TokenNewSettings) -> ExitCode {
    let mut bytes = [0u8; TOKEN_BYTES];
    if let Err(e) = rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut bytes) {
        eprintln!("error: the operating system's random number generator failed: {e}");
        return ExitCode::FAILURE;
    }
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let block = match principal_block(&settings, &sha256_hex(token.as_bytes())) {
        Ok(block) => block,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("{token}");
    println!();
    print!("{block}");
    eprintln!(
        "The first line is the token of {:?}; it is shown only this once. \
         The [[principal]] block holds only its hash: paste it into the auth file.",
        settings.name
    );
    ExitCode::SUCCESS
}

/// The TOML to paste into the auth file. Repeated tenants and roles are given once; `*` must
/// come alone, since it already means every tenant.
fn principal_block(settings: &TokenNewSettings, token_sha256: &str) -> anyhow::Result<String> {
    let mut tenants: Vec<&str> = Vec::new();
    for tenant in &settings.tenants {
        if !tenants.contains(&tenant.as_str()) {
            tenants.push(tenant);
        }
    }
    if tenants.len() > 1 && tenants.contains(&"*") {
        anyhow::bail!("--tenant '*' already means every tenant: give it alone");
    }
    let mut roles: Vec<&'static str> = Vec::new();
    for role in &settings.roles {
        if !roles.contains(&role.as_str()) {
            roles.push(role.as_str());
        }
    }
    let snippet = AuthFileSnippet {
        principal: [PrincipalEntry {
            name: &settings.name,
            token_sha256: token_sha256.to_string(),
            tenants,
            roles,
        }],
    };
    toml::to_string(&snippet).context("cannot write the [[principal]] block")
}

fn token_hash() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut input) {
        eprintln!("error: cannot read the token from stdin: {e}");
        return ExitCode::FAILURE;
    }
    match token_from_input(&input) {
        Ok(token) => {
            println!("{}", sha256_hex(token));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The token in `input`: one line, its line ending removed, nothing else changed (the hash is
/// of the bytes the caller sends).
fn token_from_input(input: &[u8]) -> Result<&[u8], &'static str> {
    let token = input.strip_suffix(b"\n").unwrap_or(input);
    let token = token.strip_suffix(b"\r").unwrap_or(token);
    if token.is_empty() {
        return Err("no token on stdin");
    }
    if token.contains(&b'\n') {
        return Err("stdin holds more than one line: give one token");
    }
    Ok(token)
}

/// Lowercase hex SHA-256, as the auth file's `token_sha256`.
fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn classify(settings: ClassifySettings) -> ExitCode {
    let reported = match settings.label.to_ascii_lowercase().as_str() {
        "delivered" => ReportedOutcome::Delivered,
        "hard" | "hard_bounce" => ReportedOutcome::HardBounce,
        "soft" | "soft_bounce" => ReportedOutcome::SoftBounce,
        "block" => ReportedOutcome::Block,
        "complaint" => ReportedOutcome::Complaint,
        "bounce" => ReportedOutcome::Bounce,
        "unsubscribe" => ReportedOutcome::Unsubscribe,
        other => {
            eprintln!("error: unknown --label {other:?} (delivered, hard, soft, block, complaint, bounce, unsubscribe)");
            return ExitCode::from(2);
        }
    };
    let c = Classifier::new().classify(&SmtpEvidence {
        reported,
        smtp_response: &settings.smtp_response,
        enhanced_status: settings.status.as_deref(),
        provider: &settings.provider,
    });
    println!("type:       {:?}", c.bounce_type);
    println!("reason:     {:?}", c.reason);
    println!("rule:       {}", c.rule_id);
    println!("confidence: {:.2}", c.confidence);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use suppressd::config::TokenRole;

    #[test]
    fn the_token_on_stdin_loses_only_its_line_ending() {
        assert_eq!(token_from_input(b"abc\n"), Ok(&b"abc"[..]));
        assert_eq!(token_from_input(b"abc\r\n"), Ok(&b"abc"[..]));
        assert_eq!(token_from_input(b"abc"), Ok(&b"abc"[..]));
        assert_eq!(token_from_input(b" abc \n"), Ok(&b" abc "[..]));
        assert!(token_from_input(b"\n").is_err());
        assert!(token_from_input(b"").is_err());
        assert!(token_from_input(b"abc\ndef\n").is_err());
    }

    #[test]
    fn the_hash_is_lowercase_hex_sha256() {
        assert_eq!(
            sha256_hex(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    fn settings(name: &str, tenants: &[&str], roles: &[TokenRole]) -> TokenNewSettings {
        TokenNewSettings {
            name: name.to_string(),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn the_principal_block_is_the_auth_file_entry() {
        let block = principal_block(
            &settings(
                "crm-sync",
                &["acme", "globex", "acme"],
                &[TokenRole::Importer, TokenRole::Reader, TokenRole::Importer],
            ),
            "ab",
        )
        .unwrap();
        assert_eq!(
            block,
            "[[principal]]\nname = \"crm-sync\"\ntoken_sha256 = \"ab\"\ntenants = [\"acme\", \"globex\"]\nroles = [\"importer\", \"reader\"]\n"
        );
    }

    #[test]
    fn a_name_with_quotes_is_escaped_in_the_block() {
        let block = principal_block(
            &settings(r#"ops "night" \ shift"#, &["*"], &[TokenRole::Admin]),
            "ab",
        )
        .unwrap();
        let parsed: toml::Table = toml::from_str(&block).unwrap();
        let principal = &parsed["principal"].as_array().unwrap()[0];
        assert_eq!(principal["name"].as_str(), Some(r#"ops "night" \ shift"#));
    }

    #[test]
    fn every_tenant_comes_alone() {
        let err = principal_block(&settings("x", &["*", "acme"], &[TokenRole::Reader]), "ab");
        assert!(err.is_err());
    }
}
