//! Domain typo fixes: which popular or known-good domain a mistyped domain most likely meant.
//!
//! Two measures work together:
//! - the Damerau-Levenshtein distance (`strsim`, transpositions count one edit) decides whether
//!   a candidate is close enough at all, relative to the length of its name;
//! - a keyboard-aware weighted optimal-string-alignment distance (this file) decides how
//!   plausible the edits are as typing slips, and describes them for the explanation. Slips a
//!   hand makes often cost less: a QWERTY neighbour for the right key, two swapped letters, a
//!   doubled or dropped double letter, a dropped dot.

use std::collections::HashSet;
use std::sync::OnceLock;

use super::providers::{is_major, is_popular, split_suffix, suffix_typo, POPULAR};

/// Costs of the weighted distance, in hundredths of an edit (integers keep it deterministic).
const CHEAP: u32 = 50;
/// A look-alike substitution (`0` for `o`) or an extra key next to its neighbour.
const NEAR: u32 = 60;
/// A dropped letter: common, but less telling than a neighbour key.
const DROPPED: u32 = 75;
/// Any other edit.
const FULL: u32 = 100;

/// QWERTY rows as typed on a staggered keyboard: each row sits half a key right of the one
/// above, so key (r, c) touches (r-1, c), (r-1, c+1), (r+1, c-1) and (r+1, c).
const ROWS: [&str; 4] = ["1234567890-", "qwertyuiop", "asdfghjkl", "zxcvbnm,."];

fn key_pos(c: char) -> Option<(i32, i32)> {
    ROWS.iter().enumerate().find_map(|(r, row)| {
        row.chars()
            .position(|k| k == c)
            .map(|col| (r as i32, col as i32))
    })
}

/// Whether two keys touch on a QWERTY keyboard.
pub(super) fn adjacent_keys(a: char, b: char) -> bool {
    let (Some((ra, ca)), Some((rb, cb))) = (key_pos(a), key_pos(b)) else {
        return false;
    };
    match rb - ra {
        0 => (cb - ca).abs() == 1,
        -1 => cb == ca || cb == ca + 1,
        1 => cb == ca - 1 || cb == ca,
        _ => false,
    }
}

fn look_alike(a: char, b: char) -> bool {
    matches!(
        (a, b),
        ('0', 'o') | ('o', '0') | ('1', 'l') | ('l', '1') | ('1', 'i') | ('i', '1')
    )
}

/// One typing slip, from the intended text to the typed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Slip {
    /// A character of the intended text is missing; `doubled` when it was one of a double letter.
    Missing { ch: char, doubled: bool },
    /// An extra character was typed; `doubled` when it repeats a neighbour, `near` when its key
    /// touches a neighbour's.
    Extra { ch: char, doubled: bool, near: bool },
    /// A wrong character was typed.
    Wrong { typed: char, meant: char },
    /// Two neighbouring characters were typed in the wrong order (`typed` is what was typed).
    Swapped { typed: [char; 2] },
}

impl Slip {
    fn cost(&self) -> u32 {
        match *self {
            Slip::Missing { ch: '.', .. } | Slip::Missing { doubled: true, .. } => CHEAP,
            Slip::Missing { .. } => DROPPED,
            Slip::Extra { doubled: true, .. } => CHEAP,
            Slip::Extra { near: true, .. } => NEAR,
            Slip::Extra { .. } => FULL,
            Slip::Wrong { typed, meant } if adjacent_keys(typed, meant) => CHEAP,
            Slip::Wrong { typed, meant } if look_alike(typed, meant) => NEAR,
            Slip::Wrong { .. } => FULL,
            Slip::Swapped { .. } => CHEAP,
        }
    }

    fn describe(&self) -> String {
        match *self {
            Slip::Missing { ch: '.', .. } => "missing dot".to_string(),
            Slip::Missing { ch, doubled: true } => format!("missing doubled '{ch}'"),
            Slip::Missing { ch, .. } => format!("missing '{ch}'"),
            Slip::Extra {
                ch, doubled: true, ..
            } => format!("doubled '{ch}'"),
            Slip::Extra { ch, near: true, .. } => format!("extra '{ch}' (adjacent key)"),
            Slip::Extra { ch, .. } => format!("extra '{ch}'"),
            Slip::Wrong { typed, meant } if adjacent_keys(typed, meant) => {
                format!("'{typed}' for '{meant}', adjacent keys")
            }
            Slip::Wrong { typed, meant } if look_alike(typed, meant) => {
                format!("'{typed}' for '{meant}', look-alike")
            }
            Slip::Wrong { typed, meant } => format!("'{typed}' for '{meant}'"),
            Slip::Swapped { typed: [a, b] } => format!("'{a}{b}' for '{b}{a}', transposed"),
        }
    }
}

