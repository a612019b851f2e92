//! Restoring a backup stream into the postgres engine: the logical keys of the embedded layout
//! (`keys`) become the relational rows again, with the personal fields unsealed under the
//! stream's keyring (this engine keeps them in the clear) and the store's keys (address-hash key,
//! page-token secret) carried over, so that address ids and page tokens handed out before stay
//! valid.
//!
//! The whole restore is one transaction: rows go in with multi-row `INSERT ... SELECT * FROM
//! unnest(...)` statements a few thousand at a time, then the restored rows are read back as
//! the stream's kinds of keys (`snapshot::scan`, counting only) and compared with the stream's
//! counts before `COMMIT`. A restore that stops anywhere (a damaged stream, a lost connection,
//! a killed process, counts that differ) leaves the database as it found it, so running it
//! again starts over. Only a database without suppressd data is taken.
//!
//! The kinds of keys that are indexes of others on the embedded engines (`P` positions, `T`
//! bounces by source, `Y` suppressions by time, `U` list unsubscribes, `K` delivered addresses
//! per domain) are not written: this engine's columns and indexes are them. They are still
//! checked, by the count of what the restored rows give.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;

use tokio_postgres::Transaction;

use super::snapshot::{scan, Sink};
use super::{connection, sql_error, Inner};
use crate::domain::{AddressRecord, DomainMarks, OutcomeCounts, RecordedEvent, Timestamp};
use crate::store::address_hash::{AddressHash, AddressHasher};
use crate::store::keyring::{self, DataKey};
use crate::store::keys;
use crate::store::kv_store::{
    decode, encode, DomainActivity, HourlyRow, StoredAddress, StoredChange, StoredEntry,
};
use crate::store::records::{
    bounce_type_number, change_kind_number, reason_number, restore_change_personal,
    restore_personal,
};
use crate::store::snapshot::Part;
use crate::store::StoreError;

/// Rows of one table written per statement.
const BATCH_ROWS: usize = 4096;

fn corrupt(key: &[u8], what: &str) -> StoreError {
    StoreError::corrupt(key, what.to_string())
}

/// A key's parts: the tenant (up to the first separator after the kind) and what follows.
fn tenant_and_rest(key: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    let end = key
        .iter()
        .skip(1)
        .position(|&b| b == 0)
        .map(|p| p + 1)
        .ok_or_else(|| corrupt(key, "a key without its tenant"))?;
    let tenant = std::str::from_utf8(&key[1..end])
        .map_err(|_| corrupt(key, "a tenant that is not UTF-8"))?;
    Ok((tenant, &key[end + 1..]))
}

fn text<'a>(key: &[u8], bytes: &'a [u8]) -> Result<&'a str, StoreError> {
    std::str::from_utf8(bytes).map_err(|_| corrupt(key, "a key part that is not UTF-8"))
}

/// `inv(at) inv(seq)` back to (at, seq).
fn instant_parts(key: &[u8], instant: &[u8]) -> Result<(i64, i64), StoreError> {
    let instant: [u8; 16] = instant
        .try_into()
        .map_err(|_| corrupt(key, "a malformed instant"))?;
    Ok(super::snapshot::instant_parts(instant))
}

fn hash(key: &[u8], bytes: &[u8]) -> Result<[u8; 16], StoreError> {
    bytes
        .try_into()
        .map_err(|_| corrupt(key, "an address hash of the wrong length"))
}

fn n16(n: i32) -> i16 {
    i16::try_from(n).unwrap_or(i16::MAX)
}

fn n64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[derive(Default)]
struct AddressRows {
    tenant: Vec<String>,
    hash: Vec<Vec<u8>>,
    address: Vec<String>,
    domain: Vec<String>,
    record: Vec<Vec<u8>>,
    since: Vec<Option<i64>>,
    reason: Vec<Option<i16>>,
    source: Vec<Option<String>>,
    expires: Vec<Option<i64>>,
    listed: Vec<bool>,
    enrich: Vec<bool>,
    forgotten: Vec<bool>,
}

#[derive(Default)]
struct EventRows {
    tenant: Vec<String>,
    id: Vec<String>,
    hash: Vec<Vec<u8>>,
    at: Vec<i64>,
    seq: Vec<i64>,
    source: Vec<String>,
    campaign: Vec<String>,
    bounce_type: Vec<i16>,
    is_bounce: Vec<bool>,
    event: Vec<Vec<u8>>,
}

