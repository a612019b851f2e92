//! Finding every rule phrase in a normalised text, fast.
//!
//! One Aho-Corasick automaton over all ~1,300 phrases is large (its DFA does not fit in the
//! CPU caches) and slow. Since nearly every phrase is made of whole words, each ASCII phrase is
//! instead indexed under one of its words (its *anchor*, the rarest whole word it contains): a
//! single pass splits the text into words, looks each word up in a small hash table and
//! compares the few phrases filed under it byte for byte at that position. The phrases that
//! have no whole word to file them under (`blacklist*`, `[tss*`) are filed under the first
//! three bytes of their first word; the phrases with non-ASCII letters (Cyrillic, Japanese...)
//! go to a small Aho-Corasick automaton that only runs when the text has non-ASCII bytes.
//!
//! The words are found 64 bytes at a time from a bit mask of letters and digits that the
//! compiler computes with vector instructions; a Bloom filter turns away most words that
//! anchor nothing before the table is read; and the text comes with `PADDING` zero bytes after
//! it, so that words and phrases are read and compared eight bytes at a time without a
//! special case at the end of the text.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use super::rules::PatMeta;

/// Words frequent in bounce texts: a phrase is filed under one of these only when it has no
/// other word, so that common words seldom lead to phrase comparisons.
const COMMON: &[&[u8]] = &[
    b"a",
    b"an",
    b"the",
    b"to",
    b"of",
    b"in",
    b"on",
    b"for",
    b"is",
    b"are",
    b"be",
    b"was",
    b"not",
    b"no",
    b"by",
    b"at",
    b"or",
    b"and",
    b"this",
    b"that",
    b"you",
    b"your",
    b"it",
    b"as",
    b"with",
    b"from",
    b"has",
    b"have",
    b"been",
    b"mail",
    b"email",
    b"message",
    b"user",
    b"address",
    b"recipient",
    b"please",
    b"mailbox",
    b"account",
    b"sender",
    b"server",
    b"domain",
    b"delivery",
    b"rejected",
    b"smtp",
    b"host",
    b"can",
    b"could",
    b"will",
    b"we",
    b"our",
    b"its",
    b"more",
    b"see",
    b"http",
    b"https",
    b"www",
    b"com",
    b"error",
    b"failed",
    b"deliver",
    b"delivered",
    b"following",
    b"here",
    b"does",
    b"do",
    b"did",
    b"if",
    b"my",
];

/// Zero bytes the caller appends to a text given to [`PhraseMatcher::find_padded`], so that
/// words and phrases can be read eight bytes at a time anywhere in the text, and the text
/// 64 bytes at a time up to its end (the padding is never a letter or a digit).
pub(crate) const PADDING: usize = 64;

/// A phrase filed under an anchor word: which phrase, and where the anchor starts in it.
#[derive(Debug, Clone, Copy)]
struct Filed {
    phrase: u32,
    /// Where the phrase's bytes are in `PhraseMatcher::arena`.
    at: u32,
    /// Where the anchor word starts in the phrase.
    offset: u16,
    /// The phrase's length.
    len: u16,
    /// Where in the phrase `probe` starts: its first byte when the anchor is not at the
    /// start, else its last 8 bytes, so that the probe holds more than the anchor word
    /// (which is known to match).
    probe_at: u16,
    /// Eight bytes of the phrase from `probe_at` (`probe_mask` keeps fewer for a shorter
    /// phrase): one comparison that turns away nearly every phrase that is not there.
    probe: u64,
    probe_mask: u64,
}