/// Keyboard-aware weighted optimal string alignment from `intended` to `typed`: the cheapest
/// list of slips (cost in hundredths of an edit) that turns what was meant into what was typed.
pub(super) fn slips(typed: &str, intended: &str) -> (u32, Vec<Slip>) {
    let t: Vec<char> = typed.chars().collect();
    let m: Vec<char> = intended.chars().collect();
    let (n, k) = (t.len(), m.len());
    let w = k + 1;
    // cost[i * w + j]: typed[..i] against intended[..j]; step remembers the last move.
    let mut cost = vec![0u32; (n + 1) * w];
    let mut step = vec![0u8; (n + 1) * w];
    let extra = |i: usize| -> Slip {
        let ch = t[i];
        let prev = i.checked_sub(1).map(|p| t[p]);
        let next = t.get(i + 1).copied();
        let doubled = prev == Some(ch) || next == Some(ch);
        let near = prev.is_some_and(|p| adjacent_keys(p, ch))
            || next.is_some_and(|x| adjacent_keys(x, ch));
        Slip::Extra { ch, doubled, near }
    };
    let missing = |j: usize| -> Slip {
        let ch = m[j];
        let doubled = (j > 0 && m[j - 1] == ch) || m.get(j + 1) == Some(&ch);
        Slip::Missing { ch, doubled }
    };
    for i in 1..=n {
        cost[i * w] = cost[(i - 1) * w] + extra(i - 1).cost();
        step[i * w] = 1;
    }
    for j in 1..=k {
        cost[j] = cost[j - 1] + missing(j - 1).cost();
        step[j] = 2;
    }
    for i in 1..=n {
        for j in 1..=k {
            let sub = if t[i - 1] == m[j - 1] {
                0
            } else {
                Slip::Wrong {
                    typed: t[i - 1],
                    meant: m[j - 1],
                }
                .cost()
            };
            let mut best = (cost[(i - 1) * w + j - 1] + sub, 3u8);
            let del = cost[(i - 1) * w + j] + extra(i - 1).cost();
            if del < best.0 {
                best = (del, 1);
            }
            let ins = cost[i * w + j - 1] + missing(j - 1).cost();
            if ins < best.0 {
                best = (ins, 2);
            }
            if i > 1
                && j > 1
                && t[i - 1] == m[j - 2]
                && t[i - 2] == m[j - 1]
                && t[i - 1] != t[i - 2]
            {
                let swap = cost[(i - 2) * w + j - 2] + CHEAP;
                if swap < best.0 {
                    best = (swap, 4);
                }
            }
            cost[i * w + j] = best.0;
            step[i * w + j] = best.1;
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (n, k);
    while i > 0 || j > 0 {
        match step[i * w + j] {
            1 => {
                out.push(extra(i - 1));
                i -= 1;
            }
            2 => {
                out.push(missing(j - 1));
                j -= 1;
            }
            4 => {
                out.push(Slip::Swapped {
                    typed: [t[i - 2], t[i - 1]],
                });
                i -= 2;
                j -= 2;
            }
            _ => {
                if t[i - 1] != m[j - 1] {
                    out.push(Slip::Wrong {
                        typed: t[i - 1],
                        meant: m[j - 1],
                    });
                }
                i -= 1;
                j -= 1;
            }
        }
    }
    out.reverse();
    (cost[n * w + k], out)
}

/// A corrected domain with its confidence and the reason.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DomainFix {
    pub domain: String,
    pub confidence: f32,
    pub explanation: String,
}

/// Where a candidate domain comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Popular,
    KnownGood,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Popular => "a popular mailbox provider",
            Source::KnownGood => "a domain with deliveries for this tenant",
        }
    }
}

/// How a candidate was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The names are equal and the suffix is a known typo of the candidate's (`.con`).
    KnownSuffixTypo,
    /// The names are equal and the suffixes are one other edit apart (`.fe` for `.fr`).
    OtherSuffixEdit,
    /// The name has slips; the suffix is equal or a known typo.
    NameEdit,
}

