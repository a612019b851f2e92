//! Correction suggestions for hard-bounced addresses. Pure functions, no I/O.
//!
//! The product rule (shared/seed/hard-bounces.txt) is to *correct only with high confidence*: a
//! known company email pattern, a trusted CRM correction or a verified replacement, and obvious
//! typos such as `gmal.com` for `gmail.com`. This module produces the first two kinds of
//! evidence it can compute on its own, each with a confidence in `0..=1` and a human-readable
//! explanation; the caller decides the threshold, filters out suppressed candidates (it knows
//! the store) and verifies before sending.
//!
//! # Domain typo fixes ([`EvidenceKind::TypoFix`])
//!
//! The domain is compared with a built-in list of popular mailbox providers
//! ([`popular_domains`]) and with the tenant's own domains that have deliveries. A domain that is
//! itself on either list is never corrected. Each domain is split into its name (`gmail`,
//! `yahoo`) and public suffix (`com`, `co.uk`):
//!
//! - **Suffix typos**: the same name with a known mistyped suffix (`.con .cmo .ocm .co .vom .xom
//!   .comm .cm .om .nte .ent .ogr`...) is corrected with confidence 0.95 (0.92 for a tenant
//!   domain). Another one-edit suffix change (`.frr` → `.fr`) is discounted; a typed suffix of
//!   two letters or a generic TLD is taken as real (`yahoo.gr`, `live.se` exist), never fixed.
//! - **Name typos**: the Damerau-Levenshtein distance (`strsim`, a transposition is one edit)
//!   must be small relative to the length of the candidate's name: no edit for names of three
//!   characters or fewer (`qq`, `aol`, `gmx`: their neighbours are other real domains), one for
//!   names up to six characters, two from seven. Four-letter names only take the cheapest slips.
//!   A missing dot (`gmailcom`) is one edit on the whole domain.
//! - **Plausibility**: a keyboard-aware weighted distance scores the slips. A QWERTY neighbour
//!   (`gnail`), two swapped letters (`hotmial`), a dropped or doubled double letter (`yaho`,
//!   `comm`) or a dropped dot cost half an edit; a dropped letter three quarters; anything else
//!   a full edit. Confidence falls with the weighted cost and with each extra edit, so one
//!   neighbour-key slip scores about 0.9 and two edits about 0.6-0.75. The six providers that
//!   take most consumer mail (gmail, yahoo, hotmail, outlook, icloud, aol .com) keep 40% less
//!   of that doubt: a domain one slip from gmail.com is far more often a typo than a real
//!   domain, so `gmal.com` scores 0.92 and `yaho.com` 0.94.
//! - **Ambiguity**: a reading that needs more slips than another is dropped (`gmail.con` is one
//!   slip from gmail.com, two from ymail.com). When several readings remain, each keeps its
//!   plausibility times its share of the sharpened total, so two equally good readings both
//!   drop well below a high-confidence threshold.
//!
//! A typo fix never changes the local part.
//!
//! # Company patterns ([`EvidenceKind::CompanyPattern`])
//!
//! [`infer_pattern`] finds the dominant local-part pattern of a company domain (`first.last`,
//! `flast`...) from its known-good addresses; [`suggest`] applies it to the contact's names
//! (`jnae@company.com` + Jane Smith + `first.last` → `jane.smith@company.com`). The confidence
//! is the Wilson score lower bound (z = 1) of the pattern's share, so it rewards both the share
//! and the sample size: 40 of 42 gives 0.91, 3 of 4 gives 0.50, 10 of 10 gives 0.91. It is cut
//! by a fifth when the bounced local part resembles none of the name's spellings (the contact's
//! names may belong to someone else). No pattern is applied at popular mailbox providers, where
//! people choose their own local part.
//!
//! # Limits
//!
//! No DNS: a real domain one slip from a provider (`love.com` vs `live.com`) can still be
//! suggested, at a lower confidence for short names. The pattern of a domain that is itself a
//! typo is not looked up (the caller passes one pattern, for the typed domain).

