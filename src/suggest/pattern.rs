//! Company local-part patterns: applying a pattern to a person's names, and inferring a domain's
//! dominant pattern from its known-good addresses.

use super::{DomainPattern, KnownAddress, LocalPattern};

/// Every pattern, in the order used to break exact ties deterministically (roughly how common
/// each is in company mail).
pub(super) const ALL: [LocalPattern; 12] = [
    LocalPattern::FirstDotLast,
    LocalPattern::FirstLast,
    LocalPattern::FLast,
    LocalPattern::FirstL,
    LocalPattern::First,
    LocalPattern::Last,
    LocalPattern::FirstUnderscoreLast,
    LocalPattern::FirstDashLast,
    LocalPattern::LastDotFirst,
    LocalPattern::LastFirst,
    LocalPattern::FDotLast,
    LocalPattern::LastF,
];

/// Longest local part allowed by RFC 5321.
const MAX_LOCAL: usize = 64;

impl LocalPattern {
    /// The pattern's conventional name, as used in explanations: `first.last`, `flast`...
    pub fn name(self) -> &'static str {
        match self {
            LocalPattern::FirstDotLast => "first.last",
            LocalPattern::FirstLast => "firstlast",
            LocalPattern::FLast => "flast",
            LocalPattern::FirstL => "firstl",
            LocalPattern::First => "first",
            LocalPattern::Last => "last",
            LocalPattern::FirstUnderscoreLast => "first_last",
            LocalPattern::FirstDashLast => "first-last",
            LocalPattern::LastDotFirst => "last.first",
            LocalPattern::LastFirst => "lastfirst",
            LocalPattern::FDotLast => "f.last",
            LocalPattern::LastF => "lastf",
        }
    }

    /// Builds the local part this pattern gives for a person's given and family names.
    ///
    /// Names are lowercased and folded to ASCII (`é`→`e`, `ü`→`u`, `ß`→`ss`;
    /// spaces, apostrophes and other punctuation dropped; hyphens kept inside a name, as in
    /// `smith-jones`). Returns `None` when a name the pattern needs folds to nothing, or the
    /// result would exceed 64 characters.
    pub fn apply(self, given: &str, family: &str) -> Option<String> {
        apply_folded(self, &fold_name(given), &fold_name(family))
    }

    /// Whether the pattern's parts are joined by a separator (and so cannot be confused with a
    /// single-token pattern such as `flast`).
    fn has_separator(self) -> bool {
        matches!(
            self,
            LocalPattern::FirstDotLast
                | LocalPattern::FirstUnderscoreLast
                | LocalPattern::FirstDashLast
                | LocalPattern::LastDotFirst
                | LocalPattern::FDotLast
        )
    }

    fn rank(self) -> usize {
        ALL.iter().position(|p| *p == self).unwrap_or(ALL.len())
    }
}

/// Applies a pattern to already folded names.
fn apply_folded(p: LocalPattern, g: &str, f: &str) -> Option<String> {
    let initial = |s: &str| s.chars().next().map(String::from);
    let need = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let out = match p {
        LocalPattern::FirstDotLast => format!("{}.{}", need(g)?, need(f)?),
        LocalPattern::FirstLast => format!("{}{}", need(g)?, need(f)?),
        LocalPattern::FLast => format!("{}{}", initial(g)?, need(f)?),
        LocalPattern::FirstL => format!("{}{}", need(g)?, initial(f)?),
        LocalPattern::First => need(g)?,
        LocalPattern::Last => need(f)?,
        LocalPattern::FirstUnderscoreLast => format!("{}_{}", need(g)?, need(f)?),
        LocalPattern::FirstDashLast => format!("{}-{}", need(g)?, need(f)?),
        LocalPattern::LastDotFirst => format!("{}.{}", need(f)?, need(g)?),
        LocalPattern::LastFirst => format!("{}{}", need(f)?, need(g)?),
        LocalPattern::FDotLast => format!("{}.{}", initial(g)?, need(f)?),
        LocalPattern::LastF => format!("{}{}", need(f)?, initial(g)?),
    };
    (out.len() <= MAX_LOCAL).then_some(out)
}

