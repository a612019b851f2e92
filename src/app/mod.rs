//! The use cases: what the service does, over domain types. A gRPC handler decodes its request
//! into domain values, calls one of these, and encodes what comes back; nothing here knows the
//! wire, so every rule can be tested without a server.
//!
//! - [`report`]: record send results (one, or a stream of batches with group commit).
//! - [`lookup`]: "may I send to this address?", one or many.
//! - [`addresses`]: operator actions (suppress, reactivate) and listings (history, bounces,
//!   suppressions).
//! - [`forget`]: erasing a person's data while still blocking the address.
//! - [`import_guard`]: screen the contacts of a CRM sync or list upload.
//! - [`correction`]: correction suggestions and replacements of bad addresses.
//! - [`reclassify`]: re-run the classification rules over stored bounces.
//! - [`monitoring`]: bounce rates by source, campaign and segment, and their verdicts.
//! - [`feed`]: the change feed of suppression lists and its retention.
//! - [`expiry`]: the background sweep that clears suppressions whose expiry has come.
//! - [`domains`]: whole domains: suppress, lift, mark accept-all, read their state.
//! - [`backup`]: consistent online backups of the whole store.
//! - [`bounce_messages`]: raw bounce messages read, and recorded as send results.

pub mod addresses;
pub mod backup;
pub mod bounce_messages;
mod caller;
pub mod correction;
pub mod domains;
mod error;
pub mod expiry;
pub mod feed;
pub mod forget;
pub mod import_guard;
pub mod imports;
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
    AddressId, AddressRecord, DomainSuppression, EmailAddress, StateChange, StateChangeKind,
    Suppression, Tenant, Timestamp,
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
    /// Largest raw bounce message accepted, in bytes.
    pub max_bounce_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 10_000,
            default_page_size: 100,
            max_page_size: 1_000,
            max_bounce_message_bytes: bounce_messages::DEFAULT_MAX_BOUNCE_MESSAGE_BYTES,
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
    /// How long the change feed keeps changes.
    pub change_retention: std::time::Duration,
}

