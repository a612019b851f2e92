//! The import guard: screening the contacts of a CRM sync or list upload against the
//! suppression list before they are (re)imported, so that addresses that hard-bounced,
//! complained or were suppressed never come back.
//!
//! A stream's batches are screened one at a time, in order, on a blocking thread; what the
//! stream must remember (its tenant, the addresses seen so far, suggestion lookups) travels
//! with it in an [`ImportSession`].

use std::ops::Range;
use std::sync::Mutex;

use super::correction::{Corrections, SuggestionCache};
use super::{uncertain_mailbox, AppError, Caller, Context, FieldViolation};
use crate::domain::{
    AddressError, AddressRecord, DomainSuppression, EmailAddress, ListId, Suppression, Tenant,
};
use crate::fasthash::KeySet;
use crate::store::DomainFacts;
use crate::suggest::Suggestion;

/// What the guard decides for one contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ImportDecision {
    /// Not suppressed: import it.
    Allow = 1,
    /// Suppressed: do not import it.
    BlockSuppressed = 2,
    /// Not a valid address.
    BlockInvalid = 3,
    /// The address appeared earlier in this import.
    Duplicate = 4,
    /// Suppressed, but replaced by a corrected address: fix the record instead of dropping it.
    Replace = 5,
}

impl ImportDecision {
    /// Every decision, in numbering order.
    pub const ALL: [ImportDecision; 5] = [
        ImportDecision::Allow,
        ImportDecision::BlockSuppressed,
        ImportDecision::BlockInvalid,
        ImportDecision::Duplicate,
        ImportDecision::Replace,
    ];

    /// The label of `suppressd_import_verdicts_total`.
    pub fn metric_name(self) -> &'static str {
        match self {
            ImportDecision::Allow => "IMPORT_DECISION_ALLOW",
            ImportDecision::BlockSuppressed => "IMPORT_DECISION_BLOCK_SUPPRESSED",
            ImportDecision::BlockInvalid => "IMPORT_DECISION_BLOCK_INVALID",
            ImportDecision::Duplicate => "IMPORT_DECISION_DUPLICATE",
            ImportDecision::Replace => "IMPORT_DECISION_REPLACE",
        }
    }
}

/// One contact of an import batch, borrowed from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Contact<'a> {
    /// The address as the caller gave it.
    pub address: &'a str,
    /// Given name, for company-pattern suggestions (empty when unknown).
    pub given_name: &'a str,
    /// Family name (empty when unknown).
    pub family_name: &'a str,
}

/// One batch of an import stream: contacts with names, then bare address lines. Positions run
/// over both, contacts first.
#[derive(Debug, Default)]
pub struct ImportBatch<'a> {
    /// The tenant; every batch of a stream must name the same one.
    pub tenant: &'a str,
    /// Contacts with names.
    pub contacts: Vec<Contact<'a>>,
    /// Bare addresses.
    pub lines: Vec<&'a str>,
    /// The field that carried the batch, named in errors (`contacts` or `address_lines`).
    pub field: &'static str,
    /// The mailing list the contacts are imported into (empty: none); read from the first
    /// batch of a stream.
    pub list_id: &'a str,
}

/// The complete verdict of a contact that is not simply allowed.
#[derive(Debug, Clone)]
pub struct ContactVerdict {
    /// Position of the contact in its batch.
    pub position: usize,
    /// The decision.
    pub decision: ImportDecision,
    /// Why, for people.
    pub detail: String,
    /// The suppression, for suppressed contacts.
    pub suppression: Option<Suppression>,
    /// The corrected address, for `Replace`.
    pub replacement: Option<String>,
    /// The best correction, when it reaches the confidence threshold.
    pub suggestion: Option<Suggestion>,
    /// Blocked because the address's domain is suppressed (`suppression` is the domain's).
    pub domain_level: bool,
    /// The address is at an accept-all domain and has no confirmed engagement.
    pub uncertain_mailbox: bool,
}

/// The verdicts of one screened batch.
#[derive(Debug)]
pub struct Screened {
    /// Index of the batch within its stream, from 0.
    pub batch_index: u64,
    /// One decision per contact, in position order.
    pub decisions: Vec<ImportDecision>,
    /// Complete verdicts of the contacts that are not allowed, in position order.
    pub verdicts: Vec<ContactVerdict>,
    /// Positions of allowed contacts at accept-all domains without confirmed engagement, in
    /// order.
    pub allowed_uncertain: Vec<usize>,
    /// Normalized addresses of the batch, concatenated.
    arena: String,
    /// Where each contact's normalized address is in `arena` (empty for invalid ones).
    normalized: Vec<Range<usize>>,
}

