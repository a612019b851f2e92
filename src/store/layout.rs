//! Schema 3 -> 4: the key layout of `keys` (addresses by keyed hash, each event once in its
//! address's history, one bounce index).
//!
//! It goes kind of key by kind of key, each old key converted on its own and removed in the
//! same atomic unit as the keys made from it, in transactions of at most `batch` old keys:
//!
//! 1. `A tenant 0 address` records become `R tenant 0 ah` records (with the address inside),
//!    with their `Y` suppressed-index entry when suppressed;
//! 2. `H` history entries become `L` entries at the same instant: a send result takes its
//!    event out of its `E` key (removed with it) and leaves a `P` position under its id;
//! 3. `E` events without a history entry (there should be none) get an entry of their own;
//! 4. `S` bounce entries become `T` entries at their event's history instant (read from `P`);
//! 5. the `B` and `X` indexes, which the new keys replace, are removed.
//!
//! A stop anywhere leaves every old key either not yet converted (still there, with what its
//! conversion reads) or converted and gone, so the next open carries on where it stopped; the
//! schema version is written only at the end. Nothing else reads the data meanwhile.

use std::ops::Bound;

use super::address_hash::AddressHasher;
use super::keys;
use super::kv::KvEngine;
use super::kv_store::{
    decode, encode, tenant_prefix_len, Position, StoredAddress, StoredEntry, StoredHistory,
};
use super::StoreError;
use crate::domain::{AddressRecord, RecordedEvent};

/// What one old key becomes: keys to put, keys to remove.
#[derive(Default)]
struct Conversion {
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    removes: Vec<Vec<u8>>,
}

/// Migrates every old key; returns how many it converted.
pub(super) fn migrate<E: KvEngine>(
    engine: &E,
    hasher: &AddressHasher,
    batch: usize,
) -> Result<usize, StoreError> {
    let mut moved = 0;
    moved += convert_kind(engine, keys::OLD_ADDRESS, batch, |k, v, _| {
        address(hasher, k, v)
    })?;
    moved += convert_kind(engine, keys::OLD_HISTORY, batch, |k, v, seq| {
        history(engine, hasher, k, v, seq)
    })?;
    moved += convert_kind(engine, keys::OLD_EVENT, batch, |k, v, seq| {
        lone_event(hasher, k, v, seq)
    })?;
    moved += convert_kind(engine, keys::OLD_BY_SOURCE, batch, |k, v, _| {
        bounce(engine, k, v)
    })?;
    for kind in [keys::OLD_BOUNCES, keys::OLD_SUPPRESSED] {
        moved += convert_kind(engine, kind, batch, |k, _, _| {
            Ok(Conversion {
                puts: Vec::new(),
                removes: vec![k.to_vec()],
            })
        })?;
    }
    Ok(moved)
}

/// Converts the keys of one kind, `batch` at a time: reads a batch (the conversions read other
/// keys through the engine's committed state), then writes it in one transaction.
fn convert_kind<E: KvEngine>(
    engine: &E,
    kind: u8,
    batch: usize,
    mut convert: impl FnMut(&[u8], &[u8], &mut dyn FnMut() -> u64) -> Result<Conversion, StoreError>,
) -> Result<usize, StoreError> {
    let prefix = [kind];
    let mut converted = 0;
    // Sequence numbers for new entries: above every one handed out before.
    let mut next_seq = engine.last_seq()?;
    // Each batch goes on after the last key of the one before: the converted keys are removed,
    // but an engine behind the journal still passes over their removals until a checkpoint.
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut conversions = Vec::new();
        let start = match &after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Included(prefix.to_vec()),
        };
        engine.scan(
            start.as_ref().map(Vec::as_slice),
            Bound::Unbounded,
            &mut |k, v| {
                if !k.starts_with(&prefix) {
                    return Ok(false);
                }
                let mut seq = || {
                    next_seq += 1;
                    next_seq
                };
                conversions.push(convert(k, v, &mut seq)?);
                after = Some(k.to_vec());
                Ok(conversions.len() < batch)
            },
        )?;
        if conversions.is_empty() {
            return Ok(converted);
        }
        converted += conversions.len();
        engine.transact(|txn| {
            for c in conversions {
                for (k, v) in c.puts {
                    txn.put(k, v)?;
                }
                for k in c.removes {
                    txn.remove(k)?;
                }
                if txn.wants_cut() {
                    txn.cut();
                }
            }
            // Keeps the engine's own sequence above the numbers given out here.
            while txn.next_seq()? < next_seq {}
            Ok(())
        })?;
    }
}

/// The tenant and the rest of an old key `kind tenant 0 rest`.
fn tenant_and_rest(k: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    let at = tenant_prefix_len(k).ok_or_else(|| StoreError::corrupt(k, "malformed key"))?;
    let tenant = std::str::from_utf8(&k[1..at - 1])
        .map_err(|_| StoreError::corrupt(k, "malformed tenant in key"))?;
    Ok((tenant, &k[at..]))
}

fn text(k: &[u8], bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::corrupt(k, "malformed address"))
}

