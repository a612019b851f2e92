//! What operators and analysts do with addresses: suppress by hand, lift a suppression with a
//! justification, read an address's history, list bounces and suppressions.

use super::{blocking, observe_changes, unexpected, AddressStatus, AppError, Caller, Context};
use crate::domain::{
    BounceReason, EmailAddress, HistoryEntry, RecordedEvent, Source, Suppression, Tenant,
};
use crate::store::{AddressWrite, BounceQuery, Decision, Page, SuppressionQuery, WriteOutcome};

/// Operator actions and listings.
#[derive(Clone)]
pub struct Addresses {
    context: Context,
}

/// A suppression asked for by an operator.
#[derive(Debug, Clone)]
pub struct ManualSuppression {
    /// The address to suppress.
    pub address: EmailAddress,
    /// Why (`MANUAL` unless the operator names another reason).
    pub reason: BounceReason,
    /// Where the request came from (`manual` when not given).
    pub source: Source,
    /// The operator's note.
    pub note: String,
}

/// What a manual suppression did.
#[derive(Debug, Clone)]
pub struct Suppressed {
    /// The address's status afterwards.
    pub status: AddressStatus,
    /// The address was suppressed already; nothing changed.
    pub already_suppressed: bool,
}

/// What a reactivation did.
#[derive(Debug, Clone)]
pub struct Reactivated {
    /// The address's status afterwards.
    pub status: AddressStatus,
    /// The suppression that was lifted.
    pub lifted: Option<Suppression>,
}

impl Addresses {
    pub(super) fn new(context: Context) -> Self {
        Addresses { context }
    }

    /// Suppresses an address by hand. Suppressing a suppressed address changes nothing.
    pub async fn suppress(
        &self,
        caller: &Caller,
        tenant: Tenant,
        request: ManualSuppression,
    ) -> Result<Suppressed, AppError> {
        caller.check_tenant(&tenant)?;
        let ManualSuppression {
            address,
            reason,
            source,
            note,
        } = request;
        let signer = caller.clone();
        let source = source.given().unwrap_or_else(|| "manual".to_string());
        let policy = self.context.policy;
        let now = self.context.clock.now();
        let write = AddressWrite {
            tenant: tenant.clone(),
            address: address.clone(),
            event: None,
            reclassified: Vec::new(),
            decide: Box::new(move |current| {
                match policy.suppress_manually(current, reason, &source, &note, signer.actor(), now)
                {
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
        };
        let (record, already_suppressed) = match self.context.single_write(write).await? {
            WriteOutcome::Applied {
                record, changes, ..
            } => {
                observe_changes(&changes);
                (Some(record), false)
            }
            WriteOutcome::Unchanged { record } => (record, true),
            other => return Err(unexpected(other)),
        };
        Ok(Suppressed {
            status: self.context.status(&tenant, address, record, now),
            already_suppressed,
        })
    }

    /// Lifts an address's suppression: the only way one ends. Recorded in its history with
    /// who and why. A forgotten address's suppression is never lifted: the erasure and the
    /// suppression that keeps the person from being mailed again are one (`FailedPrecondition`).
    pub async fn reactivate(
        &self,
        caller: &Caller,
        tenant: Tenant,
        address: EmailAddress,
        justification: String,
    ) -> Result<Reactivated, AppError> {
        caller.check_tenant(&tenant)?;
        let signer = caller.clone();
        let policy = self.context.policy;
        let now = self.context.clock.now();
        let write = AddressWrite {
            tenant: tenant.clone(),
            address: address.clone(),
            event: None,
            reclassified: Vec::new(),
            decide: Box::new(move |current| {
                match policy.reactivate(current, signer.actor(), &justification, now) {
                    Ok((mut t, _lifted)) => {
                        signer.sign(&mut t.changes);
                        Decision::Apply {
                            record: t.record,
                            changes: t.changes,
                        }
                    }
                    Err(e) => Decision::Refuse(e.to_string()),
                }
            }),
        };
        match self.context.single_write(write).await? {
            WriteOutcome::Applied {
                previous, record, ..
            } => Ok(Reactivated {
                lifted: previous.and_then(|p| p.suppression),
                status: self.context.status(&tenant, address, Some(record), now),
            }),
            WriteOutcome::Unchanged { record: Some(r) } if r.forgotten => {
                Err(AppError::FailedPrecondition(format!(
                    "the address was forgotten for tenant {tenant}: erasure is irreversible, \
                     and so is the suppression that comes with it"
                )))
            }
            WriteOutcome::Refused { .. } => Err(AppError::NotFound(format!(
                "{address} is not suppressed for tenant {tenant}"
            ))),
            other => Err(unexpected(other)),
        }
    }

    /// One page of an address's history, newest first.
    pub async fn history(
        &self,
        caller: &Caller,
        tenant: Tenant,
        address: EmailAddress,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Page<HistoryEntry>, AppError> {
        caller.check_tenant(&tenant)?;
        let store = self.context.store.clone();
        blocking(move || Ok(store.history(&tenant, &address, cursor.as_deref(), limit)?)).await
    }

    /// One page of bounce events, newest first.
    pub async fn bounces(
        &self,
        caller: &Caller,
        tenant: Tenant,
        query: BounceQuery,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Page<RecordedEvent>, AppError> {
        caller.check_tenant(&tenant)?;
        let store = self.context.store.clone();
        blocking(move || Ok(store.list_bounces(&tenant, &query, cursor.as_deref(), limit)?)).await
    }

    /// One page of suppressed addresses with their status, newest suppression first.
    pub async fn suppressions(
        &self,
        caller: &Caller,
        tenant: Tenant,
        query: SuppressionQuery,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Page<AddressStatus>, AppError> {
        caller.check_tenant(&tenant)?;
        let store = self.context.store.clone();
        let page = blocking(move || {
            Ok(store.list_suppressions(&tenant, &query, cursor.as_deref(), limit)?)
        })
        .await?;
        let now = self.context.clock.now();
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|listed| {
                    let address = EmailAddress::parse(&listed.address).ok();
                    self.context
                        .listed_status(address, listed.id, Some(listed.record), now)
                })
                .collect(),
            next: page.next,
        })
    }
}
