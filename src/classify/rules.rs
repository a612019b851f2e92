//! The rule table: reading `rules.toml` and compiling it into matchers.
//!
//! The file is read by the `toml` crate into the typed entries below, which refuse unknown
//! keys; [`compile`] then checks what types cannot say (known reasons, valid patterns and
//! regexes, providers that exist, unique ids) and names the entry and the key in every error.
//! Every phrase is normalised exactly like the SMTP text it is matched against (see
//! [`super::smtp::normalize_into`]) and all phrases of all rules go into one phrase matcher,
//! run once per classification.

use std::collections::{HashMap, HashSet};

use regex::Regex;
use serde::Deserialize;

use super::phrases::PhraseMatcher;
use super::smtp::{normalize_phrase, parse_status, EnhancedStatus};
use crate::domain::{BounceReason, BounceType, RuleId};

/// Most phrases the engine takes (64 × `PAT_WORDS`).
pub(crate) const PAT_WORDS: usize = 32;
/// Most text rules the engine takes (64 × `RULE_WORDS`).
pub(crate) const RULE_WORDS: usize = 8;

// ───────────────────────────── the file as written ─────────────────────────────

/// The whole file: its version and four arrays of tables, each in file order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    version: u32,
    #[serde(default)]
    provider: Vec<ProviderEntry>,
    #[serde(default)]
    rule: Vec<RuleEntry>,
    #[serde(default)]
    status: Vec<StatusEntry>,
    #[serde(default)]
    code: Vec<CodeEntry>,
}

/// A `[[provider]]`: how mail of one provider is recognised, for rules scoped to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderEntry {
    name: String,
    /// Substrings of `SmtpEvidence::provider` (any case) that name the provider.
    #[serde(default)]
    names: Vec<String>,
    /// Phrases whose presence in the text identifies the provider.
    #[serde(default)]
    markers: Vec<String>,
}

/// `type`: what an entry decides. `label` (weak evidence) is for `[[status]]` and `[[code]]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Hard,
    Soft,
    Block,
    Complaint,
    Delivered,
    Label,
}

impl Verdict {
    fn outcome(self) -> Outcome {
        match self {
            Verdict::Hard => Outcome::Fixed(BounceType::Hard),
            Verdict::Soft => Outcome::Fixed(BounceType::Soft),
            Verdict::Block => Outcome::Fixed(BounceType::Block),
            Verdict::Complaint => Outcome::Fixed(BounceType::Complaint),
            Verdict::Delivered => Outcome::Fixed(BounceType::Delivered),
            Verdict::Label => Outcome::FromLabel,
        }
    }
}

/// A `[[rule]]` (the keys are explained at the top of `rules.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    id: String,
    #[serde(rename = "type")]
    verdict: Verdict,
    reason: String,
    confidence: f64,
    #[serde(default, rename = "match")]
    phrases: Vec<String>,
    #[serde(default)]
    and: Vec<String>,
    #[serde(default)]
    unless: Vec<String>,
    #[serde(default)]
    codes: Vec<String>,
    #[serde(default)]
    status: Vec<String>,
    regex: Option<String>,
    provider: Option<String>,
    #[serde(default)]
    permanent_even_if_4xx: bool,
    example: String,
    example_provider: Option<String>,
    example_status: Option<String>,
    decided_by: Option<String>,
    /// For the people who read the file.
    #[serde(rename = "note")]
    _note: Option<String>,
}

/// A `[[status]]` fallback entry: one enhanced-status pattern.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusEntry {
    id: String,
    status: String,
    #[serde(rename = "type")]
    verdict: Verdict,
    reason: String,
    confidence: f64,
    example: String,
    #[serde(rename = "note")]
    _note: Option<String>,
}

/// A `[[code]]` fallback entry: one reply-code pattern.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeEntry {
    id: String,
    code: String,
    #[serde(rename = "type")]
    verdict: Verdict,
    reason: String,
    confidence: f64,
    example: String,
    #[serde(rename = "note")]
    _note: Option<String>,
}