#[derive(Default)]
struct HistoryRows {
    tenant: Vec<String>,
    hash: Vec<Vec<u8>>,
    at: Vec<i64>,
    seq: Vec<i64>,
    event_id: Vec<Option<String>>,
    entry: Vec<Vec<u8>>,
}

#[derive(Default)]
struct CounterRows {
    tenant: Vec<String>,
    dimension: Vec<i16>,
    value: Vec<String>,
    granularity: Vec<i16>,
    bucket: Vec<i64>,
    counts: [Vec<i64>; 8],
}

#[derive(Default)]
struct ChangeRows {
    tenant: Vec<String>,
    seq: Vec<i64>,
    at: Vec<i64>,
    kind: Vec<i16>,
    hash: Vec<Option<Vec<u8>>>,
    change: Vec<Vec<u8>>,
}

#[derive(Default)]
struct DomainRows {
    tenant: Vec<String>,
    domain: Vec<String>,
    value: Vec<Vec<u8>>,
    since: Vec<Option<i64>>,
}

#[derive(Default)]
struct DomainHistoryRows {
    tenant: Vec<String>,
    domain: Vec<String>,
    at: Vec<i64>,
    seq: Vec<i64>,
    change: Vec<Vec<u8>>,
}

/// The rows read from the stream and not written yet, table by table.
#[derive(Default)]
struct Pending {
    addresses: AddressRows,
    expiries: (Vec<String>, Vec<Vec<u8>>, Vec<i64>),
    events: EventRows,
    history: HistoryRows,
    counters: CounterRows,
    values: (Vec<String>, Vec<i16>, Vec<String>),
    changes: ChangeRows,
    horizons: (Vec<String>, Vec<i64>),
    marks: DomainRows,
    activity: DomainRows,
    domain_history: DomainHistoryRows,
    delivered: (Vec<String>, Vec<String>, Vec<Vec<u8>>, Vec<String>),
}

/// What a restore learns from the stream before its data, and keeps while it reads it.
struct Context {
    keyring: Vec<u8>,
    hasher: Option<AddressHasher>,
    /// The largest history sequence number seen.
    max_seq: i64,
    /// The largest change log sequence number seen.
    max_change: i64,
    /// Entries left out because their data key was destroyed (an erasure that the source's
    /// crash cut short: they read as nothing there either), per kind.
    dropped: BTreeMap<u8, u64>,
}

impl Context {
    fn key(&self, slot: u64) -> Option<DataKey> {
        keyring::key_in(&self.keyring, slot)
    }

    /// A value that may be sealed under a data key: its plain bytes, or `None` if its key was
    /// destroyed.
    fn open(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match keyring::sealed_parts(value) {
            None => Ok(Some(value.to_vec())),
            Some((slot, sealed)) => match self.key(slot) {
                None => Ok(None),
                Some(data_key) => data_key
                    .open(sealed)
                    .map(Some)
                    .ok_or_else(|| corrupt(key, "a sealed value not authentic under its key")),
            },
        }
    }

    fn drop_entry(&mut self, kind: u8) {
        *self.dropped.entry(kind).or_default() += 1;
    }
}