/// `A tenant 0 address` -> `R tenant 0 ah` (+ `Y` when suppressed).
fn address(hasher: &AddressHasher, k: &[u8], v: &[u8]) -> Result<Conversion, StoreError> {
    let (tenant, rest) = tenant_and_rest(k)?;
    let address = text(k, rest)?;
    let record: AddressRecord = decode(k, v)?;
    let ah = hasher.hash(tenant, &address);
    let mut puts = Vec::new();
    if let Some(s) = &record.suppression {
        puts.push((keys::suppressed(tenant, s.since, &ah), Vec::new()));
    }
    puts.push((
        keys::record(tenant, &ah),
        encode(&StoredAddress::plain(address, record))?,
    ));
    Ok(Conversion {
        puts,
        removes: vec![k.to_vec()],
    })
}

/// `H tenant 0 address 0 instant` -> `R tenant 0 ah instant`, taking a send result's event
/// out of its `E` key and leaving its `P` position.
fn history<E: KvEngine>(
    engine: &E,
    hasher: &AddressHasher,
    k: &[u8],
    v: &[u8],
    _seq: &mut dyn FnMut() -> u64,
) -> Result<Conversion, StoreError> {
    let (tenant, rest) = tenant_and_rest(k)?;
    let instant = keys::instant_of(k)
        .filter(|_| rest.len() > 17)
        .ok_or_else(|| StoreError::corrupt(k, "malformed history key"))?;
    let address = text(k, &rest[..rest.len() - 17])?;
    let ah = hasher.hash(tenant, &address);
    let entry_key = keys::at_instant(&keys::history(tenant, &ah), &instant);
    let mut removes = vec![k.to_vec()];
    let mut puts = Vec::new();
    let entry = match decode::<StoredHistory>(k, v)? {
        StoredHistory::Change(c) => StoredEntry {
            event: None,
            changes: vec![c],
        },
        StoredHistory::Event(id) => {
            let event_key = keys::exact(keys::OLD_EVENT, &[tenant], &id);
            let Some(bytes) = engine.get(&event_key)? else {
                // A history entry whose event is gone says nothing: drop it.
                tracing::warn!(tenant, event_id = %id, "history entry without its event dropped");
                return Ok(Conversion { puts, removes });
            };
            let event: RecordedEvent = decode(&event_key, &bytes)?;
            puts.push((
                keys::position(tenant, &id),
                Position { ah, instant }.to_bytes(),
            ));
            removes.push(event_key);
            StoredEntry {
                event: Some(event),
                changes: Vec::new(),
            }
        }
    };
    puts.push((entry_key, encode(&entry)?));
    Ok(Conversion { puts, removes })
}

/// An `E` event that no history entry named: an entry of its own at its time.
fn lone_event(
    hasher: &AddressHasher,
    k: &[u8],
    v: &[u8],
    seq: &mut dyn FnMut() -> u64,
) -> Result<Conversion, StoreError> {
    let (tenant, _) = tenant_and_rest(k)?;
    let event: RecordedEvent = decode(k, v)?;
    let ah = hasher.hash(tenant, &event.address);
    let entry_key = keys::timed(&keys::history(tenant, &ah), event.occurred_at, seq());
    let instant = keys::instant_of(&entry_key).unwrap_or_default();
    let position = (
        keys::position(tenant, &event.event_id),
        Position { ah, instant }.to_bytes(),
    );
    let entry = StoredEntry {
        event: Some(event),
        changes: Vec::new(),
    };
    Ok(Conversion {
        puts: vec![position, (entry_key, encode(&entry)?)],
        removes: vec![k.to_vec()],
    })
}

/// `S tenant 0 source 0 instant -> event id` -> `T tenant 0 source 0 instant' -> ah`, at the
/// instant of the event's history entry.
fn bounce<E: KvEngine>(engine: &E, k: &[u8], v: &[u8]) -> Result<Conversion, StoreError> {
    let (tenant, rest) = tenant_and_rest(k)?;
    let source = rest
        .len()
        .checked_sub(17)
        .map(|end| &rest[..end])
        .ok_or_else(|| StoreError::corrupt(k, "malformed bounce index key"))?;
    let source = std::str::from_utf8(source)
        .map_err(|_| StoreError::corrupt(k, "malformed source in key"))?;
    let id = std::str::from_utf8(v).map_err(|_| StoreError::corrupt(k, "malformed event id"))?;
    let position_key = keys::position(tenant, id);
    let mut puts = Vec::new();
    match engine.get(&position_key)? {
        Some(p) => {
            let p = Position::from_bytes(&position_key, &p)?;
            let prefix = keys::prefix(keys::BOUNCES, &[tenant, source]);
            puts.push((keys::at_instant(&prefix, &p.instant), p.ah.bytes().to_vec()));
        }
        None => tracing::warn!(
            tenant,
            event_id = id,
            "bounce index entry without its event dropped"
        ),
    }
    Ok(Conversion {
        puts,
        removes: vec![k.to_vec()],
    })
}