impl Screened {
    /// The normalized address of the contact at `position` (empty when it is invalid).
    pub fn normalized(&self, position: usize) -> &str {
        self.normalized
            .get(position)
            .and_then(|r| self.arena.get(r.clone()))
            .unwrap_or("")
    }

    /// Number of contacts screened.
    pub fn len(&self) -> usize {
        self.decisions.len()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty()
    }
}

/// What the import guard remembers across the batches of one stream.
pub struct ImportSession {
    /// Who screens: every batch's tenant must be one of its tenants.
    caller: Caller,
    tenant: Option<Tenant>,
    /// The list the stream imports into, from its first batch: unsubscribes from it block.
    list: ListId,
    /// Known-good domains and domain patterns, read once per stream.
    suggestions: SuggestionCache,
    /// 128-bit hashes of the normalized addresses seen so far (collisions are negligible:
    /// about 1 in 10^26 for a million addresses).
    seen: SeenSet,
    batch_index: u64,
}

impl ImportSession {
    /// A new stream of `caller`.
    pub fn new(caller: Caller) -> ImportSession {
        ImportSession {
            caller,
            tenant: None,
            list: ListId::default(),
            suggestions: SuggestionCache::default(),
            seen: SeenSet::default(),
            batch_index: 0,
        }
    }

    /// The stream's tenant, once its first batch named it.
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}

/// Most bytes of seen-address tables kept for later streams.
const POOLED_SEEN_BYTES: usize = 64 << 20;

/// Seen-address tables of ended streams, kept for the next ones: a growing stream would
/// otherwise take its table fresh from the kernel, page by page, and back-to-back import
/// streams would spend their CPU clearing pages (measured in bench/README.md).
static SEEN_POOL: Mutex<Vec<KeySet<u128>>> = Mutex::new(Vec::new());

/// An import stream's seen-address table, handed back to [`SEEN_POOL`] when the stream ends.
#[derive(Default)]
struct SeenSet(KeySet<u128>);

impl SeenSet {
    /// Makes room for `additional` more addresses. When the table must grow, a pooled table of
    /// one to four times the size needed is taken instead, if there is one; it is emptied here,
    /// on the stream's blocking thread, so that what a stream spends emptying stays in
    /// proportion to its own size (a small stream never empties a big table).
    fn make_room(&mut self, additional: usize) {
        let needed = self.0.len() + additional;
        if needed <= self.0.capacity() {
            return;
        }
        let pooled = {
            let mut pool = SEEN_POOL.lock().unwrap_or_else(|e| e.into_inner());
            pool.iter()
                .position(|t| (needed..=needed * 4).contains(&t.capacity()))
                .map(|i| pool.swap_remove(i))
        };
        match pooled {
            Some(mut table) => {
                table.clear();
                for k in self.0.iter() {
                    table.insert(k);
                }
                self.0 = table;
            }
            None => self.0.reserve(additional),
        }
    }
}

impl Drop for SeenSet {
    fn drop(&mut self) {
        let set = std::mem::take(&mut self.0);
        if set.heap_bytes() == 0 {
            return;
        }
        let mut pool = SEEN_POOL.lock().unwrap_or_else(|e| e.into_inner());
        let pooled: usize = pool.iter().map(KeySet::heap_bytes).sum();
        if pooled + set.heap_bytes() <= POOLED_SEEN_BYTES {
            pool.push(set);
        }
    }
}

/// What the domain marks say about the screened addresses of a batch, by their index among
/// the addresses looked up.
#[derive(Default)]
struct DomainScreen {
    /// The facts of the addresses at marked domains, in index order.
    facts: Vec<(usize, DomainFacts)>,
    /// Addresses at accept-all domains with confirmed engagement, in index order.
    engaged: Vec<usize>,
}

/// What the first pass found out about a contact. The ranges locate its normalized address in
/// the batch's arena of normalized addresses.
enum Slot {
    Invalid(AddressError),
    Duplicate(Range<usize>),
    Check(Range<usize>),
}

