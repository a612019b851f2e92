//! The use cases: what the service does, over domain types. A gRPC handler decodes its request
//! into domain values, calls one of these, and encodes what comes back; nothing here knows the
//! wire, so every rule can be tested without a server.
//!
//! - [`report`]: record send results (one, or a stream of batches with group commit).
//! - [`lookup`]: "may I send to this address?", one or many.
//! - [`addresses`]: operator actions (suppress, reactivate) and listings (history, bounces,
//!   suppressions).
//! - [`import_guard`]: screen the contacts of a CRM sync or list upload.
//! - [`correction`]: correction suggestions and replacements of bad addresses.
//! - [`reclassify`]: re-run the classification rules over stored bounces.
//! - [`monitoring`]: bounce rates by source, campaign and segment, and their verdicts.
//! - [`domains`]: whole domains: suppress, lift, mark accept-all, read their state.

pub mod addresses;
mod caller;
pub mod correction;
pub mod domains;
mod error;
pub mod import_guard;
pub mod lookup;
pub mod monitoring;
pub mod reclassify;
pub mod report;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use caller::Caller;
pub(crate) use error::blocking;
pub use error::{AppError, FieldViolation};

use crate::classify::Classifier;
use crate::clock::Clock;
use crate::domain::{
    AddressRecord, DomainSuppression, EmailAddress, StateChange, StateChangeKind, Tenant, Timestamp,
};
use crate::monitor::HealthMonitor;
use crate::policy::domains::DomainPolicy;
use crate::policy::health::HealthThresholds;
use crate::policy::EscalationPolicy;
use crate::store::{AddressWrite, DomainFacts, SuppressionStore, WriteOutcome};

/// Limits on what one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most addresses in a batch call, results or contacts in one stream message.
    pub max_batch: usize,
    /// Default page size of listings.
    pub default_page_size: usize,
    /// Largest page size of listings (larger requests are reduced to it).
    pub max_page_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 10_000,
            default_page_size: 100,
            max_page_size: 1_000,
        }
    }
}

impl Limits {
    /// Refuses more than `max_batch` items in `field`.
    pub fn check_batch(&self, field: &str, n: usize) -> Result<(), FieldViolation> {
        if n > self.max_batch {
            return Err(FieldViolation::new(
                field,
                format!(
                    "has {n} items; at most {} are allowed per message",
                    self.max_batch
                ),
            ));
        }
        Ok(())
    }

    /// The page size to use for a requested one (0: the default; capped at the maximum).
    pub fn page_size(&self, requested: u32) -> usize {
        match requested as usize {
            0 => self.default_page_size,
            n => n.min(self.max_page_size),
        }
    }
}

/// The service's tunable rules and its clock.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Soft-bounce escalation.
    pub policy: EscalationPolicy,
    /// Per-request limits.
    pub limits: Limits,
    /// Health-verdict thresholds of sources, campaigns and segments.
    pub health: HealthThresholds,
    /// Confidence a replacement needs, and a suggestion needs to be shown in import verdicts.
    pub correction_threshold: f32,
    /// Domain-level rules: automatic suppression and accept-all inference.
    pub domains: DomainPolicy,
    /// Where every rule reads the time.
    pub clock: Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            domains: domains::default_policy(),
            policy: EscalationPolicy::default(),
            limits: Limits::default(),
            health: HealthThresholds::default(),
            correction_threshold: 0.9,
            clock: Clock::system(),
        }
    }
}

/// What every use case works with. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Context {
    /// Where everything is kept.
    pub store: Arc<dyn SuppressionStore>,
    /// Decides what each send result was.
    pub classifier: Arc<Classifier>,
    /// Decides what a result does to an address.
    pub policy: EscalationPolicy,
    /// Per-request limits.
    pub limits: Limits,
    /// Confidence a replacement needs.
    pub correction_threshold: f32,
    /// The domain rules.
    pub domains: DomainPolicy,
    /// Where the time comes from.
    pub clock: Clock,
}

impl Context {
    /// Applies one write and returns its outcome once it is durable.
    pub async fn single_write(&self, write: AddressWrite) -> Result<WriteOutcome, AppError> {
        self.store
            .write(vec![write])
            .await?
            .pop()
            .ok_or_else(|| AppError::Internal("store returned no outcome".into()))
    }

    /// The status of a valid address of `tenant` given its record, as of `now`, with what its
    /// domain's marks say (from memory).
    pub fn status(
        &self,
        tenant: &Tenant,
        address: EmailAddress,
        record: Option<AddressRecord>,
        now: Timestamp,
    ) -> AddressStatus {
        let facts = self
            .store
            .domain_facts(tenant, &[address.domain()])
            .pop()
            .map(|(_, f)| f);
        self.status_with(address, record, facts, now)
    }