impl Filed {
    fn new(phrase: usize, at: u32, offset: usize, bytes: &[u8]) -> Filed {
        let len = bytes.len();
        let probe_at = if offset > 0 { 0 } else { len.saturating_sub(8) };
        let probe_len = (len - probe_at).min(8);
        let mut probe = [0u8; 8];
        probe[..probe_len].copy_from_slice(&bytes[probe_at..probe_at + probe_len]);
        Filed {
            phrase: phrase as u32,
            at,
            offset: offset as u16,
            len: len as u16,
            probe_at: probe_at as u16,
            probe: u64::from_le_bytes(probe),
            probe_mask: u64::MAX >> (64 - 8 * probe_len),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The word's first 8 bytes (zero-padded); 0 marks an empty slot.
    head: u64,
    /// Where the rest of a word longer than 8 bytes is in `tails`.
    tail: u32,
    /// The word's length.
    len: u16,
    /// How many phrases are filed under it, from `start` in `filed`.
    count: u16,
    start: u32,
}

#[derive(Debug)]
pub(crate) struct PhraseMatcher {
    /// The bytes of all phrases, followed by `PADDING` zero bytes.
    arena: Vec<u8>,
    meta: Vec<(bool, bool)>,
    /// Open-addressing hash table of anchor words.
    table: Vec<Slot>,
    mask: usize,
    /// Bytes 8.. of anchor words longer than 8 bytes, followed by `PADDING` zero bytes.
    tails: Vec<u8>,
    filed: Vec<Filed>,
    /// Phrases whose only usable word may run on in the text (`blacklist*`, `[tss*`): filed
    /// under the first 3 bytes of that word, sorted by key.
    prefixed: Vec<(u32, Filed)>,
    /// Bit `two(first byte, second byte)` set when some prefix phrase word starts so.
    prefixed_filter: Box<[u64; 1024]>,
    /// Bloom filter of the anchor words (bit `bloom_bit(hash)`): most words of a text are no
    /// anchor and are turned away here without touching the table.
    bloom: [u64; 128],
    /// Phrases without an anchor word (ASCII): always searched.
    rest_ascii: Option<(AhoCorasick, Vec<u32>)>,
    /// Phrases with non-ASCII characters: searched only in non-ASCII texts.
    rest_unicode: Option<(AhoCorasick, Vec<u32>)>,
}

#[inline(always)]
fn load8(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]))
}

/// The first 8 bytes of the word `b[s..e]` as a number (zero-padded); `b` is padded.
#[inline(always)]
fn head(b: &[u8], s: usize, e: usize) -> u64 {
    let len = (e - s).min(8);
    load8(b, s) & (u64::MAX >> (64 - 8 * len))
}

/// Hash of a word from its head and its length.
#[inline]
fn hash(head: u64, len: usize) -> u64 {
    let h = (head ^ ((len as u64) << 56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

/// `a[i..i + len] == b[j..j + len]`, eight bytes at a time; both slices are padded.
#[inline(always)]
fn eq_padded(a: &[u8], mut i: usize, b: &[u8], mut j: usize, len: usize) -> bool {
    let mut rest = len;
    while rest > 8 {
        if load8(a, i) != load8(b, j) {
            return false;
        }
        i += 8;
        j += 8;
        rest -= 8;
    }
    rest == 0 || (load8(a, i) ^ load8(b, j)) & (u64::MAX >> (64 - 8 * rest)) == 0
}

/// The 64 bytes of `b` from `i` (`b` is padded).
#[inline(always)]
fn block64(b: &[u8], i: usize) -> &[u8; 64] {
    match b[i..i + 64].try_into() {
        Ok(block) => block,
        Err(_) => unreachable!("a 64-byte slice"),
    }
}

/// Bit k set when `block[k]` is an ASCII letter or digit; ORs every byte into `high`. Written
/// without branches or loop-carried state so that the compiler turns it into vector code.
#[inline(always)]
fn word_mask64(block: &[u8; 64], high: &mut u8) -> u64 {
    // one flag byte (0 or 1) per text byte: vector code
    let mut flags = [0u8; 64];
    let mut or = 0u8;
    for (f, &c) in flags.iter_mut().zip(block) {
        *f = ((c.wrapping_sub(b'0') < 10) | ((c | 0x20).wrapping_sub(b'a') < 26)) as u8;
        or |= c;
    }
    *high |= or;
    // eight flags at a time into eight bits
    let mut m = 0u64;
    for (k, ch) in flags.chunks_exact(8).enumerate() {
        let v = u64::from_le_bytes(ch.try_into().unwrap_or([0; 8]));
        m |= (v.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
    }
    m
}

/// Bit of a word's hash in the Bloom filter (8192 bits; other bits than the table index).
#[inline]
fn bloom_bit(h: u64) -> usize {
    (h >> 40) as usize & 8191
}

/// Bit of a word's first two bytes in the prefix-phrase filter (65536 bits, exact).
#[inline(always)]
fn two(a: u8, b: u8) -> usize {
    a as usize | (b as usize) << 8
}

/// Key of a prefix phrase's word: its first 3 bytes.
#[inline]
fn key3(w: &[u8]) -> u32 {
    (w[0] as u32) | (w[1] as u32) << 8 | (w[2] as u32) << 16
}

/// The maximal runs of ASCII letters and digits in `s`: (start, end).
fn words(s: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i].is_ascii_alphanumeric() {
            let st = i;
            while i < s.len() && s[i].is_ascii_alphanumeric() {
                i += 1;
            }
            out.push((st, i));
        } else {
            i += 1;
        }
    }
    out
}

fn build_ac(pats: &[&[u8]]) -> Option<AhoCorasick> {
    if pats.is_empty() {
        return None;
    }
    AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::DFA))
        .build(pats)
        .ok()
}

