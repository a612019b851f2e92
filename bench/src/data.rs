//! The synthetic data set. Everything is a pure function of an index, so that separate
//! invocations (load now, screen later, the PostgreSQL copy) agree without sharing files, and
//! 10M addresses never have to be held in memory.
//!
//! - Suppressed addresses are indices `0..n`. Index `i` belongs to tenant `bench` (about 90 %) or
//!   one of four others, has a realistic local part over a mix of mailbox providers and corporate
//!   domains, and a unique suffix (base 36 of the index after the last `.` of the local part), so
//!   no two indices give the same address.
//! - Addresses that were never suppressed come from disjoint index ranges (`CLEAN_BASE`, ...).
//! - The first `list_n` indices are tenant `bench`, source [`LIST_SOURCE`]: the ListBounces
//!   phase pages through exactly those.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use suppressd::grpc::proto as pb;

/// The main tenant.
pub const TENANT: &str = "bench";
/// The other tenants, sharing about 10 % of the addresses.
pub const OTHER_TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
/// The source whose bounces the ListBounces phase pages through.
pub const LIST_SOURCE: &str = "webinar-2026-q3";

/// First index of addresses that are never suppressed by the load (import screening).
pub const CLEAN_BASE: u64 = 1 << 40;
/// First index of the status-lookup pool's clean addresses.
pub const STATUS_BASE: u64 = 2 << 40;
/// First index of the addresses of the mixed-outcome ingest.
pub const INGEST_BASE: u64 = 3 << 40;
/// First index of the addresses of the unary ReportSendResult phase.
pub const UNARY_BASE: u64 = 4 << 40;
/// First index of the addresses of the live-feed ingest.
pub const LIVE_BASE: u64 = 5 << 40;
/// First index of the addresses of the two-replica ingest (new addresses, as the main
/// ingest's were when it ran).
pub const REPLICAS_BASE: u64 = 6 << 40;

/// How far back the `occurred_at` of generated events reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Anywhere in the last 90 days: a backfill, and the worst case for every index keyed by
    /// time (the data set's load and the main ingest).
    Days90,
    /// Within the last ten minutes: results reported as they happen.
    Live,
}

impl Spread {
    fn secs(self) -> u64 {
        match self {
            Spread::Days90 => 90 * 86_400,
            Spread::Live => 600,
        }
    }
}

const SOURCES: [&str; 8] = [
    "crm-sync",
    "newsletter-signup",
    "checkout",
    "partner-list-2025",
    "trade-show-berlin",
    "landing-page-b",
    "referral",
    "app-registration",
];
const CAMPAIGNS: [&str; 6] = [
    "autumn-sale",
    "weekly-digest",
    "product-launch",
    "reactivation",
    "onboarding-3",
    "black-friday",
];
const SEGMENTS: [&str; 4] = ["all", "engaged-90d", "new-signups", "vip"];
const PROVIDERS: [&str; 4] = ["ses", "postfix", "sendgrid", "mailgun"];

const FIRST: [&str; 40] = [
    "sarah", "james", "maria", "wei", "olivia", "noah", "fatima", "lukas", "emma", "liam", "sofia",
    "mohammed", "anna", "david", "chloe", "jan", "yuki", "pedro", "laura", "ahmed", "mia", "ben",
    "elena", "tom", "nina", "omar", "julia", "max", "ines", "paul", "hana", "leo", "zoe", "ivan",
    "lea", "arjun", "clara", "finn", "rosa", "kai",
];
const LAST: [&str; 40] = [
    "smith", "mueller", "garcia", "chen", "johnson", "kowalski", "rossi", "nguyen", "dubois",
    "schmidt", "brown", "tanaka", "silva", "novak", "jones", "martin", "kim", "fischer", "lopez",
    "weber", "wilson", "moreau", "patel", "becker", "taylor", "ivanova", "hoffmann", "santos",
    "clark", "meyer", "wright", "khan", "walker", "bauer", "young", "richter", "hall", "wolf",
    "allen", "koch",
];
/// Mailbox providers with their weight in percent; the rest are corporate domains.
const PROVIDER_DOMAINS: [(&str, u64); 11] = [
    ("gmail.com", 28),
    ("yahoo.com", 8),
    ("hotmail.com", 7),
    ("outlook.com", 7),
    ("icloud.com", 4),
    ("aol.com", 2),
    ("gmx.de", 2),
    ("web.de", 2),
    ("orange.fr", 1),
    ("comcast.net", 1),
    ("proton.me", 1),
];
const CORP_A: [&str; 30] = [
    "north", "blue", "silver", "red", "green", "bright", "iron", "summit", "river", "cloud",
    "alpha", "nova", "quantum", "urban", "coastal", "prime", "atlas", "vertex", "harbor", "pine",
    "delta", "orbit", "solar", "granite", "maple", "falcon", "crystal", "metro", "cedar", "apex",
];
const CORP_B: [&str; 30] = [
    "wind",
    "peak",
    "logistics",
    "labs",
    "systems",
    "foods",
    "media",
    "health",
    "capital",
    "energy",
    "works",
    "retail",
    "motors",
    "consulting",
    "software",
    "bank",
    "insurance",
    "travel",
    "pharma",
    "textiles",
    "studio",
    "partners",
    "solutions",
    "digital",
    "group",
    "industries",
    "networks",
    "analytics",
    "design",
    "mobility",
];
const TLDS: [&str; 6] = ["com", "de", "co.uk", "fr", "io", "nl"];

