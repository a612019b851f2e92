//! Correction RPCs: ReplaceAddress, SuggestCorrections, ListSuppressions, and the suggestion
//! lookups the import guard shares with them.

use std::collections::{HashMap, HashSet};

use super::convert;
use super::error::{FieldViolation, ServiceError};
use super::proto as pb;
use super::service::{blocking, record_span, SuppressionApi};
use crate::domain::{parse_label, parse_note, EmailAddress, EvidenceKind, Tenant, Timestamp};
use crate::policy::correction::{decide_replacement, ReplaceDecision, ReplaceRequest};
use crate::store::{PairDecision, PairWrite, SuppressionQuery};
use crate::suggest::{self, DomainPattern, KnownAddress, KnownDomains, SuggestInput, Suggestion};

/// Most delivered local parts read to infer a domain's pattern.
const PATTERN_SAMPLE: usize = 5_000;
/// Most known-good domains of a tenant offered to the typo matcher.
const KNOWN_DOMAINS: usize = 500;

/// What suggestion lookups remember within one call or one import stream.
#[derive(Default)]
pub(super) struct SuggestionCache {
    known_domains: Option<KnownDomains>,
    patterns: HashMap<String, Option<DomainPattern>>,
    /// Typo fixes by domain. Without names only domain typos can be suggested, and those keep
    /// the local part, so one computation serves every contact at the domain.
    typos: HashMap<String, Vec<Suggestion>>,
}