/// Reads the file, naming the entry a misspelt key or a value of the wrong type is in (the
/// `toml` crate's message gives the line, the column and the key).
fn read_file(src: &str) -> Result<RuleFile, String> {
    toml::from_str(src).map_err(|e| {
        let within = e.span().and_then(|at| entry_at(src, at.start));
        match within {
            Some(entry) => format!("rules.toml, {entry}: {e}"),
            None => format!("rules.toml: {e}"),
        }
    })
}

/// `[[kind]] 'id'` of the array-of-tables entry that holds byte `at` of `src`: the last one
/// whose first key comes before it, or, when `at` is a `[[kind]]` header (where a missing key
/// is reported), the first one after it.
fn entry_at(src: &str, at: usize) -> Option<String> {
    let at_header = src.get(at..)?.starts_with("[[");
    let doc = toml::de::DeTable::parse(src).ok()?;
    let mut best: Option<(usize, String)> = None;
    for (kind, value) in doc.get_ref() {
        let Some(entries) = value.get_ref().as_array() else {
            continue;
        };
        for entry in entries.iter() {
            let Some(table) = entry.get_ref().as_table() else {
                continue;
            };
            let Some(start) = table.keys().map(|k| k.span().start).min() else {
                continue;
            };
            let closer = match (&best, at_header) {
                (_, false) if start > at => false,
                (_, true) if start <= at => false,
                (None, _) => true,
                (Some(b), false) => start > b.0,
                (Some(b), true) => start < b.0,
            };
            if closer {
                let name = table
                    .iter()
                    .find(|(k, _)| matches!(k.get_ref().as_ref(), "id" | "name"))
                    .and_then(|(_, v)| v.get_ref().as_str())
                    .unwrap_or("without id");
                best = Some((start, format!("[[{}]] '{name}'", kind.get_ref())));
            }
        }
    }
    best.map(|b| b.1)
}

// ───────────────────────────── compiled rules ─────────────────────────────

/// A fixed-size bit set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bits<const N: usize>(pub [u64; N]);

impl<const N: usize> Bits<N> {
    pub const EMPTY: Self = Bits([0; N]);
    #[inline]
    pub fn set(&mut self, i: usize) {
        self.0[i >> 6] |= 1 << (i & 63);
    }
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.0[i >> 6] & (1 << (i & 63)) != 0
    }
    /// Calls `f` for each set bit in ascending order until it returns `Some`.
    #[inline]
    pub fn first_where<T>(&self, mut f: impl FnMut(usize) -> Option<T>) -> Option<T> {
        for (w, &word) in self.0.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                if let Some(t) = f(w * 64 + b) {
                    return Some(t);
                }
                bits &= bits - 1;
            }
        }
        None
    }
}

/// A reply-code pattern: `550`, `55x`, `5xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodePat([Option<u8>; 3]);

impl CodePat {
    fn parse(s: &str) -> Option<Self> {
        let b = s.trim().as_bytes();
        if b.len() != 3 {
            return None;
        }
        let mut d = [None; 3];
        for (k, c) in b.iter().enumerate() {
            d[k] = match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'x' | b'X' => None,
                _ => return None,
            };
        }
        Some(CodePat(d))
    }
    pub fn matches(&self, code: u16) -> bool {
        let digits = [
            (code / 100) as u8,
            (code / 10 % 10) as u8,
            (code % 10) as u8,
        ];
        self.0
            .iter()
            .zip(digits)
            .all(|(p, d)| p.is_none_or(|p| p == d))
    }
}

/// An enhanced-status pattern: `5.1.1`, `x.1.1`, `5.7.*`, `4.*.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusPat {
    class: Option<u8>,
    subject: Option<u16>,
    detail: Option<u16>,
}

impl StatusPat {
    fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.');
        let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let class = match a {
            "x" | "X" | "*" => None,
            "2" | "4" | "5" => Some(a.parse().ok()?),
            _ => return None,
        };
        let num = |t: &str| -> Option<Option<u16>> {
            if t == "*" {
                Some(None)
            } else {
                t.parse::<u16>().ok().filter(|n| *n <= 999).map(Some)
            }
        };
        Some(StatusPat {
            class,
            subject: num(b)?,
            detail: num(c)?,
        })
    }
    pub fn matches(&self, e: EnhancedStatus) -> bool {
        self.class.is_none_or(|c| c == e.0)
            && self.subject.is_none_or(|s| s == e.1)
            && self.detail.is_none_or(|d| d == e.2)
    }
}