impl Pending {
    /// Turns one entry of the stream into rows.
    fn add(&mut self, cx: &mut Context, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let kind = key[0];
        match kind {
            keys::RECORD => self.address(cx, key, value),
            keys::LOG => self.history(cx, key, value),
            keys::EXPIRY => {
                let (tenant, rest) = tenant_and_rest(key)?;
                if rest.len() != 24 {
                    return Err(corrupt(key, "a malformed expiry key"));
                }
                let at = keys::i64_from_ordered(rest[..8].try_into().expect("8 bytes"));
                self.expiries.0.push(tenant.to_string());
                self.expiries.1.push(rest[8..].to_vec());
                self.expiries.2.push(at);
                Ok(())
            }
            keys::GOOD_ADDRESS => self.delivered(cx, key, value),
            keys::HOURS | keys::DAILY => self.counters(key, value),
            keys::VALUES => {
                let (tenant, rest) = tenant_and_rest(key)?;
                let (&dim, value) = rest
                    .split_first()
                    .ok_or_else(|| corrupt(key, "a malformed dimension value key"))?;
                let value = value
                    .strip_suffix(&[0])
                    .ok_or_else(|| corrupt(key, "a malformed dimension value key"))?;
                self.values.0.push(tenant.to_string());
                self.values.1.push(i16::from(dim));
                self.values.2.push(text(key, value)?.to_string());
                Ok(())
            }
            keys::CHANGES => self.change(cx, key, value),
            keys::HORIZON => {
                let tenant = text(key, &key[1..])?;
                self.horizons.0.push(tenant.to_string());
                self.horizons.1.push(n64(decode::<u64>(key, value)?));
                Ok(())
            }
            keys::DOMAIN => {
                let (tenant, domain) = tenant_and_rest(key)?;
                let marks: DomainMarks = decode(key, value)?;
                self.marks.tenant.push(tenant.to_string());
                self.marks.domain.push(text(key, domain)?.to_string());
                self.marks.value.push(value.to_vec());
                self.marks
                    .since
                    .push(marks.suppression.map(|s| s.since.micros()));
                Ok(())
            }
            keys::DOMAIN_LOG => {
                let (tenant, rest) = tenant_and_rest(key)?;
                let end = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| corrupt(key, "a malformed domain key"))?;
                let domain = text(key, &rest[..end])?.to_string();
                let after = &rest[end + 1..];
                if after.is_empty() {
                    // Checked here: the column is read as this record.
                    decode::<DomainActivity>(key, value)?;
                    self.activity.tenant.push(tenant.to_string());
                    self.activity.domain.push(domain);
                    self.activity.value.push(value.to_vec());
                    self.activity.since.push(None);
                } else {
                    if after.len() != 16 {
                        return Err(corrupt(key, "a malformed domain history key"));
                    }
                    let (at, seq) = instant_parts(key, after)?;
                    cx.max_seq = cx.max_seq.max(seq);
                    decode::<StoredEntry>(key, value)?;
                    let h = &mut self.domain_history;
                    h.tenant.push(tenant.to_string());
                    h.domain.push(domain);
                    h.at.push(at);
                    h.seq.push(seq);
                    h.change.push(value.to_vec());
                }
                Ok(())
            }
            // Indexes of other keys: this engine's columns are them.
            keys::POSITION
            | keys::BOUNCES
            | keys::SUPPRESSED
            | keys::LIST_UNSUBSCRIBED
            | keys::GOOD_DOMAIN => Ok(()),
            other => Err(StoreError::Backup(format!(
                "the backup holds keys of kind {:?}, which the postgres engine does not take \
                 (restore it into sled or redb, open it once there, then migrate)",
                char::from(other)
            ))),
        }
    }

    fn address(&mut self, cx: &mut Context, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (tenant, rest) = tenant_and_rest(key)?;
        let ah = hash(key, rest)?;
        let mut stored: StoredAddress = decode(key, value)?;
        if let Some(slot) = stored.key_slot.take() {
            let sealed = std::mem::take(&mut stored.sealed);
            // A destroyed key leaves the personal fields empty, as the source read them.
            if let Some(data_key) = cx.key(slot) {
                let plain = data_key
                    .open(&sealed)
                    .ok_or_else(|| corrupt(key, "sealed fields not authentic under their key"))?;
                restore_personal(&plain, &mut stored).map_err(|e| StoreError::corrupt(key, e))?;
            }
        }
        let record: AddressRecord = stored.record;
        let domain = match stored.address.rsplit_once('@') {
            Some((_, d)) if !record.forgotten => d.to_string(),
            _ => String::new(),
        };
        let a = &mut self.addresses;
        a.tenant.push(tenant.to_string());
        a.hash.push(ah.to_vec());
        a.address.push(if record.forgotten {
            String::new()
        } else {
            stored.address
        });
        a.domain.push(domain);
        a.record.push(encode(&record)?);
        let s = record.suppression.as_ref();
        a.since.push(s.map(|s| s.since.micros()));
        a.reason.push(s.map(|s| n16(reason_number(s.reason))));
        a.source.push(s.map(|s| s.source.clone()));
        a.expires
            .push(s.and_then(|s| s.expires_at.map(Timestamp::micros)));
        a.listed.push(!record.list_unsubscribes.is_empty());
        a.enrich.push(record.needs_enrichment);
        a.forgotten.push(record.forgotten);
        Ok(())
    }

    fn history(&mut self, cx: &mut Context, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (tenant, rest) = tenant_and_rest(key)?;
        if rest.len() != 32 {
            return Err(corrupt(key, "a malformed history key"));
        }
        let ah = hash(key, &rest[..16])?;
        let (at, seq) = instant_parts(key, &rest[16..])?;
        cx.max_seq = cx.max_seq.max(seq);
        let Some(plain) = cx.open(key, value)? else {
            cx.drop_entry(keys::LOG);
            return Ok(());
        };
        let mut entry: StoredEntry = decode(key, &plain)?;
        let event_id = match entry.event.take() {
            Some(event) => {
                self.event(tenant, &ah, seq, &event)?;
                Some(event.event_id)
            }
            None => None,
        };
        let h = &mut self.history;
        h.tenant.push(tenant.to_string());
        h.hash.push(ah.to_vec());
        h.at.push(at);
        h.seq.push(seq);
        h.event_id.push(event_id);
        h.entry.push(encode(&entry)?);
        Ok(())
    }

    fn event(
        &mut self,
        tenant: &str,
        ah: &[u8; 16],
        seq: i64,
        event: &RecordedEvent,
    ) -> Result<(), StoreError> {
        let e = &mut self.events;
        e.tenant.push(tenant.to_string());
        e.id.push(event.event_id.clone());
        e.hash.push(ah.to_vec());
        e.at.push(event.occurred_at.micros());
        e.seq.push(seq);
        e.source.push(event.source.clone());
        e.campaign.push(event.campaign.clone());
        e.bounce_type
            .push(n16(bounce_type_number(event.classification.bounce_type)));
        e.is_bounce.push(event.is_bounce());
        e.event.push(encode(event)?);
        Ok(())
    }

    fn delivered(&mut self, cx: &mut Context, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (tenant, rest) = tenant_and_rest(key)?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| corrupt(key, "a malformed delivered-address key"))?;
        let domain = text(key, &rest[..end])?;
        let last = &rest[end + 1..];
        let (ah, local) = if value.is_empty() {
            // Before the keyring: the local part in the key.
            let local = text(key, last)?;
            let hasher = cx.hasher.as_ref().ok_or_else(|| {
                StoreError::Backup("the backup carries no address-hash key".into())
            })?;
            let ah = hasher.hash(tenant, &format!("{local}@{domain}"));
            (*ah.bytes(), local.to_string())
        } else {
            let Some(plain) = cx.open(key, value)? else {
                cx.drop_entry(keys::GOOD_ADDRESS);
                return Ok(());
            };
            let local = String::from_utf8(plain)
                .map_err(|_| corrupt(key, "a delivered local part that is not UTF-8"))?;
            (hash(key, last)?, local)
        };
        self.delivered.0.push(tenant.to_string());
        self.delivered.1.push(domain.to_string());
        self.delivered.2.push(ah.to_vec());
        self.delivered.3.push(local);
        Ok(())
    }

    fn counters(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (tenant, rest) = tenant_and_rest(key)?;
        if rest.len() < 10 || rest[rest.len() - 9] != 0 {
            return Err(corrupt(key, "a malformed counter key"));
        }
        let dim = i16::from(rest[0]);
        let value_text = text(key, &rest[1..rest.len() - 9])?;
        let day = keys::i64_from_ordered(rest[rest.len() - 8..].try_into().expect("8 bytes"));
        let mut push = |granularity: i16, bucket: i64, c: &OutcomeCounts| {
            let r = &mut self.counters;
            r.tenant.push(tenant.to_string());
            r.dimension.push(dim);
            r.value.push(value_text.to_string());
            r.granularity.push(granularity);
            r.bucket.push(bucket);
            for (col, n) in r.counts.iter_mut().zip([
                c.sent,
                c.delivered,
                c.hard,
                c.soft,
                c.block,
                c.complaint,
                c.unsubscribe,
                c.to_accept_all,
            ]) {
                col.push(n64(n));
            }
        };
        if key[0] == keys::DAILY {
            push(1, day, &decode::<OutcomeCounts>(key, value)?);
        } else {
            let row: HourlyRow = decode(key, value)?;
            for (hour, c) in row.hours() {
                push(0, day * 24 + i64::from(*hour), c);
            }
        }
        Ok(())
    }

    fn change(&mut self, cx: &mut Context, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (tenant, seq) =
            keys::change_parts(key).ok_or_else(|| corrupt(key, "a malformed change log key"))?;
        let mut stored: StoredChange = decode(key, value)?;
        if let Some(slot) = stored.key_slot.take() {
            let sealed = std::mem::take(&mut stored.sealed);
            // A destroyed key (the address was forgotten) leaves the personal fields empty.
            if let Some(data_key) = cx.key(slot) {
                let plain = data_key
                    .open(&sealed)
                    .ok_or_else(|| corrupt(key, "sealed fields not authentic under their key"))?;
                restore_change_personal(&plain, &mut stored.change)
                    .map_err(|e| StoreError::corrupt(key, e))?;
            }
        }
        cx.max_change = cx.max_change.max(n64(seq));
        let c = &mut self.changes;
        c.tenant.push(tenant.to_string());
        c.seq.push(n64(seq));
        c.at.push(stored.change.at.micros());
        c.kind.push(n16(change_kind_number(stored.change.kind)));
        c.hash
            .push(stored.ah.map(|h: AddressHash| h.bytes().to_vec()));
        c.change.push(encode(&stored)?);
        Ok(())
    }

    /// Writes the tables that hold `at_least` rows or more (all of them with 1).
    async fn flush(&mut self, tx: &Transaction<'_>, at_least: usize) -> Result<(), StoreError> {
        let full = |n: usize| n > 0 && n >= at_least;
        if full(self.addresses.tenant.len()) {
            let a = std::mem::take(&mut self.addresses);
            tx.execute(
                "INSERT INTO addresses (tenant, address_hash, address, domain, record,
                                        suppressed_since, suppression_reason, suppression_source,
                                        suppression_expires, list_unsubscribed, needs_enrichment,
                                        forgotten)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::bytea[],
                                      $6::int8[], $7::int2[], $8::text[], $9::int8[], $10::bool[],
                                      $11::bool[], $12::bool[])",
                &[
                    &a.tenant,
                    &a.hash,
                    &a.address,
                    &a.domain,
                    &a.record,
                    &a.since,
                    &a.reason,
                    &a.source,
                    &a.expires,
                    &a.listed,
                    &a.enrich,
                    &a.forgotten,
                ],
            )
            .await
            .map_err(sql_error("restoring addresses"))?;
        }
        if full(self.expiries.0.len()) {
            let x = std::mem::take(&mut self.expiries);
            tx.execute(
                "INSERT INTO expiries (tenant, address_hash, ends_at)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::int8[])",
                &[&x.0, &x.1, &x.2],
            )
            .await
            .map_err(sql_error("restoring expiries"))?;
        }
        if full(self.events.tenant.len()) {
            let e = std::mem::take(&mut self.events);
            tx.execute(
                "INSERT INTO events (tenant, event_id, address_hash, occurred_at, seq, source,
                                     campaign, bounce_type, is_bounce, event)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int8[], $5::int8[],
                                      $6::text[], $7::text[], $8::int2[], $9::bool[],
                                      $10::bytea[])",
                &[
                    &e.tenant,
                    &e.id,
                    &e.hash,
                    &e.at,
                    &e.seq,
                    &e.source,
                    &e.campaign,
                    &e.bounce_type,
                    &e.is_bounce,
                    &e.event,
                ],
            )
            .await
            .map_err(sql_error("restoring events"))?;
        }
        if full(self.history.tenant.len()) {
            let h = std::mem::take(&mut self.history);
            tx.execute(
                "INSERT INTO history (tenant, address_hash, at, seq, event_id, entry)
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::int8[], $4::int8[], $5::text[],
                                      $6::bytea[])",
                &[&h.tenant, &h.hash, &h.at, &h.seq, &h.event_id, &h.entry],
            )
            .await
            .map_err(sql_error("restoring history"))?;
        }
        if full(self.counters.tenant.len()) {
            let c = std::mem::take(&mut self.counters);
            let n = &c.counts;
            tx.execute(
                "INSERT INTO counters (tenant, dimension, value, granularity, bucket, sent,
                                       delivered, hard, soft, block, complaint, unsubscribe,
                                       to_accept_all)
                 SELECT * FROM unnest($1::text[], $2::int2[], $3::text[], $4::int2[], $5::int8[],
                                      $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[],
                                      $11::int8[], $12::int8[], $13::int8[])",
                &[
                    &c.tenant,
                    &c.dimension,
                    &c.value,
                    &c.granularity,
                    &c.bucket,
                    &n[0],
                    &n[1],
                    &n[2],
                    &n[3],
                    &n[4],
                    &n[5],
                    &n[6],
                    &n[7],
                ],
            )
            .await
            .map_err(sql_error("restoring counters"))?;
        }
        if full(self.values.0.len()) {
            let v = std::mem::take(&mut self.values);
            tx.execute(
                "INSERT INTO dimension_values (tenant, dimension, value)
                 SELECT * FROM unnest($1::text[], $2::int2[], $3::text[])",
                &[&v.0, &v.1, &v.2],
            )
            .await
            .map_err(sql_error("restoring dimension values"))?;
        }
        if full(self.changes.tenant.len()) {
            let c = std::mem::take(&mut self.changes);
            tx.execute(
                "INSERT INTO changes (tenant, seq, at, kind, address_hash, change)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int2[], $5::bytea[],
                                      $6::bytea[])",
                &[&c.tenant, &c.seq, &c.at, &c.kind, &c.hash, &c.change],
            )
            .await
            .map_err(sql_error("restoring the change log"))?;
        }
        if full(self.horizons.0.len()) {
            let h = std::mem::take(&mut self.horizons);
            tx.execute(
                "INSERT INTO change_horizons (tenant, horizon)
                 SELECT * FROM unnest($1::text[], $2::int8[])",
                &[&h.0, &h.1],
            )
            .await
            .map_err(sql_error("restoring change log horizons"))?;
        }
        // Marks come before activity in the stream (`M` < `N`): a domain with both gets its
        // row from the first and its activity from the second.
        if full(self.marks.tenant.len()) {
            let m = std::mem::take(&mut self.marks);
            tx.execute(
                "INSERT INTO domains (tenant, domain, marks, suppressed_since)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int8[])",
                &[&m.tenant, &m.domain, &m.value, &m.since],
            )
            .await
            .map_err(sql_error("restoring domain marks"))?;
        }
        if full(self.activity.tenant.len()) {
            let a = std::mem::take(&mut self.activity);
            tx.execute(
                "INSERT INTO domains (tenant, domain, activity)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
                 ON CONFLICT (tenant, domain) DO UPDATE SET activity = EXCLUDED.activity",
                &[&a.tenant, &a.domain, &a.value],
            )
            .await
            .map_err(sql_error("restoring domain activity"))?;
        }
        if full(self.domain_history.tenant.len()) {
            let h = std::mem::take(&mut self.domain_history);
            tx.execute(
                "INSERT INTO domain_history (tenant, domain, at, seq, change)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::bytea[])",
                &[&h.tenant, &h.domain, &h.at, &h.seq, &h.change],
            )
            .await
            .map_err(sql_error("restoring domain history"))?;
        }
        if full(self.delivered.0.len()) {
            let d = std::mem::take(&mut self.delivered);
            tx.execute(
                "INSERT INTO delivered_addresses (tenant, domain, address_hash, local_part)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[])",
                &[&d.0, &d.1, &d.2, &d.3],
            )
            .await
            .map_err(sql_error("restoring delivered addresses"))?;
        }
        Ok(())
    }
}

