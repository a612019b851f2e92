//! Finding every rule phrase in a normalised text with one Aho-Corasick automaton from the
//! `aho-corasick` crate, which picks the automaton kind itself.
//!
//! The phrases and the text are normalised alike (lower case, folded accents, single spaces),
//! so the search is byte for byte. Every occurrence is looked at (overlapping, standard match
//! semantics) because a phrase inside a longer one counts too ("unknown" in "user unknown",
//! which `unless` lists rely on), and an occurrence that lacks a word boundary it needs must
//! not hide a later one that has it.

use aho_corasick::{AhoCorasick, MatchKind};

use super::rules::PatMeta;

/// All phrases of a rule set in one automaton.
#[derive(Debug)]
pub(crate) struct PhraseAutomaton {
    automaton: AhoCorasick,
    /// Whether phrase `i` must start and end at a word boundary.
    bounds: Vec<(bool, bool)>,
}

impl PhraseAutomaton {
    /// Builds the automaton over normalised phrases; `meta[i]` says whether phrase `i` needs a
    /// word boundary on the left and on the right.
    pub(crate) fn new(phrases: &[String], meta: &[PatMeta]) -> Result<Self, String> {
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(phrases)
            .map_err(|e| format!("building the phrase automaton failed: {e}"))?;
        Ok(PhraseAutomaton {
            automaton,
            bounds: meta.iter().map(|m| (m.left, m.right)).collect(),
        })
    }

    /// Calls `hit(phrase)` for every phrase found in `text` with the word boundaries it needs
    /// (a phrase may be reported more than once).
    #[inline]
    pub(crate) fn find(&self, text: &str, mut hit: impl FnMut(usize)) {
        let b = text.as_bytes();
        for m in self.automaton.find_overlapping_iter(text) {
            let p = m.pattern().as_usize();
            let (left, right) = self.bounds[p];
            let (start, end) = (m.start(), m.end());
            if (!left || start == 0 || !b[start - 1].is_ascii_alphanumeric())
                && (!right || end == b.len() || !b[end].is_ascii_alphanumeric())
            {
                hit(p);
            }
        }
    }
}
