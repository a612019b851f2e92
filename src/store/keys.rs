//! The key layout of the store, the same on every engine. One ordered key space (a sled tree,
//! a redb table); the first byte names the record kind, and
//! components are separated by 0x00, which no tenant, address, source or event id contains
//! (all are validated before they get here).
//!
//! ```text
//! E tenant 0 event_id                              -> RecordedEvent
//! A tenant 0 address                               -> AddressRecord
//! H tenant 0 address 0 inv(ts) inv(seq)                -> StoredHistory (event id or state change)
//! S tenant 0 source 0 inv(ts) inv(seq)              -> event id   (bounces by source)
//! B tenant 0 inv(ts) inv(seq)               -> event id   (all bounces)
//! W tenant 0 dim value 0 ordered(day)        -> HourlyRow  (a UTC day's hourly counters)
//! D tenant 0 dim value 0 ordered(day)        -> OutcomeCounts (daily counters)
//! ```
//! `inv(ts)` is the timestamp mapped to big-endian bytes that sort newest first; `seq` is a
//! store-wide unique id that orders entries of the same instant, newest first.

use crate::domain::Timestamp;

pub const EVENT: u8 = b'E';
pub const ADDRESS: u8 = b'A';
pub const HISTORY: u8 = b'H';
pub const BY_SOURCE: u8 = b'S';
pub const BOUNCES: u8 = b'B';
pub const SUPPRESSED: u8 = b'X';
pub const GOOD_ADDRESS: u8 = b'G';
pub const GOOD_DOMAIN: u8 = b'K';
/// Hourly counters of schema version 1, one key per hour; moved into `HOURS` rows at open.
pub const HOURLY: u8 = b'C';
/// Hourly counters, one row per dimension value and UTC day.
pub const HOURS: u8 = b'W';
pub const DAILY: u8 = b'D';
pub const VALUES: u8 = b'V';
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
pub fn record(tenant: &str, address: &str) -> Vec<u8> {
    exact(ADDRESS, &[tenant], address)
}

/// The key of an address in the index of suppressed addresses: `X tenant 0 inv(since) address`.
pub fn suppressed(tenant: &str, since: Timestamp, address: &str) -> Vec<u8> {
    let mut k = prefix_with_room(SUPPRESSED, &[tenant], 8 + address.len());
    k.extend_from_slice(&inv_ts(since));
    k.extend_from_slice(address.as_bytes());
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
