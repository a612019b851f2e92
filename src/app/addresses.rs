//! What operators and analysts do with addresses: suppress by hand (for every mail, or
//! unsubscribe from one list), lift a suppression with a justification, read an address's
//! history, list bounces and suppressions.

use super::{
    blocking, observe_changes, unexpected, AddressStatus, AppError, Caller, Context, FieldViolation,
};
use crate::domain::{
    BounceReason, EmailAddress, HistoryEntry, ListId, RecordedEvent, Source, Suppression, Tenant,
    Timestamp,
};
use crate::policy::ManualSuppress;
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
    /// When it ends by itself (must be in the future); `None`: the lifetime the server gives
    /// its reason, if any.
    pub expires_at: Option<Timestamp>,
    /// With reason `Unsubscribed`: the list the address leaves (empty: every mail).
    pub list_id: ListId,
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

    /// Suppresses an address by hand: every mail, or, with reason `Unsubscribed` and a list,
    /// mail of that list. Suppressing a suppressed address changes nothing (unless the new
    /// suppression lasts longer than one that would end by itself).
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
            expires_at,
            list_id,
        } = request;
        let now = self.context.clock.now();
        if expires_at.is_some_and(|end| end <= now) {
            return Err(FieldViolation::new(
                "expires_at",
                format!("must be in the future (now is {})", now.to_rfc3339()),
            )
            .into());
        }
        if !list_id.is_empty() && reason != BounceReason::Unsubscribed {
            return Err(FieldViolation::new(
                "list_id",
                "is only for reason BOUNCE_REASON_UNSUBSCRIBED: other suppressions block every mail",
            )
            .into());
        }
        let signer = caller.clone();
        let source = source.given().unwrap_or_else(|| "manual".to_string());
        let policy = self.context.policy;
        let list = list_id.clone();
        let write = AddressWrite {
            tenant: tenant.clone(),
            address: address.clone(),
            event: None,
            reclassified: Vec::new(),
            decide: Box::new(move |current| {
                let request = ManualSuppress {
                    reason,
                    source: &source,
                    note: &note,
                    actor: signer.actor(),
                    now,
                    expires_at,
                    list_id: list.as_str(),
                };
                match policy.suppress_manually(current, request) {
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
            status: self
                .context
                .status_for(&tenant, address, record, now, list_id.named()),
            already_suppressed,
        })
    }

    /// Lifts an address's suppression (or, with a list, its unsubscribe from that list): the
    /// only way one ends before its expiry. Recorded in its history with who and why. A
    /// forgotten address's suppression is never lifted: the erasure and the suppression that
    /// keeps the person from being mailed again are one (`FailedPrecondition`).
    pub async fn reactivate(
        &self,
        caller: &Caller,
        tenant: Tenant,
        address: EmailAddress,
        justification: String,
        list_id: ListId,
    ) -> Result<Reactivated, AppError> {
        caller.check_tenant(&tenant)?;
        let signer = caller.clone();
        let policy = self.context.policy;
        let now = self.context.clock.now();
        let list = list_id.clone();
        let write = AddressWrite {
            tenant: tenant.clone(),
            address: address.clone(),
            event: None,
            reclassified: Vec::new(),
            decide: Box::new(move |current| {
                match policy.reactivate(current, signer.actor(), &justification, now, list.named())
                {
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
                lifted: previous.and_then(|p| match list_id.named() {
                    None => p.suppression,
                    Some(list) => p.list_unsubscribes.into_iter().find(|s| s.list_id == list),
                }),
                status: self.context.status_for(
                    &tenant,
                    address,
                    Some(record),
                    now,
                    list_id.named(),
                ),
            }),
            WriteOutcome::Unchanged { record: Some(r) } if r.forgotten => {
                Err(AppError::FailedPrecondition(format!(
                    "the address was forgotten for tenant {tenant}: erasure is irreversible, \
                     and so is the suppression that comes with it"
                )))
            }
            WriteOutcome::Refused { .. } => Err(AppError::NotFound(match list_id.named() {
                None => format!("{address} is not suppressed for tenant {tenant}"),
                Some(list) => {
                    format!("{address} is not unsubscribed from list {list} for tenant {tenant}")
                }
            })),
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

    /// One page of suppressed addresses with their status, newest suppression first: the
    /// suppressions in force now (one past its expiry is not listed, swept or not).
    pub async fn suppressions(
        &self,
        caller: &Caller,
        tenant: Tenant,
        mut query: SuppressionQuery,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Page<AddressStatus>, AppError> {
        caller.check_tenant(&tenant)?;
        let store = self.context.store.clone();
        let now = self.context.clock.now();
        query.in_force_at = Some(now);
        let listed = tenant.clone();
        let page = blocking(move || {
            Ok(store.list_suppressions(&listed, &query, cursor.as_deref(), limit)?)
        })
        .await?;
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
