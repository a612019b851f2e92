//! Forgetting a person (`ForgetAddress`): their address's personal data is erased from every
//! record, index and history entry, and the data key it was sealed under is destroyed, in one
//! atomic write; the address stays suppressed, recognized by its keyed hash, so that status
//! lookups, batch lookups and import screens still block it. Irreversible.

use super::{
    observe_changes, unexpected, AddressStatus, AppError, Caller, Context, FieldViolation,
};
use crate::domain::{EmailAddress, Tenant};
use crate::policy::forget::forget;
use crate::store::{Decision, ForgetWrite, WriteOutcome};

/// Shortest local part that a justification may not contain (shorter ones are parts of too
/// many words to refuse them).
const MIN_LOCAL_PART_CHECKED: usize = 4;

/// Erases people's data.
#[derive(Clone)]
pub struct Forgetting {
    context: Context,
}

/// What forgetting did.
#[derive(Debug, Clone)]
pub struct Forgotten {
    /// The address's status afterwards: suppressed, forgotten, without its text.
    pub status: AddressStatus,
    /// The address had been forgotten before; nothing changed.
    pub already_forgotten: bool,
}

/// Refuses a justification that names the person it erases: the history keeps it. It may
/// contain neither the address (as normalized or as given) nor its local part (from
/// [`MIN_LOCAL_PART_CHECKED`] characters), in any case.
pub fn check_justification(
    address: &EmailAddress,
    given: &str,
    justification: &str,
) -> Result<(), FieldViolation> {
    let text = justification.to_lowercase();
    let given = given.trim().to_lowercase();
    let local = address.local_part().to_lowercase();
    let names = text.contains(&address.as_str().to_lowercase())
        || (!given.is_empty() && text.contains(&given))
        || (local.chars().count() >= MIN_LOCAL_PART_CHECKED && text.contains(&local));
    if names {
        return Err(FieldViolation::new(
            "justification",
            "must not contain the address or its local part: the history keeps it after the \
             address is forgotten",
        ));
    }
    Ok(())
}

impl Forgetting {
    pub(super) fn new(context: Context) -> Self {
        Forgetting { context }
    }

    /// Forgets `address` of `tenant`, recording who did it (the caller) and why
    /// (`justification`, checked with [`check_justification`] by the caller's edge). Answers
    /// once the erasure is durable. Forgetting a forgotten address changes nothing.
    pub async fn forget(
        &self,
        caller: &Caller,
        tenant: Tenant,
        address: EmailAddress,
        justification: String,
    ) -> Result<Forgotten, AppError> {
        caller.check_tenant(&tenant)?;
        let signer = caller.clone();
        let now = self.context.clock.now();
        let write = ForgetWrite {
            tenant: tenant.clone(),
            address: address.clone(),
            decide: Box::new(move |current| {
                match forget(current, signer.actor(), &justification, now) {
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
        let (record, already_forgotten) = match self.context.store.forget(write).await? {
            WriteOutcome::Applied {
                record, changes, ..
            } => {
                observe_changes(&changes);
                metrics::counter!("suppressd_addresses_forgotten_total").increment(1);
                (Some(record), false)
            }
            WriteOutcome::Unchanged { record } => (record, true),
            other => return Err(unexpected(other)),
        };
        tracing::info!(%tenant, already_forgotten, "address forgotten");
        Ok(Forgotten {
            status: self.context.status(&tenant, address, record, now),
            already_forgotten,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(address: &str, given: &str, justification: &str) -> bool {
        let address = EmailAddress::parse(address).unwrap();
        check_justification(&address, given, justification).is_ok()
    }

    #[test]
    fn a_justification_may_not_name_the_person_it_erases() {
        let a = "Jo.Erasure@Example.com";
        assert!(check(a, a, "GDPR request, ticket 4711"));
        assert!(!check(a, a, "erase jo.erasure@example.com per ticket 4711"));
        assert!(!check(a, a, "erase JO.ERASURE@EXAMPLE.COM"));
        assert!(
            !check(a, a, "request from jo.erasure by phone"),
            "the local part"
        );
        assert!(!check(
            a,
            " Jo.Erasure@Example.com ",
            "asked: jo.erasure@example.com"
        ));
        // Local parts too short to check alone, but the address still is.
        assert!(check(
            "jo@example.com",
            "jo@example.com",
            "major journal request"
        ));
        assert!(!check(
            "jo@example.com",
            "jo@example.com",
            "jo@example.com asked"
        ));
    }
}
