//! Bringing in suppressions kept elsewhere (`ImportSuppressions`): each item becomes a
//! suppression with its original time and cause, recorded in the address's history as the
//! caller's. One store write (one group commit) per batch.

use super::{observe_changes, unexpected, AppError, Caller, Context, FieldViolation};
use crate::domain::{BounceReason, EmailAddress, ListId, Tenant, Timestamp};
use crate::policy::import::ImportedSuppress;
use crate::store::{AddressWrite, Decision, WriteOutcome};

/// One suppression to bring in, validated.
#[derive(Debug, Clone)]
pub struct ImportItem {
    /// The address.
    pub address: EmailAddress,
    /// Our reason.
    pub reason: BounceReason,
    /// The reason as the other system wrote it.
    pub original_reason: String,
    /// When the other system suppressed the address.
    pub original_time: Timestamp,
    /// Where it comes from (`import` when not given).
    pub source: String,
    /// With reason `Unsubscribed`: the list the address left (empty: every mail).
    pub list_id: ListId,
}

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportResult {
    /// Now suppressed.
    Imported,
    /// Suppressed already; nothing changed.
    AlreadySuppressed,
}

/// Imports suppressions.
#[derive(Clone)]
pub struct Imports {
    context: Context,
}

impl Imports {
    pub(super) fn new(context: Context) -> Self {
        Imports { context }
    }

    /// Checks what does not depend on the store: the list only with reason `Unsubscribed`, the
    /// original time not in the future.
    pub fn check(&self, item: &ImportItem) -> Result<(), FieldViolation> {
        if !item.list_id.is_empty() && item.reason != BounceReason::Unsubscribed {
            return Err(FieldViolation::new(
                "list_id",
                "is only for reason BOUNCE_REASON_UNSUBSCRIBED",
            ));
        }
        let now = self.context.clock.now();
        if item.original_time > now {
            return Err(FieldViolation::new(
                "original_time",
                format!("is in the future (now is {})", now.to_rfc3339()),
            ));
        }
        Ok(())
    }

    /// Imports one batch of items (checked with [`Imports::check`]) in one store write; the
    /// results in item order.
    pub async fn import(
        &self,
        caller: &Caller,
        tenant: Tenant,
        items: Vec<ImportItem>,
    ) -> Result<Vec<ImportResult>, AppError> {
        caller.check_tenant(&tenant)?;
        for item in &items {
            self.check(item).map_err(AppError::from)?;
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.context.clock.now();
        let policy = self.context.policy;
        let writes = items
            .into_iter()
            .map(|item| {
                let signer = caller.clone();
                AddressWrite {
                    tenant: tenant.clone(),
                    address: item.address.clone(),
                    event: None,
                    reclassified: Vec::new(),
                    decide: Box::new(move |current| {
                        let source = if item.source.is_empty() {
                            "import"
                        } else {
                            item.source.as_str()
                        };
                        let request = ImportedSuppress {
                            reason: item.reason,
                            original_reason: &item.original_reason,
                            original_time: item.original_time,
                            source,
                            actor: signer.actor(),
                            now,
                            list_id: item.list_id.as_str(),
                        };
                        match policy.import_suppression(current, request) {
                            Some(mut t) => {
                                signer.sign(&mut t.changes);
                                Decision::Apply {
                                    record: t.record,
                                    changes: t.changes,
                                }
                            }
                            None => Decision::Unchanged,
                        }
                    }),
                }
            })
            .collect();
        self.context
            .store
            .write(writes)
            .await?
            .into_iter()
            .map(|outcome| match outcome {
                WriteOutcome::Applied { changes, .. } => {
                    observe_changes(&changes);
                    Ok(ImportResult::Imported)
                }
                WriteOutcome::Unchanged { .. } => Ok(ImportResult::AlreadySuppressed),
                other => Err(unexpected(other)),
            })
            .collect()
    }
}