/// Outcome of a suggestion lookup.
pub(super) struct Suggestions {
    /// The address suggestions were made for (normalized; repaired if the input was invalid).
    pub address: Option<EmailAddress>,
    /// Candidates, best first, none of them suppressed.
    pub candidates: Vec<Suggestion>,
    /// The inferred pattern of the address's domain, if any (and if it was asked for).
    pub pattern: Option<DomainPattern>,
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

impl SuppressionApi {
    fn domain_pattern(
        &self,
        tenant: &Tenant,
        domain: &str,
        cache: &mut SuggestionCache,
    ) -> Result<Option<DomainPattern>, ServiceError> {
        if let Some(p) = cache.patterns.get(domain) {
            return Ok(p.clone());
        }
        let locals = self
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
    /// pattern of its domain when names were given or `report_pattern` asks for it.
    /// Runs store reads: call it off the async workers.
    pub(super) fn suggestions(
        &self,
        tenant: &Tenant,
        raw: &str,
        given: Option<&str>,
        family: Option<&str>,
        report_pattern: bool,
        cache: &mut SuggestionCache,
    ) -> Result<Suggestions, ServiceError> {
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
        let pattern = if given.is_some() || family.is_some() || report_pattern {
            self.domain_pattern(tenant, address.domain(), cache)?
        } else {
            None
        };
        let known = match &mut cache.known_domains {
            Some(known) => known,
            none => {
                let domains = self.store.known_good_domains(tenant, KNOWN_DOMAINS)?;
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
        let suppressed: HashSet<usize> = self
            .store
            .suppressed_records(tenant, &lookups)?
            .into_iter()
            .map(|(i, _)| i)
            .collect();
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

    pub(super) async fn replace(
        &self,
        actor: String,
        req: pb::ReplaceAddressRequest,
    ) -> Result<pb::ReplaceAddressResponse, ServiceError> {
        let tenant = convert::tenant(&req.tenant)?;
        record_span(&tenant, 2);
        let old = convert::address("old_address", &req.old_address)?;
        let new = convert::address("new_address", &req.new_address)?;
        if old == new {
            return Err(
                FieldViolation::new("new_address", "is the same address as old_address").into(),
            );
        }
        let evidence = convert::evidence("evidence", req.evidence)?;
        if !(0.0..=1.0).contains(&req.confidence) {
            return Err(FieldViolation::new("confidence", "must be between 0 and 1").into());
        }
        let note = parse_note(&req.note, false).map_err(|e| FieldViolation::new("note", e))?;
        let now = Timestamp::now();
        let threshold = self.correction_threshold;
        let confidence = req.confidence;
        let (old_c, new_c) = (old.clone(), new.clone());
        let low_confidence = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let already = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
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
                    actor: &actor,
                    now,
                    threshold,
                };
                match decide_replacement(&request, old_record, new_record) {
                    Err(refusal) => PairDecision::Refuse(refusal.to_string()),
                    Ok(ReplaceDecision::AlreadyDone) => {
                        already_flag.store(true, std::sync::atomic::Ordering::Relaxed);
                        PairDecision::Apply {
                            first: None,
                            second: None,
                        }
                    }
                    Ok(ReplaceDecision::LowConfidence { old, old_changes }) => {
                        low_flag.store(true, std::sync::atomic::Ordering::Relaxed);
                        PairDecision::Apply {
                            first: (!old_changes.is_empty()).then_some((old, old_changes)),
                            second: None,
                        }
                    }
                    Ok(ReplaceDecision::Replace {
                        old,
                        new,
                        old_changes,
                        new_changes,
                    }) => PairDecision::Apply {
                        first: Some((old, old_changes)),
                        second: Some((new, new_changes)),
                    },
                }
            }),
        };
        let outcome = self.store.write_pair(write).await?;
        if let Some(reason) = outcome.refused {
            return Err(ServiceError::FailedPrecondition(reason));
        }
        if low_confidence.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ServiceError::FailedPrecondition(format!(
                "confidence {confidence:.2} is below the required {threshold:.2}: nothing was replaced, and {old} is marked as needing enrichment"
            )));
        }
        Ok(pb::ReplaceAddressResponse {
            old_status: Some(convert::address_status(
                &old,
                &req.old_address,
                outcome.first.as_ref(),
                &self.policy,
                now,
            )),
            new_status: Some(convert::address_status(
                &new,
                &req.new_address,
                outcome.second.as_ref(),
                &self.policy,
                now,
            )),
            already_replaced: already.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    pub(super) async fn suggest(
        &self,
        req: pb::SuggestCorrectionsRequest,
    ) -> Result<pb::SuggestCorrectionsResponse, ServiceError> {
        let tenant = convert::tenant(&req.tenant)?;
        record_span(&tenant, 1);
        if req.address.trim().is_empty() {
            return Err(FieldViolation::new("address", "is required").into());
        }
        if req.address.len() > 1024 {
            return Err(FieldViolation::new("address", "is longer than 1024 bytes").into());
        }
        let given = parse_label(&req.given_name, false)
            .map_err(|e| FieldViolation::new("given_name", e))?;
        let family = parse_label(&req.family_name, false)
            .map_err(|e| FieldViolation::new("family_name", e))?;
        let max = match req.max_results {
            0 => 5,
            n => n.min(20) as usize,
        };
        let api = self.clone();
        blocking(move || {
            let mut cache = SuggestionCache::default();
            let found = api.suggestions(
                &tenant,
                &req.address,
                Some(&given),
                Some(&family),
                true,
                &mut cache,
            )?;
            Ok(pb::SuggestCorrectionsResponse {
                address: found
                    .address
                    .map(|a| a.as_str().to_string())
                    .unwrap_or_default(),
                suggestions: found
                    .candidates
                    .iter()
                    .take(max)
                    .map(proto_suggestion)
                    .collect(),
                domain_pattern: found
                    .pattern
                    .as_ref()
                    .map(|p| p.pattern.name().to_string())
                    .unwrap_or_default(),
                domain_pattern_matching: found.pattern.as_ref().map_or(0, |p| p.matching),
                domain_pattern_total: found.pattern.as_ref().map_or(0, |p| p.total),
            })
        })
        .await
    }

    pub(super) async fn suppressions_page(
        &self,
        req: pb::ListSuppressionsRequest,
    ) -> Result<pb::ListSuppressionsResponse, ServiceError> {
        let tenant = convert::tenant(&req.tenant)?;
        let mut reasons = req
            .reasons
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                convert::reason(
                    &format!("reasons[{i}]"),
                    r,
                    crate::domain::BounceReason::None,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        reasons.sort_by_key(|r| convert::proto_reason(*r) as i32);
        reasons.dedup();
        let source =
            parse_label(&req.source, false).map_err(|e| FieldViolation::new("source", e))?;
        let (start, end) = convert::time_range(req.start_time.as_ref(), req.end_time.as_ref())?;
        let query = SuppressionQuery {
            reasons,
            source: (!source.is_empty()).then_some(source),
            start,
            end,
            needs_enrichment: req.needs_enrichment,
        };
        let scope = format!("ListSuppressions|{tenant}|{query:?}");
        let cursor = self.tokens.check(&scope, &req.page_token)?;
        let limit = self.page_size(req.page_size);
        record_span(&tenant, limit);
        let store = self.store.clone();
        let page = blocking(move || {
            Ok(store.list_suppressions(&tenant, &query, cursor.as_deref(), limit)?)
        })
        .await?;
        let now = Timestamp::now();
        let suppressions = page
            .items
            .iter()
            .filter_map(|(address, record)| {
                let a = EmailAddress::parse(address).ok()?;
                Some(convert::address_status(
                    &a,
                    address,
                    Some(record),
                    &self.policy,
                    now,
                ))
            })
            .collect();
        Ok(pb::ListSuppressionsResponse {
            suppressions,
            next_page_token: page
                .next
                .map(|c| self.tokens.issue(&scope, &c))
                .unwrap_or_default(),
        })
    }
}

/// A suggestion -> wire.
pub(super) fn proto_suggestion(s: &Suggestion) -> pb::CorrectionSuggestion {
    let evidence = match s.evidence {
        suggest::EvidenceKind::TypoFix => EvidenceKind::TypoFix,
        suggest::EvidenceKind::CompanyPattern => EvidenceKind::CompanyPattern,
    };
    pb::CorrectionSuggestion {
        address: s.address.clone(),
        evidence: convert::proto_evidence(evidence) as i32,
        confidence: s.confidence,
        explanation: s.explanation.clone(),
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
