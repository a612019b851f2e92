//! "May I send to this address?": the status of one address or of many.

use super::{blocking, AddressStatus, AppError, Caller, Context};
use crate::domain::{AddressError, EmailAddress, ListId, Tenant};

/// Answers status lookups.
#[derive(Clone)]
pub struct Lookups {
    context: Context,
}

/// The answer for one address of a batch.
// One per address, moved once into the response: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum BatchStatus {
    /// A valid address and its status.
    Valid(AddressStatus),
    /// The address given is not a valid address.
    Invalid(AddressError),
}

impl Lookups {
    pub(super) fn new(context: Context) -> Self {
        Lookups { context }
    }

    /// The status of one address for mail of `list` (empty: of no list). A point read: the
    /// embedded engines answer it at once (from memory for addresses the service has never
    /// heard of), an engine over the network without holding the async worker.
    pub async fn status(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        address: EmailAddress,
        list: &ListId,
    ) -> Result<AddressStatus, AppError> {
        caller.check_tenant(tenant)?;
        let store = &self.context.store;
        let (record, facts) = store.status_inputs(tenant, &address).await?;
        let address_id = store.address_id(tenant, &address);
        Ok(self.context.status_with(
            Some(address),
            address_id,
            record,
            facts,
            self.context.clock.now(),
            list.named(),
        ))
    }

    /// The status of each of `addresses` for mail of `list`, in order, each with the address
    /// as given; an invalid address gets its own verdict. Every address is judged at the same
    /// instant.
    pub async fn statuses(
        &self,
        caller: &Caller,
        tenant: Tenant,
        addresses: Vec<String>,
        list: ListId,
    ) -> Result<Vec<(String, BatchStatus)>, AppError> {
        caller.check_tenant(&tenant)?;
        self.context
            .limits
            .check_batch("addresses", addresses.len())?;
        let context = self.context.clone();
        blocking(move || {
            let parsed: Vec<Result<EmailAddress, AddressError>> =
                addresses.iter().map(|a| EmailAddress::parse(a)).collect();
            let valid: Vec<EmailAddress> = parsed.iter().flatten().cloned().collect();
            let inputs = context.store.status_inputs_of(&tenant, &valid)?;
            if inputs.len() != valid.len() {
                return Err(AppError::Internal(format!(
                    "the store answered {} of {} status lookups",
                    inputs.len(),
                    valid.len()
                )));
            }
            let mut inputs = inputs.into_iter();
            let now = context.clock.now();
            Ok(addresses
                .into_iter()
                .zip(parsed)
                .map(|(given, parsed)| {
                    let status = match parsed {
                        Ok(address) => {
                            let (record, facts) = inputs.next().unwrap_or_default();
                            let address_id = context.store.address_id(&tenant, &address);
                            BatchStatus::Valid(context.status_with(
                                Some(address),
                                address_id,
                                record,
                                facts,
                                now,
                                list.named(),
                            ))
                        }
                        Err(e) => BatchStatus::Invalid(e),
                    };
                    (given, status)
                })
                .collect())
        })
        .await
    }
}
