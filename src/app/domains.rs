//! Whole domains: an operator suppresses a domain (every address there answers SUPPRESSED),
//! lifts that suppression, marks a domain accept-all or clears the mark, and reads a domain's
//! state and history. The automatic rules (repeated DOMAIN_NOT_FOUND bounces, accept-all
//! inference) run in the store's writer with each send result; their rules are
//! [`DomainPolicy`]'s, handed to the store here.

use super::{blocking, AppError, Caller, Context};
use crate::domain::AddressRecord;
use crate::domain::{
    BounceReason, DomainRecord, DomainSuppression, MailDomain, RecordedEvent, StateChange, Tenant,
    Timestamp,
};
use crate::policy::domains::{DomainNotSuppressed, DomainPolicy, DomainTransition};
use crate::store::{DomainDecision, DomainRules, DomainWrite, Page};

/// Most history entries a domain's status shows.
pub const DOMAIN_HISTORY: usize = 100;

/// The domain rules by default: the popular mailbox providers are never suppressed
/// automatically.
pub fn default_policy() -> DomainPolicy {
    DomainPolicy {
        protected: crate::suggest::popular_domains(),
        ..DomainPolicy::default()
    }
}

/// The writer runs the domain policy with each send result.
impl DomainRules for DomainPolicy {
    fn concerns(&self, event: &RecordedEvent, before: Option<&AddressRecord>) -> bool {
        DomainPolicy::concerns(self, event, before)
    }

    fn apply(
        &self,
        domain: &str,
        record: &DomainRecord,
        event: &RecordedEvent,
        address: u64,
        before: Option<&AddressRecord>,
    ) -> Option<(DomainRecord, Vec<StateChange>)> {
        self.apply_event(domain, record, event, address, before)
            .map(|t| (t.record, t.changes))
    }
}

/// Domain-level suppression and accept-all marks.
#[derive(Clone)]
pub struct Domains {
    context: Context,
}

/// What the service knows of one domain, as the domain calls answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainStatus {
    /// The normalized domain.
    pub domain: String,
    /// Its record.
    pub record: DomainRecord,
    /// The suppression that applies to addresses at the domain (its own, or a parent's that
    /// covers subdomains), with the domain it belongs to.
    pub applies: Option<(String, DomainSuppression)>,
    /// Distinct addresses with DOMAIN_NOT_FOUND bounces within the automatic rule's window,
    /// now.
    pub recent_not_found: u32,
}

/// What `SuppressDomain` did.
#[derive(Debug, Clone)]
pub struct DomainSuppressed {
    /// The domain's status afterwards.
    pub status: DomainStatus,
    /// It was suppressed so already; nothing changed.
    pub already_suppressed: bool,
}

/// What `ReactivateDomain` did.
#[derive(Debug, Clone)]
pub struct DomainReactivated {
    /// The domain's status afterwards.
    pub status: DomainStatus,
    /// The suppression that was lifted.
    pub lifted: DomainSuppression,
}

/// An operator's request to suppress a domain.
#[derive(Debug, Clone)]
pub struct SuppressDomain {
    /// The domain.
    pub domain: MailDomain,
    /// Why (`MANUAL` unless the operator names another reason).
    pub reason: BounceReason,
    /// The operator's note.
    pub note: String,
    /// Also every domain under it.
    pub include_subdomains: bool,
}

impl Domains {
    pub(super) fn new(context: Context) -> Self {
        Domains { context }
    }

    /// The status of `domain` from its record, as of `now`.
    fn status_of(
        &self,
        tenant: &Tenant,
        domain: &str,
        record: DomainRecord,
        now: Timestamp,
    ) -> DomainStatus {
        let applies = self
            .context
            .store
            .domain_facts(tenant, &[domain])
            .pop()
            .and_then(|(_, f)| f.suppressed);
        DomainStatus {
            domain: domain.to_string(),
            recent_not_found: self.context.domains.recent_not_found(&record, now),
            record,
            applies,
        }
    }

    /// Applies one operator decision to a domain, once durable.
    async fn write(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        domain: &MailDomain,
        decide: impl Fn(&DomainRecord, &str) -> Result<Option<DomainTransition>, String>
            + Send
            + Sync
            + 'static,
    ) -> Result<crate::store::DomainOutcome, AppError> {
        let signer = caller.clone();
        let write = DomainWrite {
            tenant: tenant.clone(),
            domain: domain.as_str().to_string(),
            decide: Box::new(move |current| match decide(current, signer.actor()) {
                Ok(Some(mut t)) => {
                    signer.sign(&mut t.changes);
                    DomainDecision::Apply {
                        record: t.record,
                        changes: t.changes,
                    }
                }
                Ok(None) => DomainDecision::Unchanged,
                Err(reason) => DomainDecision::Refuse(reason),
            }),
        };
        Ok(self.context.store.write_domain(write).await?)
    }