    /// [`Context::status`] with the facts of the address's domain already looked up.
    pub fn status_with(
        &self,
        address: EmailAddress,
        record: Option<AddressRecord>,
        facts: Option<DomainFacts>,
        now: Timestamp,
    ) -> AddressStatus {
        let (domain_suppression, uncertain_mailbox) = match facts {
            None => (None, None),
            Some(DomainFacts {
                suppressed,
                accept_all,
            }) => {
                let uncertain = accept_all
                    .filter(|_| uncertain_mailbox(record.as_ref()))
                    .map(|mark| mark.cause(address.domain()));
                (suppressed, uncertain)
            }
        };
        AddressStatus {
            recent_soft_bounces: record
                .as_ref()
                .map_or(0, |r| self.policy.recent_soft_bounces(r, now)),
            address,
            record,
            domain_suppression,
            uncertain_mailbox,
        }
    }
}

/// Whether an address at an accept-all domain has an uncertain mailbox: no person was seen
/// acting through it (no complaint or unsubscribe recorded, no replacement confirmed by the
/// contact). Deliveries there prove nothing.
pub(crate) fn uncertain_mailbox(record: Option<&AddressRecord>) -> bool {
    record.is_none_or(|r| r.engaged_at.is_none())
}

/// What the service knows of one address, as "may I send?" answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressStatus {
    /// The normalized address.
    pub address: EmailAddress,
    /// Its record; `None` for an address the service has never heard of.
    pub record: Option<AddressRecord>,
    /// Soft bounces within the escalation window, now.
    pub recent_soft_bounces: u32,
    /// The suppression of the address's domain (its own, or a parent's that covers
    /// subdomains), with the domain it belongs to. The address's own suppression, if it has
    /// one, is the more specific answer.
    pub domain_suppression: Option<(String, DomainSuppression)>,
    /// For an address at an accept-all domain without confirmed engagement: why its mailbox
    /// may not exist, in words.
    pub uncertain_mailbox: Option<String>,
}

impl AddressStatus {
    /// True while the address must not be mailed: it is suppressed itself, or its domain is.
    pub fn is_suppressed(&self) -> bool {
        self.domain_suppression.is_some()
            || self
                .record
                .as_ref()
                .is_some_and(AddressRecord::is_suppressed)
    }
}

/// An outcome a use case did not expect from the store: the server's fault.
pub(crate) fn unexpected(outcome: WriteOutcome) -> AppError {
    AppError::Internal(format!("unexpected store outcome: {outcome:?}"))
}

/// Counts the suppressions among state changes.
pub(crate) fn observe_changes(changes: &[StateChange]) {
    for ch in changes {
        if matches!(
            ch.kind,
            StateChangeKind::Suppressed
                | StateChangeKind::Escalated
                | StateChangeKind::ManuallySuppressed
        ) {
            metrics::counter!("suppressd_suppressions_total", "reason" => format!("{:?}", ch.reason))
                .increment(1);
        }
    }
}

/// Every use case over one store, with one set of rules and one clock. Cheap to clone.
#[derive(Clone)]
pub struct App {
    /// Records send results.
    pub report: report::Reporter,
    /// Answers "may I send?".
    pub lookup: lookup::Lookups,
    /// Operator actions and listings.
    pub addresses: addresses::Addresses,
    /// Screens imports.
    pub import_guard: import_guard::ImportGuard,
    /// Suggests and applies corrections.
    pub correction: correction::Corrections,
    /// Re-runs the classification rules over stored bounces.
    pub reclassify: reclassify::Reclassifier,
    /// Bounce rates and health verdicts.
    pub monitoring: monitoring::Monitoring,
    /// Domain-level suppression and accept-all marks.
    pub domains: domains::Domains,
    /// Per-request limits.
    pub limits: Limits,
    /// Where the time comes from.
    pub clock: Clock,
}

impl App {
    /// The use cases over `store`. Starts the health watcher on the current tokio runtime.
    pub fn new(
        store: Arc<dyn SuppressionStore>,
        classifier: Arc<Classifier>,
        settings: Settings,
    ) -> App {
        let context = Context {
            store: store.clone(),
            classifier,
            policy: settings.policy,
            limits: settings.limits,
            correction_threshold: settings.correction_threshold,
            domains: settings.domains,
            clock: settings.clock.clone(),
        };
        store.set_domain_rules(Arc::new(settings.domains));
        let monitor = HealthMonitor::spawn(store, settings.health, settings.clock.clone());
        let correction = correction::Corrections::new(context.clone());
        App {
            report: report::Reporter::new(context.clone()),
            lookup: lookup::Lookups::new(context.clone()),
            addresses: addresses::Addresses::new(context.clone()),
            import_guard: import_guard::ImportGuard::new(context.clone(), correction.clone()),
            correction,
            reclassify: reclassify::Reclassifier::new(context.clone()),
            domains: domains::Domains::new(context.clone()),
            monitoring: monitoring::Monitoring::new(context, monitor),
            limits: settings.limits,
            clock: settings.clock,
        }
    }

    /// The secret page tokens are signed with: kept with the data, so tokens survive restarts.
    pub fn token_secret(&self) -> [u8; 32] {
        self.report.context().store.token_secret()
    }

    /// Stops background work (the health watcher) so the store can close.
    pub async fn shutdown(&self) {
        self.monitoring.stop().await;
    }
}
