//! `suppressd`: thin entry point. Parses the command line, sets up logging, and hands over to
//! [`suppressd::startup`].

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use suppressd::classify::Classifier;
use suppressd::config::{ClassifySettings, Cli, Command, HealthcheckSettings};
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
        Command::Serve(settings) => run_async(async move {
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_signal()).await
        }),
        Command::Healthcheck(settings) => run_async(healthcheck(settings)),
        Command::Classify(settings) => classify(settings),
    }
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
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
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(settings: HealthcheckSettings) -> anyhow::Result<()> {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let timeout = Duration::from_secs(settings.timeout_secs);
    let channel = tonic::transport::Endpoint::from_shared(settings.addr.clone())?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await?;
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

fn classify(settings: ClassifySettings) -> ExitCode {
    let reported = match settings.label.to_ascii_lowercase().as_str() {
        "delivered" => ReportedOutcome::Delivered,
        "hard" | "hard_bounce" => ReportedOutcome::HardBounce,
        "soft" | "soft_bounce" => ReportedOutcome::SoftBounce,
        "block" => ReportedOutcome::Block,
        "complaint" => ReportedOutcome::Complaint,
        "bounce" => ReportedOutcome::Bounce,
        other => {
            eprintln!("error: unknown --label {other:?} (delivered, hard, soft, block, complaint, bounce)");
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