impl PhraseMatcher {
    /// Indexes normalised phrases; `meta[i]` says whether phrase `i` needs a word boundary on
    /// the left and on the right.
    pub(crate) fn new(phrases: &[String], meta: &[PatMeta]) -> Result<Self, String> {
        let bytes: Vec<Box<[u8]>> = phrases.iter().map(|p| p.as_bytes().into()).collect();
        let mut arena = Vec::new();
        let mut at = Vec::with_capacity(bytes.len());
        for b in &bytes {
            at.push(arena.len() as u32);
            arena.extend_from_slice(b);
        }
        arena.extend_from_slice(&[0; PADDING]);
        let flags: Vec<(bool, bool)> = meta.iter().map(|m| (m.left, m.right)).collect();

        // the whole words each ASCII phrase can be filed under
        let mut candidates: Vec<Vec<(usize, usize)>> = Vec::with_capacity(bytes.len());
        for (p, b) in bytes.iter().enumerate() {
            let mut c = Vec::new();
            if b.is_ascii() {
                let (left, right) = flags[p];
                for (s, e) in words(b) {
                    // a word at an edge whose boundary is lifted may continue in the text
                    if (s == 0 && !left) || (e == b.len() && !right) {
                        continue;
                    }
                    c.push((s, e));
                }
            }
            candidates.push(c);
        }
        // how many phrases each word could serve: file under the rarest, then the longest
        let mut freq: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
        for (p, c) in candidates.iter().enumerate() {
            for &(s, e) in c {
                *freq.entry(&bytes[p][s..e]).or_default() += 1;
            }
        }
        let mut by_word: std::collections::HashMap<Vec<u8>, Vec<Filed>> =
            std::collections::HashMap::new();
        let mut prefixed = Vec::new();
        let mut rest_ascii = Vec::new();
        let mut rest_unicode = Vec::new();
        for (p, c) in candidates.iter().enumerate() {
            let best = c.iter().min_by_key(|&&(s, e)| {
                let w = &bytes[p][s..e];
                (COMMON.contains(&w), freq[w], usize::MAX - w.len(), s)
            });
            if let Some(&(s, e)) = best {
                by_word
                    .entry(bytes[p][s..e].to_vec())
                    .or_default()
                    .push(Filed::new(p, at[p], s, &bytes[p]));
                continue;
            }
            if !bytes[p].is_ascii() {
                rest_unicode.push(p as u32);
                continue;
            }
            // a word that starts a word in the text (its left side is bounded) and may run on
            let (left, _) = flags[p];
            let start_word = words(&bytes[p])
                .into_iter()
                .find(|&(s, e)| (s > 0 || left) && e - s >= 3);
            match start_word {
                Some((s, _)) => {
                    prefixed.push((key3(&bytes[p][s..]), Filed::new(p, at[p], s, &bytes[p])))
                }
                None => rest_ascii.push(p as u32),
            }
        }
        prefixed.sort_by_key(|x| (x.0, x.1.phrase));
        let mut prefixed_filter = Box::new([0u64; 1024]);
        for &(k, _) in &prefixed {
            let t = two(k as u8, (k >> 8) as u8);
            prefixed_filter[t >> 6] |= 1 << (t & 63);
        }

        let mut filed = Vec::new();
        let mut entries: Vec<(Vec<u8>, Vec<Filed>)> = by_word.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0)); // deterministic layout
        let size = (entries.len() * 3).next_power_of_two().max(16);
        let mask = size - 1;
        let empty = Slot {
            head: 0,
            tail: 0,
            len: 0,
            count: 0,
            start: 0,
        };
        let mut table: Vec<Slot> = (0..size).map(|_| empty).collect();
        let mut tails = Vec::new();
        let mut bloom = [0u64; 128];
        for (word, list) in entries {
            if word.len() > u16::MAX as usize || list.len() > u16::MAX as usize {
                return Err("phrase index: word or list too long".to_string());
            }
            let mut padded = word.clone();
            padded.extend_from_slice(&[0; PADDING]);
            let hd = head(&padded, 0, word.len());
            let full = hash(hd, word.len());
            let bit = bloom_bit(full);
            bloom[bit >> 6] |= 1 << (bit & 63);
            let mut h = full as usize & mask;
            while table[h].len != 0 {
                h = (h + 1) & mask;
            }
            table[h] = Slot {
                head: hd,
                tail: tails.len() as u32,
                len: word.len() as u16,
                count: list.len() as u16,
                start: filed.len() as u32,
            };
            if word.len() > 8 {
                tails.extend_from_slice(&word[8..]);
            }
            filed.extend(list);
        }

        let ac_of = |ids: &[u32]| -> Result<Option<(AhoCorasick, Vec<u32>)>, String> {
            let pats: Vec<&[u8]> = ids.iter().map(|&p| &*bytes[p as usize]).collect();
            match build_ac(&pats) {
                Some(ac) => Ok(Some((ac, ids.to_vec()))),
                None if ids.is_empty() => Ok(None),
                None => Err("building a phrase automaton failed".to_string()),
            }
        };
        tails.extend_from_slice(&[0; PADDING]);
        let rest_ascii = ac_of(&rest_ascii)?;
        let rest_unicode = ac_of(&rest_unicode)?;
        Ok(PhraseMatcher {
            arena,
            meta: flags,
            table,
            mask,
            tails,
            filed,
            prefixed,
            prefixed_filter,
            bloom,
            rest_ascii,
            rest_unicode,
        })
    }

    /// The phrases filed under the word `b[s..e]` (head `hd`, hash `full`).
    #[inline(always)]
    fn lookup(&self, b: &[u8], s: usize, e: usize, hd: u64, full: u64) -> &[Filed] {
        let len = e - s;
        let mut h = full as usize & self.mask;
        loop {
            let slot = &self.table[h];
            if slot.len == 0 {
                return &[];
            }
            if slot.head == hd
                && slot.len as usize == len
                && (len <= 8 || eq_padded(&self.tails, slot.tail as usize, b, s + 8, len - 8))
            {
                return &self.filed[slot.start as usize..slot.start as usize + slot.count as usize];
            }
            h = (h + 1) & self.mask;
        }
    }

    /// Reports the phrase filed as `f` if it is in `b` with its anchor word starting at `s`.
    #[inline(always)]
    fn check(&self, b: &[u8], n: usize, s: usize, f: Filed, hit: &mut impl FnMut(usize)) {
        let Some(start) = s.checked_sub(f.offset as usize) else {
            return;
        };
        let end = start + f.len as usize;
        if end > n || load8(b, start + f.probe_at as usize) & f.probe_mask != f.probe {
            return;
        }
        let p = f.phrase as usize;
        if eq_padded(b, start, &self.arena, f.at as usize, f.len as usize)
            && self.bounded(b, n, p, start, end)
        {
            hit(p);
        }
    }

    /// Whether the phrase `p` at `text[start..end]` has the word boundaries it needs
    /// (`text[..n]` is the text).
    #[inline(always)]
    fn bounded(&self, text: &[u8], n: usize, p: usize, start: usize, end: usize) -> bool {
        let (left, right) = self.meta[p];
        (!left || start == 0 || !text[start - 1].is_ascii_alphanumeric())
            && (!right || end == n || !text[end].is_ascii_alphanumeric())
    }

    /// Calls `hit(phrase)` for every phrase found in `text` (a phrase may be reported more
    /// than once).
    #[cfg(test)]
    pub(crate) fn find(&self, text: &str, hit: impl FnMut(usize)) {
        let mut padded = text.to_string();
        padded.push_str(&"\0".repeat(PADDING));
        self.find_padded(&padded, text.len(), hit);
    }

    /// [`PhraseMatcher::find`] over `padded[..n]`, a text followed by `PADDING` zero bytes.
    #[inline]
    pub(crate) fn find_padded(&self, padded: &str, n: usize, mut hit: impl FnMut(usize)) {
        let b = padded.as_bytes();
        let mut high = 0u8;
        // words are found 64 bytes at a time from a bit mask of letters and digits, which
        // keeps the branch predictor out of the per-byte loop; the padding makes every block
        // whole and ends the last word
        let mut pending: Option<usize> = None; // a word that started in an earlier block
        let mut base = 0;
        while base < n {
            let m = word_mask64(block64(b, base), &mut high);
            let carry_in = pending.is_some() as u64;
            let mut starts = m & !((m << 1) | carry_in);
            let continues = b[base + 64].is_ascii_alphanumeric() as u64;
            let mut ends = m & !((m >> 1) | (continues << 63));
            while ends != 0 {
                let s = match pending.take() {
                    Some(p) => p,
                    None => {
                        let k = starts.trailing_zeros() as usize;
                        starts &= starts - 1;
                        base + k
                    }
                };
                let e = base + ends.trailing_zeros() as usize + 1;
                self.word(b, n, s, e, &mut hit);
                ends &= ends - 1;
            }
            if starts != 0 {
                pending = Some(base + starts.trailing_zeros() as usize);
            }
            base += 64;
        }
        let mut run = |set: &Option<(AhoCorasick, Vec<u32>)>| {
            if let Some((ac, ids)) = set {
                for m in ac.find_overlapping_iter(&padded[..n]) {
                    let p = ids[m.pattern().as_usize()] as usize;
                    if self.bounded(b, n, p, m.start(), m.end()) {
                        hit(p);
                    }
                }
            }
        };
        run(&self.rest_ascii);
        if high >= 0x80 {
            run(&self.rest_unicode);
        }
    }

    /// Looks up the word `b[s..e]` and checks the phrases filed under it.
    #[inline]
    fn word(&self, b: &[u8], n: usize, s: usize, e: usize, hit: &mut impl FnMut(usize)) {
        let hd = head(b, s, e);
        let len = e - s;
        let full = hash(hd, len);
        let bit = bloom_bit(full);
        if self.bloom[bit >> 6] & (1 << (bit & 63)) != 0 {
            for f in self.lookup(b, s, e, hd, full) {
                self.check(b, n, s, *f, hit);
            }
        }
        // prefix keys are three letters or digits: a shorter word (its head is zero-padded)
        // never matches one
        let t = two(hd as u8, (hd >> 8) as u8);
        if self.prefixed_filter[t >> 6] & (1 << (t & 63)) != 0 {
            let k = (hd & 0xff_ffff) as u32;
            let from = self.prefixed.partition_point(|x| x.0 < k);
            for &(pk, f) in &self.prefixed[from..] {
                if pk != k {
                    break;
                }
                self.check(b, n, s, f, hit);
            }
        }
    }

    /// (anchored phrases, anchor words, prefix phrases, phrases searched by automaton: ASCII,
    /// non-ASCII)
    #[cfg(test)]
    pub(crate) fn stats(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.filed.len(),
            self.table.iter().filter(|s| s.len != 0).count(),
            self.prefixed.len(),
            self.rest_ascii.as_ref().map_or(0, |r| r.1.len()),
            self.rest_unicode.as_ref().map_or(0, |r| r.1.len()),
        )
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
    fn word_mask_marks_letters_and_digits() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..2_000 {
            let mut block = [0u8; 64];
            for c in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = x as u8;
            }
            let want = block.iter().enumerate().fold(0u64, |acc, (k, &c)| {
                acc | (c.is_ascii_alphanumeric() as u64) << k
            });
            let mut high = 0;
            assert_eq!(word_mask64(&block, &mut high), want, "{block:?}");
            assert_eq!(high >= 0x80, !block.is_ascii());
        }
    }

    mod props {
        use std::sync::LazyLock;

        use proptest::prelude::*;

        use crate::classify::rules::{compile, RuleSet};

        static RULES: LazyLock<RuleSet> =
            LazyLock::new(|| compile(include_str!("rules.toml")).expect("rules.toml compiles"));

        /// Every phrase of the rule set in `text`, by plain search (the reference).
        fn found_plainly(text: &str) -> Vec<usize> {
            let (b, m) = (text.as_bytes(), RULES.matcher.word_index());
            let mut v: Vec<usize> = (0..RULES.phrases.len())
                .filter(|&p| {
                    let pat = RULES.phrases[p].as_bytes();
                    (0..=b.len().saturating_sub(pat.len())).any(|start| {
                        b[start..].starts_with(pat)
                            && m.bounded(b, b.len(), p, start, start + pat.len())
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
                RULES.matcher.word_index().find(&t, |p| got.push(p));
                got.sort();
                got.dedup();
                prop_assert_eq!(got, found_plainly(&t), "{:?}", t);
            }
        }
    }

    #[test]
    fn finds_words_prefixes_and_unicode() {
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
        assert_eq!(found(&m, "ip blacklisted by"), vec![2]);
        assert_eq!(found(&m, "notblacklisted"), Vec::<usize>::new());
        assert_eq!(found(&m, "421 [tss04] deferred"), vec![3]);
        assert_eq!(found(&m, "blocked using cbl.abuseat.org"), vec![4]);
        assert_eq!(found(&m, "552 почтовый ящик переполнен"), vec![5]);
        assert_eq!(found(&m, "see ?p=nosuchuser x"), vec![6]);
        assert_eq!(found(&m, "xuser unknown"), vec![7]);
    }
}
