//! Corrections of bad addresses, as the brief's decision tree runs them: suggest candidates
//! (domain typos, the company's email pattern), replace only with evidence and high
//! confidence, and otherwise mark the contact as needing enrichment.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{blocking, AddressStatus, AppError, Caller, Context, FieldViolation};
use crate::domain::{EmailAddress, EvidenceKind, Tenant};
use crate::policy::correction::{decide_replacement, ReplaceDecision, ReplaceRequest};
use crate::store::{PairDecision, PairWrite};
use crate::suggest::{self, DomainPattern, KnownAddress, KnownDomains, SuggestInput, Suggestion};

/// Most delivered local parts read to infer a domain's pattern.
const PATTERN_SAMPLE: usize = 5_000;
/// Most known-good domains of a tenant offered to the typo matcher.
const KNOWN_DOMAINS: usize = 500;
/// Most suggestions one `suggest` call returns.
const MAX_SUGGESTIONS: usize = 20;

/// Suggests and applies corrections.
#[derive(Clone)]
pub struct Corrections {
    context: Context,
}

/// What suggestion lookups remember within one call or one import stream.
#[derive(Default)]
pub struct SuggestionCache {
    known_domains: Option<KnownDomains>,
    patterns: HashMap<String, Option<DomainPattern>>,
    /// Typo fixes by domain. Without names only domain typos can be suggested, and those keep
    /// the local part, so one computation serves every contact at the domain.
    typos: HashMap<String, Vec<Suggestion>>,
    /// Whether the tenant has marked domains, as the import screen read it for the batch being
    /// screened (every suggestion of a batch judges by the same read); unset: read it.
    pub(super) marked_domains: Option<bool>,
}

/// Outcome of a suggestion lookup.
#[derive(Debug, Clone)]
pub struct Suggestions {
    /// The address suggestions were made for (normalized; repaired if the input was invalid).
    pub address: Option<EmailAddress>,
    /// Candidates, best first, none of them suppressed.
    pub candidates: Vec<Suggestion>,
    /// The inferred pattern of the address's domain, if any (and if it was asked for).
    pub pattern: Option<DomainPattern>,
}

/// When a suggestion lookup reads the address's domain pattern (a store scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternLookup {
    /// Only when names were given, since only names can use it (the import guard).
    ForNames,
    /// Always, to report it (`SuggestCorrections`).
    Always,
}

/// A request to replace a bad address by a corrected one.
#[derive(Debug, Clone)]
pub struct Replace {
    /// The bad (suppressed) address.
    pub old: EmailAddress,
    /// The corrected address.
    pub new: EmailAddress,
    /// What backs the correction.
    pub evidence: EvidenceKind,
    /// The caller's confidence, 0 to 1.
    pub confidence: f32,
    /// The caller's note.
    pub note: String,
}

/// What a replacement did.
#[derive(Debug, Clone)]
pub struct Replaced {
    /// The old address's status afterwards.
    pub old: AddressStatus,
    /// The new address's status afterwards.
    pub new: AddressStatus,
    /// The same replacement was made before; nothing changed.
    pub already_replaced: bool,
}

/// Simple repairs of an invalid address: stray spaces, a comma for a dot, a doubled `@`,
/// angle brackets or a `mailto:` prefix. `None` when no repair yields a valid address.
fn repair(raw: &str) -> Option<(EmailAddress, &'static str)> {
    let mut s: String = raw.trim().to_string();
    let mut what = Vec::new();
    if let Some(rest) = s.strip_prefix("mailto:") {
        s = rest.to_string();
        what.push("removed 'mailto:'");
    }
    if s.starts_with('<') && s.ends_with('>') && s.len() > 2 {
        s = s[1..s.len() - 1].to_string();
        what.push("removed angle brackets");
    }
    if s.chars().any(char::is_whitespace) {
        s.retain(|c| !c.is_whitespace());
        what.push("removed spaces");
    }
    if s.contains(',') {
        s = s.replace(',', ".");
        what.push("replaced ',' by '.'");
    }
    while s.contains("@@") {
        s = s.replace("@@", "@");
        what.push("removed a doubled '@'");
    }
    while s.contains("..") {
        s = s.replace("..", ".");
        what.push("removed a doubled '.'");
    }
    if what.is_empty() {
        return None;
    }
    let address = EmailAddress::parse(&s).ok()?;
    // One static description is enough for the explanation; the most telling is the first.
    Some((address, what[0]))
}