/// What a fallback entry decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Fixed(BounceType),
    /// Weak evidence: Hard or Block only if the reporter said so, else Soft.
    FromLabel,
}

#[derive(Debug)]
pub(crate) struct PatMeta {
    /// The phrase must start at a word boundary.
    pub left: bool,
    /// The phrase must end at a word boundary.
    pub right: bool,
}

/// A text rule.
#[derive(Debug)]
pub(crate) struct TextRule {
    pub id: RuleId,
    pub kind: BounceType,
    pub reason: BounceReason,
    pub confidence: f32,
    pub scope: Option<usize>,
    pub codes: Vec<CodePat>,
    pub statuses: Vec<StatusPat>,
    pub and: Vec<u32>,
    pub unless: Vec<u32>,
    pub regex: Option<Regex>,
    pub keep_hard_if_temporary: bool,
    /// Read by the unit test that runs every example.
    #[cfg_attr(not(test), allow(dead_code))]
    pub example: String,
    #[cfg_attr(not(test), allow(dead_code))]
    pub example_provider: Option<String>,
    #[cfg_attr(not(test), allow(dead_code))]
    pub example_status: Option<String>,
    pub decided_by: Option<String>,
}

/// A status-code or reply-code fallback entry.
#[derive(Debug)]
pub(crate) struct FallbackRule {
    pub id: RuleId,
    pub status: Option<StatusPat>,
    pub code: Option<CodePat>,
    pub outcome: Outcome,
    pub reason: BounceReason,
    pub confidence: f32,
    #[cfg_attr(not(test), allow(dead_code))]
    pub example: String,
}

#[derive(Debug)]
pub(crate) struct Provider {
    pub name: String,
    /// Lower-case substrings of `SmtpEvidence::provider` that name this provider.
    pub names: Vec<String>,
    /// Phrases whose presence in the text identifies this provider.
    pub markers: Vec<u32>,
}

/// The compiled rule set.
#[derive(Debug)]
pub(crate) struct RuleSet {
    pub version: u32,
    pub matcher: PhraseMatcher,
    /// The normalised phrases, by pattern id.
    pub phrases: Vec<String>,
    /// Rules for which pattern `p` is a `match` phrase: `pat_rule_ids[pat_rule_start[p]..pat_rule_start[p+1]]`.
    pub pat_rule_start: Vec<u32>,
    pub pat_rule_ids: Vec<u16>,
    /// Rules without `match` phrases (decided by codes only): always candidates.
    pub always: Bits<RULE_WORDS>,
    pub rules: Vec<TextRule>,
    pub providers: Vec<Provider>,
    pub status_rules: Vec<FallbackRule>,
    pub code_rules: Vec<FallbackRule>,
}

fn parse_reason(s: &str) -> Option<BounceReason> {
    use BounceReason::*;
    Some(match s {
        "None" => None,
        "MailboxNotFound" => MailboxNotFound,
        "DomainNotFound" => DomainNotFound,
        "InvalidAddress" => InvalidAddress,
        "MailboxDisabled" => MailboxDisabled,
        "RecipientRejected" => RecipientRejected,
        "MailboxFull" => MailboxFull,
        "MessageTooLarge" => MessageTooLarge,
        "RateLimited" => RateLimited,
        "TemporaryFailure" => TemporaryFailure,
        "SenderBlocked" => SenderBlocked,
        "ContentRejected" => ContentRejected,
        "AuthenticationFailed" => AuthenticationFailed,
        "Complaint" => Complaint,
        "Manual" => Manual,
        "RepeatedSoftBounce" => RepeatedSoftBounce,
        "Unknown" => Unknown,
        _ => return Option::None,
    })
}