/// The tables a restore writes: the database must hold no row in any of them.
const DATA_TABLES: [&str; 11] = [
    "addresses",
    "expiries",
    "events",
    "history",
    "counters",
    "dimension_values",
    "changes",
    "change_horizons",
    "domains",
    "domain_history",
    "delivered_addresses",
];

/// What a restore into postgres did.
pub(super) struct RestoredRows {
    /// Entries per kind of key that the restored rows read back as.
    pub(super) kinds: BTreeMap<u8, u64>,
}

/// Restores the stream whose parts arrive on `parts` (after its header, which the caller
/// checked), in one transaction (see the module's documentation). `seq` is the stream's
/// snapshot sequence number.
pub(super) async fn restore(
    inner: &Inner,
    seq: u64,
    parts: Receiver<Part>,
) -> Result<RestoredRows, StoreError> {
    let mut client = connection(&inner.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(sql_error("starting the restore"))?;
    let mut found = Vec::new();
    for table in DATA_TABLES {
        let any: bool = tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
            .await
            .map_err(sql_error("checking that the database is empty"))?
            .get(0);
        if any {
            found.push(table);
        }
    }
    if !found.is_empty() {
        return Err(StoreError::Backup(format!(
            "the database holds suppressd data already (in {}): restore only into a database \
             without any (a new one, or one whose restore did not finish, which holds none)",
            found.join(", ")
        )));
    }
    let mut cx = Context {
        keyring: Vec::new(),
        hasher: None,
        max_seq: 0,
        max_change: 0,
        dropped: BTreeMap::new(),
    };
    let mut pending = Pending::default();
    let mut meta: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut keyring_checked = false;
    let summary = loop {
        // The stream is read on the caller's thread; this worker waits for it without holding
        // up the connection's task.
        let part = tokio::task::block_in_place(|| parts.recv())
            .map_err(|_| StoreError::Backup("the backup stream stopped before its end".into()))?;
        match part {
            Part::Meta(name, value) => {
                if name == "address_key" {
                    let key: [u8; 16] = value.as_slice().try_into().map_err(|_| {
                        StoreError::Backup("the backup's address-hash key is malformed".into())
                    })?;
                    cx.hasher = Some(AddressHasher::new(&key));
                }
                meta.insert(name, value);
            }
            Part::Keyring(bytes) => cx.keyring.extend_from_slice(&bytes),
            Part::Data(chunk) => {
                if !keyring_checked {
                    check_keyring(&cx.keyring, meta.get("keyring_id"))?;
                    keyring_checked = true;
                }
                for (k, v) in chunk.entries() {
                    pending.add(&mut cx, k, v)?;
                }
                pending.flush(&tx, BATCH_ROWS).await?;
            }
            Part::End(summary) => break summary,
        }
    };
    pending.flush(&tx, 1).await?;
    for name in ["address_key", "token_secret"] {
        let Some(value) = meta.get(name) else {
            return Err(StoreError::Backup(format!("the backup carries no {name}")));
        };
        tx.execute(
            "INSERT INTO suppressd_meta (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&name, value],
        )
        .await
        .map_err(sql_error("restoring the store's keys"))?;
    }
    // Numbers go on above the snapshot's: new history entries sort after the restored ones of
    // the same instant, and change feeds read on from where they were.
    let head = n64(seq).max(cx.max_seq).max(1);
    tx.query_one("SELECT setval('history_seq', $1)", &[&head])
        .await
        .map_err(sql_error("restoring the history's sequence"))?;
    tx.execute(
        "UPDATE change_counter SET last_seq = $1 WHERE id = 1",
        &[&n64(seq).max(cx.max_change)],
    )
    .await
    .map_err(sql_error("restoring the change log's head"))?;

    // The check: the rows read back as the stream's keys, kind by kind.
    let mut sink = Sink::counting();
    scan(&tx, &mut sink).await?;
    let mut expected = summary.kinds.clone();
    for (kind, n) in &cx.dropped {
        if let Some(count) = expected.get_mut(kind) {
            *count = count.saturating_sub(*n);
        }
    }
    expected.retain(|_, n| *n > 0);
    if sink.kinds != expected {
        return Err(StoreError::Backup(format!(
            "the restored database holds other counts than the backup: {} instead of {}; \
             nothing was kept",
            describe(&sink.kinds),
            describe(&expected)
        )));
    }
    tx.commit()
        .await
        .map_err(sql_error("committing the restore"))?;
    if !cx.dropped.is_empty() {
        tracing::warn!(dropped = %describe(&cx.dropped), "entries sealed under destroyed keys left out");
    }
    Ok(RestoredRows { kinds: sink.kinds })
}

/// Counts per kind, as `R=12 L=40`.
pub(super) fn describe(kinds: &BTreeMap<u8, u64>) -> String {
    kinds
        .iter()
        .map(|(k, n)| format!("{}={n}", char::from(*k)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The stream's keyring must be the one its data names.
fn check_keyring(keyring: &[u8], id: Option<&Vec<u8>>) -> Result<(), StoreError> {
    match id {
        None => Ok(()),
        Some(id) if keyring::id_in(keyring).is_some_and(|k| k[..] == id[..]) => Ok(()),
        Some(_) => Err(StoreError::Backup(
            "the backup's keyring is not the one its data was sealed under".into(),
        )),
    }
}