impl Corrections {
    pub(super) fn new(context: Context) -> Self {
        Corrections { context }
    }

    fn domain_pattern(
        &self,
        tenant: &Tenant,
        domain: &str,
        cache: &mut SuggestionCache,
    ) -> Result<Option<DomainPattern>, AppError> {
        if let Some(p) = cache.patterns.get(domain) {
            return Ok(p.clone());
        }
        let locals = self
            .context
            .store
            .known_good_locals(tenant, domain, PATTERN_SAMPLE)?;
        let known: Vec<KnownAddress<'_>> = locals
            .iter()
            .map(|l| KnownAddress {
                local_part: l,
                given_name: None,
                family_name: None,
            })
            .collect();
        let pattern = suggest::infer_pattern(&known);
        cache.patterns.insert(domain.to_string(), pattern.clone());
        Ok(pattern)
    }
    /// Correction candidates for `raw` (valid or not), best first, none suppressed, and the
    /// pattern of its domain when names were given or `pattern_lookup` asks for it always.
    /// Runs store reads: call it off the async workers.
    pub fn suggestions(
        &self,
        tenant: &Tenant,
        raw: &str,
        given: Option<&str>,
        family: Option<&str>,
        pattern_lookup: PatternLookup,
        cache: &mut SuggestionCache,
    ) -> Result<Suggestions, AppError> {
        let mut candidates = Vec::new();
        let original = EmailAddress::parse(raw).ok();
        let address = match original.clone() {
            Some(a) => a,
            None => match repair(raw) {
                Some((fixed, how)) => {
                    candidates.push(Suggestion {
                        address: fixed.as_str().to_string(),
                        evidence: suggest::EvidenceKind::TypoFix,
                        confidence: 0.9,
                        explanation: format!("{how} to make a valid address"),
                    });
                    fixed
                }
                None => {
                    return Ok(Suggestions {
                        address: None,
                        candidates,
                        pattern: None,
                    })
                }
            },
        };
        let given = given.filter(|g| !g.trim().is_empty());
        let family = family.filter(|f| !f.trim().is_empty());
        // The domain's pattern shapes candidates only from names; without them it is read
        // only when the caller reports it.
        let pattern =
            if given.is_some() || family.is_some() || pattern_lookup == PatternLookup::Always {
                self.domain_pattern(tenant, address.domain(), cache)?
            } else {
                None
            };
        let known = match &mut cache.known_domains {
            Some(known) => known,
            none => {
                let domains = self
                    .context
                    .store
                    .known_good_domains(tenant, KNOWN_DOMAINS)?;
                let domains: Vec<&str> = domains.iter().map(|(d, _)| d.as_str()).collect();
                none.insert(KnownDomains::new(&domains))
            }
        };
        let input = SuggestInput {
            address: address.as_str(),
            given_name: given,
            family_name: family,
            known_good_domains: known,
            domain_pattern: pattern.as_ref(),
        };
        if given.is_none() && family.is_none() {
            let domain = address.domain();
            let typos = match cache.typos.get(domain) {
                Some(t) => t.clone(),
                None => {
                    // Stored with the domain only; the local part is put back below.
                    let found: Vec<Suggestion> = suggest::suggest(&input)
                        .into_iter()
                        .filter(|s| s.evidence == suggest::EvidenceKind::TypoFix)
                        .filter_map(|mut s| {
                            let fixed = s.address.rsplit_once('@')?.1.to_string();
                            s.address = fixed;
                            Some(s)
                        })
                        .collect();
                    cache.typos.insert(domain.to_string(), found.clone());
                    found
                }
            };
            candidates.extend(typos.into_iter().map(|mut s| {
                s.address = format!("{}@{}", address.local_part(), s.address);
                s
            }));
        } else {
            candidates.extend(suggest::suggest(&input));
        }
        // Keep valid, distinct candidates that are not the address itself and not suppressed.
        let mut seen = HashSet::new();
        let parsed: Vec<(Suggestion, EmailAddress)> = candidates
            .into_iter()
            .filter_map(|s| EmailAddress::parse(&s.address).ok().map(|a| (s, a)))
            .filter(|(_, a)| original.as_ref() != Some(a))
            .filter(|(_, a)| seen.insert(a.as_str().to_string()))
            .collect();
        let lookups: Vec<&str> = parsed.iter().map(|(_, a)| a.as_str()).collect();
        let now = self.context.clock.now();
        let mut suppressed: HashSet<usize> = self
            .context
            .store
            .suppressed_records(tenant, &lookups, false)?
            .into_iter()
            .filter(|(_, record)| record.suppression_at(now).is_some())
            .map(|(i, _)| i)
            .collect();
        // Nor an address at a suppressed domain.
        let marked = match cache.marked_domains {
            Some(marked) => marked,
            None => self.context.store.has_marked_domains(tenant),
        };
        if marked && !parsed.is_empty() {
            let domains: Vec<&str> = parsed.iter().map(|(_, a)| a.domain()).collect();
            suppressed.extend(
                self.context
                    .store
                    .domain_facts(tenant, &domains)
                    .into_iter()
                    .filter(|(_, f)| f.suppressed.is_some())
                    .map(|(i, _)| i),
            );
        }
        let mut candidates: Vec<Suggestion> = parsed
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !suppressed.contains(i))
            .map(|(_, (mut s, a))| {
                s.address = a.as_str().to_string();
                s
            })
            .collect();
        candidates.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then_with(|| a.address.cmp(&b.address))
        });
        Ok(Suggestions {
            address: Some(address),
            candidates,
            pattern,
        })
    }

    /// The best correction of an invalid or suppressed contact, if it reaches the confidence
    /// threshold. Runs store reads: call it off the async workers.
    pub fn best_suggestion(
        &self,
        tenant: &Tenant,
        raw: &str,
        names: Option<(&str, &str)>,
        cache: &mut SuggestionCache,
    ) -> Result<Option<Suggestion>, AppError> {
        let name = |n: &str| {
            crate::domain::Label::optional(n)
                .ok()
                .filter(|n| !n.is_empty())
        };
        let given = names.and_then(|(g, _)| name(g));
        let family = names.and_then(|(_, f)| name(f));
        let found = self.suggestions(
            tenant,
            raw,
            given.as_deref(),
            family.as_deref(),
            PatternLookup::ForNames,
            cache,
        )?;
        let threshold = self.context.correction_threshold;
        Ok(found
            .candidates
            .into_iter()
            .next()
            .filter(|s| s.confidence >= threshold))
    }

    /// Correction candidates for an address (valid or not), best first, at most `max`, with
    /// the pattern of its domain.
    pub async fn suggest(
        &self,
        caller: &Caller,
        tenant: Tenant,
        raw: String,
        given_name: String,
        family_name: String,
        max: usize,
    ) -> Result<Suggestions, AppError> {
        caller.check_tenant(&tenant)?;
        let corrections = self.clone();
        blocking(move || {
            let mut cache = SuggestionCache::default();
            let mut found = corrections.suggestions(
                &tenant,
                &raw,
                Some(&given_name),
                Some(&family_name),
                PatternLookup::Always,
                &mut cache,
            )?;
            found.candidates.truncate(max.min(MAX_SUGGESTIONS));
            Ok(found)
        })
        .await
    }

    /// Replaces a bad address by a corrected one when the evidence is strong enough; below the
    /// confidence threshold, nothing is replaced and the old address is marked as needing
    /// enrichment (`FailedPrecondition`).
    pub async fn replace(
        &self,
        caller: &Caller,
        tenant: Tenant,
        request: Replace,
    ) -> Result<Replaced, AppError> {
        caller.check_tenant(&tenant)?;
        let Replace {
            old,
            new,
            evidence,
            confidence,
            note,
        } = request;
        let signer = caller.clone();
        if old == new {
            return Err(
                FieldViolation::new("new_address", "is the same address as old_address").into(),
            );
        }
        if let Some((domain, _)) = self
            .context
            .store
            .domain_facts(&tenant, &[new.domain()])
            .pop()
            .and_then(|(_, f)| f.suppressed)
        {
            return Err(AppError::FailedPrecondition(format!(
                "{new} is itself suppressed: its domain {domain} is"
            )));
        }
        if !(0.0..=1.0).contains(&confidence) {
            return Err(FieldViolation::new("confidence", "must be between 0 and 1").into());
        }
        let now = self.context.clock.now();
        let threshold = self.context.correction_threshold;
        let (old_c, new_c) = (old.clone(), new.clone());
        let low_confidence = Arc::new(AtomicBool::new(false));
        let already = Arc::new(AtomicBool::new(false));
        let (low_flag, already_flag) = (low_confidence.clone(), already.clone());
        let write = PairWrite {
            tenant: tenant.clone(),
            first: old.clone(),
            second: new.clone(),
            decide: Box::new(move |old_record, new_record| {
                let request = ReplaceRequest {
                    old_address: &old_c,
                    new_address: &new_c,
                    evidence,
                    confidence,
                    note: &note,
                    actor: signer.actor(),
                    now,
                    threshold,
                };
                // Decided again if the store runs the write again: only the last run's flags
                // count.
                low_flag.store(false, Ordering::Relaxed);
                already_flag.store(false, Ordering::Relaxed);
                match decide_replacement(&request, old_record, new_record) {
                    Err(refusal) => PairDecision::Refuse(refusal.to_string()),
                    Ok(ReplaceDecision::AlreadyDone) => {
                        already_flag.store(true, Ordering::Relaxed);
                        PairDecision::Apply {
                            first: None,
                            second: None,
                        }
                    }
                    Ok(ReplaceDecision::LowConfidence {
                        old,
                        mut old_changes,
                    }) => {
                        signer.sign(&mut old_changes);
                        low_flag.store(true, Ordering::Relaxed);
                        PairDecision::Apply {
                            first: (!old_changes.is_empty()).then_some((old, old_changes)),
                            second: None,
                        }
                    }
                    Ok(ReplaceDecision::Replace {
                        old,
                        new,
                        mut old_changes,
                        mut new_changes,
                    }) => {
                        signer.sign(&mut old_changes);
                        signer.sign(&mut new_changes);
                        PairDecision::Apply {
                            first: Some((old, old_changes)),
                            second: Some((new, new_changes)),
                        }
                    }
                }
            }),
        };
        let outcome = self.context.store.write_pair(write).await?;
        if let Some(reason) = outcome.refused {
            return Err(AppError::FailedPrecondition(reason));
        }
        if low_confidence.load(Ordering::Relaxed) {
            return Err(AppError::FailedPrecondition(format!(
                "confidence {confidence:.2} is below the required {threshold:.2}: nothing was replaced, and {old} is marked as needing enrichment"
            )));
        }
        Ok(Replaced {
            old: self.context.status(&tenant, old, outcome.first, now),
            new: self.context.status(&tenant, new, outcome.second, now),
            already_replaced: already.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_obvious_syntax_slips_only() {
        let fixed = |s: &str| repair(s).map(|(a, _)| a.as_str().to_string());
        assert_eq!(fixed("jane@gmail,com").as_deref(), Some("jane@gmail.com"));
        assert_eq!(
            fixed(" jane @ example.com").as_deref(),
            Some("jane@example.com")
        );
        assert_eq!(
            fixed("jane@@example.com").as_deref(),
            Some("jane@example.com")
        );
        assert_eq!(
            fixed("<jane@example.com>").as_deref(),
            Some("jane@example.com")
        );
        assert_eq!(
            fixed("mailto:jane@example.com").as_deref(),
            Some("jane@example.com")
        );
        assert_eq!(
            fixed("jane@example..com").as_deref(),
            Some("jane@example.com")
        );
        assert_eq!(fixed("no-at-sign"), None);
        assert_eq!(fixed("jane@example.com"), None, "nothing to repair");
    }
}