/// Hard-bounce responses; all carry the enhanced status 5.1.1 (mailbox does not exist).
const HARD_TEXTS: [&str; 4] = [
    "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces.",
    "550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table",
    "550 5.1.1 Requested action not taken: mailbox unavailable",
    "5.1.1 smtp; 550 5.1.1 RESOLVER.ADR.RecipNotFound; not found",
];
const SOFT_TEXTS: [&str; 3] = [
    "452-4.2.2 The email account that you tried to reach is over quota.",
    "421 4.7.0 Try again later, closing connection.",
    "451 4.3.0 Temporary system problem, please try again later",
];
const BLOCK_TEXT: &str =
    "550 5.7.1 Service unavailable; Client host [203.0.113.7] blocked using zen.spamhaus.org";
const DELIVERED_TEXT: &str = "250 2.0.0 OK 1764300000 a1si123456qkb.42 - gsmtp";

/// SplitMix64: a cheap, well-mixed hash of an index.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn base36(mut v: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(13);
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn pick<T: Copy>(items: &[T], h: u64) -> T {
    items[(h % items.len() as u64) as usize]
}

/// The normalized (lowercase) address of index `i`.
pub fn address(i: u64) -> String {
    let h = mix(i ^ 0xA11CE);
    let first = pick(&FIRST, h);
    let last = pick(&LAST, h >> 8);
    let sfx = base36(i);
    let local = match (h >> 16) % 4 {
        0 => format!("{first}.{last}.{sfx}"),
        1 => format!("{}{last}.{sfx}", &first[..1]),
        2 => format!("{first}_{last}.{sfx}"),
        _ => format!("{first}.{sfx}"),
    };
    let mut roll = (h >> 24) % 100;
    for (domain, weight) in PROVIDER_DOMAINS {
        if roll < weight {
            return format!("{local}@{domain}");
        }
        roll -= weight;
    }
    let d = h >> 32;
    format!(
        "{local}@{}{}.{}",
        pick(&CORP_A, d),
        pick(&CORP_B, d >> 8),
        pick(&TLDS, d >> 16)
    )
}