/// The phrases of all entries, each once, with the word boundaries it needs.
#[derive(Default)]
struct PatternTable {
    strings: Vec<String>,
    meta: Vec<PatMeta>,
    index: HashMap<(String, bool, bool), u32>,
}

impl PatternTable {
    /// Adds a phrase (normalised; a leading or trailing `*` lifts the word-boundary check on
    /// that side) and returns its id.
    fn add(&mut self, raw: &str) -> Result<u32, String> {
        let mut s = raw.trim();
        let mut left = true;
        let mut right = true;
        if let Some(rest) = s.strip_prefix('*') {
            s = rest;
            left = false;
        }
        if let Some(rest) = s.strip_suffix('*') {
            s = rest;
            right = false;
        }
        let norm = normalize_phrase(s);
        if norm.chars().count() < 2 {
            return Err(format!("phrase '{raw}' is too short"));
        }
        let first = norm.as_bytes()[0];
        let last = norm.as_bytes()[norm.len() - 1];
        left &= first.is_ascii_alphanumeric();
        right &= last.is_ascii_alphanumeric();
        let key = (norm, left, right);
        if let Some(&id) = self.index.get(&key) {
            return Ok(id);
        }
        let id = self.strings.len() as u32;
        self.strings.push(key.0.clone());
        self.meta.push(PatMeta { left, right });
        self.index.insert(key, id);
        Ok(id)
    }
}

