//! The key layout of the store, the same on every engine. One ordered key space (a sled tree,
//! a redb table); the first byte names the record kind, and components are separated by 0x00,
//! which no tenant, source or event id contains (all are validated before they get here).
//!
//! Schema 5 (this version):
//!
//! ```text
//! R tenant 0 ah                          -> StoredAddress (the address text and its state)
//! L tenant 0 ah inv(ts) inv(seq)         -> StoredEntry (a send result with the changes it
//!                                           caused, or changes of state alone)
//! P tenant 0 event_id                    -> Position: ah inv(ts) inv(seq) of the event's entry
//! T tenant 0 source 0 inv(ts) inv(seq)   -> ah   (bounces by source; the entry is
//!                                           L tenant 0 ah inv(ts) inv(seq))
//! Y tenant 0 inv(since) ah               -> ()   (suppressed addresses by time)
//! Z tenant 0 ordered(expires_at) ah      -> ()   (what ends by itself, by expiry, soonest
//!                                           first: a suppression or a list unsubscribe)
//! U tenant 0 ah                          -> ()   (addresses unsubscribed from some list)
//! G tenant 0 domain 0 ah                 -> sealed local part (delivered addresses, for
//!                                           typo suggestions; schema 4 wrote
//!                                           `G tenant 0 domain 0 local -> ()`, still read)
//! K tenant 0 domain                      -> u64  (delivered addresses per domain)
//! W tenant 0 dim value 0 ordered(day)    -> HourlyRow  (a UTC day's hourly counters)
//! D tenant 0 dim value 0 ordered(day)    -> OutcomeCounts (daily counters)
//! V tenant 0 dim value 0                 -> ()   (the dimension values seen)
//! F tenant 0 be(seq)                     -> StoredChange (the change log: every change of
//!                                           the tenant's suppression list, in commit order)
//! I tenant                               -> u64  (the change log's horizon: the last
//!                                           sequence number pruned by retention)
//! M tenant 0 domain                      -> StoredDomain (a domain's suppression and
//!                                           accept-all mark; all of them are kept in memory)
//! N tenant 0 domain 0                    -> DomainActivity (its latest delivery hour and the
//!                                           automatic rules' evidence)
//! N tenant 0 domain 0 inv(ts) inv(seq)   -> StoredEntry (the domain's history: changes alone)
//! ```
//!
//! A domain's marks (`M`) and its activity (`N`) are apart so that the marks, which are loaded
//! into memory at open, stay few (domains with a suppression or a mark ever), while every
//! domain that had a delivery has an activity record, written at most about once an hour.
//!
//! `ah` is the address's 16-byte keyed hash ([`AddressHash`]): no key holds an address's text
//! (but the `G` keys of schema 4). Its personal data is in the values of its `R` record, `L`
//! entries and `G` entry, sealed under the address's data key (`keyring`) since schema 5:
//! forgetting a person destroys that key, deletes those values and leaves the indexes alone. Records have a kind of their own, apart from
//! the history entries: the reads that screen imports and answer status lookups touch only
//! records, which stay dense in the tree (and in the engine's cache). `inv(ts)` is the timestamp mapped to
//! big-endian bytes that sort newest first; `seq` is a store-wide unique id that orders
//! entries of the same instant, newest first.
//!
//! Schema 3 kept `A tenant 0 address` records, `H tenant 0 address 0 inv(ts) inv(seq)` history
//! entries pointing at `E tenant 0 event_id` events, `S` (by source) and `B` (all bounces)
//! indexes of event ids, and `X tenant 0 inv(since) address`; the migration at open reads them.

pub use super::address_hash::AddressHash;
use crate::domain::Timestamp;