/// The lines of an `address_lines` text: split on "\n", a "\r" before it dropped, a final
/// newline optional.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    (!text.is_empty())
        .then_some(body)
        .into_iter()
        .flat_map(|b| b.split('\n'))
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// Screens import batches.
#[derive(Clone)]
pub struct ImportGuard {
    context: Context,
    corrections: Corrections,
}

impl ImportGuard {
    pub(super) fn new(context: Context, corrections: Corrections) -> Self {
        ImportGuard {
            context,
            corrections,
        }
    }

    /// Screens one batch of an import stream. Blocking (store reads): call it off the async
    /// workers.
    pub fn screen(
        &self,
        session: &mut ImportSession,
        batch: &ImportBatch<'_>,
    ) -> Result<Screened, AppError> {
        let tenant = Tenant::parse(batch.tenant).map_err(|e| FieldViolation::new("tenant", e))?;
        session.caller.check_tenant(&tenant)?;
        match &session.tenant {
            None => {
                session.list =
                    ListId::parse(batch.list_id).map_err(|e| FieldViolation::new("list_id", e))?;
                session.tenant = Some(tenant.clone());
            }
            Some(t) if *t != tenant => {
                return Err(FieldViolation::new(
                    "tenant",
                    format!("changed from {t} to {tenant} within one stream"),
                )
                .into())
            }
            Some(_) => {}
        }
        let contacts = &batch.contacts;
        let n = contacts.len() + batch.lines.len();
        self.context.limits.check_batch(batch.field, n)?;

        // First pass: normalize every address into one arena (no allocation per address),
        // and tell first sightings from repeats.
        let mut arena = String::with_capacity(
            contacts.iter().map(|c| c.address.len()).sum::<usize>()
                + batch.lines.iter().map(|l| l.len() + 1).sum::<usize>(),
        );
        let normalized: Vec<Result<(Range<usize>, u128), AddressError>> = contacts
            .iter()
            .map(|c| c.address)
            .chain(batch.lines.iter().copied())
            .map(|raw| {
                let range = EmailAddress::normalize_into(raw, &mut arena)?;
                let hash = xxhash_rust::xxh3::xxh3_128(arena[range.clone()].as_bytes());
                Ok((range, hash))
            })
            .collect();
        session.seen.make_room(normalized.iter().flatten().count());
        let slots: Vec<Slot> = normalized
            .into_iter()
            .map(|n| match n {
                Err(e) => Slot::Invalid(e),
                Ok((range, hash)) if session.seen.0.insert(hash) => Slot::Check(range),
                Ok((range, _)) => Slot::Duplicate(range),
            })
            .collect();
        let (lookup_positions, lookups): (Vec<usize>, Vec<&str>) = slots
            .iter()
            .enumerate()
            .filter_map(|(position, slot)| match slot {
                Slot::Check(range) => Some((position, &arena[range.clone()])),
                _ => None,
            })
            .unzip();
        // One instant for the whole batch, the rule of status lookups: what has expired by then
        // is allowed, swept or not.
        let now = self.context.clock.now();
        let list = session.list.named().map(str::to_string);
        let list = list.as_deref();
        let suppressed =
            self.context
                .store
                .suppressed_records(&tenant, &lookups, list.is_some())?;
        // Domain marks: nothing to do (no allocation) while the tenant has none. The corrections
        // suggested for this batch judge by the same read.
        let marked = self.context.store.has_marked_domains(&tenant);
        session.suggestions.marked_domains = Some(marked);
        let DomainScreen { facts, engaged } = if marked {
            self.screen_domains(&tenant, &lookups, &suppressed)?
        } else {
            DomainScreen::default()
        };
        let mut suppressed = suppressed
            .into_iter()
            .filter_map(|(k, mut record)| {
                let suppression = record.take_blocking(now, list)?;
                Some((lookup_positions[k], (record, suppression)))
            })
            .peekable();
        let mut facts = facts
            .into_iter()
            .map(|(k, f)| (lookup_positions[k], f))
            .peekable();
        let mut engaged = engaged.into_iter().map(|k| lookup_positions[k]).peekable();
        let mut allowed_uncertain = Vec::new();

        let mut decisions = Vec::with_capacity(n);
        let mut verdicts = Vec::new();
        let mut ranges = Vec::with_capacity(n);
        let mut by_decision = [0u64; 6];
        for (position, slot) in slots.iter().enumerate() {
            let record = suppressed
                .next_if(|(p, _)| *p == position)
                .map(|(_, record)| record);
            let range = match slot {
                Slot::Check(r) | Slot::Duplicate(r) => r.clone(),
                Slot::Invalid(_) => 0..0,
            };
            let (domain_suppression, uncertain) = match facts.next_if(|(p, _)| *p == position) {
                None => (None, false),
                Some((_, f)) => (
                    f.suppressed,
                    f.accept_all.is_some() && engaged.next_if(|p| *p == position).is_none(),
                ),
            };
            if record.is_none() && domain_suppression.is_none() && matches!(slot, Slot::Check(_)) {
                by_decision[ImportDecision::Allow as usize] += 1;
                decisions.push(ImportDecision::Allow);
                ranges.push(range);
                if uncertain {
                    allowed_uncertain.push(position);
                }
                continue;
            }
            let contact = contacts.get(position).copied();
            let given = contact.map_or_else(
                || {
                    position
                        .checked_sub(contacts.len())
                        .and_then(|i| batch.lines.get(i).copied())
                        .unwrap_or("")
                },
                |c| c.address,
            );
            let names = contact.map(|c| (c.given_name, c.family_name));
            let mut verdict = self.verdict(
                &tenant,
                session,
                position,
                given,
                &arena[range.clone()],
                names,
                slot,
                record,
                domain_suppression,
            )?;
            verdict.uncertain_mailbox = uncertain;
            by_decision[verdict.decision as usize] += 1;
            decisions.push(verdict.decision);
            verdicts.push(verdict);
            ranges.push(range);
        }
        for decision in ImportDecision::ALL {
            let count = by_decision[decision as usize];
            if count > 0 {
                metrics::counter!("suppressd_import_verdicts_total", "decision" => decision.metric_name())
                    .increment(count);
            }
        }
        let batch_index = session.batch_index;
        session.batch_index += 1;
        Ok(Screened {
            batch_index,
            decisions,
            verdicts,
            allowed_uncertain,
            arena,
            normalized: ranges,
        })
    }