/// Compiles the rule file.
pub(crate) fn compile(src: &str) -> Result<RuleSet, String> {
    let file = read_file(src)?;
    if file.version == 0 {
        return Err("rules.toml: 'version' must be 1 or more".to_string());
    }

    let mut pats = PatternTable::default();
    let mut providers: Vec<Provider> = Vec::new();
    for p in file.provider {
        let err = |field: &str, msg: String| {
            format!("rules.toml, [[provider]] '{}': '{field}' {msg}", p.name)
        };
        if providers.iter().any(|x| x.name == p.name) {
            return Err(format!("rules.toml: provider '{}' defined twice", p.name));
        }
        let mut markers = Vec::new();
        for m in &p.markers {
            markers.push(pats.add(m).map_err(|e| err("markers", e))?);
        }
        providers.push(Provider {
            names: p.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            name: p.name,
            markers,
        });
    }

    let mut ids: HashSet<String> = HashSet::new();
    let mut rules: Vec<TextRule> = Vec::new();
    let mut rule_matches: Vec<Vec<u32>> = Vec::new();
    for r in file.rule {
        let err =
            |field: &str, msg: String| format!("rules.toml, [[rule]] '{}': '{field}' {msg}", r.id);
        let kind = match r.verdict.outcome() {
            Outcome::Fixed(k) => k,
            Outcome::FromLabel => {
                return Err(err(
                    "type",
                    "must be hard, soft, block, complaint or delivered".to_string(),
                ))
            }
        };
        let reason = parse_reason(&r.reason)
            .ok_or_else(|| err("reason", format!("is unknown: '{}'", r.reason)))?;
        let confidence = confidence(r.confidence)
            .ok_or_else(|| err("confidence", "must be a number from 0 to 1".to_string()))?;
        let mut phrase_ids = |field: &str, list: &[String]| -> Result<Vec<u32>, String> {
            list.iter()
                .map(|m| pats.add(m).map_err(|e| err(field, e)))
                .collect()
        };
        let matches = phrase_ids("match", &r.phrases)?;
        let and = phrase_ids("and", &r.and)?;
        let unless = phrase_ids("unless", &r.unless)?;
        let codes = r
            .codes
            .iter()
            .map(|c| {
                CodePat::parse(c)
                    .ok_or_else(|| err("codes", format!("has a bad reply-code pattern '{c}'")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let statuses = r
            .status
            .iter()
            .map(|s| {
                StatusPat::parse(s)
                    .ok_or_else(|| err("status", format!("has a bad status pattern '{s}'")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let regex = match &r.regex {
            None => None,
            Some(re) => Some(Regex::new(re).map_err(|e| err("regex", format!("is bad: {e}")))?),
        };
        let scope = match &r.provider {
            None => None,
            Some(p) => Some(
                providers
                    .iter()
                    .position(|x| &x.name == p)
                    .ok_or_else(|| err("provider", format!("names an unknown provider '{p}'")))?,
            ),
        };
        if let Some(s) = &r.example_status {
            if parse_status(s).is_none() {
                return Err(err(
                    "example_status",
                    format!("is not a status code: '{s}'"),
                ));
            }
        }
        if matches.is_empty() && codes.is_empty() && statuses.is_empty() {
            return Err(err(
                "match",
                "is needed, or 'codes' or 'status' conditions".to_string(),
            ));
        }
        if !ids.insert(r.id.clone()) {
            return Err(format!("rules.toml: rule id '{}' used twice", r.id));
        }
        rules.push(TextRule {
            id: r.id.into(),
            kind,
            reason,
            confidence,
            scope,
            codes,
            statuses,
            and,
            unless,
            regex,
            keep_hard_if_temporary: r.permanent_even_if_4xx,
            example: r.example,
            example_provider: r.example_provider,
            example_status: r.example_status,
            decided_by: r.decided_by,
        });
        rule_matches.push(matches);
    }

    let mut status_rules = Vec::new();
    for s in file.status {
        let status = StatusPat::parse(&s.status);
        let r = fallback(
            &mut ids,
            "status",
            &s.id,
            s.verdict,
            &s.reason,
            s.confidence,
            s.example,
        )?;
        match status {
            Some(p) => status_rules.push(FallbackRule {
                status: Some(p),
                ..r
            }),
            None => {
                return Err(format!(
                    "rules.toml, [[status]] '{}': 'status' has a bad status pattern '{}'",
                    r.id, s.status
                ))
            }
        }
    }
    let mut code_rules = Vec::new();
    for c in file.code {
        let code = CodePat::parse(&c.code);
        let r = fallback(
            &mut ids,
            "code",
            &c.id,
            c.verdict,
            &c.reason,
            c.confidence,
            c.example,
        )?;
        match code {
            Some(p) => code_rules.push(FallbackRule { code: Some(p), ..r }),
            None => {
                return Err(format!(
                    "rules.toml, [[code]] '{}': 'code' has a bad reply-code pattern '{}'",
                    r.id, c.code
                ))
            }
        }
    }

    for r in &rules {
        if let Some(d) = &r.decided_by {
            if !ids.contains(d) {
                return Err(format!(
                    "rules.toml, [[rule]] '{}': 'decided_by' names '{d}', which does not exist",
                    r.id
                ));
            }
        }
    }
    if rules.len() > RULE_WORDS * 64 {
        return Err(format!(
            "too many rules ({}), raise RULE_WORDS",
            rules.len()
        ));
    }
    if pats.strings.len() > PAT_WORDS * 64 {
        return Err(format!(
            "too many phrases ({}), raise PAT_WORDS",
            pats.strings.len()
        ));
    }

    let mut always = Bits::EMPTY;
    let mut per_pat: Vec<Vec<u16>> = vec![Vec::new(); pats.strings.len()];
    for (ri, m) in rule_matches.iter().enumerate() {
        if m.is_empty() {
            always.set(ri);
        }
        for &p in m {
            per_pat[p as usize].push(ri as u16);
        }
    }
    let mut pat_rule_start = Vec::with_capacity(per_pat.len() + 1);
    let mut pat_rule_ids = Vec::new();
    for list in &per_pat {
        pat_rule_start.push(pat_rule_ids.len() as u32);
        pat_rule_ids.extend_from_slice(list);
    }
    pat_rule_start.push(pat_rule_ids.len() as u32);

    let matcher = PhraseMatcher::new(&pats.strings, &pats.meta)?;

    Ok(RuleSet {
        version: file.version,
        matcher,
        phrases: pats.strings,
        pat_rule_start,
        pat_rule_ids,
        always,
        rules,
        providers,
        status_rules,
        code_rules,
    })
}

/// A confidence in 0..=1 as the engine keeps it.
fn confidence(c: f64) -> Option<f32> {
    (0.0..=1.0).contains(&c).then_some(c as f32)
}

/// Checks what a `[[status]]` or `[[code]]` entry shares and records its id; the caller fills
/// in the pattern.
#[allow(clippy::too_many_arguments)]
fn fallback(
    ids: &mut HashSet<String>,
    kind: &str,
    id: &str,
    verdict: Verdict,
    reason: &str,
    confidence_given: f64,
    example: String,
) -> Result<FallbackRule, String> {
    let err = |field: &str, msg: String| format!("rules.toml, [[{kind}]] '{id}': '{field}' {msg}");
    let reason =
        parse_reason(reason).ok_or_else(|| err("reason", format!("is unknown: '{reason}'")))?;
    let confidence = confidence(confidence_given)
        .ok_or_else(|| err("confidence", "must be a number from 0 to 1".to_string()))?;
    if !ids.insert(id.to_string()) {
        return Err(format!("rules.toml: id '{id}' used twice"));
    }
    Ok(FallbackRule {
        id: id.into(),
        status: None,
        code: None,
        outcome: verdict.outcome(),
        reason,
        confidence,
        example,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small rule file with one entry of each kind.
    const GOOD: &str = r#"
version = 1

[[provider]]
name = "gmail"
names = ["gmail"]
markers = ["gsmtp"]

[[rule]]
id = "mailbox.not_found"
type = "hard"
reason = "MailboxNotFound"
confidence = 0.95
match = ["user unknown"]
provider = "gmail"
example = "550 5.1.1 user unknown - gsmtp"

[[status]]
id = "status.x.1.1"
status = "5.1.1"
type = "label"
reason = "MailboxNotFound"
confidence = 0.8
example = "5.1.1"

[[code]]
id = "code.5xx"
code = "5xx"
type = "label"
reason = "Unknown"
confidence = 0.5
example = "550"
"#;

    /// The error for `GOOD` with the first `replace` replaced by `with`.
    fn error_of(replace: &str, with: &str) -> String {
        assert!(GOOD.contains(replace), "{replace:?} is not in the sample");
        match compile(&GOOD.replacen(replace, with, 1)) {
            Ok(_) => panic!("accepted a rule file with {with:?}"),
            Err(e) => e,
        }
    }

    /// The message names `field` as a key: quoted, or on the line the `toml` crate quotes.
    fn names_field(e: &str, field: &str) -> bool {
        e.contains(&format!("'{field}'"))
            || e.contains(&format!("`{field}`"))
            || e.contains(&format!("| {field} ="))
    }

    #[test]
    fn a_well_formed_file_compiles_into_each_kind_of_entry() {
        let rs = compile(GOOD).expect("the sample compiles");
        assert_eq!(rs.version, 1);
        assert_eq!(rs.rules.len(), 1);
        assert_eq!(rs.rules[0].scope, Some(0));
        assert_eq!(rs.rules[0].confidence, 0.95);
        assert_eq!(rs.status_rules[0].outcome, Outcome::FromLabel);
        assert_eq!(rs.code_rules[0].code, CodePat::parse("5xx"));
        assert_eq!(rs.providers[0].markers.len(), 1);
        assert_eq!(
            rs.phrases,
            vec!["gsmtp".to_string(), "user unknown".to_string()]
        );
        // a whole number is a confidence too, and the tables may come in any order
        let code_first = "[[code]]\nid = \"code.4xx\"\ncode = \"4xx\"\ntype = \"soft\"\n\
            reason = \"TemporaryFailure\"\nconfidence = 0.55\nexample = \"421\"\n\n[[provider]]";
        let reordered = GOOD
            .replacen("confidence = 0.5\n", "confidence = 1\n", 1)
            .replacen("[[provider]]", code_first, 1);
        let rs = compile(&reordered).expect("the reordered sample compiles");
        assert_eq!(rs.code_rules[0].id, "code.4xx");
        assert_eq!(rs.code_rules[1].confidence, 1.0);
    }

    #[test]
    fn a_bad_value_is_refused_naming_the_entry_and_the_key() {
        let rule = "'mailbox.not_found'";
        let cases = [
            ("confidence = 0.95", "confidence = 1.5", "confidence"),
            ("confidence = 0.95", "confidence = \"high\"", "confidence"),
            ("\"MailboxNotFound\"", "\"NoSuchReason\"", "reason"),
            ("type = \"hard\"", "type = \"label\"", "type"),
            ("type = \"hard\"", "type = \"hardest\"", "type"),
            ("provider = \"gmail\"", "provider = \"yahoo\"", "provider"),
            ("match = [\"user unknown\"]", "match = [\"u\"]", "match"),
            (
                "match = [\"user unknown\"]",
                "match = \"user unknown\"",
                "match",
            ),
            ("match = [\"user unknown\"]", "match = []", "match"),
            ("provider = \"gmail\"", "codes = [\"5x\"]", "codes"),
            ("provider = \"gmail\"", "status = [\"5.1\"]", "status"),
            ("provider = \"gmail\"", "regex = '(unclosed'", "regex"),
            (
                "provider = \"gmail\"",
                "example_status = \"soon\"",
                "example_status",
            ),
            (
                "provider = \"gmail\"",
                "decided_by = \"nothing.like.it\"",
                "decided_by",
            ),
            (
                "example = \"550 5.1.1 user unknown - gsmtp\"",
                "",
                "example",
            ),
        ];
        for (replace, with, field) in cases {
            let e = error_of(replace, with);
            assert!(e.contains(rule), "{with:?}: no rule id in {e}");
            assert!(names_field(&e, field), "{with:?}: no '{field}' in {e}");
        }
        let e = error_of("status = \"5.1.1\"", "status = \"5.1\"");
        assert!(
            e.contains("'status.x.1.1'") && names_field(&e, "status"),
            "{e}"
        );
        let e = error_of("code = \"5xx\"", "code = \"5xxx\"");
        assert!(e.contains("'code.5xx'") && names_field(&e, "code"), "{e}");
        let e = error_of("reason = \"Unknown\"", "reason = \"Whatever\"");
        assert!(e.contains("'code.5xx'") && names_field(&e, "reason"), "{e}");
        let e = error_of("markers = [\"gsmtp\"]", "markers = [\"g\"]");
        assert!(e.contains("'gmail'") && names_field(&e, "markers"), "{e}");
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let e = error_of("confidence = 0.95", "confidence = 0.95\nconfidance = 0.9");
        assert!(
            e.contains("confidance") && e.contains("'mailbox.not_found'"),
            "{e}"
        );
        assert!(e.contains("line 14"), "the line is given: {e}");
        let e = error_of("code = \"5xx\"", "code = \"5xx\"\ncodes = [\"550\"]");
        assert!(e.contains("`codes`") && e.contains("'code.5xx'"), "{e}");
        let e = error_of("version = 1", "version = 1\nrevision = 2");
        assert!(e.contains("revision"), "{e}");
        let e = error_of("[[status]]", "[[statuses]]");
        assert!(e.contains("statuses"), "{e}");
    }

    #[test]
    fn ids_are_unique_and_providers_too() {
        let e = error_of("id = \"code.5xx\"", "id = \"status.x.1.1\"");
        assert!(e.contains("'status.x.1.1' used twice"), "{e}");
        let e = error_of("[[rule]]", "[[provider]]\nname = \"gmail\"\n\n[[rule]]");
        assert!(e.contains("provider 'gmail' defined twice"), "{e}");
        let e = error_of("version = 1", "version = 0");
        assert!(names_field(&e, "version"), "{e}");
    }

    #[test]
    fn code_and_status_patterns_match_digit_by_digit_with_wildcards() {
        assert!(CodePat::parse("5xx").unwrap().matches(554));
        assert!(!CodePat::parse("55x").unwrap().matches(450));
        assert!(StatusPat::parse("x.1.1").unwrap().matches((4, 1, 1)));
        assert!(StatusPat::parse("5.7.*").unwrap().matches((5, 7, 26)));
        assert!(!StatusPat::parse("5.7.*").unwrap().matches((4, 7, 26)));
        assert!(StatusPat::parse("5.1").is_none());
    }
}