/// The same address as a CRM might spell it: capitalized name and domain.
pub fn mixed_case(address: &str) -> String {
    let mut out = String::with_capacity(address.len());
    let mut upper_next = true;
    for c in address.chars() {
        if upper_next {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper_next = matches!(c, '.' | '_' | '@');
    }
    out
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

/// The data set: `n` suppressed addresses, of which the first `list_n` share one source.
#[derive(Debug, Clone, Copy)]
pub struct DataSet {
    /// Number of suppressed addresses (indices `0..n`).
    pub n: u64,
    /// Bounces of [`LIST_SOURCE`] in tenant `bench` (indices `0..list_n`).
    pub list_n: u64,
    /// Reference time: events occurred within 90 days before it.
    pub now: i64,
}

impl DataSet {
    /// A data set of `n` suppressed addresses.
    pub fn new(n: u64, list_n: u64) -> DataSet {
        DataSet {
            n,
            list_n: list_n.min(n),
            now: now_secs(),
        }
    }

    /// The tenant of address index `i` (any range).
    pub fn tenant(&self, i: u64) -> &'static str {
        if i < self.list_n {
            return TENANT;
        }
        let h = mix(i ^ 0x7E4A47);
        if h % 100 < 90 {
            TENANT
        } else {
            pick(&OTHER_TENANTS, h >> 32)
        }
    }

    /// The source of the load event of index `i`.
    pub fn source(&self, i: u64) -> &'static str {
        if i < self.list_n {
            LIST_SOURCE
        } else {
            pick(&SOURCES, mix(i ^ 0x50C3))
        }
    }

    fn occurred_at(&self, h: u64) -> prost_types::Timestamp {
        self.occurred_within(h, Spread::Days90)
    }

    fn occurred_within(&self, h: u64, spread: Spread) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: self.now - (h % spread.secs()) as i64,
            nanos: ((h >> 40) % 1_000_000) as i32 * 1000,
        }
    }

    /// The seconds of the load event of index `i` (for the PostgreSQL copy).
    pub fn load_secs(&self, i: u64) -> i64 {
        self.occurred_at(mix(i ^ 0x10AD)).seconds
    }

    /// The hard bounce that suppresses address `i`: the load of the data set.
    pub fn load_result(&self, i: u64) -> pb::SendResult {
        let h = mix(i ^ 0x10AD);
        pb::SendResult {
            event_id: format!("load-{i}"),
            address: address(i),
            outcome: pb::Outcome::HardBounce as i32,
            smtp_response: pick(&HARD_TEXTS, h).to_string(),
            enhanced_status: (h >> 8).is_multiple_of(3).then(|| "5.1.1".to_string()),
            source: self.source(i).to_string(),
            campaign: pick(&CAMPAIGNS, h >> 12).to_string(),
            segment: pick(&SEGMENTS, h >> 16).to_string(),
            provider: pick(&PROVIDERS, h >> 20).to_string(),
            occurred_at: Some(self.occurred_at(h)),
            ..Default::default()
        }
    }

    /// Event `k` of a mixed-outcome stream whose event ids start with `prefix` and whose new
    /// addresses start at index `base`: 70 % hard bounces (5.1.1), 12 % soft, 5 % block,
    /// 10 % delivered, 3 % complaints; 15 % of them hit an address of the data set.
    /// Returns the address index with the result.
    pub fn mixed_result(&self, prefix: &str, base: u64, k: u64) -> (u64, pb::SendResult) {
        self.mixed_result_within(prefix, base, k, Spread::Days90)
    }

    /// [`DataSet::mixed_result`] with its `occurred_at` within `spread`.
    pub fn mixed_result_within(
        &self,
        prefix: &str,
        base: u64,
        k: u64,
        spread: Spread,
    ) -> (u64, pb::SendResult) {
        let h = mix(k ^ base ^ 0x3177ED);
        let idx = if h % 100 < 15 && self.n > 0 {
            (h >> 8) % self.n
        } else {
            base + k
        };
        let roll = (h >> 32) % 100;
        let (outcome, text) = match roll {
            0..70 => (pb::Outcome::HardBounce, pick(&HARD_TEXTS, h >> 40)),
            70..82 => (pb::Outcome::SoftBounce, pick(&SOFT_TEXTS, h >> 40)),
            82..87 => (pb::Outcome::Block, BLOCK_TEXT),
            87..97 => (pb::Outcome::Delivered, DELIVERED_TEXT),
            _ => (pb::Outcome::Complaint, ""),
        };
        let result = pb::SendResult {
            event_id: format!("{prefix}-{k}"),
            address: address(idx),
            outcome: outcome as i32,
            smtp_response: text.to_string(),
            enhanced_status: None,
            source: pick(&SOURCES, h >> 44).to_string(),
            campaign: pick(&CAMPAIGNS, h >> 48).to_string(),
            segment: pick(&SEGMENTS, h >> 52).to_string(),
            provider: pick(&PROVIDERS, h >> 56).to_string(),
            occurred_at: Some(self.occurred_within(h.rotate_left(17), spread)),
            ..Default::default()
        };
        (idx, result)
    }

    /// The next suppressed address of tenant `bench`, walking the data set in a pseudo-random
    /// order (a stride coprime to `n`) that starts at `offset`; `cursor` is the walk's position.
    /// Never the same index twice for one cursor; `None` once the data set is exhausted.
    pub fn suppressed_pick(&self, offset: u64, cursor: &mut u64) -> Option<u64> {
        let stride = if self.n.is_multiple_of(1_000_003) {
            998_244_353
        } else {
            1_000_003
        };
        while *cursor < self.n {
            let j = (offset + *cursor * stride) % self.n;
            *cursor += 1;
            if self.tenant(j) == TENANT {
                return Some(j);
            }
        }
        None
    }
}

/// Counts of import verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub allow: u64,
    pub suppressed: u64,
    pub invalid: u64,
    pub duplicate: u64,
}

impl ImportCounts {
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.allow + self.suppressed + self.invalid + self.duplicate
    }
}