    /// What the domain marks say about the screened addresses (`lookups`), by index, and the
    /// indexes of those at accept-all domains with confirmed engagement. Only the records of
    /// addresses at accept-all domains are read (those the known-address index cannot rule
    /// out, and not the suppressed ones, whose records are at hand).
    fn screen_domains(
        &self,
        tenant: &Tenant,
        lookups: &[&str],
        suppressed: &[(usize, AddressRecord)],
    ) -> Result<DomainScreen, AppError> {
        let domains: Vec<&str> = lookups
            .iter()
            .map(|a| a.rsplit_once('@').map_or(*a, |(_, d)| d))
            .collect();
        let facts = self.context.store.domain_facts(tenant, &domains);
        let mut engaged = Vec::new();
        let mut unread = Vec::new();
        for (k, f) in &facts {
            if f.accept_all.is_none() {
                continue;
            }
            match suppressed.binary_search_by_key(k, |(i, _)| *i) {
                Ok(at) if !uncertain_mailbox(Some(&suppressed[at].1)) => engaged.push(*k),
                Ok(_) => {}
                Err(_) => unread.push(*k),
            }
        }
        if !unread.is_empty() {
            let addresses: Vec<&str> = unread.iter().map(|&k| lookups[k]).collect();
            for (i, record) in self.context.store.records(tenant, &addresses)? {
                if !uncertain_mailbox(Some(&record)) {
                    engaged.push(unread[i]);
                }
            }
        }
        engaged.sort_unstable();
        Ok(DomainScreen { facts, engaged })
    }

