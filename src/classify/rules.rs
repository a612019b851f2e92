//! The rule table: reading `rules.toml` and compiling it into matchers.
//!
//! The rule file uses a small, strict subset of TOML (top-level keys, `[[table]]` arrays,
//! strings, numbers, booleans and arrays of strings), read by the little parser below so that
//! the service needs no TOML dependency. Every phrase is normalised exactly like the SMTP text
//! it is matched against (see [`super::smtp::normalize_into`]) and all phrases of all rules go
//! into one [`PhraseMatcher`], run once per classification.

use std::collections::HashMap;

use regex::Regex;

use super::phrases::PhraseMatcher;
use super::smtp::{normalize_phrase, parse_status, EnhancedStatus};
use crate::domain::{BounceReason, BounceType, RuleId};

/// Most phrases the engine takes (64 × `PAT_WORDS`).
pub(crate) const PAT_WORDS: usize = 32;
/// Most text rules the engine takes (64 × `RULE_WORDS`).
pub(crate) const RULE_WORDS: usize = 8;

// ───────────────────────────── the TOML subset ─────────────────────────────

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub value: Value,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub kind: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Default)]
pub(crate) struct Document {
    pub top: Vec<Entry>,
    pub tables: Vec<Table>,
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
    line: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, msg: &str) -> Result<T, String> {
        Err(format!("rules.toml line {}: {msg}", self.line))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips spaces and tabs (not newlines).
    fn skip_inline_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_comment(&mut self) {
        if self.peek() == Some(b'#') {
            while !matches!(self.peek(), None | Some(b'\n')) {
                self.i += 1;
            }
        }
    }

    /// Skips whitespace, newlines and comments.
    fn skip_all(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => self.i += 1,
                Some(b'\n') => {
                    self.i += 1;
                    self.line += 1;
                }
                Some(b'#') => self.skip_comment(),
                _ => return,
            }
        }
    }

    /// After a value: only spaces and a comment may follow on the line.
    fn end_of_line(&mut self) -> Result<(), String> {
        self.skip_inline_ws();
        self.skip_comment();
        match self.peek() {
            None => Ok(()),
            Some(b'\r') | Some(b'\n') => Ok(()),
            _ => self.err("unexpected text after the value"),
        }
    }

    fn key(&mut self) -> Result<String, String> {
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            self.i += 1;
        }
        if start == self.i {
            return self.err("expected a key");
        }
        Ok(self.src[start..self.i].to_string())
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = self.peek();
        self.i += 1;
        let mut out = String::new();
        if quote == Some(b'\'') {
            let start = self.i;
            loop {
                match self.peek() {
                    None | Some(b'\n') => return self.err("unterminated literal string"),
                    Some(b'\'') => break,
                    _ => self.i += 1,
                }
            }
            out.push_str(&self.src[start..self.i]);
            self.i += 1;
            return Ok(out);
        }
        loop {
            let start = self.i;
            while !matches!(self.peek(), None | Some(b'"' | b'\\' | b'\n')) {
                self.i += 1;
            }
            out.push_str(&self.src[start..self.i]);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.peek();
                    self.i += 1;
                    match c {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'n') => out.push('\n'),
                        Some(b't') => out.push('\t'),
                        Some(b'r') => out.push('\r'),
                        Some(b'u') => {
                            let hex = self.src.get(self.i..self.i + 4).unwrap_or("");
                            let ch = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
                            match ch {
                                Some(ch) if hex.len() == 4 => out.push(ch),
                                _ => return self.err("bad \\u escape"),
                            }
                            self.i += 4;
                        }
                        _ => return self.err("unknown escape in string"),
                    }
                }
                _ => return self.err("unterminated string"),
            }
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(b'"' | b'\'') => Ok(Value::Str(self.string()?)),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_all();
                    match self.peek() {
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::Array(items));
                        }
                        Some(b'"' | b'\'') => items.push(self.string()?),
                        _ => return self.err("arrays hold strings only"),
                    }
                    self.skip_all();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {}
                        _ => return self.err("expected ',' or ']' in array"),
                    }
                }
            }
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Value::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Value::Bool(false))
            }
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => {
                let start = self.i;
                self.i += 1;
                while matches!(self.peek(), Some(c) if c.is_ascii_digit() || c == b'.' || c == b'_')
                {
                    self.i += 1;
                }
                let text = self.src[start..self.i].replace('_', "");
                if text.contains('.') {
                    text.parse::<f64>()
                        .map(Value::Float)
                        .or_else(|_| self.err("bad number"))
                } else {
                    text.parse::<i64>()
                        .map(Value::Int)
                        .or_else(|_| self.err("bad number"))
                }
            }
            _ => self.err("expected a value"),
        }
    }
}