/// Generic top-level domains that are never read as a slip of another suffix.
const GENERIC_TLDS: &[&str] = &[
    "com", "net", "org", "edu", "gov", "int", "mil", "biz", "info", "pro", "app", "dev", "xyz",
    "top", "art", "shop", "site", "online", "tech", "store", "name", "mobi", "asia", "cat", "eu",
];

/// Edits allowed in a domain whose name (second-level label, before the public suffix) has
/// `len` characters: none for names of three characters or fewer (`qq`, `aol`, `gmx`: almost
/// any one-edit neighbour is another real domain), one up to six, two from seven.
fn max_edits(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=6 => 1,
        _ => 2,
    }
}

/// Confidence of a slip set of weighted `cost` over `edits` edits.
fn slip_confidence(cost: u32, edits: usize) -> f32 {
    let per_edit = 0.98 - 0.16 * (cost as f32 / 100.0);
    let extra_edits = edits.saturating_sub(1).min(8) as i32;
    (per_edit * 0.9f32.powi(extra_edits)).clamp(0.05, 0.98)
}

/// Lower confidence for four-letter names: many real domains are one slip from `live` or `mail`.
fn length_factor(len: usize) -> f32 {
    if len <= 4 {
        0.75
    } else {
        1.0
    }
}

fn describe_slips(list: &[Slip]) -> String {
    list.iter()
        .map(Slip::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

struct Scored {
    domain: String,
    /// How many slips the reading needs (a known suffix typo is one).
    slips: usize,
    route: Route,
    raw: f32,
    detail: String,
    source: Source,
}

/// A domain split into its name and public suffix once (both ASCII, so lengths count
/// characters).
#[derive(Debug, Clone)]
struct Split {
    domain: String,
    /// Byte length of the name; the suffix starts after the dot that follows it (if any).
    name_len: usize,
    suffix_start: usize,
}

impl Split {
    fn new(domain: String) -> Split {
        debug_assert!(domain.is_ascii());
        let (name, suffix) = split_suffix(&domain);
        let (name_len, suffix_start) = (name.len(), domain.len() - suffix.len());
        Split {
            domain,
            name_len,
            suffix_start,
        }
    }

    fn name(&self) -> &str {
        &self.domain[..self.name_len]
    }

    fn suffix(&self) -> &str {
        &self.domain[self.suffix_start..]
    }
}

/// A candidate a typo may have meant.
#[derive(Debug, Clone)]
struct Candidate {
    split: Split,
    source: Source,
}

/// The domains a mistyped domain may have meant: the popular mail domains and a tenant's
/// domains with deliveries, cleaned and split once. Checking the many domains of an import
/// against them then costs no preparation per domain.
#[derive(Debug, Clone, Default)]
pub struct KnownDomains {
    /// The tenant's domains (cleaned), without the popular ones and without repeats.
    known: Vec<Candidate>,
    /// The same domains, to tell a listed domain at once.
    listed: HashSet<String>,
}

impl KnownDomains {
    /// Prepares the tenant's domains with deliveries; anything that cannot be a mail domain is
    /// ignored.
    pub fn new(known_good: &[&str]) -> KnownDomains {
        let mut out = KnownDomains::default();
        for d in known_good.iter().filter_map(|d| clean_domain(d)) {
            if !is_popular(&d) && out.listed.insert(d.clone()) {
                out.known.push(Candidate {
                    split: Split::new(d),
                    source: Source::KnownGood,
                });
            }
        }
        out
    }

    /// Popular or known-good.
    fn is_listed(&self, domain: &str) -> bool {
        is_popular(domain) || self.listed.contains(domain)
    }

    /// Every candidate: the popular domains, then the tenant's.
    fn candidates(&self) -> impl Iterator<Item = &Candidate> {
        popular_candidates().iter().chain(&self.known)
    }
}

/// The popular domains as candidates, prepared once.
fn popular_candidates() -> &'static [Candidate] {
    static POPULAR_CANDIDATES: OnceLock<Vec<Candidate>> = OnceLock::new();
    POPULAR_CANDIDATES.get_or_init(|| {
        POPULAR
            .iter()
            .map(|d| Candidate {
                split: Split::new(d.to_string()),
                source: Source::Popular,
            })
            .collect()
    })
}

/// The typed domain, split, with the suffix its suffix is a known typo of (if any).
struct Typed {
    split: Split,
    fixed_suffix: Option<&'static str>,
}

/// Evaluates one candidate against the typed domain; `None` when it is not a plausible typo.
fn evaluate(typed_domain: &Typed, c: &Candidate) -> Option<Scored> {
    let (typed_domain, fixed_suffix) = (&typed_domain.split, typed_domain.fixed_suffix);
    let (domain, dn, ds) = (
        typed_domain.domain.as_str(),
        typed_domain.name(),
        typed_domain.suffix(),
    );
    let (candidate, cn, cs, source) = (
        c.split.domain.as_str(),
        c.split.name(),
        c.split.suffix(),
        c.source,
    );
    // ASCII (checked by the callers): lengths count characters.
    let len = cn.len();
    let allowed = max_edits(len);
    let scored = |route, slips, raw: f32, detail| Scored {
        domain: candidate.to_string(),
        slips,
        route,
        raw: raw.clamp(0.0, 1.0),
        detail,
        source,
    };

    if dn == cn && ds != cs {
        if fixed_suffix == Some(cs) {
            let raw = match source {
                Source::Popular => 0.95,
                Source::KnownGood => 0.92,
            };
            let detail = format!(".{ds} is a common mistyping of .{cs}");
            return Some(scored(Route::KnownSuffixTypo, 1, raw, detail));
        }
        // A two-letter suffix is most likely a real country code (`yahoo.gr`, `live.se`), and
        // a generic one (`.org` for `.org.uk`...) a real domain: only other shapes are slips.
        let real_looking = ds.len() == 2 || GENERIC_TLDS.contains(&ds);
        if !ds.is_empty() && !real_looking && strsim::damerau_levenshtein(ds, cs) == 1 {
            let (cost, list) = slips(ds, cs);
            // Not a known typo: `.frr` is likely `.fr`, but less surely than `.con` is `.com`.
            let raw = slip_confidence(cost, 1) * 0.85;
            let detail = format!("1 edit in the suffix: {}", describe_slips(&list));
            return Some(scored(Route::OtherSuffixEdit, 1, raw, detail));
        }
    }
    if dn == cn {
        // Same name: only the suffix could differ, and it is not one plausible slip away.
        return None;
    }

    // The name has slips: compare names when the suffixes agree (possibly after a known
    // suffix typo), else whole domains (a missing or doubled dot moves the split).
    let suffix_fixed = ds != cs && fixed_suffix == Some(cs);
    let (typed, meant) = if ds == cs || suffix_fixed {
        (dn, cn)
    } else {
        (domain, candidate)
    };
    // Cheap lower bounds of the edit distance first: most candidates end here, before the
    // quadratic comparison.
    if typed.len().abs_diff(meant.len()) > allowed || letter_count_bound(typed, meant) > allowed {
        return None;
    }
    let edits = strsim::damerau_levenshtein(typed, meant);
    if edits == 0 || edits > allowed {
        return None;
    }
    let (cost, list) = slips(typed, meant);
    // The keyboard alignment cannot chain a dropped letter into a swap (`hotmla`): its slips
    // must stay within the allowance too.
    let edits = edits.max(list.len());
    if edits > allowed {
        return None;
    }
    // A four-letter name only takes the cheapest single slips.
    if len <= 4 && cost > CHEAP {
        return None;
    }
    let mut raw = slip_confidence(cost, edits) * length_factor(len);
    let mut detail = format!("{edits} edit{}: {}", plural(edits), describe_slips(&list));
    let mut slip_count = edits;
    if typed == dn && suffix_fixed {
        slip_count += 1;
        raw *= 0.92;
        detail = format!(
            "{} edit{}: {}, .{ds} for .{cs}",
            edits + 1,
            plural(edits + 1),
            describe_slips(&list)
        );
    }
    if source == Source::Popular && is_major(candidate) {
        // Volume prior: most mail goes to these, and their one-slip neighbours are rarely real.
        raw = (1.0 - (1.0 - raw) * 0.6).min(0.98);
    }
    Some(scored(Route::NameEdit, slip_count, raw, detail))
}

/// Normalizes a caller-given domain for comparison; `None` when it cannot be a mail domain.
fn clean_domain(d: &str) -> Option<String> {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    (!d.is_empty() && d.len() <= 253 && d.is_ascii() && d.contains('.')).then_some(d)
}

/// A lower bound of the Damerau-Levenshtein distance of two strings from their letter counts:
/// a substitution changes two counts by one, an insertion or deletion one count, and a
/// transposition none, so at least half the total count difference (rounded up) is needed.
/// ASCII only (anything else gets the trivial bound 0).
fn letter_count_bound(a: &str, b: &str) -> usize {
    if !a.is_ascii() || !b.is_ascii() {
        return 0;
    }
    let mut counts = [0i16; 128];
    for &c in a.as_bytes() {
        counts[c as usize] += 1;
    }
    for &c in b.as_bytes() {
        counts[c as usize] -= 1;
    }
    // Sum each letter's difference once, clearing it as it is counted.
    let mut total = 0usize;
    for &c in a.as_bytes().iter().chain(b.as_bytes()) {
        total += counts[c as usize].unsigned_abs() as usize;
        counts[c as usize] = 0;
    }
    total.div_ceil(2)
}

/// Plausible corrections of `domain` (the part after `@`), best first. Empty when the domain is
/// itself popular or known-good, or nothing is close enough.
pub(super) fn domain_fixes(domain: &str, known: &KnownDomains) -> Vec<DomainFix> {
    let typed = domain.to_ascii_lowercase();
    if typed.is_empty() || typed.len() > 253 || !typed.is_ascii() {
        return Vec::new();
    }
    if known.is_listed(&typed) {
        return Vec::new();
    }
    // `gmail.com.`: a trailing dot some mail systems reject.
    let domain = typed.trim_end_matches('.').to_string();
    if domain.is_empty() {
        return Vec::new();
    }
    if domain != typed && known.is_listed(&domain) {
        return vec![DomainFix {
            explanation: format!("domain {typed} has a trailing dot; {domain} is known"),
            domain,
            confidence: 0.95,
        }];
    }
    let split = Split::new(domain);
    let typed = Typed {
        fixed_suffix: suffix_typo(split.suffix()),
        split,
    };
    let dlen = typed.split.domain.len();
    let mut scored: Vec<Scored> = known
        .candidates()
        .filter(|c| c.split.domain.len().abs_diff(dlen) <= 4)
        .filter_map(|c| evaluate(&typed, c))
        .collect();
    let domain = typed.split.domain;
    // A known suffix typo of the same name (.con -> .com) outranks every other reading of the
    // suffix (.con -> .cn, .co): drop those.
    if scored.iter().any(|s| s.route == Route::KnownSuffixTypo) {
        scored.retain(|s| s.route != Route::OtherSuffixEdit);
    }
    // Fewer slips explain the typo better: `gmail.con` is one slip from gmail.com and two
    // from ymail.com, so ymail.com is no reading at all.
    if let Some(fewest) = scored.iter().map(|s| s.slips).min() {
        scored.retain(|s| s.slips == fewest);
    }
    // Several readings split the belief: each keeps its own plausibility times its share of
    // the (sharpened) total, so one clear reading keeps its confidence and two equal ones halve.
    let total: f32 = scored.iter().map(|s| s.raw.powi(4)).sum();
    let mut fixes: Vec<DomainFix> = scored
        .into_iter()
        .map(|s| {
            let share = if total > 0.0 {
                s.raw.powi(4) / total
            } else {
                0.0
            };
            DomainFix {
                confidence: (s.raw * share).clamp(0.0, 1.0),
                explanation: format!(
                    "domain {domain} looks like a typo of {} ({}; {})",
                    s.domain,
                    s.detail,
                    s.source.label()
                ),
                domain: s.domain,
            }
        })
        .collect();
    fixes.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.domain.cmp(&b.domain))
    });
    fixes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // The pre-filter may only reject what the full comparison would reject too.
        #[test]
        fn letter_counts_never_overstate_the_edit_distance(
            a in "[a-z0-9.-]{0,20}",
            b in "[a-z0-9.-]{0,20}",
        ) {
            prop_assert!(letter_count_bound(&a, &b) <= strsim::damerau_levenshtein(&a, &b));
        }
    }

    #[test]
    fn letter_counts_bound_typical_slips() {
        assert_eq!(letter_count_bound("gmial.com", "gmail.com"), 0, "a swap");
        assert_eq!(
            letter_count_bound("gmal.com", "gmail.com"),
            1,
            "a dropped letter"
        );
        assert_eq!(letter_count_bound("acmebank.de", "outlook.com"), 7);
        assert_eq!(letter_count_bound("bücher.de", "bucher.de"), 0, "not ASCII");
    }

    #[test]
    fn only_neighbouring_keys_count_as_adjacent() {
        for (a, b) in [
            ('m', 'n'),
            ('c', 'v'),
            ('c', 'x'),
            ('i', 'o'),
            ('q', 'a'),
            ('k', 'l'),
        ] {
            assert!(adjacent_keys(a, b), "{a}{b}");
            assert!(adjacent_keys(b, a), "{b}{a}");
        }
        for (a, b) in [('m', 'a'), ('q', 'p'), ('a', 'a'), ('@', 'a'), ('q', 'x')] {
            assert!(!adjacent_keys(a, b), "{a}{b}");
        }
        // m touches j, k, n and the comma.
        assert!(adjacent_keys('m', 'j') && adjacent_keys('m', 'k') && adjacent_keys('m', ','));
    }

    #[test]
    fn each_slip_is_named_by_its_kind() {
        assert_eq!(
            slips("gmal", "gmail").1,
            vec![Slip::Missing {
                ch: 'i',
                doubled: false
            }]
        );
        assert_eq!(
            slips("hotmial", "hotmail").1,
            vec![Slip::Swapped { typed: ['i', 'a'] }]
        );
        assert_eq!(
            slips("gnail", "gmail"),
            (
                CHEAP,
                vec![Slip::Wrong {
                    typed: 'n',
                    meant: 'm'
                }]
            )
        );
        assert_eq!(slips("yaho", "yahoo").0, CHEAP);
        assert_eq!(slips("gmailcom", "gmail.com").0, CHEAP);
        assert_eq!(slips("comm", "com").0, CHEAP);
        assert_eq!(slips("gmail", "gmail"), (0, vec![]));
        assert_eq!(slips("", "ab").1.len(), 2);
        assert_eq!(slips("ab", "").1.len(), 2);
    }

    #[test]
    fn thresholds_by_name_length() {
        assert_eq!(max_edits(3), 0);
        assert_eq!(max_edits(5), 1);
        assert_eq!(max_edits(6), 1);
        assert_eq!(max_edits(7), 2);
        assert!(slip_confidence(CHEAP, 1) > slip_confidence(FULL, 1));
        assert!(slip_confidence(CHEAP, 1) > slip_confidence(2 * CHEAP, 2));
    }

    #[test]
    fn short_names_only_take_suffix_fixes() {
        assert!(domain_fixes("qqq.com", &KnownDomains::new(&[])).is_empty());
        assert!(domain_fixes("gm.com", &KnownDomains::new(&[])).is_empty());
        assert_eq!(
            domain_fixes("qq.con", &KnownDomains::new(&[]))[0].domain,
            "qq.com"
        );
    }

    #[test]
    fn ambiguous_readings_lower_confidence() {
        let known = ["northwind.com", "northwinds.com"];
        let fixes = domain_fixes("northwindd.com", &KnownDomains::new(&known));
        assert_eq!(fixes.len(), 2, "{fixes:?}");
        assert!(fixes.iter().all(|f| f.confidence < 0.6), "{fixes:?}");
    }

    #[test]
    fn suffix_slips_outside_the_table() {
        // A doubled letter in the suffix is a slip...
        let fixes = domain_fixes("hotmail.frr", &KnownDomains::new(&[]));
        assert_eq!(fixes[0].domain, "hotmail.fr");
        assert!(
            fixes[0].confidence > 0.7 && fixes[0].confidence < 0.9,
            "{fixes:?}"
        );
        // ...but a two-letter suffix may be a real country code, and a generic TLD is real.
        for real in [
            "yahoo.gr",
            "live.se",
            "hotmail.se",
            "yahoo.in",
            "live.cn",
            "hotmail.fe",
        ] {
            assert!(
                domain_fixes(real, &KnownDomains::default()).is_empty(),
                "{real}"
            );
        }
        assert!(domain_fixes("charity.org", &KnownDomains::new(&["charity.org.uk"])).is_empty());
    }

    #[test]
    fn known_good_domains_are_candidates_and_never_corrected() {
        let known = ["acmecorp.com"];
        let fixes = domain_fixes("acmecrop.com", &KnownDomains::new(&known));
        assert_eq!(fixes[0].domain, "acmecorp.com");
        assert!(fixes[0].explanation.contains("tenant"));
        assert!(domain_fixes("acmecorp.com", &KnownDomains::new(&known)).is_empty());
        assert_eq!(
            domain_fixes("acmecorp.con", &KnownDomains::new(&known))[0].confidence,
            0.92
        );
        // Garbage in the tenant's list is ignored.
        assert!(domain_fixes("x.com", &KnownDomains::new(&["", ".", "x", "é.com"])).is_empty());
    }
}
