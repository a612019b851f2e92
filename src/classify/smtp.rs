//! Reading SMTP replies and DSN diagnostics: reply codes, enhanced status codes (RFC 3463) and
//! the normalised text the rule matchers run over.
//!
//! Everything here is allocation-free except [`normalize_into`], which writes into a buffer the
//! caller owns (and reuses).

/// An enhanced status code `class.subject.detail` (RFC 3463), e.g. `(5, 1, 1)`.
pub type EnhancedStatus = (u8, u16, u16);

/// What could be read from a reply text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParsedReply {
    /// The basic SMTP reply code (`550`), if the text carries one.
    pub code: Option<u16>,
    /// The first enhanced status code in the text (`5.1.1` → `(5, 1, 1)`), if any.
    pub enhanced: Option<EnhancedStatus>,
}

impl ParsedReply {
    /// The class that says whether the failure is permanent: the enhanced status class when
    /// there is one (it wins over the basic code), else the first digit of the reply code.
    ///
    /// A success status (`2.x.x`) next to a failure code (4xx/5xx) is not believed: the code
    /// decides then.
    pub fn class(&self) -> Option<u8> {
        let code_class = self.code.map(|c| (c / 100) as u8);
        match (self.enhanced.map(|e| e.0), code_class) {
            (Some(2), Some(c @ (4 | 5))) => Some(c),
            (Some(e), _) => Some(e),
            (None, c) => c,
        }
    }
}

/// Reads the reply code and the first enhanced status code from a raw SMTP reply or DSN
/// diagnostic (`smtp; 550-5.1.1 ...`, `X-Postfix; ...`, `host x said: 550 ...`).
pub fn parse_reply(text: &str) -> ParsedReply {
    parse_body(strip_type_prefix(text))
}

/// [`parse_reply`] of a text whose type prefix is already removed.
pub(crate) fn parse_body(body: &str) -> ParsedReply {
    let enhanced = find_enhanced(body);
    ParsedReply {
        code: find_reply_code(body, enhanced.map(|e| e.1)),
        enhanced: enhanced.map(|e| e.0),
    }
}

/// Parses an enhanced status code given on its own (`"5.1.1"`, `" 4.4.7 "`, `"#5.1.1"`).
/// Returns `None` unless some well-formed code is found.
pub fn parse_status(s: &str) -> Option<EnhancedStatus> {
    find_enhanced(s).map(|e| e.0)
}

/// Removes DSN diagnostic-type prefixes such as `smtp;`, `SMTP;`, `X-Postfix;`,
/// `Diagnostic-Code:` and the whitespace around them.
pub(crate) fn strip_type_prefix(text: &str) -> &str {
    let mut s = text.trim_start();
    loop {
        let b = s.as_bytes();
        // both kinds of prefix start with a letter; most texts start with a reply code
        if !b.first().is_some_and(u8::is_ascii_alphabetic) {
            return s;
        }
        if b.len() >= 16 && b[..16].eq_ignore_ascii_case(b"diagnostic-code:") {
            s = s[16..].trim_start();
            continue;
        }
        // a short token of letters, digits and '-' followed by ';'
        let mut i = 0;
        while i < b.len() && i <= 24 && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
            i += 1;
        }
        if i > 0 && i < b.len() && b[i] == b';' && b[0].is_ascii_alphabetic() {
            s = s[i + 1..].trim_start();
            continue;
        }
        return s;
    }
}

const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

#[inline(always)]
const fn splat(x: u8) -> u64 {
    0x0101_0101_0101_0101 * x as u64
}

/// The top bit of every byte of `v` that equals `c` (exact: no false positives).
#[inline(always)]
fn eq_mask(v: u64, c: u8) -> u64 {
    let x = v ^ splat(c);
    !(((x & LOW7) + LOW7) | x) & HIGH
}