    /// The complete verdict of one contact that is not simply allowed; `record` comes with
    /// what blocks the address for the import (taken out of it), when something does.
    #[allow(clippy::too_many_arguments)]
    fn verdict(
        &self,
        tenant: &Tenant,
        session: &mut ImportSession,
        position: usize,
        given: &str,
        normalized: &str,
        names: Option<(&str, &str)>,
        slot: &Slot,
        record: Option<(AddressRecord, Suppression)>,
        domain_suppression: Option<(String, DomainSuppression)>,
    ) -> Result<ContactVerdict, AppError> {
        let mut verdict = ContactVerdict {
            position,
            decision: ImportDecision::Allow,
            detail: String::new(),
            suppression: None,
            replacement: None,
            suggestion: None,
            domain_level: false,
            uncertain_mailbox: false,
        };
        match slot {
            Slot::Invalid(e) => {
                verdict.decision = ImportDecision::BlockInvalid;
                verdict.detail = e.to_string();
                verdict.suggestion = self.corrections.best_suggestion(
                    tenant,
                    given,
                    names,
                    &mut session.suggestions,
                )?;
            }
            Slot::Duplicate(_) => {
                verdict.decision = ImportDecision::Duplicate;
                verdict.detail = "address appeared earlier in this import".to_string();
            }
            Slot::Check(_) => {
                if let Some((
                    AddressRecord {
                        replaced_by,
                        needs_enrichment,
                        ..
                    },
                    s,
                )) = record
                {
                    let since = s.since.to_rfc3339();
                    let (reason, address_level) = (s.reason, s.reason.is_address_level());
                    let list_unsubscribe = (!s.list_id.is_empty())
                        .then(|| format!("unsubscribed from list {} since {since}", s.list_id));
                    verdict.suppression = Some(s);
                    if let Some(detail) = list_unsubscribe {
                        verdict.decision = ImportDecision::BlockSuppressed;
                        verdict.detail = detail;
                    } else if let Some(replacement) = replaced_by {
                        verdict.decision = ImportDecision::Replace;
                        verdict.detail = format!(
                            "suppressed since {since} ({reason:?}); replaced by {replacement}"
                        );
                        verdict.replacement = Some(replacement);
                    } else {
                        verdict.decision = ImportDecision::BlockSuppressed;
                        let enrichment = if needs_enrichment {
                            "; needs enrichment"
                        } else {
                            ""
                        };
                        verdict.detail =
                            format!("suppressed since {since} ({reason:?}){enrichment}");
                        if address_level {
                            verdict.suggestion = self.corrections.best_suggestion(
                                tenant,
                                normalized,
                                names,
                                &mut session.suggestions,
                            )?;
                        }
                    }
                } else if let Some((domain, s)) = domain_suppression {
                    verdict.decision = ImportDecision::BlockSuppressed;
                    verdict.domain_level = true;
                    verdict.detail = domain_detail(&domain, &s);
                    verdict.suppression = Some(Suppression::of_domain(s));
                }
            }
        }
        Ok(verdict)
    }
}

/// Why an address at a suppressed domain is blocked, naming the domain.
fn domain_detail(domain: &str, s: &DomainSuppression) -> String {
    let scope = if s.include_subdomains {
        " with its subdomains"
    } else {
        ""
    };
    format!(
        "the domain {domain} is suppressed{scope} ({:?} since {})",
        s.reason,
        s.since.to_rfc3339()
    )
}

#[cfg(test)]
mod tests {
    use super::{lines, SeenSet};

    /// Distinct, well-spread 128-bit keys.
    fn keys(range: std::ops::Range<u64>) -> Vec<u128> {
        range
            .map(|i| u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) << 64 | u128::from(i))
            .collect()
    }

    #[test]
    fn a_stream_that_takes_a_pooled_table_keeps_what_it_saw_and_nothing_else() {
        let earlier = keys(1..20_001);
        let mut ended = SeenSet::default();
        ended.make_room(earlier.len());
        for &k in &earlier {
            ended.0.insert(k);
        }
        drop(ended);

        let (first, second) = (keys(30_001..35_001), keys(40_001..45_001));
        let mut stream = SeenSet::default();
        stream.make_room(first.len());
        for &k in &first {
            assert!(stream.0.insert(k));
        }
        // Too small for the pooled table until the stream needs a quarter of it.
        assert!(stream.0.capacity() < earlier.len());
        stream.make_room(second.len());
        assert!(
            stream.0.capacity() >= earlier.len(),
            "the pooled table was not taken"
        );
        assert!(first.iter().all(|&k| stream.0.contains(k)));
        assert!(earlier.iter().all(|&k| !stream.0.contains(k)));
    }

    #[test]
    fn address_lines_split_on_newlines_with_an_optional_final_one() {
        fn all(s: &str) -> Vec<&str> {
            lines(s).collect()
        }
        assert!(all("").is_empty());
        assert_eq!(all("a@x.com"), ["a@x.com"]);
        assert_eq!(all("a@x.com\n"), ["a@x.com"]);
        assert_eq!(all("a@x.com\r\nb@y.org\r\n"), ["a@x.com", "b@y.org"]);
        assert_eq!(all("a@x.com\n\nb@y.org"), ["a@x.com", "", "b@y.org"]);
        assert_eq!(all("\n"), [""]);
    }
}
