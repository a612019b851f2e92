//! The operator commands: `status`, `history`, `suppress`, `reactivate`. Tables for people,
//! `--json` for scripts.

use anyhow::Context;

use super::connect::ClientArgs;
use super::{text, usage, Outcome};
use crate::grpc::proto as pb;

/// Show whether addresses may be mailed, and why not.
///
/// Exit codes: 0 done; 2 a usage error; 3 the server cannot be reached or refused the call.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = super::CLIENT_EXIT_CODES)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The addresses.
    #[arg(required = true)]
    pub addresses: Vec<String>,
    /// One JSON array of statuses instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Show an address's history, newest first: send results and state changes.
///
/// Exit codes: 0 done; 2 a usage error; 3 the server cannot be reached or refused the call.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = super::CLIENT_EXIT_CODES)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The address.
    pub address: String,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Suppress an address by hand.
///
/// Exit codes: 0 done (also when it was suppressed already); 2 a usage error; 3 the server
/// cannot be reached or refused the call.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = super::CLIENT_EXIT_CODES)]
pub struct SuppressArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The address.
    pub address: String,
    /// Note for the history, e.g. a ticket number.
    #[arg(long, required = true)]
    pub note: String,
    /// The reason (default: manual).
    #[arg(long)]
    pub reason: Option<String>,
    /// Where the request comes from ("support").
    #[arg(long, default_value = "")]
    pub source: String,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Lift an address's suppression.
///
/// Exit codes: 0 done; 2 a usage error; 3 the server cannot be reached or refused the call
/// (the address is not suppressed, a missing permission).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = super::CLIENT_EXIT_CODES)]
pub struct ReactivateArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The address.
    pub address: String,
    /// Why the suppression may be lifted (kept in the history).
    #[arg(long, required = true)]
    pub justification: String,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(super) fn status_rows(statuses: &[pb::AddressStatus]) -> String {
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|st| {
            let s = st.suppression.clone().unwrap_or_default();
            let address = if st.address.is_empty() {
                st.given_address.clone()
            } else {
                st.address.clone()
            };
            let detail = if st.error.is_empty() {
                s.smtp_response
            } else {
                st.error.clone()
            };
            vec![
                address,
                text::state(st.state),
                text::reason(s.reason),
                text::time(s.since.as_ref()),
                s.source,
                detail,
            ]
        })
        .collect();
    text::table(
        &["address", "state", "reason", "since", "source", "detail"],
        &rows,
    )
}

pub async fn status(args: StatusArgs) -> Outcome {
    let mut client = args.client.connect().await?;
    let statuses = client
        .batch_get_suppression_status(pb::BatchGetSuppressionStatusRequest {
            tenant: args.client.tenant.clone(),
            addresses: args.addresses.clone(),
            ..Default::default()
        })
        .await
        .context("BatchGetSuppressionStatus")?
        .into_inner()
        .statuses;
    if args.json {
        print_json(&statuses.iter().map(text::status_json).collect())?;
    } else {
        print!("{}", status_rows(&statuses));
    }
    Ok(0)
}

pub async fn history(args: HistoryArgs) -> Outcome {
    let mut client = args.client.connect().await?;
    let mut entries = Vec::new();
    let mut page_token = String::new();
    let address = loop {
        let page = client
            .get_address_history(pb::GetAddressHistoryRequest {
                tenant: args.client.tenant.clone(),
                address: args.address.clone(),
                page_size: 1000,
                page_token: std::mem::take(&mut page_token),
            })
            .await
            .context("GetAddressHistory")?
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break page.address;
        }
        page_token = page.next_page_token;
    };
    let rows: Vec<(String, serde_json::Value, Vec<String>)> = entries
        .iter()
        .map(|e| {
            let at = text::time(e.at.as_ref());
            match &e.entry {
                Some(pb::history_entry::Entry::SendResult(r)) => {
                    let result = r.result.clone().unwrap_or_default();
                    let c = r.classification.clone().unwrap_or_default();
                    let json = serde_json::json!({
                        "at": at, "type": "send_result", "event_id": r.event_id,
                        "outcome": text::outcome(result.outcome),
                        "reason": text::reason(c.reason),
                        "smtp_response": result.smtp_response, "source": result.source,
                    });
                    let row = vec![
                        at.clone(),
                        format!("result: {}", text::outcome(result.outcome)),
                        text::reason(c.reason),
                        result.smtp_response,
                    ];
                    (at, json, row)
                }
                Some(pb::history_entry::Entry::StateChange(c)) => {
                    let json = serde_json::json!({
                        "at": at, "type": "state_change", "kind": text::change_kind(c.kind),
                        "reason": text::reason(c.reason), "actor": c.actor, "note": c.note,
                        "event_id": c.event_id,
                    });
                    let row = vec![
                        at.clone(),
                        text::change_kind(c.kind),
                        text::reason(c.reason),
                        format!("{} ({})", c.note, c.actor),
                    ];
                    (at, json, row)
                }
                None => (at.clone(), serde_json::json!({ "at": at }), vec![at]),
            }
        })
        .collect();
    if args.json {
        print_json(&serde_json::json!({
            "address": address,
            "entries": rows.iter().map(|(_, j, _)| j.clone()).collect::<Vec<_>>(),
        }))?;
    } else {
        println!("{address}");
        let table: Vec<Vec<String>> = rows.into_iter().map(|(_, _, r)| r).collect();
        print!(
            "{}",
            text::table(&["at", "what", "reason", "detail"], &table)
        );
    }
    Ok(0)
}

pub async fn suppress(args: SuppressArgs) -> Outcome {
    let reason = match &args.reason {
        Some(r) => text::parse_reason(r).ok_or_else(|| {
            usage(format!(
                "unknown --reason {r:?} (one of: {})",
                text::reason_names()
            ))
        })? as i32,
        None => pb::BounceReason::Manual as i32,
    };
    let mut client = args.client.connect().await?;
    let response = client
        .suppress(pb::SuppressRequest {
            tenant: args.client.tenant.clone(),
            address: args.address.clone(),
            reason,
            note: args.note.clone(),
            source: args.source.clone(),
            ..Default::default()
        })
        .await
        .context("Suppress")?
        .into_inner();
    let status = response.status.unwrap_or_default();
    if args.json {
        print_json(&serde_json::json!({
            "status": text::status_json(&status),
            "already_suppressed": response.already_suppressed,
        }))?;
    } else {
        if response.already_suppressed {
            println!("already suppressed: nothing changed");
        }
        print!("{}", status_rows(std::slice::from_ref(&status)));
    }
    Ok(0)
}

pub async fn reactivate(args: ReactivateArgs) -> Outcome {
    let mut client = args.client.connect().await?;
    let response = client
        .reactivate(pb::ReactivateRequest {
            tenant: args.client.tenant.clone(),
            address: args.address.clone(),
            justification: args.justification.clone(),
            ..Default::default()
        })
        .await
        .context("Reactivate")?
        .into_inner();
    let status = response.status.unwrap_or_default();
    if args.json {
        print_json(&serde_json::json!({
            "status": text::status_json(&status),
            "lifted": response.lifted.as_ref().map(text::suppression_json),
        }))?;
    } else {
        if let Some(lifted) = &response.lifted {
            println!(
                "lifted: {} since {}",
                text::reason(lifted.reason),
                text::time(lifted.since.as_ref())
            );
        }
        print!("{}", status_rows(std::slice::from_ref(&status)));
    }
    Ok(0)
}