/// Calls `f(i)` in ascending order for every `i` whose byte `mask8` marks (it gets eight
/// bytes read little-endian and returns the top bit of each marked byte; bytes past the end
/// read as 0 and are never reported), until `f` returns true. Eight bytes at a time, so that
/// texts are scanned without a branch per byte.
#[inline(always)]
fn scan_bytes(b: &[u8], mask8: impl Fn(u64) -> u64, mut f: impl FnMut(usize) -> bool) {
    let mut base = 0;
    while base < b.len() {
        let (v, valid) = match b.get(base..base + 8) {
            Some(ch) => (u64::from_le_bytes(ch.try_into().unwrap_or([0; 8])), HIGH),
            None => {
                let mut k = [0u8; 8];
                let n = b.len() - base;
                k[..n].copy_from_slice(&b[base..]);
                (u64::from_le_bytes(k), HIGH & ((1u64 << (8 * n)) - 1))
            }
        };
        let mut m = mask8(v) & valid;
        while m != 0 {
            if f(base + (m.trailing_zeros() / 8) as usize) {
                return;
            }
            m &= m - 1;
        }
        base += 8;
    }
}

/// The first `j >= i` where `b[j]` is not printable ASCII other than space (or `b.len()`).
#[inline]
fn skip_visible(b: &[u8], mut i: usize) -> usize {
    while let Some(ch) = b.get(i..i + 8) {
        let v = u64::from_le_bytes(ch.try_into().unwrap_or([0; 8]));
        let low = v & LOW7;
        // per byte (no carries cross bytes): low + 0x5f has its top bit set iff low >= 0x21,
        // low + 0x01 iff low >= 0x7f; the byte itself has it set iff it is not ASCII
        let good = (low + splat(0x5f)) & !(low + splat(0x01)) & !v & HIGH;
        let bad = !good & HIGH;
        if bad != 0 {
            return i + (bad.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] > b' ' && b[i] < 0x7f {
        i += 1;
    }
    i
}

#[inline]
fn is_digit(b: Option<&u8>) -> bool {
    matches!(b, Some(c) if c.is_ascii_digit())
}

/// A 3-digit reply code `[2-5]dd` at `i` that is not part of a longer number or word.
#[inline(always)]
fn code_at(b: &[u8], i: usize) -> Option<u16> {
    if i + 3 > b.len() {
        return None;
    }
    let (c0, c1, c2) = (b[i], b[i + 1], b[i + 2]);
    if !(b'2'..=b'5').contains(&c0) || !c1.is_ascii_digit() || !c2.is_ascii_digit() {
        return None;
    }
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.') {
        return None;
    }
    match b.get(i + 3) {
        None | Some(b' ' | b'-' | b',' | b':' | b';' | b')' | b'\t' | b'\r' | b'\n') => {}
        _ => return None,
    }
    Some((c0 - b'0') as u16 * 100 + (c1 - b'0') as u16 * 10 + (c2 - b'0') as u16)
}

/// An enhanced status code at `i`; returns it and its length in bytes.
#[inline]
pub(crate) fn enhanced_at(b: &[u8], i: usize) -> Option<(EnhancedStatus, usize)> {
    let class = *b.get(i)?;
    if !matches!(class, b'2' | b'4' | b'5') || b.get(i + 1) != Some(&b'.') {
        return None;
    }
    if i > 0 {
        let p = b[i - 1];
        if p.is_ascii_alphanumeric() || p == b'.' || p == b'_' || p == b'/' {
            return None;
        }
    }
    let mut j = i + 2;
    let (subject, n1) = read_num(b, j)?;
    j += n1;
    if b.get(j) != Some(&b'.') {
        return None;
    }
    j += 1;
    let (detail, n2) = read_num(b, j)?;
    j += n2;
    // not followed by more digits, letters or ".<digit>" (that would be an IP or a version)
    match b.get(j) {
        Some(c) if c.is_ascii_alphanumeric() => return None,
        Some(b'.') if is_digit(b.get(j + 1)) => return None,
        _ => {}
    }
    Some(((class - b'0', subject, detail), j - i))
}

#[inline]
fn read_num(b: &[u8], i: usize) -> Option<(u16, usize)> {
    let mut n: u16 = 0;
    let mut len = 0;
    while let Some(c) = b.get(i + len) {
        if !c.is_ascii_digit() {
            break;
        }
        if len == 3 {
            return None; // at most 3 digits
        }
        n = n * 10 + (c - b'0') as u16;
        len += 1;
    }
    if len == 0 {
        None
    } else {
        Some((n, len))
    }
}

/// The first enhanced status code; a success code (`2.x.x`) only counts right at the start
/// (`2.1.5`, `250 2.1.5 ...`), elsewhere it is more likely a version number.
fn find_enhanced(s: &str) -> Option<(EnhancedStatus, usize)> {
    let b = s.as_bytes();
    let mut found = None;
    // the dots, eight bytes at a time
    scan_bytes(
        b,
        |v| eq_mask(v, b'.'),
        |i| {
            if i >= 1 && matches!(b[i - 1], b'2' | b'4' | b'5') {
                if let Some((e, _)) = enhanced_at(b, i - 1) {
                    if e.0 != 2 || i <= 5 {
                        found = Some((e, i - 1));
                        return true;
                    }
                }
            }
            false
        },
    );
    found
}

/// The basic reply code: the one the text starts with, else the failure code right before the
/// first enhanced status code (`... 550 5.1.1 ...`, at `status_at`), else, when the text has no
/// enhanced status code at all, the first failure code that follows a `:`, `<<<` or the word
/// `code` (`said: 550`, `ERROR_CODE :550`, `ResponseCode 421`).
fn find_reply_code(s: &str, status_at: Option<usize>) -> Option<u16> {
    let b = s.as_bytes();
    let mut start = 0;
    while start < b.len() && (b[start] == b'<' || b[start] == b' ' || b[start] == b'(') {
        start += 1;
    }
    if let Some(c) = code_at(b, start) {
        return Some(c);
    }
    // past the start only failure codes count: "250" inside a text is more likely a number
    let failure = |i: usize| code_at(b, i).filter(|c| *c >= 400);
    if let Some(at) = status_at {
        return (at >= 4 && matches!(b[at - 1], b' ' | b'-'))
            .then(|| failure(at - 4))
            .flatten();
    }
    let skip_spaces = |mut i: usize| {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        i
    };
    // the earliest code after a marker; only the bytes ':', '<', 'e' and 'E' are looked at
    let mut after_marker: Option<u16> = None;
    let marks = |v: u64| eq_mask(v, b':') | eq_mask(v, b'<') | eq_mask(v | splat(0x20), b'e');
    scan_bytes(b, marks, |i| {
        match b[i] {
            b':' => {
                let j = skip_spaces(i + 1);
                // "said: 550", "ERROR_CODE :550" - but not "2001:db8:550:..." (an IPv6 address)
                if (j > i + 1 || i == 0 || b[i - 1] == b' ') && b.get(j + 3) != Some(&b':') {
                    after_marker = failure(j);
                }
            }
            b'<' if b[i..].starts_with(b"<<<") => after_marker = failure(skip_spaces(i + 3)),
            b'e' | b'E' if i >= 3 && b[i - 3..=i].eq_ignore_ascii_case(b"code") => {
                let j = skip_spaces(i + 1);
                if j > i + 1 {
                    after_marker = failure(j);
                }
            }
            _ => {}
        }
        after_marker.is_some()
    });
    after_marker
}

/// `c.is_whitespace() || c.is_control()` for a non-ASCII `c`, without the table look-ups:
/// the C1 controls, NEL, no-break space and the Unicode spaces.
#[inline]
fn is_blank_non_ascii(c: char) -> bool {
    matches!(
        c as u32,
        0x80..=0xa0 | 0x1680 | 0x2000..=0x200a | 0x2028 | 0x2029 | 0x202f | 0x205f | 0x3000
    )
}

/// True for a non-ASCII character that normalisation leaves alone: lower-case or caseless
/// letters outside the folding table (most of Cyrillic, Greek, Arabic, Hebrew, Indic, CJK).
#[inline]
fn stays_as_is(c: char) -> bool {
    match c as u32 {
        0x0430..=0x0450 | 0x0452..=0x045f | 0x03ac..=0x03ce => true,
        0x00a0..=0x058f | 0x10a0..=0x10ff | 0x1e00..=0x218f | 0x24b6..=0x24e9 => false,
        0x2c00..=0x2d2f | 0xa640..=0xa7ff | 0xfeff..=0xff5e | 0x10400..=0x1e943 => false,
        _ => true,
    }
}

/// Appends `c`, lowercased and with accents, typographic quotes and odd spaces folded, to `out`.
#[inline]
fn push_folded(c: char, out: &mut String) {
    // scripts without letter case (Arabic, Hebrew, Indic, CJK...) need no table look-up
    let cased = matches!(c as u32, 0x00c0..=0x058f | 0x10a0..=0x10ff | 0x1e00..=0x1fff
        | 0x2000..=0x218f | 0x24b6..=0x24e9 | 0x2c00..=0x2d2f | 0xa640..=0xa7ff | 0xff01..=0xff5e
        | 0xfeff | 0x10400..=0x1e943);
    if !cased {
        out.push(c);
        return;
    }
    // the common capitals of Cyrillic and Greek, without the table look-up
    let l = match c as u32 {
        0x0410..=0x042f | 0x0391..=0x03a1 | 0x03a3..=0x03ab => char::from_u32(c as u32 + 0x20),
        0x0400..=0x040f => char::from_u32(c as u32 + 0x50),
        0x0430..=0x045f | 0x03ac..=0x03ce => Some(c),
        _ => None,
    };
    if let Some(l) = l {
        if l == 'ё' {
            out.push('е');
        } else {
            out.push(l);
        }
        return;
    }
    for l in c.to_lowercase() {
        let f: &str = match l {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
            'æ' => "ae",
            'ç' | 'ć' | 'č' => "c",
            'ď' | 'đ' => "d",
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
            'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
            'ł' => "l",
            'ñ' | 'ń' | 'ň' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
            'œ' => "oe",
            'ŕ' | 'ř' => "r",
            'ś' | 'š' | 'ş' | 'ș' => "s",
            'ß' => "ss",
            'ť' | 'ţ' | 'ț' => "t",
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
            'ý' | 'ÿ' => "y",
            'ź' | 'ż' | 'ž' => "z",
            'ё' => "е",
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{2032}' | '`' => "'",
            '\u{201c}' | '\u{201d}' | '\u{201e}' => "\"",
            '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{feff}' | '\u{ad}' => "",
            _ => {
                out.push(l);
                continue;
            }
        };
        out.push_str(f);
    }
}

/// Writes the matching form of `text` into `out` (cleared first): DSN type prefixes removed,
/// lower case, accents folded (`buzón` → `buzon`), every run of whitespace or control
/// characters made one space, and SMTP continuation markers (`550-5.1.1`, `550-`) and
/// code/status pairs (`550 5.7.1`) removed wherever they start a word, so that the phrases of
/// multi-line replies read as one sentence. A bare reply code (`550 User unknown`) stays.
#[cfg(test)]
pub(crate) fn normalize_into(text: &str, out: &mut String) {
    normalize_stripped_into(strip_type_prefix(text), out);
}

/// [`normalize_into`] of a text whose type prefix is already removed.
pub(crate) fn normalize_stripped_into(body: &str, out: &mut String) {
    out.clear();
    Normalization::smtp_reply().append(body, out);
}

/// Normalises a rule phrase: the same folding as [`normalize_into`], but no prefix or
/// reply-code removal.
pub(crate) fn normalize_phrase(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    Normalization::rule_phrase().append(p.trim(), &mut out);
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

/// How a text is normalised: what kind of text it is, and whether a plain ASCII text may be
/// just lower-cased (always, except in the test that holds both paths to the same result).
#[derive(Debug, Clone, Copy)]
struct Normalization {
    /// SMTP continuation markers and code/status pairs are removed (replies have them, rule
    /// phrases do not).
    strip_codes: bool,
    /// A plain text (see [`is_plain`]) is lower-cased in one go.
    plain_shortcut: bool,
}

impl Normalization {
    /// An SMTP reply or DSN diagnostic.
    const fn smtp_reply() -> Self {
        Normalization {
            strip_codes: true,
            plain_shortcut: true,
        }
    }

    /// A phrase of the rule file: folded like a reply, nothing removed.
    const fn rule_phrase() -> Self {
        Normalization {
            strip_codes: false,
            plain_shortcut: true,
        }
    }

    /// The same normalisation by the general path only.
    #[cfg(test)]
    const fn without_plain_shortcut(self) -> Self {
        Normalization {
            plain_shortcut: false,
            ..self
        }
    }

    /// Appends the normalised form of `s` to `out`.
    fn append(self, s: &str, out: &mut String) {
        let Normalization {
            strip_codes,
            plain_shortcut,
        } = self;
        let b = s.as_bytes();
        out.reserve(b.len() + 8);
        // a leading "550 5.1.1" or "550-5.1.1" goes in any case
        let lead = if strip_codes {
            continuation_len(b, 0).map_or(0, |n| {
                let mut k = n;
                while k < b.len() && b[k] == b' ' {
                    k += 1;
                }
                k
            })
        } else {
            0
        };
        if plain_shortcut && is_plain(&b[lead..]) {
            // printable ASCII with single spaces and no code inside: lower-case it and done
            out.push_str(s[lead..].trim_end_matches(' '));
            out.make_ascii_lowercase();
            return;
        }
        let mut i = 0;
        // a space is owed before the next visible character (runs of blanks become one space)
        let mut pending_space = false;
        // the next byte starts a word (start of text, or after blanks)
        let mut token_start = true;
        while i < b.len() {
            let c = b[i];
            if c < 0x80 {
                if c <= b' ' || c == 0x7f {
                    pending_space = true;
                    token_start = true;
                    i += 1;
                    continue;
                }
                if strip_codes && token_start && (b'2'..=b'5').contains(&c) {
                    if let Some(n) = continuation_len(b, i) {
                        i += n;
                        pending_space = true;
                        continue;
                    }
                }
                if pending_space {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    pending_space = false;
                }
                token_start = false;
                // copy the run of printable ASCII up to the next run of blanks, control or
                // non-ASCII byte or continuation marker, in one go
                let run_start = i;
                loop {
                    i = skip_visible(b, i);
                    // a single space between two words stays inside the run
                    if i + 1 < b.len()
                        && b[i] == b' '
                        && b[i + 1] > b' '
                        && b[i + 1] < 0x7f
                        && !(strip_codes
                            && (b'2'..=b'5').contains(&b[i + 1])
                            && continuation_len(b, i + 1).is_some())
                    {
                        i += 1;
                        continue;
                    }
                    break;
                }
                let at = out.len();
                out.push_str(&s[run_start..i]);
                out[at..].make_ascii_lowercase();
            } else {
                // a run of non-ASCII characters; those that stay as they are are copied in one go
                let mut run_start = i;
                while i < b.len() && b[i] >= 0x80 {
                    let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
                    let len = ch.len_utf8();
                    if is_blank_non_ascii(ch) {
                        out.push_str(&s[run_start..i]);
                        pending_space = true;
                        token_start = true;
                        i += len;
                        run_start = i;
                        continue;
                    }
                    if pending_space {
                        if !out.is_empty() {
                            out.push(' ');
                        }
                        pending_space = false;
                    }
                    token_start = false;
                    if stays_as_is(ch) {
                        i += len;
                        continue;
                    }
                    out.push_str(&s[run_start..i]);
                    push_folded(ch, out);
                    i += len;
                    run_start = i;
                }
                out.push_str(&s[run_start..i]);
            }
        }
    }
}

/// True when `b` is printable ASCII, starts with no blank, has no two blanks in a row and no
/// word after the first that starts with 2-5 (a possible reply code): then normalising is
/// just lower-casing. Checked without branches per byte.
#[inline]
fn is_plain(b: &[u8]) -> bool {
    if b.is_empty() || b[0] == b' ' {
        return false;
    }
    // each byte with its successor; the bulk in one loop the compiler vectorises, the last
    // 1-32 bytes in a fixed-size copy (padded with letters) so that no byte is looked at
    // one at a time
    let bulk = (b.len() - 1) & !31;
    let (bad, mut code_like) = plain_flags(&b[..bulk], &b[1..bulk + 1]);
    if bad {
        return false;
    }
    let mut tail = [b'a'; 33];
    tail[..b.len() - bulk].copy_from_slice(&b[bulk..]);
    let (tail_bad, tail_code) = plain_flags(&tail[..32], &tail[1..]);
    if tail_bad {
        return false;
    }
    code_like |= tail_code;
    if code_like {
        // a word starting with 2-5: only a reply code with '-' or a status code spoils it
        let mut spoilt = false;
        scan_bytes(
            b,
            |v| eq_mask(v, b' '),
            |sp| {
                let i = sp + 1;
                spoilt = i < b.len()
                    && (b'2'..=b'5').contains(&b[i])
                    && continuation_len(b, i).is_some();
                spoilt
            },
        );
        if spoilt {
            return false;
        }
    }
    true
}

/// For bytes `x` and their successors `y`: (some byte is not printable ASCII or two spaces
/// follow each other, some space is followed by 2-5). No loop-carried state but the flags:
/// the compiler vectorises it.
#[inline(always)]
fn plain_flags(x: &[u8], y: &[u8]) -> (bool, bool) {
    let (mut bad, mut code) = (false, false);
    for (&c, &d) in x.iter().zip(y) {
        bad |= !(b' '..0x7f).contains(&c) | ((c == b' ') & (d == b' '));
        code |= (c == b' ') & (b'2'..=b'5').contains(&d);
    }
    (bad, code)
}

/// The simple reference for [`is_plain`].
#[cfg(test)]
fn is_plain_simple(b: &[u8]) -> bool {
    if b.is_empty() || b[0] == b' ' {
        return false;
    }
    let mut prev_space = false;
    for (i, &c) in b.iter().enumerate() {
        if !(b' '..0x7f).contains(&c) || (prev_space && c == b' ') {
            return false;
        }
        if prev_space && (b'2'..=b'5').contains(&c) && continuation_len(b, i).is_some() {
            return false;
        }
        prev_space = c == b' ';
    }
    true
}

/// Length of an SMTP continuation marker or code/status pair starting at `i`: `550-`,
/// `550-5.7.1`, `550 5.7.1` (each followed by whitespace or the end). `None` otherwise.
#[inline]
fn continuation_len(b: &[u8], i: usize) -> Option<usize> {
    code_at(b, i)?;
    let sep = *b.get(i + 3)?;
    let j = i + 4;
    let status = enhanced_at(b, j).map(|(_, n)| n);
    match (sep, status) {
        (b'-', Some(n)) | (b' ', Some(n)) => {
            let end = j + n;
            match b.get(end) {
                None => Some(end - i),
                Some(c) if c.is_ascii_whitespace() => Some(end - i),
                _ => None,
            }
        }
        // "550-" followed by text: a continuation line without status
        (b'-', None) => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut o = String::new();
        normalize_into(s, &mut o);
        o
    }

    #[test]
    fn parses_codes_and_statuses() {
        let p = parse_reply(
            "smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
        );
        assert_eq!(p.code, Some(550));
        assert_eq!(p.enhanced, Some((5, 1, 1)));
        assert_eq!(p.class(), Some(5));

        let p = parse_reply("550 4.4.7 QUEUE.Expired; message expired");
        assert_eq!(p.code, Some(550));
        assert_eq!(p.enhanced, Some((4, 4, 7)));
        assert_eq!(p.class(), Some(4));

        let p = parse_reply("host mx.example.com[192.0.2.1] said: 550 Host unknown");
        assert_eq!(p.code, Some(550));
        assert_eq!(p.enhanced, None);

        let p = parse_reply(
            "kijitora@example.jp Error, ERROR_CODE :421, ERROR_CODE :, Host not reachable.",
        );
        assert_eq!(p.code, Some(421));

        let p = parse_reply("Sorry, no mailbox here by that name. (#5.1.1)");
        assert_eq!(p.code, None);
        assert_eq!(p.enhanced, Some((5, 1, 1)));

        // an IP address or Yahoo's "4.16.55.1" trailer is not a status code
        let p = parse_reply(
            "421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred - 4.16.55.1",
        );
        assert_eq!(p.enhanced, Some((4, 7, 0)));
        let p = parse_reply("connect to 192.0.2.2:25: timed out after 250 seconds");
        assert_eq!(p.enhanced, None);
        assert_eq!(p.code, None);
        let p = parse_reply("Technical details: [(0) example.com. [2606:2800:220:6d:26bf:1447:1097:aa7]:25: socket error]");
        assert_eq!(p.code, None);
        let p = parse_reply("421 Service not available (MagicMail version 2.4.1 build)");
        assert_eq!(p.code, Some(421));
        assert_eq!(p.enhanced, None);
        assert_eq!(p.class(), Some(4));
        let p = ParsedReply {
            code: Some(550),
            enhanced: Some((2, 0, 0)),
        };
        assert_eq!(p.class(), Some(5));

        assert_eq!(parse_status(" 5.1.10 "), Some((5, 1, 10)));
        assert_eq!(parse_status("5.7.26"), Some((5, 7, 26)));
        assert_eq!(parse_status("nonsense"), None);
        assert_eq!(parse_status("5.1"), None);
        assert_eq!(parse_status("5.1.1000"), None);
    }

    #[test]
    fn blank_non_ascii_agrees_with_the_standard_library() {
        for c in (0x80..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(
                is_blank_non_ascii(c),
                c.is_whitespace() || c.is_control(),
                "{:x}",
                c as u32
            );
        }
    }

    #[test]
    fn is_plain_agrees_with_the_simple_version() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b" ab2345-.:\t\x7f\xc3\xa9Z9";
        for n in 0..3000 {
            let len = n % 40;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            assert_eq!(
                is_plain(&v),
                is_plain_simple(&v),
                "{:?}",
                String::from_utf8_lossy(&v)
            );
        }
        for t in [
            "550 5.1.1 user unknown",
            "a  b",
            "x 550-5.1.1 y",
            "x 550 text",
            "ok",
        ] {
            assert_eq!(is_plain(t.as_bytes()), is_plain_simple(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn fast_path_normalises_like_the_slow_one() {
        let samples = [
            "550 5.1.1 <bob@example.com>... User Unknown",
            "550 User unknown",
            "550-Your message was rejected",
            "550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked",
            "Host or domain name not found. Name service error",
            "421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred",
            "550 5.1.1 <x@y>: Recipient address rejected: User unknown   ",
            "250 OK",
            "5.1.1",
            "550",
            "x",
        ];
        let rows = super::super::corpus_tests::rows();
        for t in samples
            .iter()
            .copied()
            .chain(rows.iter().map(|r| r.diagnostic))
        {
            let s = strip_type_prefix(t);
            let (mut fast, mut slow) = (String::new(), String::new());
            Normalization::smtp_reply().append(s, &mut fast);
            Normalization::smtp_reply()
                .without_plain_shortcut()
                .append(s, &mut slow);
            assert_eq!(fast, slow, "{t:?}");
        }
    }

    #[test]
    fn normalizes_multiline_replies() {
        let raw = "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550-5.1.1 double-checking the recipient's email address for typos or\r\n550 5.1.1 unnecessary spaces.";
        assert_eq!(
            norm(raw),
            "the email account that you tried to reach does not exist. please try double-checking the recipient's email address for typos or unnecessary spaces."
        );
        assert_eq!(
            norm("550-5.7.1 [192.0.2.22 18] Our system has detected that this message is 550-5.7.1 likely suspicious"),
            "[192.0.2.22 18] our system has detected that this message is likely suspicious"
        );
        assert_eq!(norm("SMTP; 550 User unknown"), "550 user unknown");
        assert_eq!(
            norm("X-Postfix; Host or domain name not found"),
            "host or domain name not found"
        );
        assert_eq!(norm("Buzón LLENO"), "buzon lleno");
        assert_eq!(norm("Пользователь НЕ найден"), "пользователь не найден");
        assert_eq!(norm("doesn’t  exist"), "doesn't exist");
    }
}
