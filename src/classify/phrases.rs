//! Finding every rule phrase in a normalised text: one Aho-Corasick automaton from the
//! `aho-corasick` crate, which picks the kind of automaton itself.
//!
//! The phrases and the text are normalised alike (lower case, folded accents, single spaces),
//! so the search is byte for byte. Every occurrence is looked at (overlapping, standard match
//! semantics): a phrase inside a longer one counts too ("unknown" in "user unknown", which
//! `unless` lists rely on), and an occurrence that lacks a word boundary it needs must not hide
//! a later one that has it. `bench/README.md` has the measurement that chose this over a
//! hand-written word index.

use aho_corasick::{AhoCorasick, MatchKind};

use super::rules::PatMeta;

/// All phrases of a rule set in one automaton.
#[derive(Debug)]
pub(crate) struct PhraseMatcher {
    automaton: AhoCorasick,
    /// Whether phrase `i` must start and end at a word boundary.
    bounds: Vec<(bool, bool)>,
}

impl PhraseMatcher {
    /// Builds the automaton over normalised phrases; `meta[i]` says whether phrase `i` needs a
    /// word boundary on the left and on the right.
    pub(crate) fn new(phrases: &[String], meta: &[PatMeta]) -> Result<Self, String> {
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(phrases)
            .map_err(|e| format!("building the phrase automaton failed: {e}"))?;
        Ok(PhraseMatcher {
            automaton,
            bounds: meta.iter().map(|m| (m.left, m.right)).collect(),
        })
    }

    /// Calls `hit(phrase)` for every phrase found in `text` with the word boundaries it needs
    /// (a phrase may be reported more than once).
    #[inline]
    pub(crate) fn find(&self, text: &str, mut hit: impl FnMut(usize)) {
        for m in self.automaton.find_overlapping_iter(text) {
            let p = m.pattern().as_usize();
            if self.bounded(text.as_bytes(), p, m.start(), m.end()) {
                hit(p);
            }
        }
    }

    /// Whether phrase `p` at `text[start..end]` has the word boundaries it needs.
    #[inline]
    fn bounded(&self, text: &[u8], p: usize, start: usize, end: usize) -> bool {
        let (left, right) = self.bounds[p];
        (!left || start == 0 || !text[start - 1].is_ascii_alphanumeric())
            && (!right || end == text.len() || !text[end].is_ascii_alphanumeric())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(list: &[(&str, bool, bool)]) -> PhraseMatcher {
        let phrases: Vec<String> = list.iter().map(|p| p.0.to_string()).collect();
        let meta: Vec<PatMeta> = list
            .iter()
            .map(|p| PatMeta {
                left: p.1,
                right: p.2,
            })
            .collect();
        PhraseMatcher::new(&phrases, &meta).unwrap()
    }

    fn found(m: &PhraseMatcher, text: &str) -> Vec<usize> {
        let mut v = Vec::new();
        m.find(text, |p| v.push(p));
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn finds_whole_words_prefixes_overlaps_and_unicode() {
        let m = matcher(&[
            ("user unknown", true, true),
            ("spam", true, true),
            ("blacklist", true, false),
            ("[tss", false, false),
            ("cbl.", true, false),
            ("ящик переполнен", false, false),
            ("p=nosuchuser", true, true),
            ("unknown", true, true),
        ]);
        assert_eq!(found(&m, "550 user unknown"), vec![0, 7]);
        assert_eq!(found(&m, "spamhaus listed"), Vec::<usize>::new());
        assert_eq!(found(&m, "- spam."), vec![1]);
        // the first occurrence lacks its boundary, the second has it
        assert_eq!(found(&m, "spamspam spam"), vec![1]);
        assert_eq!(found(&m, "ip blacklisted by"), vec![2]);
        assert_eq!(found(&m, "notblacklisted"), Vec::<usize>::new());
        assert_eq!(found(&m, "421 [tss04] deferred"), vec![3]);
        assert_eq!(found(&m, "blocked using cbl.abuseat.org"), vec![4]);
        assert_eq!(found(&m, "552 почтовый ящик переполнен"), vec![5]);
        assert_eq!(found(&m, "see ?p=nosuchuser x"), vec![6]);
        assert_eq!(found(&m, "xuser unknown"), vec![7]);
    }

    mod props {
        use std::sync::LazyLock;

        use proptest::prelude::*;

        use crate::classify::rules::{compile, RuleSet};

        static RULES: LazyLock<RuleSet> =
            LazyLock::new(|| compile(include_str!("rules.toml")).expect("rules.toml compiles"));

        /// Every phrase of the rule set in `text`, by plain search (the reference).
        fn found_plainly(text: &str) -> Vec<usize> {
            let (b, m) = (text.as_bytes(), &RULES.matcher);
            let mut v: Vec<usize> = (0..RULES.phrases.len())
                .filter(|&p| {
                    let pat = RULES.phrases[p].as_bytes();
                    (0..=b.len().saturating_sub(pat.len())).any(|start| {
                        b[start..].starts_with(pat) && m.bounded(b, p, start, start + pat.len())
                    })
                })
                .collect();
            v.sort();
            v
        }

        /// Lower-case texts made of the rule set's phrases, pieces of them and odd joints,
        /// so that phrases occur whole, cut, run on and next to each other.
        fn text() -> impl Strategy<Value = String> {
            let n = RULES.phrases.len();
            let piece = prop_oneof![
                4 => (0..n).prop_map(|p| RULES.phrases[p].clone()),
                2 => (0..n, any::<prop::sample::Index>()).prop_map(|(p, at)| {
                    let w: Vec<&str> = RULES.phrases[p].split(' ').collect();
                    w[at.index(w.len())].to_string()
                }),
                1 => (0..n, 1usize..6).prop_map(|(p, k)| {
                    let s = &RULES.phrases[p];
                    let cut = s.char_indices().nth(k).map_or(s.len(), |c| c.0);
                    s[cut..].to_string()
                }),
                2 => prop::sample::select(vec![" ", "  ", "-", ".", ":", "ed", "s", "x", "1", "é"])
                    .prop_map(str::to_string),
                1 => "[ -~]{0,10}".prop_map(|s| s.to_ascii_lowercase()),
            ];
            prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
        }

        proptest! {
            #[test]
            fn finds_what_a_plain_search_finds(t in text()) {
                let mut got = Vec::new();
                RULES.matcher.find(&t, |p| got.push(p));
                got.sort();
                got.dedup();
                prop_assert_eq!(got, found_plainly(&t), "{:?}", t);
            }
        }
    }
}
