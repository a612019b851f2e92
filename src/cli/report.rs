//! `report`: one send result from the command line, as an MTA or a webhook reports it.

use anyhow::Context;

use super::connect::ClientArgs;
use super::{operator, text, usage, Outcome};
use crate::grpc::proto as pb;

/// Report one send result (a delivery, bounce, complaint...) and show what it did.
///
/// Exit codes: 0 done (also for a replayed event id, which changes nothing); 2 a usage error;
/// 3 the server cannot be reached or refused the call.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = super::CLIENT_EXIT_CODES)]
pub struct ReportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The recipient's address.
    pub address: String,
    /// What happened: delivered, bounce, hard-bounce, soft-bounce, block, complaint or
    /// unsubscribe (`bounce` lets the service classify the SMTP response itself).
    #[arg(long)]
    pub outcome: String,
    /// The receiving server's reply, e.g. "550 5.1.1 user unknown".
    #[arg(long, default_value = "")]
    pub smtp_response: String,
    /// The id of this send result; a replay with the same id changes nothing.
    #[arg(long)]
    pub event_id: String,
    /// Where the address came from (acquisition channel, list, form).
    #[arg(long, default_value = "")]
    pub source: String,
    /// The campaign of the message.
    #[arg(long, default_value = "")]
    pub campaign: String,
    /// The segment of the message.
    #[arg(long, default_value = "")]
    pub segment: String,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `hard-bounce` -> `OUTCOME_HARD_BOUNCE`.
fn parse_outcome(name: &str) -> Option<pb::Outcome> {
    let upper = name.trim().to_ascii_uppercase().replace('-', "_");
    let full = if upper.starts_with("OUTCOME_") {
        upper
    } else {
        format!("OUTCOME_{upper}")
    };
    pb::Outcome::from_str_name(&full).filter(|o| *o != pb::Outcome::Unspecified)
}

fn outcome_names() -> String {
    (1..)
        .map_while(|i| pb::Outcome::try_from(i).ok())
        .map(|o| text::enum_name(o.as_str_name(), "OUTCOME_"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(args: ReportArgs) -> Outcome {
    let outcome = parse_outcome(&args.outcome).ok_or_else(|| {
        usage(format!(
            "unknown --outcome {:?} (one of: {})",
            args.outcome,
            outcome_names()
        ))
    })?;
    let mut client = args.client.connect().await?;
    let response = client
        .report_send_result(pb::ReportSendResultRequest {
            tenant: args.client.tenant.clone(),
            result: Some(pb::SendResult {
                event_id: args.event_id.clone(),
                address: args.address.clone(),
                outcome: outcome as i32,
                smtp_response: args.smtp_response.clone(),
                source: args.source.clone(),
                campaign: args.campaign.clone(),
                segment: args.segment.clone(),
                ..Default::default()
            }),
        })
        .await
        .context("ReportSendResult")?
        .into_inner();
    let c = response.classification.unwrap_or_default();
    let status = response.status.unwrap_or_default();
    let outcome_type = pb::OutcomeType::try_from(c.outcome_type)
        .map(|t| text::enum_name(t.as_str_name(), "OUTCOME_TYPE_"))
        .unwrap_or_else(|_| c.outcome_type.to_string());
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "classification": {
                    "outcome_type": outcome_type,
                    "reason": text::reason(c.reason),
                    "rule_id": c.rule_id,
                    "disagrees_with_reporter": c.disagrees_with_reporter,
                },
                "duplicate": response.duplicate,
                "status": text::status_json(&status),
            }))?
        );
    } else {
        if response.duplicate {
            println!(
                "duplicate: event {} was recorded before, nothing changed",
                args.event_id
            );
        }
        println!(
            "classified: {outcome_type} {} (rule {})",
            text::reason(c.reason),
            c.rule_id
        );
        print!("{}", operator::status_rows(std::slice::from_ref(&status)));
    }
    Ok(0)
}
