//! `CheckImport`: the import guard's stream. Each request message is decoded into an
//! [`ImportBatch`] that borrows its addresses, screened on a blocking thread, and its verdicts
//! encoded in the format the stream's first message chose.

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::convert;
use super::error::{inbound_error, AppError};
use super::proto as pb;
use crate::app::import_guard::{
    lines, Contact, ContactVerdict, ImportBatch, ImportDecision, ImportGuard, ImportSession,
};
use crate::app::{blocking, Caller};

/// The response stream of `CheckImport`.
pub(super) type VerdictStream = ReceiverStream<Result<pb::CheckImportResponse, Status>>;

/// How verdicts are written, chosen by the first message of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum VerdictFormat {
    /// A complete verdict per contact.
    #[default]
    Full,
    /// ALLOW verdicts carry only the decision and position.
    CompactAllow,
    /// One decision byte per contact, complete verdicts only for the others.
    Packed,
}

/// What a stream carries from message to message.
struct StreamState {
    session: ImportSession,
    /// Chosen by the first message.
    format: Option<VerdictFormat>,
}

/// Starts screening an import stream; verdicts flow back as the requests are read.
pub(super) fn check_import(
    guard: ImportGuard,
    caller: Caller,
    mut inbound: Streaming<pb::CheckImportRequest>,
) -> VerdictStream {
    // A small queue: when the client reads slowly, we stop reading its requests.
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(
        async move {
            let mut state = StreamState {
                session: ImportSession::new(caller),
                format: None,
            };
            let mut screened = 0usize;
            while let Some(message) = inbound.next().await {
                let message = match message {
                    Ok(m) => m,
                    Err(status) => {
                        let _ = tx.send(Err(inbound_error(status))).await;
                        return;
                    }
                };
                let guard = guard.clone();
                let result = blocking(move || {
                    let mut state = state;
                    let response = screen(&guard, &mut state, message)?;
                    Ok((state, response))
                })
                .await;
                match result {
                    Ok((next_state, (response, n))) => {
                        if screened == 0 {
                            if let Some(t) = next_state.session.tenant() {
                                super::request::record_span(t, n);
                            }
                        }
                        state = next_state;
                        screened += n;
                        if tx.send(Ok(response)).await.is_err() {
                            return; // the client went away
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
            tracing::info!(screened, "import stream screened");
        }
        .in_current_span(),
    );
    ReceiverStream::new(rx)
}

/// Screens one message; returns the response and how many contacts it screened. Runs on a
/// blocking thread.
fn screen(
    guard: &ImportGuard,
    state: &mut StreamState,
    message: pb::CheckImportRequest,
) -> Result<(pb::CheckImportResponse, usize), AppError> {
    let format = *state.format.get_or_insert(if message.packed_decisions {
        VerdictFormat::Packed
    } else if message.compact_allow {
        VerdictFormat::CompactAllow
    } else {
        VerdictFormat::Full
    });
    let mut contacts = message.contacts;
    let lines: Vec<&str> = lines(&message.address_lines).collect();
    let batch = ImportBatch {
        tenant: &message.tenant,
        contacts: contacts
            .iter()
            .map(|c| Contact {
                address: &c.address,
                given_name: &c.given_name,
                family_name: &c.family_name,
            })
            .collect(),
        lines: lines.clone(),
        field: if message.address_lines.is_empty() {
            "contacts"
        } else {
            "address_lines"
        },
        list_id: &message.list_id,
    };
    let mut screened = guard.screen(&mut state.session, &batch)?;
    drop(batch);
    let n = screened.len();

    // The address and external id of a verdict move out of the request's contact; a line's
    // address is copied.
    let mut take_given =
        |position: usize, verdict: &mut pb::ImportVerdict| match contacts.get_mut(position) {
            Some(c) => {
                verdict.address = std::mem::take(&mut c.address);
                verdict.external_id = std::mem::take(&mut c.external_id);
            }
            None => {
                verdict.address = position
                    .checked_sub(contacts.len())
                    .and_then(|i| lines.get(i))
                    .map_or_else(String::new, |l| l.to_string());
            }
        };
    let complete = |v: ContactVerdict, normalized: &str| pb::ImportVerdict {
        normalized_address: normalized.to_string(),
        decision: v.decision as i32,
        detail: v.detail,
        suppression: v
            .suppression
            .map(|s| Box::new(convert::proto_suppression(s))),
        replacement_address: v.replacement.unwrap_or_default(),
        suggestion: v
            .suggestion
            .as_ref()
            .map(|s| Box::new(convert::proto_suggestion(s))),
        position: v.position as u32,
        domain_level: v.domain_level,
        uncertain_mailbox: v.uncertain_mailbox,
        ..pb::ImportVerdict::default()
    };

    let mut decisions = Vec::new();
    let mut verdicts = Vec::with_capacity(match format {
        VerdictFormat::Packed => screened.verdicts.len(),
        _ => n,
    });
    if format == VerdictFormat::Packed {
        decisions = screened.decisions.iter().map(|&d| d as u8).collect();
    }
    let mut details = std::mem::take(&mut screened.verdicts)
        .into_iter()
        .peekable();
    // Only full verdicts of allowed contacts have room for the flag.
    let mut uncertain = std::mem::take(&mut screened.allowed_uncertain)
        .into_iter()
        .peekable();
    for (position, &decision) in screened.decisions.iter().enumerate() {
        if decision == ImportDecision::Allow {
            match format {
                VerdictFormat::Packed => {}
                VerdictFormat::CompactAllow => verdicts.push(pb::ImportVerdict {
                    decision: ImportDecision::Allow as i32,
                    position: position as u32,
                    ..pb::ImportVerdict::default()
                }),
                VerdictFormat::Full => {
                    let mut v = pb::ImportVerdict {
                        normalized_address: screened.normalized(position).to_string(),
                        decision: ImportDecision::Allow as i32,
                        position: position as u32,
                        uncertain_mailbox: uncertain.next_if_eq(&position).is_some(),
                        ..pb::ImportVerdict::default()
                    };
                    take_given(position, &mut v);
                    verdicts.push(v);
                }
            }
            continue;
        }
        if let Some(detail) = details.next_if(|v| v.position == position) {
            let mut v = complete(detail, screened.normalized(position));
            take_given(position, &mut v);
            verdicts.push(v);
        }
    }
    Ok((
        pb::CheckImportResponse {
            verdicts,
            batch_index: screened.batch_index,
            decisions,
        },
        n,
    ))
}