/// An address's record.
pub const RECORD: u8 = b'R';
/// An address's history entries.
pub const LOG: u8 = b'L';
/// Where an event's history entry is, by event id.
pub const POSITION: u8 = b'P';
/// Bounces by source and time.
pub const BOUNCES: u8 = b'T';
/// Suppressed addresses by time.
pub const SUPPRESSED: u8 = b'Y';
/// Addresses by the expiry of their suppression or list unsubscribes, soonest first.
pub const EXPIRY: u8 = b'Z';
/// Addresses unsubscribed from at least one list.
pub const LIST_UNSUBSCRIBED: u8 = b'U';
/// Schema 3: events by id.
pub const OLD_EVENT: u8 = b'E';
/// Schema 3: address records by address text.
pub const OLD_ADDRESS: u8 = b'A';
/// Schema 3: history entries by address text.
pub const OLD_HISTORY: u8 = b'H';
/// Schema 3: bounce event ids by source.
pub const OLD_BY_SOURCE: u8 = b'S';
/// Schema 3: bounce event ids of every source.
pub const OLD_BOUNCES: u8 = b'B';
/// Schema 3: suppressed addresses by time, with the address text.
pub const OLD_SUPPRESSED: u8 = b'X';
/// Delivered addresses by domain.
pub const GOOD_ADDRESS: u8 = b'G';
/// Delivered addresses per domain.
pub const GOOD_DOMAIN: u8 = b'K';
/// Hourly counters of schema version 1, one key per hour; moved into `HOURS` rows at open.
pub const HOURLY: u8 = b'C';
/// Hourly counters, one row per dimension value and UTC day.
pub const HOURS: u8 = b'W';
pub const DAILY: u8 = b'D';
pub const VALUES: u8 = b'V';
/// The change log of suppression lists.
pub const CHANGES: u8 = b'F';
/// The change log's horizon per tenant.
pub const HORIZON: u8 = b'I';
/// A domain's suppression and accept-all mark.
pub const DOMAIN: u8 = b'M';
/// A domain's activity record and history entries.
pub const DOMAIN_LOG: u8 = b'N';
/// The single key `Q`: the journal's state in the engine (see `journal`).
pub const JOURNAL: u8 = b'Q';
const SEP: u8 = 0;

/// Key prefix: kind byte, then components each followed by the separator.
pub fn prefix(kind: u8, parts: &[&str]) -> Vec<u8> {
    // Room for a time part and sequence number after it (see `timed`).
    prefix_with_room(kind, parts, 16)
}

/// [`prefix`] with capacity for `room` more bytes.
fn prefix_with_room(kind: u8, parts: &[&str], room: usize) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut k = Vec::with_capacity(len + room);
    k.push(kind);
    for p in parts {
        k.extend_from_slice(p.as_bytes());
        k.push(SEP);
    }
    k
}

/// A key whose last component is a string with no trailing separator.
pub fn exact(kind: u8, parts: &[&str], last: &str) -> Vec<u8> {
    let mut k = prefix_with_room(kind, parts, last.len());
    k.extend_from_slice(last.as_bytes());
    k
}

/// The key of an address's record.
pub fn record(tenant: &str, ah: &AddressHash) -> Vec<u8> {
    let mut k = prefix_with_room(RECORD, &[tenant], 16);
    k.extend_from_slice(ah.bytes());
    k
}

/// The prefix of an address's history entries: `L tenant 0 ah`.
pub fn history(tenant: &str, ah: &AddressHash) -> Vec<u8> {
    let mut k = prefix_with_room(LOG, &[tenant], 16 + 16);
    k.extend_from_slice(ah.bytes());
    k
}

/// The key of a domain's marks: `M tenant 0 domain`.
pub fn domain(tenant: &str, domain: &str) -> Vec<u8> {
    exact(DOMAIN, &[tenant], domain)
}

/// The key of a domain's activity record, which is also the prefix of its history entries:
/// `N tenant 0 domain 0`.
pub fn domain_log(tenant: &str, domain: &str) -> Vec<u8> {
    prefix(DOMAIN_LOG, &[tenant, domain])
}

/// The key of a delivered address's entry: `G tenant 0 domain 0 ah`.
pub fn good_address(tenant: &str, domain: &str, ah: &AddressHash) -> Vec<u8> {
    let mut k = prefix_with_room(GOOD_ADDRESS, &[tenant, domain], 16);
    k.extend_from_slice(ah.bytes());
    k
}

/// The key of a delivered address's entry as schema 4 wrote it: `G tenant 0 domain 0 local`.
pub fn plain_good_address(tenant: &str, domain: &str, local: &str) -> Vec<u8> {
    exact(GOOD_ADDRESS, &[tenant, domain], local)
}

/// The key of an event's position: `P tenant 0 event_id`.
pub fn position(tenant: &str, event_id: &str) -> Vec<u8> {
    exact(POSITION, &[tenant], event_id)
}

/// The key of an address in the index of suppressed addresses: `Y tenant 0 inv(since) ah`.
pub fn suppressed(tenant: &str, since: Timestamp, ah: &AddressHash) -> Vec<u8> {
    let mut k = prefix_with_room(SUPPRESSED, &[tenant], 8 + 16);
    k.extend_from_slice(&inv_ts(since));
    k.extend_from_slice(ah.bytes());
    k
}