/// Parses the TOML subset used by the rule file.
pub(crate) fn parse_document(src: &str) -> Result<Document, String> {
    let mut p = Parser {
        s: src.as_bytes(),
        src,
        i: 0,
        line: 1,
    };
    let mut doc = Document::default();
    loop {
        p.skip_all();
        match p.peek() {
            None => return Ok(doc),
            Some(b'[') => {
                if !p.s[p.i..].starts_with(b"[[") {
                    return p.err("only [[table]] arrays are supported");
                }
                p.i += 2;
                p.skip_inline_ws();
                let kind = p.key()?;
                p.skip_inline_ws();
                if !p.s[p.i..].starts_with(b"]]") {
                    return p.err("expected ']]'");
                }
                p.i += 2;
                p.end_of_line()?;
                doc.tables.push(Table {
                    kind,
                    line: p.line,
                    entries: Vec::new(),
                });
            }
            Some(_) => {
                let line = p.line;
                let key = p.key()?;
                p.skip_inline_ws();
                if p.peek() != Some(b'=') {
                    return p.err("expected '='");
                }
                p.i += 1;
                p.skip_inline_ws();
                let value = p.value()?;
                p.end_of_line()?;
                let entries = match doc.tables.last_mut() {
                    Some(t) => &mut t.entries,
                    None => &mut doc.top,
                };
                if entries.iter().any(|e| e.key == key) {
                    return Err(format!("rules.toml line {line}: duplicate key '{key}'"));
                }
                entries.push(Entry { key, value, line });
            }
        }
    }
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

fn parse_type(s: &str) -> Option<Outcome> {
    Some(Outcome::Fixed(match s {
        "hard" => BounceType::Hard,
        "soft" => BounceType::Soft,
        "block" => BounceType::Block,
        "complaint" => BounceType::Complaint,
        "delivered" => BounceType::Delivered,
        "label" => return Some(Outcome::FromLabel),
        _ => return None,
    }))
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

/// Reads typed fields of one table, refusing unknown keys.
struct Fields<'t> {
    table: &'t Table,
    used: Vec<bool>,
}

impl<'t> Fields<'t> {
    fn new(table: &'t Table) -> Self {
        Fields {
            table,
            used: vec![false; table.entries.len()],
        }
    }
    fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T, String> {
        Err(format!(
            "rules.toml [[{}]] at line {}: {msg}",
            self.table.kind, self.table.line
        ))
    }
    fn get(&mut self, key: &str) -> Option<&'t Value> {
        let pos = self.table.entries.iter().position(|e| e.key == key)?;
        self.used[pos] = true;
        Some(&self.table.entries[pos].value)
    }
    fn str_opt(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => self.err(format!("'{key}' must be a string")),
        }
    }
    fn str(&mut self, key: &str) -> Result<String, String> {
        match self.str_opt(key)? {
            Some(s) => Ok(s),
            None => self.err(format!("'{key}' is required")),
        }
    }
    fn list(&mut self, key: &str) -> Result<Vec<String>, String> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(Value::Str(s)) => Ok(vec![s.clone()]),
            Some(_) => self.err(format!("'{key}' must be a list of strings")),
        }
    }
    fn float(&mut self, key: &str) -> Result<f32, String> {
        match self.get(key) {
            Some(Value::Float(f)) if (0.0..=1.0).contains(f) => Ok(*f as f32),
            Some(Value::Int(i)) if (0..=1).contains(i) => Ok(*i as f32),
            Some(_) => self.err(format!("'{key}' must be a number from 0 to 1")),
            None => self.err(format!("'{key}' is required")),
        }
    }
    fn bool(&mut self, key: &str) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => self.err(format!("'{key}' must be true or false")),
        }
    }
    fn finish(self) -> Result<(), String> {
        for (e, used) in self.table.entries.iter().zip(&self.used) {
            if !used {
                return Err(format!(
                    "rules.toml line {}: unknown key '{}' in [[{}]]",
                    e.line, e.key, self.table.kind
                ));
            }
        }
        Ok(())
    }
}

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
    let doc = parse_document(src)?;
    let mut version = None;
    for e in &doc.top {
        match (e.key.as_str(), &e.value) {
            ("version", Value::Int(v)) if *v > 0 => version = Some(*v as u32),
            _ => {
                return Err(format!(
                    "rules.toml line {}: unknown top-level key '{}'",
                    e.line, e.key
                ))
            }
        }
    }
    let version = version.ok_or("rules.toml: 'version' is required")?;

    let mut pats = PatternTable::default();
    let mut providers: Vec<Provider> = Vec::new();
    let mut rules: Vec<TextRule> = Vec::new();
    let mut rule_matches: Vec<Vec<u32>> = Vec::new();
    let mut status_rules = Vec::new();
    let mut code_rules = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();

    for t in &doc.tables {
        let mut f = Fields::new(t);
        match t.kind.as_str() {
            "provider" => {
                let name = f.str("name")?;
                let names = f
                    .list("names")?
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .collect();
                let mut markers = Vec::new();
                for m in f.list("markers")? {
                    markers.push(pats.add(&m).or_else(|e| f.err(e))?);
                }
                f.finish()?;
                if providers.iter().any(|p| p.name == name) {
                    return Err(format!("rules.toml: provider '{name}' defined twice"));
                }
                providers.push(Provider {
                    name,
                    names,
                    markers,
                });
            }
            "rule" => {
                let id = f.str("id")?;
                let kind = match parse_type(&f.str("type")?) {
                    Some(Outcome::Fixed(k)) => k,
                    _ => return f.err("'type' must be hard, soft, block, complaint or delivered"),
                };
                let reason = match parse_reason(&f.str("reason")?) {
                    Some(r) => r,
                    None => return f.err("unknown 'reason'"),
                };
                let confidence = f.float("confidence")?;
                let mut matches = Vec::new();
                for m in f.list("match")? {
                    matches.push(pats.add(&m).or_else(|e| f.err(e))?);
                }
                let mut and = Vec::new();
                for m in f.list("and")? {
                    and.push(pats.add(&m).or_else(|e| f.err(e))?);
                }
                let mut unless = Vec::new();
                for m in f.list("unless")? {
                    unless.push(pats.add(&m).or_else(|e| f.err(e))?);
                }
                let mut codes = Vec::new();
                for c in f.list("codes")? {
                    match CodePat::parse(&c) {
                        Some(p) => codes.push(p),
                        None => return f.err(format!("bad reply-code pattern '{c}'")),
                    }
                }
                let mut statuses = Vec::new();
                for s in f.list("status")? {
                    match StatusPat::parse(&s) {
                        Some(p) => statuses.push(p),
                        None => return f.err(format!("bad status pattern '{s}'")),
                    }
                }
                let regex = match f.str_opt("regex")? {
                    None => None,
                    Some(r) => match Regex::new(&r) {
                        Ok(re) => Some(re),
                        Err(e) => return f.err(format!("bad regex: {e}")),
                    },
                };
                let scope = match f.str_opt("provider")? {
                    None => None,
                    Some(p) => match providers.iter().position(|x| x.name == p) {
                        Some(i) => Some(i),
                        None => return f.err(format!("unknown provider '{p}' (define it first)")),
                    },
                };
                let keep_hard_if_temporary = f.bool("permanent_even_if_4xx")?;
                let example = f.str("example")?;
                let example_provider = f.str_opt("example_provider")?;
                let example_status = f.str_opt("example_status")?;
                let decided_by = f.str_opt("decided_by")?;
                let _ = f.str_opt("note")?;
                f.finish()?;
                if matches.is_empty() && codes.is_empty() && statuses.is_empty() {
                    return Err(format!(
                        "rules.toml: rule '{id}' needs 'match' phrases or code/status conditions"
                    ));
                }
                if ids.insert(id.clone(), rules.len()).is_some() {
                    return Err(format!("rules.toml: rule id '{id}' used twice"));
                }
                rules.push(TextRule {
                    id: id.into(),
                    kind,
                    reason,
                    confidence,
                    scope,
                    codes,
                    statuses,
                    and,
                    unless,
                    regex,
                    keep_hard_if_temporary,
                    example,
                    example_provider,
                    example_status,
                    decided_by,
                });
                rule_matches.push(matches);
            }
            "status" | "code" => {
                let id = f.str("id")?;
                let pattern = f.str(t.kind.as_str())?;
                let outcome = match parse_type(&f.str("type")?) {
                    Some(o) => o,
                    None => return f.err("bad 'type'"),
                };
                let reason = match parse_reason(&f.str("reason")?) {
                    Some(r) => r,
                    None => return f.err("unknown 'reason'"),
                };
                let confidence = f.float("confidence")?;
                let example = f.str("example")?;
                let _ = f.str_opt("note")?;
                f.finish()?;
                if ids.insert(id.clone(), usize::MAX).is_some() {
                    return Err(format!("rules.toml: id '{id}' used twice"));
                }
                let mut r = FallbackRule {
                    id: id.into(),
                    status: None,
                    code: None,
                    outcome,
                    reason,
                    confidence,
                    example,
                };
                if t.kind == "status" {
                    r.status = StatusPat::parse(&pattern);
                    if r.status.is_none() {
                        return Err(format!("rules.toml: bad status pattern '{pattern}'"));
                    }
                    status_rules.push(r);
                } else {
                    r.code = CodePat::parse(&pattern);
                    if r.code.is_none() {
                        return Err(format!("rules.toml: bad code pattern '{pattern}'"));
                    }
                    code_rules.push(r);
                }
            }
            other => return Err(format!("rules.toml: unknown table [[{other}]]")),
        }
    }

    for r in &rules {
        if let Some(d) = &r.decided_by {
            if !ids.contains_key(d) {
                return Err(format!(
                    "rules.toml: rule '{}' says decided_by '{d}', which does not exist",
                    r.id
                ));
            }
        }
        if let Some(s) = &r.example_status {
            if parse_status(s).is_none() {
                return Err(format!(
                    "rules.toml: rule '{}' has a bad example_status",
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
        version,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_toml_subset() {
        let doc = parse_document(
            "version = 3 # c\n\n[[rule]]\nid = \"a.b\"\nmatch = [\n  \"x\", # one\n  'y\\z',\n]\nconfidence = 0.9\nflag = true\n",
        )
        .unwrap();
        assert_eq!(doc.top[0].value, Value::Int(3));
        let t = &doc.tables[0];
        assert_eq!(t.kind, "rule");
        assert_eq!(t.entries[0].value, Value::Str("a.b".into()));
        assert_eq!(
            t.entries[1].value,
            Value::Array(vec!["x".into(), "y\\z".into()])
        );
        assert_eq!(t.entries[2].value, Value::Float(0.9));
        assert_eq!(t.entries[3].value, Value::Bool(true));
        assert!(parse_document("[table]\n").is_err());
        assert!(parse_document("a = \"x\" b\n").is_err());
        assert!(parse_document("a = \"x\"\na = \"y\"\n").is_err());
        assert!(parse_document("a = \"unterminated\n").is_err());
    }

    #[test]
    fn code_and_status_patterns() {
        assert!(CodePat::parse("5xx").unwrap().matches(554));
        assert!(!CodePat::parse("55x").unwrap().matches(450));
        assert!(StatusPat::parse("x.1.1").unwrap().matches((4, 1, 1)));
        assert!(StatusPat::parse("5.7.*").unwrap().matches((5, 7, 26)));
        assert!(!StatusPat::parse("5.7.*").unwrap().matches((4, 7, 26)));
        assert!(StatusPat::parse("5.1").is_none());
    }
}