/// The change feed's retention unless configured.
pub const DEFAULT_CHANGE_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(30 * 86_400);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            domains: domains::default_policy(),
            policy: EscalationPolicy::default(),
            limits: Limits::default(),
            health: HealthThresholds::default(),
            correction_threshold: 0.9,
            clock: Clock::system(),
            change_retention: DEFAULT_CHANGE_RETENTION,
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

    /// The status of a valid address of `tenant` given its record, as of `now`, for mail of no
    /// list, with what its domain's marks say (from memory). A forgotten address's status does
    /// not name it.
    pub fn status(
        &self,
        tenant: &Tenant,
        address: EmailAddress,
        record: Option<AddressRecord>,
        now: Timestamp,
    ) -> AddressStatus {
        self.status_for(tenant, address, record, now, None)
    }

    /// [`Context::status`] for mail of `list` (`None`: transactional or unlisted mail).
    pub fn status_for(
        &self,
        tenant: &Tenant,
        address: EmailAddress,
        record: Option<AddressRecord>,
        now: Timestamp,
        list: Option<&str>,
    ) -> AddressStatus {
        let facts = self
            .store
            .domain_facts(tenant, &[address.domain()])
            .pop()
            .map(|(_, f)| f);
        let address_id = self.store.address_id(tenant, &address);
        self.status_with(Some(address), address_id, record, facts, now, list)
    }

    /// The status of an address known by its id (and its text, unless forgotten), as a
    /// listing gives it: for mail of no list, without its domain's marks.
    pub fn listed_status(
        &self,
        address: Option<EmailAddress>,
        address_id: AddressId,
        record: Option<AddressRecord>,
        now: Timestamp,
    ) -> AddressStatus {
        self.status_with(address, address_id, record, None, now, None)
    }

    /// [`Context::status_for`] with the facts of the address's domain already looked up.
    pub fn status_with(
        &self,
        address: Option<EmailAddress>,
        address_id: AddressId,
        record: Option<AddressRecord>,
        facts: Option<DomainFacts>,
        now: Timestamp,
        list: Option<&str>,
    ) -> AddressStatus {
        let forgotten = record.as_ref().is_some_and(|r| r.forgotten);
        let suppression = record.as_ref().and_then(|r| r.blocking(now, list)).cloned();
        let unsubscribed_lists = match (&suppression, &record) {
            (None, Some(r)) => r.unsubscribed_lists_at(now).map(str::to_string).collect(),
            _ => Vec::new(),
        };
        let (domain_suppression, uncertain_mailbox) = match (facts, &address) {
            (
                Some(DomainFacts {
                    suppressed,
                    accept_all,
                }),
                Some(a),
            ) => {
                let uncertain = accept_all
                    .filter(|_| uncertain_mailbox(record.as_ref()))
                    .map(|mark| mark.cause(a.domain()));
                (suppressed, uncertain)
            }
            _ => (None, None),
        };
        AddressStatus {
            recent_soft_bounces: record
                .as_ref()
                .map_or(0, |r| self.policy.recent_soft_bounces(r, now)),
            address: address.filter(|_| !forgotten),
            address_id,
            record,
            suppression,
            unsubscribed_lists,
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
    /// The normalized address; `None` once forgotten.
    pub address: Option<EmailAddress>,
    /// Its opaque, stable identifier within the tenant.
    pub address_id: AddressId,
    /// Its record; `None` for an address the service has never heard of.
    pub record: Option<AddressRecord>,
    /// Soft bounces within the escalation window, now.
    pub recent_soft_bounces: u32,
    /// What blocks the mail asked about, at the instant of the answer: the address's
    /// suppression in force, or its unsubscribe from the list the mail is for.
    pub suppression: Option<Suppression>,
    /// The lists the address is unsubscribed from, when nothing blocks the mail asked about.
    pub unsubscribed_lists: Vec<String>,
    /// The suppression of the address's domain (its own, or a parent's that covers
    /// subdomains), with the domain it belongs to. The address's own suppression, if it has
    /// one, is the more specific answer.
    pub domain_suppression: Option<(String, DomainSuppression)>,
    /// For an address at an accept-all domain without confirmed engagement: why its mailbox
    /// may not exist, in words.
    pub uncertain_mailbox: Option<String>,
}

impl AddressStatus {
    /// True while the address must not be mailed (for the mail asked about): it is suppressed
    /// itself, or its domain is.
    pub fn is_suppressed(&self) -> bool {
        self.suppression.is_some() || self.domain_suppression.is_some()
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
                | StateChangeKind::UnsubscribedFromList
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
    /// Reads raw bounce messages and records what they say.
    pub bounces: bounce_messages::BounceMessages,
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
    /// Erases a person's data.
    pub forget: forget::Forgetting,
    /// The change feed of suppression lists.
    pub feed: feed::Feed,
    /// Clears suppressions whose expiry has come, in the background.
    expiry: Arc<expiry::ExpirySweep>,
    /// Domain-level suppression and accept-all marks.
    pub domains: domains::Domains,
    /// Suppressions brought in from other systems.
    pub imports: imports::Imports,
    /// Online backups.
    pub backup: backup::Backups,
    /// Per-request limits.
    pub limits: Limits,
    /// Where the time comes from.
    pub clock: Clock,
}

impl App {
    /// The use cases over `store`. Starts the health watcher and the expiry sweep on the
    /// current tokio runtime.
    pub fn new(
        store: Arc<dyn SuppressionStore>,
        classifier: Arc<Classifier>,
        settings: Settings,
    ) -> App {
        let context = Context {
            store: store.clone(),
            classifier: classifier.clone(),
            policy: settings.policy,
            limits: settings.limits,
            correction_threshold: settings.correction_threshold,
            domains: settings.domains,
            clock: settings.clock.clone(),
        };
        store.set_domain_rules(Arc::new(settings.domains));
        let monitor = HealthMonitor::spawn(store, settings.health, settings.clock.clone());
        let correction = correction::Corrections::new(context.clone());
        let expiry = expiry::ExpirySweep::spawn(context.clone());
        App {
            report: report::Reporter::new(context.clone()),
            bounces: bounce_messages::BounceMessages::new(
                report::Reporter::new(context.clone()),
                classifier,
                settings.limits.max_bounce_message_bytes,
            ),
            lookup: lookup::Lookups::new(context.clone()),
            addresses: addresses::Addresses::new(context.clone()),
            import_guard: import_guard::ImportGuard::new(context.clone(), correction.clone()),
            correction,
            reclassify: reclassify::Reclassifier::new(context.clone()),
            forget: forget::Forgetting::new(context.clone()),
            feed: feed::Feed::spawn(context.clone(), settings.change_retention),
            domains: domains::Domains::new(context.clone()),
            imports: imports::Imports::new(context.clone()),
            backup: backup::Backups::new(context.clone()),
            monitoring: monitoring::Monitoring::new(context, monitor),
            expiry,
            limits: settings.limits,
            clock: settings.clock,
        }
    }

    /// The secret page tokens are signed with: kept with the data, so tokens survive restarts.
    pub fn token_secret(&self) -> [u8; 32] {
        self.report.context().store.token_secret()
    }

    /// Stops background work (the health watcher, the feed's retention, the expiry sweep) so
    /// the store can close.
    pub async fn shutdown(&self) {
        self.monitoring.stop().await;
        self.feed.stop().await;
        self.expiry.stop().await;
    }
}