/// The key of a change in a tenant's change log: `F tenant 0 be(seq)`.
pub fn change(tenant: &str, seq: u64) -> Vec<u8> {
    let mut k = prefix_with_room(CHANGES, &[tenant], 8);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of a change log key, and its tenant.
pub fn change_parts(key: &[u8]) -> Option<(&str, u64)> {
    let rest = key.strip_prefix(&[CHANGES])?;
    let (tenant, seq) = rest.split_at(rest.len().checked_sub(9)?);
    let seq = seq.strip_prefix(&[SEP])?;
    Some((
        std::str::from_utf8(tenant).ok()?,
        u64::from_be_bytes(seq.try_into().ok()?),
    ))
}

/// The key of a tenant's change log horizon: `I tenant`.
pub fn horizon(tenant: &str) -> Vec<u8> {
    exact(HORIZON, &[], tenant)
}

/// The key of an address in the expiry index: `Z tenant 0 ordered(expires_at) ah`.
pub fn expiry(tenant: &str, expires_at: Timestamp, ah: &AddressHash) -> Vec<u8> {
    let mut k = prefix_with_room(EXPIRY, &[tenant], 8 + 16);
    k.extend_from_slice(&ordered_i64(expires_at.micros()));
    k.extend_from_slice(ah.bytes());
    k
}

/// The key of an address in the index of list unsubscribes: `U tenant 0 ah`.
pub fn list_unsubscribed(tenant: &str, ah: &AddressHash) -> Vec<u8> {
    let mut k = prefix_with_room(LIST_UNSUBSCRIBED, &[tenant], 16);
    k.extend_from_slice(ah.bytes());
    k
}

/// The time-and-sequence part of a timed key (its last 16 bytes), which an event's history
/// entry and its bounce index entry share.
pub fn instant_of(key: &[u8]) -> Option<[u8; 16]> {
    key.len()
        .checked_sub(16)
        .and_then(|at| key[at..].try_into().ok())
}

/// A timed key from its prefix and the time-and-sequence part of another ([`instant_of`]).
pub fn at_instant(prefix: &[u8], instant: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(instant);
    k
}

/// An i64 as big-endian bytes that sort in numeric order.
pub fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1u64 << 63)).to_be_bytes()
}

/// Inverse of [`ordered_i64`].
pub fn i64_from_ordered(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1u64 << 63)) as i64
}

/// Prefix of a dimension value's counters or value-index entry:
/// `kind tenant 0 dim value 0`.
pub fn dimension_prefix(kind: u8, tenant: &str, dim: u8, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + value.len() + 12);
    k.push(kind);
    k.extend_from_slice(tenant.as_bytes());
    k.push(SEP);
    k.push(dim);
    k.extend_from_slice(value.as_bytes());
    k.push(SEP);
    k
}

/// Timestamp bytes that sort newest first.
pub fn inv_ts(ts: Timestamp) -> [u8; 8] {
    let ordered = (ts.micros() as u64) ^ (1u64 << 63);
    (!ordered).to_be_bytes()
}

/// Inverse of [`inv_ts`].
#[cfg(test)]
pub fn ts_from_inv(bytes: [u8; 8]) -> Timestamp {
    let ordered = !u64::from_be_bytes(bytes);
    Timestamp((ordered ^ (1u64 << 63)) as i64)
}

/// The key just after every entry of instant `ts` under `prefix` (whatever follows the time
/// part: a sequence number, or an address, which as UTF-8 never holds 0xff). A scan starting
/// after it skips instant `ts`; one ending at it includes it.
pub fn after_instant(prefix: &[u8], ts: Timestamp) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&inv_ts(ts));
    k.extend_from_slice(&[0xff; 8]);
    k
}

/// A time-ordered key: prefix, inverted time, inverted sequence (so that of two entries of the
/// same instant the later-written one comes first).
pub fn timed(prefix: &[u8], ts: Timestamp, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&inv_ts(ts));
    k.extend_from_slice(&(!seq).to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverted_timestamps_sort_newest_first_and_round_trip() {
        let times = [i64::MIN, -5, 0, 1, 1_700_000_000_000_000, i64::MAX];
        for w in times.windows(2) {
            assert!(inv_ts(Timestamp(w[0])) > inv_ts(Timestamp(w[1])));
        }
        for t in times {
            assert_eq!(ts_from_inv(inv_ts(Timestamp(t))), Timestamp(t));
        }
    }
}