/// Folds one lowercase character to ASCII; `None` drops it.
fn fold_char(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' | 'ĸ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' | 'ŋ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' | 'ſ' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// Folds a personal name to the characters company mail systems put in local parts:
/// lowercase ASCII letters and digits, with hyphens kept between letters (`Smith-Jones` ->
/// `smith-jones`). Latin letters with diacritics lose them (`José Müller` -> `josemuller`,
/// `Straße` -> `strasse`), combining marks are dropped, and every other character (spaces,
/// apostrophes, dots, other scripts) is dropped: the apostrophe is legal in a local part but
/// company systems almost never keep it (`O'Brien` -> `obrien`).
pub(super) fn fold_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if c == '-' {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        } else if let Some(s) = fold_char(c) {
            out.push_str(s);
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Spellings of one name to try when matching known addresses: as folded, without hyphens,
/// and each of its first and last words (`Mary Ann` -> `maryann`, `mary`, `ann`;
/// `García López` -> `garcialopez`, `garcia`, `lopez`).
fn variants(name: Option<&str>) -> Vec<String> {
    let Some(name) = name else {
        return vec![String::new()];
    };
    let words: Vec<&str> = name
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|w| !w.trim().is_empty())
        .collect();
    let full = fold_name(name);
    let mut out = vec![full.replace('-', ""), full];
    for w in [words.first(), words.last()].into_iter().flatten() {
        out.push(fold_name(w));
    }
    let mut seen = Vec::new();
    for v in out {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen
}

/// The part of a local part that carries the pattern: without a `+tag` and without trailing
/// digits (`jsmith2` is how systems disambiguate a second J. Smith).
fn core_local(local: &str) -> String {
    let local = local.split('+').next().unwrap_or("").to_lowercase();
    local
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string()
}

/// What one known address says about the domain's pattern.
enum Evidence {
    /// Named, and its local part is what these patterns give for the names.
    Named(Vec<LocalPattern>),
    /// Named, and no pattern gives its local part: evidence against every pattern.
    NamedMismatch,
    /// Unnamed, and its shape fits only these (separator) patterns: `jane.smith`, `j.smith`.
    Shape(Vec<LocalPattern>),
    /// Unnamed single token such as `jsmith`: `flast`, `first`, `lastf`... cannot be told apart.
    Token,
}

fn named_evidence(core: &str, given: Option<&str>, family: Option<&str>) -> Option<Evidence> {
    let has = |n: Option<&str>| n.is_some_and(|n| !fold_name(n).is_empty());
    let (has_given, has_family) = (has(given), has(family));
    if !has_given && !has_family {
        return None;
    }
    let givens = variants(given.filter(|_| has_given));
    let families = variants(family.filter(|_| has_family));
    let fits: Vec<LocalPattern> = ALL
        .into_iter()
        .filter(|p| {
            givens.iter().any(|g| {
                families
                    .iter()
                    .any(|f| apply_folded(*p, g, f).is_some_and(|l| l == core))
            })
        })
        .collect();
    if !fits.is_empty() {
        Some(Evidence::Named(fits))
    } else if has_given && has_family {
        Some(Evidence::NamedMismatch)
    } else {
        // One name only and no pattern of that name alone fits: judge the shape instead.
        None
    }
}

fn shape_evidence(core: &str) -> Option<Evidence> {
    if core.len() < 2 {
        return None;
    }
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    if letters(core) {
        return Some(Evidence::Token);
    }
    for (sep, pats) in [
        (
            '.',
            &[LocalPattern::FirstDotLast, LocalPattern::LastDotFirst][..],
        ),
        ('_', &[LocalPattern::FirstUnderscoreLast][..]),
        ('-', &[LocalPattern::FirstDashLast][..]),
    ] {
        let Some((a, b)) = core.split_once(sep) else {
            continue;
        };
        if !letters(a) || !letters(b) || b.len() < 2 {
            continue;
        }
        if a.len() >= 2 {
            return Some(Evidence::Shape(pats.to_vec()));
        }
        if sep == '.' {
            return Some(Evidence::Shape(vec![LocalPattern::FDotLast]));
        }
    }
    None
}

/// Vote units of one address, split evenly over the patterns it fits (divisible by 1..=12).
const VOTE: u64 = 27_720;

#[derive(Default, Clone, Copy)]
struct Tally {
    votes: u64,
    named_votes: u64,
    matching: u32,
}

/// Infers a domain's dominant local-part pattern. See [`super::infer_pattern`].
pub(super) fn infer(known: &[KnownAddress<'_>]) -> Option<DomainPattern> {
    // One piece of evidence per distinct local part, preferring an entry that has names.
    let mut seen: Vec<(String, Evidence)> = Vec::new();
    let mut ordered: Vec<&KnownAddress<'_>> = known.iter().collect();
    ordered.sort_by_key(|k| k.given_name.is_none() && k.family_name.is_none());
    for k in ordered {
        let core = core_local(k.local_part);
        if core.is_empty() || core.len() > MAX_LOCAL || seen.iter().any(|(c, _)| *c == core) {
            continue;
        }
        let ev =
            named_evidence(&core, k.given_name, k.family_name).or_else(|| shape_evidence(&core));
        if let Some(ev) = ev {
            seen.push((core, ev));
        }
    }

    let mut tally = [Tally::default(); 12];
    let (mut named, mut shaped, mut tokens) = (0u32, 0u32, 0u32);
    for (_, ev) in &seen {
        let (fits, is_named) = match ev {
            Evidence::Named(f) => (f, true),
            Evidence::Shape(f) => (f, false),
            Evidence::NamedMismatch => {
                named += 1;
                continue;
            }
            Evidence::Token => {
                tokens += 1;
                continue;
            }
        };
        if is_named {
            named += 1;
        } else {
            shaped += 1;
        }
        let share = VOTE / fits.len() as u64;
        for p in fits {
            let t = &mut tally[p.rank()];
            t.votes += share;
            t.matching += 1;
            if is_named {
                t.named_votes += share;
            }
        }
    }

    let mut ranked: Vec<(LocalPattern, Tally)> = ALL.into_iter().zip(tally).collect();
    ranked.sort_by(|a, b| {
        b.1.votes
            .cmp(&a.1.votes)
            .then_with(|| a.0.rank().cmp(&b.0.rank()))
    });
    let (mut best, mut best_t) = ranked[0];
    let (second, second_t) = ranked[1];
    if best_t.votes == second_t.votes {
        // Unnamed `jane.smith` fits first.last and last.first equally; without any named
        // evidence for either, take the far more common first.last. Any other tie is unclear.
        let pair = [best, second];
        let dot_pair = pair.contains(&LocalPattern::FirstDotLast)
            && pair.contains(&LocalPattern::LastDotFirst);
        let third_lower = ranked[2].1.votes < best_t.votes;
        if !(dot_pair && best_t.named_votes == 0 && second_t.named_votes == 0 && third_lower) {
            return None;
        }
        best = LocalPattern::FirstDotLast;
        best_t = tally[best.rank()];
    }
    // Unnamed single tokens count against a separator pattern (they do not fit it) and are
    // neutral for a single-token one (they fit its shape but cannot confirm it).
    let total = named + shaped + if best.has_separator() { tokens } else { 0 };
    let matching = best_t.matching;
    if matching < 3 || matching * 2 <= total {
        return None;
    }
    Some(DomainPattern {
        pattern: best,
        matching,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pattern_has_a_name_and_applies_to_a_name() {
        let cases = [
            (LocalPattern::FirstDotLast, "first.last", "jane.smith"),
            (LocalPattern::FirstLast, "firstlast", "janesmith"),
            (LocalPattern::FLast, "flast", "jsmith"),
            (LocalPattern::FirstL, "firstl", "janes"),
            (LocalPattern::First, "first", "jane"),
            (LocalPattern::Last, "last", "smith"),
            (
                LocalPattern::FirstUnderscoreLast,
                "first_last",
                "jane_smith",
            ),
            (LocalPattern::FirstDashLast, "first-last", "jane-smith"),
            (LocalPattern::LastDotFirst, "last.first", "smith.jane"),
            (LocalPattern::LastFirst, "lastfirst", "smithjane"),
            (LocalPattern::FDotLast, "f.last", "j.smith"),
            (LocalPattern::LastF, "lastf", "smithj"),
        ];
        assert_eq!(cases.len(), ALL.len());
        for (p, name, local) in cases {
            assert_eq!(p.name(), name);
            assert_eq!(p.apply("Jane", "Smith").as_deref(), Some(local));
        }
    }

    #[test]
    fn names_fold_to_lowercase_ascii_without_spaces_or_apostrophes() {
        assert_eq!(fold_name("José"), "jose");
        assert_eq!(fold_name("Müller"), "muller");
        assert_eq!(fold_name("Straße"), "strasse");
        assert_eq!(fold_name("O'Brien"), "obrien");
        assert_eq!(fold_name("Smith-Jones"), "smith-jones");
        assert_eq!(fold_name("--Anne--Marie-"), "anne-marie");
        assert_eq!(fold_name("van der Berg"), "vanderberg");
        assert_eq!(fold_name("Łukasz Żółć"), "lukaszzolc");
        assert_eq!(fold_name("Æsa Øberg"), "aesaoberg");
        assert_eq!(fold_name("ÉMILE"), "emile");
        // Decomposed accent (e + combining acute) and a non-Latin script.
        assert_eq!(fold_name("Jose\u{301}"), "jose");
        assert_eq!(fold_name("李"), "");
        assert_eq!(fold_name("İlker"), "ilker");
    }

    #[test]
    fn application_needs_the_names_it_uses() {
        assert_eq!(LocalPattern::First.apply("Jane", ""), Some("jane".into()));
        assert_eq!(LocalPattern::FirstDotLast.apply("Jane", ""), None);
        assert_eq!(LocalPattern::FLast.apply("", "Smith"), None);
        assert_eq!(LocalPattern::Last.apply("Jane", "李"), None);
        assert_eq!(
            LocalPattern::FirstLast.apply(&"a".repeat(40), &"b".repeat(40)),
            None
        );
    }

    fn named<'a>(local: &'a str, g: &'a str, f: &'a str) -> KnownAddress<'a> {
        KnownAddress {
            local_part: local,
            given_name: Some(g),
            family_name: Some(f),
        }
    }

    fn bare(local: &str) -> KnownAddress<'_> {
        KnownAddress {
            local_part: local,
            given_name: None,
            family_name: None,
        }
    }

    #[test]
    fn compound_names_accents_tags_and_digits_still_match_the_pattern() {
        let known = [
            named("mary.smith", "Mary Ann", "Smith"),
            named("maryann.jones", "Mary Ann", "Jones"),
            named("luis.garcia", "Luis", "García López"),
            named("anne.smith-jones", "Anne", "Smith-Jones"),
            named("bob.obrien+news", "Bob", "O'Brien"),
            named("jane.smith2", "Jane", "Smith"),
        ];
        let p = infer(&known).unwrap();
        assert_eq!(
            (p.pattern, p.matching, p.total),
            (LocalPattern::FirstDotLast, 6, 6)
        );
    }

    #[test]
    fn addresses_without_names_are_matched_by_their_shape() {
        // Role mailboxes are single tokens: they do not fit first.last.
        let known: Vec<_> = ["ann.lee", "bo.chan", "cy.diaz", "dee.ford", "info", "sales"]
            .into_iter()
            .map(bare)
            .collect();
        let p = infer(&known).unwrap();
        assert_eq!(
            (p.pattern, p.matching, p.total),
            (LocalPattern::FirstDotLast, 4, 6)
        );

        let known: Vec<_> = ["a.lee", "b.chan", "c.diaz"]
            .into_iter()
            .map(bare)
            .collect();
        assert_eq!(infer(&known).unwrap().pattern, LocalPattern::FDotLast);

        let known: Vec<_> = ["ann_lee", "bo_chan", "cy_diaz", "jsmith"]
            .into_iter()
            .map(bare)
            .collect();
        let p = infer(&known).unwrap();
        assert_eq!(
            (p.pattern, p.matching, p.total),
            (LocalPattern::FirstUnderscoreLast, 3, 4)
        );

        // Single tokens alone cannot tell flast from first.
        let known: Vec<_> = ["jsmith", "bjones", "alee", "cdiaz"]
            .into_iter()
            .map(bare)
            .collect();
        assert_eq!(infer(&known), None);
    }

    #[test]
    fn names_break_the_dot_tie_and_single_tokens() {
        let mut known = vec![
            named("smith.jane", "Jane", "Smith"),
            named("jones.bob", "Bob", "Jones"),
        ];
        known.extend(["lee.ann", "chan.bo"].into_iter().map(bare));
        let p = infer(&known).unwrap();
        assert_eq!(
            (p.pattern, p.matching, p.total),
            (LocalPattern::LastDotFirst, 4, 4)
        );

        let mut known = vec![
            named("jsmith", "Jane", "Smith"),
            named("bjones", "Bob", "Jones"),
            named("alee", "Ann", "Lee"),
        ];
        known.extend(["cdiaz", "dford", "eking"].into_iter().map(bare));
        let p = infer(&known).unwrap();
        assert_eq!(
            (p.pattern, p.matching, p.total),
            (LocalPattern::FLast, 3, 3)
        );
    }

    #[test]
    fn mismatches_and_single_tokens_count_against_separators() {
        let mut known = vec![
            named("jane.smith", "Jane", "Smith"),
            named("bob.jones", "Bob", "Jones"),
            named("ann.lee", "Ann", "Lee"),
            named("bobby", "Robert", "King"),
        ];
        known.extend(["cdiaz", "dford", "eking"].into_iter().map(bare));
        // 3 of 7 is no majority.
        assert_eq!(infer(&known), None);
    }

    #[test]
    fn a_repeated_address_counts_once() {
        let known = [
            named("jane.smith", "Jane", "Smith"),
            bare("jane.smith"),
            bare("jane.smith"),
            named("bob.jones", "Bob", "Jones"),
        ];
        assert_eq!(infer(&known), None);
    }
}