mod pattern;
mod providers;
mod typo;

pub use typo::KnownDomains;

/// What kind of evidence backs a suggestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceKind {
    /// The domain looks like a typo of a popular provider or of a tenant's known-good domain.
    TypoFix,
    /// The company's dominant local-part pattern, applied to the contact's names.
    CompanyPattern,
}

/// A local-part naming pattern of a company domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalPattern {
    /// `jane.smith`
    FirstDotLast,
    /// `janesmith`
    FirstLast,
    /// `jsmith`
    FLast,
    /// `janes`
    FirstL,
    /// `jane`
    First,
    /// `smith`
    Last,
    /// `jane_smith`
    FirstUnderscoreLast,
    /// `jane-smith`
    FirstDashLast,
    /// `smith.jane`
    LastDotFirst,
    /// `smithjane`
    LastFirst,
    /// `j.smith`
    FDotLast,
    /// `smithj`
    LastF,
}

/// A known person's name and address at a domain, as evidence for pattern inference.
#[derive(Debug, Clone, Copy)]
pub struct KnownAddress<'a> {
    /// The local part of a known-good address (before `@`), normalized.
    pub local_part: &'a str,
    /// The person's given name, when known.
    pub given_name: Option<&'a str>,
    /// The person's family name, when known.
    pub family_name: Option<&'a str>,
}

/// The inferred dominant pattern of a domain.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainPattern {
    /// The dominant pattern.
    pub pattern: LocalPattern,
    /// Known addresses that fit the pattern.
    pub matching: u32,
    /// Addresses that matched at least one pattern or were counted as evidence.
    pub total: u32,
}

/// Infers a domain's dominant local-part pattern from known-good addresses.
///
/// Each distinct local part (a `+tag` and trailing digits such as `jsmith2` ignored) is one
/// piece of evidence:
///
/// - **With names**, the patterns that give exactly this local part for the names (trying the
///   full folded names, without hyphens, and their first or last words, so `Mary Ann` matches
///   `mary.smith` and `García López` matches `luis.garcia`) each get an equal share of one vote.
///   A named address that no pattern explains counts against every pattern.
/// - **Without names**, only the shape speaks: `jane.smith` fits `first.last` or `last.first`
///   (half a vote each; with no named evidence to split them, the far more common `first.last`
///   is taken), `j.smith` fits `f.last`, `jane_smith` and `jane-smith` their separator patterns.
///   A single token such as `jsmith` is ambiguous between `flast`, `first`, `lastf`... and gets
///   no vote: it counts against a separator pattern and is neutral for a single-token one. Role
///   mailboxes (`info`, `sales`) are single tokens too, so 40 `first.last` addresses plus `info`
///   and `sales` give `first.last`, 40 of 42.
///
/// The pattern with the most votes wins. Returns `None` when it fits fewer than 3 addresses,
/// when it does not fit a strict majority of the counted addresses, or when it ties with
/// another pattern (no clear winner).
pub fn infer_pattern(known: &[KnownAddress<'_>]) -> Option<DomainPattern> {
    pattern::infer(known)
}

/// One ranked suggestion.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// The suggested address, `local@domain`.
    pub address: String,
    /// What kind of evidence backs it.
    pub evidence: EvidenceKind,
    /// How sure the suggestion is, in `0..=1`.
    pub confidence: f32,
    /// Why, for a person: e.g. "domain gmal.com looks like a typo of gmail.com (1 edit: missing
    /// 'i'; a popular mailbox provider)".
    pub explanation: String,
}

/// Inputs of a suggestion request.
#[derive(Debug, Clone, Copy)]
pub struct SuggestInput<'a> {
    /// The bounced address, normalized, e.g. `jnae@company.com`.
    pub address: &'a str,
    /// The contact's given name, when known.
    pub given_name: Option<&'a str>,
    /// The contact's family name, when known.
    pub family_name: Option<&'a str>,
    /// The tenant's own domains with deliveries, prepared once for many requests.
    pub known_good_domains: &'a KnownDomains,
    /// The inferred pattern of the address's domain, if any.
    pub domain_pattern: Option<&'a DomainPattern>,
}

