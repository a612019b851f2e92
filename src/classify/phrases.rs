//! Finding every rule phrase in a normalised text, fast.
//!
//! One Aho-Corasick automaton over all ~1,300 phrases is large (its DFA does not fit in the
//! CPU caches) and slow. Since nearly every phrase is made of whole words, each ASCII phrase is
//! instead indexed under one of its words (its *anchor*, the rarest whole word it contains): a
//! single pass splits the text into words, looks each word up in a small hash table and
//! compares the few phrases filed under it byte for byte at that position. The phrases that
//! have no whole word to file them under (`blacklist*`, `[tss*`) and the phrases with
//! non-ASCII letters (Cyrillic, Japanese...) go to two small Aho-Corasick automata; the
//! second one only runs when the text has non-ASCII bytes.

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

/// A phrase filed under an anchor word: which phrase, and where the anchor starts in it.
#[derive(Debug, Clone, Copy)]
struct Filed {
    phrase: u32,
    /// Where the anchor word starts in the phrase.
    offset: u16,
    /// The phrase's length and its last byte, to turn most mismatches away cheaply.
    len: u16,
    last: u8,
}

impl Filed {
    fn new(phrase: usize, offset: usize, bytes: &[u8]) -> Filed {
        Filed {
            phrase: phrase as u32,
            offset: offset as u16,
            len: bytes.len() as u16,
            last: bytes[bytes.len() - 1],
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
    phrases: Vec<Box<[u8]>>,
    meta: Vec<(bool, bool)>,
    /// Open-addressing hash table of anchor words.
    table: Vec<Slot>,
    mask: usize,
    /// Bytes 8.. of anchor words longer than 8 bytes.
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
    /// Bit `start_bit(first two bytes, length)` set for every anchor word.
    first: Box<[u64; 256]>,
    /// Phrases without an anchor word (ASCII): always searched.
    rest_ascii: Option<(AhoCorasick, Vec<u32>)>,
    /// Phrases with non-ASCII characters: searched only in non-ASCII texts.
    rest_unicode: Option<(AhoCorasick, Vec<u32>)>,
}

/// The first 8 bytes of the word `b[s..e]` as a number (zero-padded), read without a call.
#[inline]
fn head(b: &[u8], s: usize, e: usize) -> u64 {
    let len = e - s;
    let x = if let Some(eight) = b.get(s..s + 8) {
        u64::from_le_bytes(eight.try_into().unwrap_or([0; 8]))
    } else {
        let mut k = [0u8; 8];
        for (d, &c) in k.iter_mut().zip(&b[s..]) {
            *d = c;
        }
        u64::from_le_bytes(k)
    };
    if len >= 8 {
        x
    } else {
        x & ((1u64 << (8 * len)) - 1)
    }
}

/// Hash of a word from its head and its length.
#[inline]
fn hash(head: u64, len: usize) -> u64 {
    let h = (head ^ ((len as u64) << 56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

/// `a == b` for short slices, eight bytes at a time and without a library call.
#[inline(always)]
fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        if u64::from_ne_bytes(x.try_into().unwrap_or([0; 8]))
            != u64::from_ne_bytes(y.try_into().unwrap_or([0; 8]))
        {
            return false;
        }
    }
    ca.remainder()
        .iter()
        .zip(cb.remainder())
        .all(|(x, y)| x == y)
}

const HIGH: u64 = 0x8080_8080_8080_8080;

#[inline(always)]
const fn splat(x: u8) -> u64 {
    0x0101_0101_0101_0101 * x as u64
}

/// Bit k set when byte k of `v` (eight ASCII bytes, none above 0x7f) is a letter or digit.
#[inline(always)]
fn word_bits8(v: u64) -> u64 {
    // per byte x < 0x80: x + (0x80 - lo) has its top bit set iff x >= lo, and
    // x + (0x7f - hi) has it clear iff x <= hi; no carries cross bytes
    #[inline(always)]
    fn range(v: u64, lo: u8, hi: u8) -> u64 {
        (v + splat(0x80 - lo)) & !(v + splat(0x7f - hi)) & HIGH
    }
    let t = range(v, b'0', b'9') | range(v, b'a', b'z') | range(v, b'A', b'Z');
    // gather the eight top bits into the low byte
    ((t >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// 1 for ASCII letters and digits.
static WORD_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric() as u8;
        i += 1;
    }
    t
};

/// Bit of a word's first two bytes and length in the first filter (16384 bits).
#[inline(always)]
fn start_bit(a: u8, b: u8, len: usize) -> usize {
    let x = (a as u32) | (b as u32) << 8 | (len.min(255) as u32) << 16;
    (x.wrapping_mul(0x9E37_79B1) >> 18) as usize
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
                    .push(Filed::new(p, s, &bytes[p]));
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
                Some((s, _)) => prefixed.push((key3(&bytes[p][s..]), Filed::new(p, s, &bytes[p]))),
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
        let mut first = Box::new([0u64; 256]);
        for (word, list) in entries {
            if word.len() > u16::MAX as usize || list.len() > u16::MAX as usize {
                return Err("phrase index: word or list too long".to_string());
            }
            let sb = start_bit(word[0], *word.get(1).unwrap_or(&0), word.len());
            first[sb >> 6] |= 1 << (sb & 63);
            let hd = head(&word, 0, word.len());
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
        let rest_ascii = ac_of(&rest_ascii)?;
        let rest_unicode = ac_of(&rest_unicode)?;
        Ok(PhraseMatcher {
            phrases: bytes,
            meta: flags,
            table,
            mask,
            tails,
            filed,
            prefixed,
            prefixed_filter,
            bloom,
            first,
            rest_ascii,
            rest_unicode,
        })
    }

    /// The phrases filed under the word `b[s..e]`.
    #[inline(always)]
    fn lookup(&self, b: &[u8], s: usize, e: usize, hd: u64) -> &[Filed] {
        let len = e - s;
        // the head is zero-padded: its second byte is 0 for a one-byte word
        let sb = start_bit(hd as u8, (hd >> 8) as u8, len);
        if self.first[sb >> 6] & (1 << (sb & 63)) == 0 {
            return &[];
        }
        let full = hash(hd, len);
        let bit = bloom_bit(full);
        if self.bloom[bit >> 6] & (1 << (bit & 63)) == 0 {
            return &[];
        }
        let mut h = full as usize & self.mask;
        loop {
            let slot = &self.table[h];
            if slot.len == 0 {
                return &[];
            }
            if slot.head == hd
                && slot.len as usize == len
                && (len <= 8
                    || eq_bytes(
                        &self.tails[slot.tail as usize..slot.tail as usize + len - 8],
                        &b[s + 8..e],
                    ))
            {
                return &self.filed[slot.start as usize..slot.start as usize + slot.count as usize];
            }
            h = (h + 1) & self.mask;
        }
    }

    /// Reports the phrase filed as `f` if it is in `b` with its anchor word starting at `s`.
    #[inline(always)]
    fn check(&self, b: &[u8], s: usize, f: Filed, hit: &mut impl FnMut(usize)) {
        let Some(start) = s.checked_sub(f.offset as usize) else {
            return;
        };
        let end = start + f.len as usize;
        if end > b.len() || b[end - 1] != f.last {
            return;
        }
        let p = f.phrase as usize;
        if eq_bytes(&b[start..end], &self.phrases[p]) && self.bounded(b, p, start, end) {
            hit(p);
        }
    }

    #[inline]
    fn bounded(&self, text: &[u8], p: usize, start: usize, end: usize) -> bool {
        let (left, right) = self.meta[p];
        (!left || start == 0 || !text[start - 1].is_ascii_alphanumeric())
            && (!right || end == text.len() || !text[end].is_ascii_alphanumeric())
    }

    /// Calls `hit(phrase)` for every phrase found in `text` (a phrase may be reported more
    /// than once).
    #[inline]
    pub(crate) fn find(&self, text: &str, mut hit: impl FnMut(usize)) {
        let b = text.as_bytes();
        let n = b.len();
        let mut high = 0u8;
        // words are found 64 bytes at a time from a bit mask of letters and digits, which
        // keeps the branch predictor out of the per-byte loop
        let mut pending: Option<usize> = None; // a word that started in an earlier block
        let mut base = 0;
        while base < n {
            let end = (base + 64).min(n);
            let mut m: u64 = 0;
            let block = &b[base..end];
            let mut chunks = block.chunks_exact(8);
            for (ci, ch) in (&mut chunks).enumerate() {
                let v = u64::from_le_bytes(ch.try_into().unwrap_or([0; 8]));
                let bits = if v & HIGH == 0 {
                    word_bits8(v)
                } else {
                    high = 0x80;
                    ch.iter().enumerate().fold(0u64, |acc, (k, &c)| {
                        acc | (WORD_BYTE[c as usize] as u64) << k
                    })
                };
                m |= bits << (ci * 8);
            }
            let done = block.len() - chunks.remainder().len();
            for (k, &c) in chunks.remainder().iter().enumerate() {
                high |= c;
                m |= (WORD_BYTE[c as usize] as u64) << (done + k);
            }
            let carry_in = pending.is_some() as u64;
            let starts = m & !((m << 1) | carry_in);
            let continues = end < n && b[end].is_ascii_alphanumeric();
            let next = (m >> 1) | ((continues as u64) << (end - base - 1));
            let mut ends = m & !next;
            let mut st = starts;
            while ends != 0 {
                let e = ends.trailing_zeros() as usize;
                let s = match pending.take() {
                    Some(p) => p,
                    None => {
                        let k = st.trailing_zeros() as usize;
                        st &= st.wrapping_sub(1);
                        base + k
                    }
                };
                self.word(b, s, base + e + 1, &mut hit);
                ends &= ends - 1;
            }
            if st != 0 {
                pending = Some(base + st.trailing_zeros() as usize);
            }
            base = end;
        }
        let mut run = |set: &Option<(AhoCorasick, Vec<u32>)>| {
            if let Some((ac, ids)) = set {
                for m in ac.find_overlapping_iter(text) {
                    let p = ids[m.pattern().as_usize()] as usize;
                    if self.bounded(b, p, m.start(), m.end()) {
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
    fn word(&self, b: &[u8], s: usize, e: usize, hit: &mut impl FnMut(usize)) {
        let hd = head(b, s, e);
        for f in self.lookup(b, s, e, hd) {
            self.check(b, s, *f, hit);
        }
        if e - s >= 3 {
            let t = two(hd as u8, (hd >> 8) as u8);
            if self.prefixed_filter[t >> 6] & (1 << (t & 63)) != 0 {
                let k = key3(&b[s..]);
                let from = self.prefixed.partition_point(|x| x.0 < k);
                for &(pk, f) in &self.prefixed[from..] {
                    if pk != k {
                        break;
                    }
                    self.check(b, s, f, hit);
                }
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
    fn word_bits_match_the_table() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = x & !HIGH;
            let bytes = v.to_le_bytes();
            let want = bytes.iter().enumerate().fold(0u64, |acc, (k, &c)| {
                acc | (WORD_BYTE[c as usize] as u64) << k
            });
            assert_eq!(word_bits8(v), want, "{bytes:?}");
        }
        for c in 0u8..0x80 {
            let v = u64::from_le_bytes([c; 8]);
            let want = if c.is_ascii_alphanumeric() { 0xff } else { 0 };
            assert_eq!(word_bits8(v), want, "{c}");
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
