//! `ImportSuppressions`: a stream of suppressions kept elsewhere. Each message is validated item
//! by item (an invalid item is reported by its position and does not stop the stream), its
//! valid items imported in one store write; the answer counts and lists what was not imported.

use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::error::{inbound_error, AppError};
use super::proto as pb;
use super::request::{caller, record_span};
use crate::app::imports::{ImportItem, ImportResult};
use crate::app::App;
use crate::domain::{BounceReason, Note, Source, Tenant};

/// Decodes one item into a checked domain item, or says what is wrong with it.
fn item(app: &App, raw: pb::ImportedSuppression) -> Result<ImportItem, String> {
    let bad = |v: crate::app::FieldViolation| format!("{}: {}", v.field, v.description);
    let address = convert::address("address", &raw.address).map_err(bad)?;
    let reason = convert::reason("reason", raw.reason, BounceReason::Manual).map_err(bad)?;
    let original_reason =
        Note::optional(&raw.original_reason).map_err(|e| format!("original_reason: {e}"))?;
    let original_time = convert::optional_timestamp("original_time", raw.original_time.as_ref())
        .map_err(bad)?
        .ok_or_else(|| "original_time: is required".to_string())?;
    let source = Source::parse(&raw.source)
        .map_err(|e| format!("source: {e}"))?
        .into_string();
    let list_id = convert::list_id("list_id", &raw.list_id).map_err(bad)?;
    let item = ImportItem {
        address,
        reason,
        original_reason,
        original_time,
        source,
        list_id,
    };
    app.imports.check(&item).map_err(bad)?;
    Ok(item)
}

/// Imports every message of the stream in turn and answers once the stream ends.
pub async fn import_suppressions(
    app: &App,
    request: Request<Streaming<pb::ImportSuppressionsRequest>>,
) -> Result<Response<pb::ImportSuppressionsResponse>, Status> {
    let caller = caller(&request);
    let mut stream = request.into_inner();
    let mut answer = pb::ImportSuppressionsResponse::default();
    let mut tenant: Option<Tenant> = None;
    let mut next_index: u64 = 0;
    while let Some(message) = stream.message().await.map_err(inbound_error)? {
        let this = convert::tenant(&message.tenant).map_err(AppError::from)?;
        match &tenant {
            None => {
                record_span(&this, message.items.len());
                tenant = Some(this.clone());
            }
            Some(first) if *first != this => {
                return Err(AppError::from(crate::app::FieldViolation::new(
                    "tenant",
                    format!("every message of a stream names the same tenant ({first})"),
                ))
                .into());
            }
            Some(_) => {}
        }
        app.limits
            .check_batch("items", message.items.len())
            .map_err(AppError::from)?;
        let mut valid = Vec::with_capacity(message.items.len());
        let mut positions = Vec::with_capacity(message.items.len());
        for raw in message.items {
            let index = next_index;
            next_index += 1;
            match item(app, raw) {
                Ok(item) => {
                    valid.push(item);
                    positions.push(index);
                }
                Err(why) => {
                    answer.invalid += 1;
                    answer.verdicts.push(pb::ImportItemVerdict {
                        index,
                        outcome: pb::ImportOutcome::Invalid as i32,
                        message: why,
                    });
                }
            }
        }
        let results = app.imports.import(&caller, this, valid).await?;
        for (index, result) in positions.into_iter().zip(results) {
            match result {
                ImportResult::Imported => answer.imported += 1,
                ImportResult::AlreadySuppressed => {
                    answer.already_suppressed += 1;
                    answer.verdicts.push(pb::ImportItemVerdict {
                        index,
                        outcome: pb::ImportOutcome::AlreadySuppressed as i32,
                        message: String::new(),
                    });
                }
            }
        }
    }
    answer.verdicts.sort_by_key(|v| v.index);
    Ok(Response::new(answer))
}