    /// Suppresses a domain by hand. Suppressing it again just so changes nothing; an
    /// automatic suppression, or one of another scope, is replaced by the operator's.
    pub async fn suppress(
        &self,
        caller: &Caller,
        tenant: Tenant,
        request: SuppressDomain,
    ) -> Result<DomainSuppressed, AppError> {
        caller.check_tenant(&tenant)?;
        let policy = self.context.domains;
        let now = self.context.clock.now();
        let SuppressDomain {
            domain,
            reason,
            note,
            include_subdomains,
        } = request;
        let outcome = self
            .write(caller, &tenant, &domain, move |current, actor| {
                Ok(policy.suppress(current, reason, &note, include_subdomains, actor, now))
            })
            .await?;
        Ok(DomainSuppressed {
            already_suppressed: !outcome.applied,
            status: self.status_of(&tenant, domain.as_str(), outcome.record, now),
        })
    }

    /// Lifts a domain's own suppression, manual or automatic, with who and why.
    pub async fn reactivate(
        &self,
        caller: &Caller,
        tenant: Tenant,
        domain: MailDomain,
        justification: String,
    ) -> Result<DomainReactivated, AppError> {
        caller.check_tenant(&tenant)?;
        let policy = self.context.domains;
        let now = self.context.clock.now();
        let outcome = self
            .write(
                caller,
                &tenant,
                &domain,
                move |current, actor| match policy.reactivate(current, &justification, actor, now) {
                    Ok((t, _)) => Ok(Some(t)),
                    Err(DomainNotSuppressed) => Err(DomainNotSuppressed.to_string()),
                },
            )
            .await?;
        let lifted = match (outcome.refused, outcome.previous.suppression) {
            (None, Some(lifted)) => lifted,
            _ => {
                let parent = self
                    .context
                    .store
                    .domain_facts(&tenant, &[domain.as_str()])
                    .pop()
                    .and_then(|(_, f)| f.suppressed);
                return Err(AppError::NotFound(match parent {
                    Some((parent, _)) => format!(
                        "{domain} is not suppressed itself for tenant {tenant}; {parent} is, \
                         with its subdomains: reactivate {parent}"
                    ),
                    None => format!("{domain} is not suppressed for tenant {tenant}"),
                }));
            }
        };
        Ok(DomainReactivated {
            status: self.status_of(&tenant, domain.as_str(), outcome.record, now),
            lifted,
        })
    }

    /// Marks a domain accept-all, or clears the mark (set or inferred).
    pub async fn set_policy(
        &self,
        caller: &Caller,
        tenant: Tenant,
        domain: MailDomain,
        accept_all: bool,
        note: String,
    ) -> Result<DomainStatus, AppError> {
        caller.check_tenant(&tenant)?;
        let policy = self.context.domains;
        let now = self.context.clock.now();
        let outcome = self
            .write(caller, &tenant, &domain, move |current, actor| {
                Ok(policy.set_accept_all(current, accept_all, &note, actor, now))
            })
            .await?;
        Ok(self.status_of(&tenant, domain.as_str(), outcome.record, now))
    }

    /// A domain's status and its latest history entries, newest first.
    pub async fn status(
        &self,
        caller: &Caller,
        tenant: Tenant,
        domain: MailDomain,
    ) -> Result<(DomainStatus, Vec<StateChange>), AppError> {
        caller.check_tenant(&tenant)?;
        let store = self.context.store.clone();
        let read_tenant = tenant.clone();
        let name = domain.as_str().to_string();
        let (record, history) = blocking(move || {
            Ok((
                store.domain(&read_tenant, &name)?,
                store.domain_history(&read_tenant, &name, DOMAIN_HISTORY)?,
            ))
        })
        .await?;
        let now = self.context.clock.now();
        Ok((
            self.status_of(&tenant, domain.as_str(), record, now),
            history,
        ))
    }

    /// One page of suppressed domains, newest suppression first.
    pub async fn suppressed(
        &self,
        caller: &Caller,
        tenant: Tenant,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Page<DomainStatus>, AppError> {
        caller.check_tenant(&tenant)?;
        let store = self.context.store.clone();
        let listed = tenant.clone();
        let page = blocking(move || {
            Ok(store.list_suppressed_domains(&listed, cursor.as_deref(), limit)?)
        })
        .await?;
        let now = self.context.clock.now();
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(domain, record)| self.status_of(&tenant, &domain, record, now))
                .collect(),
            next: page.next,
        })
    }
}