/// Ranked candidates, best first, without duplicates and never the input address itself.
///
/// The caller filters out suppressed candidates (it knows the store); this function does no
/// I/O. It returns nothing for an input without `@`, with an empty local part or domain.
pub fn suggest(input: &SuggestInput<'_>) -> Vec<Suggestion> {
    let Some((local, domain)) = input.address.rsplit_once('@') else {
        return Vec::new();
    };
    if local.is_empty() || domain.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<Suggestion> = typo::domain_fixes(domain, input.known_good_domains)
        .into_iter()
        .map(|fix| Suggestion {
            address: format!("{local}@{}", fix.domain),
            evidence: EvidenceKind::TypoFix,
            confidence: fix.confidence,
            explanation: fix.explanation,
        })
        .collect();
    if let Some(s) = pattern_suggestion(local, domain, input) {
        out.push(s);
    }

    out.retain(|s| s.address != input.address && s.confidence.is_finite());
    for s in &mut out {
        s.confidence = s.confidence.clamp(0.0, 1.0);
    }
    out.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.address.cmp(&b.address))
    });
    // Best first, so the first of each address is the one with the higher confidence.
    let mut merged: Vec<Suggestion> = Vec::with_capacity(out.len());
    for s in out {
        if !merged.iter().any(|m| m.address == s.address) {
            merged.push(s);
        }
    }
    merged
}

/// The company-pattern suggestion, if the domain has a pattern and the contact has names.
fn pattern_suggestion(local: &str, domain: &str, input: &SuggestInput<'_>) -> Option<Suggestion> {
    let dp = input.domain_pattern?;
    if providers::is_popular(&domain.to_ascii_lowercase()) || dp.total == 0 {
        return None;
    }
    let given = input.given_name.unwrap_or("");
    let family = input.family_name.unwrap_or("");
    let candidate = dp.pattern.apply(given, family)?;
    if candidate == local {
        return None;
    }
    let matching = dp.matching.min(dp.total);
    let mut confidence = wilson_lower_bound(matching, dp.total);
    let mut explanation = format!(
        "{domain} uses {} for {matching} of {} known addresses; applied to {}",
        dp.pattern.name(),
        dp.total,
        [given.trim(), family.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !resembles_names(local, given, family) {
        confidence *= 0.8;
        explanation.push_str(" (the bounced local part does not resemble the name)");
    }
    Some(Suggestion {
        address: format!("{candidate}@{domain}"),
        evidence: EvidenceKind::CompanyPattern,
        confidence: confidence.clamp(0.0, 1.0),
        explanation,
    })
}

/// Whether the bounced local part looks like some spelling of the names (a typo of it, or
/// another pattern of the same person): `jnae` for `jane`, `j.smith` for `jane.smith`.
fn resembles_names(local: &str, given: &str, family: &str) -> bool {
    let core: String = local
        .split('+')
        .next()
        .unwrap_or("")
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string();
    if core.is_empty() || core.len() > 64 {
        return false;
    }
    pattern::ALL
        .iter()
        .filter_map(|p| p.apply(given, family))
        .any(|spelling| strsim::normalized_damerau_levenshtein(&core, &spelling) >= 0.5)
}

/// Lower bound of the Wilson score interval for `k` successes out of `n`, with z = 1 (a
/// one-sided ~84% bound): a share backed by few samples counts for less.
fn wilson_lower_bound(k: u32, n: u32) -> f32 {
    if n == 0 {
        return 0.0;
    }
    let (k, n) = (f64::from(k.min(n)), f64::from(n));
    let p = k / n;
    let z2 = 1.0;
    let centre = p + z2 / (2.0 * n);
    let margin = (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    (((centre - margin) / (1.0 + z2 / n)).clamp(0.0, 1.0)) as f32
}

/// The built-in list of popular mailbox provider domains.
pub fn popular_domains() -> &'static [&'static str] {
    providers::POPULAR
}

#[cfg(test)]
mod tests;