/// A CRM contact stream for CheckImport, with what the guard must answer.
pub struct ImportPlan {
    pub contacts: Vec<pb::ImportContact>,
    /// The normalized address of each contact; `None` for invalid ones.
    pub normalized: Vec<Option<String>>,
    pub expected: ImportCounts,
}

const INVALID: [&str; 8] = [
    "no-at-sign.example.com",
    "two@@example.com",
    "trailing.dot.@example.com",
    "user@localhost",
    "user@-bad-.example",
    "",
    "spaces in@example.com",
    "user@example.123",
];

/// `count` contacts: 10 % suppressed (a fifth of them spelt in mixed case), 1 % invalid, 2 %
/// repeats of an earlier clean contact (mixed case or padded with spaces), the rest clean.
pub fn import_plan(ds: &DataSet, count: u64) -> ImportPlan {
    let mut contacts = Vec::with_capacity(count as usize);
    let mut normalized: Vec<Option<String>> = Vec::with_capacity(count as usize);
    let mut expected = ImportCounts::default();
    let mut cursor = 0u64;
    let mut clean_positions: Vec<usize> = Vec::new();
    for p in 0..count {
        let h = mix(p ^ 0x1A9087);
        let roll = h % 1000;
        let (given, norm) = if roll < 100 {
            match ds.suppressed_pick(17, &mut cursor) {
                Some(j) => {
                    expected.suppressed += 1;
                    let a = address(j);
                    let given = if (h >> 12).is_multiple_of(5) {
                        mixed_case(&a)
                    } else {
                        a.clone()
                    };
                    (given, Some(a))
                }
                None => {
                    let a = address(CLEAN_BASE + p);
                    expected.allow += 1;
                    clean_positions.push(contacts.len());
                    (a.clone(), Some(a))
                }
            }
        } else if roll < 110 {
            expected.invalid += 1;
            (pick(&INVALID, h >> 12).to_string(), None)
        } else if roll < 130 && !clean_positions.is_empty() {
            let back = ((h >> 12) % 1000) as usize % clean_positions.len();
            let original = clean_positions[clean_positions.len() - 1 - back];
            let a = normalized[original].clone().unwrap_or_default();
            expected.duplicate += 1;
            let given = if (h >> 24).is_multiple_of(2) {
                mixed_case(&a)
            } else {
                format!("  {a} ")
            };
            (given, Some(a))
        } else {
            let a = address(CLEAN_BASE + p);
            expected.allow += 1;
            clean_positions.push(contacts.len());
            (a.clone(), Some(a))
        };
        contacts.push(pb::ImportContact {
            address: given,
            external_id: format!("crm-{p}"),
            source: "crm-sync".to_string(),
            ..Default::default()
        });
        normalized.push(norm);
    }
    ImportPlan {
        contacts,
        normalized,
        expected,
    }
}

/// `count` addresses for status lookups: 10 % suppressed (tenant `bench`), 90 % clean.
pub fn status_pool(ds: &DataSet, count: u64) -> Vec<String> {
    let mut cursor = 0u64;
    (0..count)
        .map(|k| {
            if mix(k ^ 0x57A7).is_multiple_of(10) {
                if let Some(j) = ds.suppressed_pick(99_991, &mut cursor) {
                    return address(j);
                }
            }
            address(STATUS_BASE + k)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn addresses_are_distinct_and_lowercase() {
        let mut seen = HashSet::new();
        for i in (0..50_000).chain(CLEAN_BASE..CLEAN_BASE + 1000) {
            let a = address(i);
            assert_eq!(a, a.to_lowercase());
            assert!(a.len() < 100, "{a}");
            assert!(seen.insert(a));
        }
    }

    #[test]
    fn import_plan_counts_add_up() {
        let ds = DataSet::new(10_000, 1_000);
        let plan = import_plan(&ds, 20_000);
        assert_eq!(plan.expected.total(), 20_000);
        assert!(plan.expected.suppressed > 1_500, "{:?}", plan.expected);
        assert!(plan.expected.invalid > 100);
        assert!(plan.expected.duplicate > 200);
    }

    #[test]
    fn suppressed_picks_are_distinct_bench_addresses() {
        let ds = DataSet::new(5_000, 500);
        let mut cursor = 0;
        let mut seen = HashSet::new();
        while let Some(j) = ds.suppressed_pick(3, &mut cursor) {
            assert!(j < ds.n);
            assert_eq!(ds.tenant(j), TENANT);
            assert!(seen.insert(j));
        }
        assert!(seen.len() > 4_000);
    }
}
