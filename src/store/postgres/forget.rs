//! Erasure (`ForgetAddress`) on PostgreSQL: rows are changed in place, in one transaction with
//! the address's row locked, instead of the embedded engines' crypto-shredding. What the
//! database may still hold afterwards (dead row versions until VACUUM, WAL, base backups) is
//! in docs/postgres.md.
//!
//! The transaction: the address's row is made (if missing) and locked with the rows of the
//! addresses it replaced or was replaced by (in key order, as every writer locks); the
//! decision runs on its record; then the address's events, history entries, expiries and
//! delivered-address entry are deleted, the forgotten record (no text, no domain) is stored
//! with its one history entry, the personal fields (address, domain, SMTP response, note) of
//! the address's earlier change log entries are blanked, a FORGOTTEN change is logged, and
//! every mention of the address is taken out of the records and histories of the addresses it
//! replaced or was replaced by. Only then is the erasure acknowledged, once COMMIT returned.

use deadpool_postgres::Transaction;

use super::read::{decoded, record_of};
use super::write::{number16, publish_head};
use super::{connection, sql_error, Inner};
use crate::domain::{list_change, AddressRecord, ChangeKind, EmailAddress, RecordedEvent};
use crate::store::address_hash::AddressHasher;
use crate::store::kv_store::{StoredChange, StoredEntry};
use crate::store::records::{change_kind_number, encode, reason_number, take_change_personal};
use crate::store::writer::{decided, named_replacement, scrub};
use crate::store::{Decision, ForgetWrite, StoreError, WriteOutcome};

/// Erases an address's personal data (see [`ForgetWrite`]); resolves once committed.
pub(super) async fn commit_forget(
    inner: &Inner,
    write: &ForgetWrite,
) -> Result<WriteOutcome, StoreError> {
    let hasher = &inner.meta()?.hasher;
    let t = write.tenant.as_str();
    let address = &write.address;
    let ah = *hasher.hash(t, address.as_str()).bytes();
    let mut client = connection(&inner.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(sql_error("starting an erasure"))?;
    // The rows of the addresses it is linked to are locked with its own, in key order (the
    // order of every other writer's locks), so that a replacement or a group of writes of
    // both cannot deadlock with the erasure. The links are read first without a lock, then
    // again under it.
    tx.execute(
        "INSERT INTO addresses (tenant, address_hash, address, domain)
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, address_hash) DO NOTHING",
        &[&t, &&ah[..], &address.as_str(), &address.domain()],
    )
    .await
    .map_err(sql_error("making an address row"))?;
    let row = tx
        .query_opt(
            "SELECT record FROM addresses WHERE tenant = $1 AND address_hash = $2",
            &[&t, &&ah[..]],
        )
        .await
        .map_err(sql_error("reading an address"))?;
    let unlocked = record_of(row.as_ref().and_then(|r| r.get(0)))?;
    let mut hashes: Vec<[u8; 16]> = vec![ah];
    for other in links(&tx, t, &ah, unlocked.as_ref()).await? {
        hashes.push(*hasher.hash(t, &other).bytes());
    }
    hashes.sort_unstable();
    hashes.dedup();
    let keys: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
    tx.query(
        "SELECT address_hash FROM addresses WHERE tenant = $1 AND address_hash = ANY($2)
         ORDER BY address_hash FOR UPDATE",
        &[&t, &keys],
    )
    .await
    .map_err(sql_error("locking address rows"))?;
    let previous = lock_record(&tx, t, &ah).await?;
    if previous.as_ref().is_some_and(|r| r.forgotten) {
        // Nothing to do; the transaction made and changed nothing.
        return Ok(WriteOutcome::Unchanged { record: previous });
    }
    let (record, changes) = match decided(|| (write.decide)(previous.as_ref()))? {
        Decision::Apply { record, changes } if record.forgotten => (record, changes),
        // Dropping the transaction rolls back the row made only to lock it.
        Decision::Apply { .. } => {
            return Ok(WriteOutcome::Refused {
                record: previous,
                reason: "a forget must leave a forgotten record".to_string(),
            })
        }
        Decision::Unchanged => return Ok(WriteOutcome::Unchanged { record: previous }),
        Decision::Refuse(reason) => {
            return Ok(WriteOutcome::Refused {
                record: previous,
                reason,
            })
        }
    };

    // Under the lock: the addresses whose data may name this one.
    let linked = links(&tx, t, &ah, previous.as_ref()).await?;
    let key: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&t, &&ah[..]];
    tx.execute(
        "DELETE FROM events WHERE tenant = $1 AND address_hash = $2",
        &key,
    )
    .await
    .map_err(sql_error("erasing events"))?;
    tx.execute(
        "DELETE FROM history WHERE tenant = $1 AND address_hash = $2",
        &key,
    )
    .await
    .map_err(sql_error("erasing a history"))?;
    tx.execute(
        "DELETE FROM expiries WHERE tenant = $1 AND address_hash = $2",
        &key,
    )
    .await
    .map_err(sql_error("erasing expiries"))?;
    tx.execute(
        "DELETE FROM delivered_addresses WHERE tenant = $1 AND domain = $3 AND address_hash = $2",
        &[&t, &&ah[..], &address.domain()],
    )
    .await
    .map_err(sql_error("erasing a delivered address"))?;

    // The forgotten record: no text, no domain; its suppression still found by the hash.
    let suppression = record.suppression.as_ref();
    tx.execute(
        "UPDATE addresses SET address = '', domain = '', record = $3, suppressed_since = $4,
             suppression_reason = $5, suppression_source = $6, suppression_expires = $7,
             list_unsubscribed = $8, needs_enrichment = $9, forgotten = TRUE
         WHERE tenant = $1 AND address_hash = $2",
        &[
            &t,
            &&ah[..],
            &encode(&record)?,
            &suppression.map(|s| s.since.micros()),
            &suppression.map(|s| number16(reason_number(s.reason))),
            &suppression.map(|s| s.source.as_str()),
            &suppression.and_then(|s| s.expires_at.map(|e| e.micros())),
            &!record.list_unsubscribes.is_empty(),
            &record.needs_enrichment,
        ],
    )
    .await
    .map_err(sql_error("storing a forgotten record"))?;
    for c in &changes {
        let entry = encode(&StoredEntry {
            event: None,
            changes: vec![c.clone()],
        })?;
        tx.execute(
            "INSERT INTO history (tenant, address_hash, at, entry) VALUES ($1, $2, $3, $4)",
            &[&t, &&ah[..], &c.at.micros(), &entry],
        )
        .await
        .map_err(sql_error("storing the erasure's history"))?;
    }

    // The address's earlier changes keep their kind, time and id; their personal fields go.
    let logged = tx
        .query(
            "SELECT seq, change FROM changes WHERE tenant = $1 AND address_hash = $2",
            &key,
        )
        .await
        .map_err(sql_error("reading the change log to erase"))?;
    let mut seqs = Vec::with_capacity(logged.len());
    let mut blanked = Vec::with_capacity(logged.len());
    for row in logged {
        let mut stored: StoredChange = decoded("changes.change", &row.get::<_, Vec<u8>>(1))?;
        take_change_personal(&mut stored.change);
        seqs.push(row.get::<_, i64>(0));
        blanked.push(encode(&stored)?);
    }
    if !seqs.is_empty() {
        tx.execute(
            "UPDATE changes SET change = u.c
             FROM unnest($2::int8[], $3::bytea[]) AS u (s, c)
             WHERE changes.tenant = $1 AND changes.seq = u.s",
            &[&t, &seqs, &blanked],
        )
        .await
        .map_err(sql_error("erasing the change log's personal fields"))?;
    }
    // One change for followers of the feed: erase the address, keep blocking its id. It names
    // no one (its note is the justification, which may not name the address).
    let change = list_change(
        ChangeKind::Forgotten,
        record.suppression.clone(),
        changes.last(),
        record
            .suppression
            .as_ref()
            .map_or(crate::domain::Timestamp(0), |s| s.since),
    );
    let at = change.at.micros();
    let kind = number16(change_kind_number(change.kind));
    let stored = encode(&StoredChange::plain(
        Some(hasher.hash(t, address.as_str())),
        change,
    ))?;
    for other in linked {
        if let Ok(other) = EmailAddress::parse(&other) {
            if other != *address {
                unlink(&tx, hasher, t, &other, address.as_str()).await?;
            }
        }
    }

    // Numbered last and held until COMMIT, as the writer's groups do: commit order.
    let last: i64 = tx
        .query_one(
            "UPDATE change_counter SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq",
            &[],
        )
        .await
        .map_err(sql_error("numbering changes"))?
        .get(0);

    tx.execute(
        "INSERT INTO changes (tenant, seq, at, kind, address_hash, change)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&t, &last, &at, &kind, &&ah[..], &stored],
    )
    .await
    .map_err(sql_error("storing changes"))?;
    tx.commit()
        .await
        .map_err(sql_error("committing an erasure"))?;
    publish_head(inner, u64::try_from(last).ok());
    Ok(WriteOutcome::Applied {
        previous,
        record,
        changes,
    })
}

/// The addresses whose data may name the address of hash `ah`: the replacement links of its
/// record, and those its history recorded.
async fn links(
    tx: &Transaction<'_>,
    t: &str,
    ah: &[u8; 16],
    record: Option<&AddressRecord>,
) -> Result<Vec<String>, StoreError> {
    let mut linked: Vec<String> = Vec::new();
    if let Some(r) = record {
        linked.extend(r.replaced_by.clone());
        linked.extend(r.pending_validation.as_ref().map(|p| p.replaces.clone()));
    }
    for row in tx
        .query(
            "SELECT entry FROM history WHERE tenant = $1 AND address_hash = $2",
            &[&t, &&ah[..]],
        )
        .await
        .map_err(sql_error("reading the history to erase"))?
    {
        let entry: StoredEntry = decoded("history.entry", &row.get::<_, Vec<u8>>(0))?;
        linked.extend(entry.changes.iter().filter_map(named_replacement));
    }
    linked.sort();
    linked.dedup();
    Ok(linked)
}

/// Locks an address's row and reads its record.
async fn lock_record(
    tx: &Transaction<'_>,
    t: &str,
    ah: &[u8; 16],
) -> Result<Option<AddressRecord>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT record FROM addresses WHERE tenant = $1 AND address_hash = $2 FOR UPDATE",
            &[&t, &&ah[..]],
        )
        .await
        .map_err(sql_error("locking an address row"))?;
    record_of(row.as_ref().and_then(|r| r.get(0)))
}

/// Takes every mention of forgotten address `gone` out of `other`'s record (its replacement
/// links), history (notes, SMTP responses of its send results) and change log entries (notes,
/// SMTP responses). Does nothing if `other` does not name `gone`. `other`'s row was locked
/// with the forgotten one's in key order, unless a link appeared between the read of the
/// links and the lock (then it is locked here; a deadlock that may follow PostgreSQL breaks by
/// failing one of the two transactions).
async fn unlink(
    tx: &Transaction<'_>,
    hasher: &AddressHasher,
    t: &str,
    other: &EmailAddress,
    gone: &str,
) -> Result<(), StoreError> {
    let ah = *hasher.hash(t, other.as_str()).bytes();
    let Some(mut record) = lock_record(tx, t, &ah).await? else {
        return Ok(());
    };
    if record.forgotten {
        return Ok(());
    }
    let mut named = false;
    if record.replaced_by.as_deref() == Some(gone) {
        record.replaced_by = None;
        named = true;
    }
    if record
        .pending_validation
        .as_ref()
        .is_some_and(|p| p.replaces == gone)
    {
        record.pending_validation = None;
        named = true;
    }
    if named {
        tx.execute(
            "UPDATE addresses SET record = $3 WHERE tenant = $1 AND address_hash = $2",
            &[&t, &&ah[..], &encode(&record)?],
        )
        .await
        .map_err(sql_error("unlinking a forgotten address"))?;
    }
    let rows = tx
        .query(
            "SELECT h.at, h.seq, h.entry, e.event FROM history h
             LEFT JOIN events e ON e.tenant = h.tenant AND e.event_id = h.event_id
             WHERE h.tenant = $1 AND h.address_hash = $2",
            &[&t, &&ah[..]],
        )
        .await
        .map_err(sql_error("reading a linked history"))?;
    for row in rows {
        let mut entry: StoredEntry = decoded("history.entry", &row.get::<_, Vec<u8>>(2))?;
        entry.event = row
            .get::<_, Option<Vec<u8>>>(3)
            .map(|b| decoded::<RecordedEvent>("events.event", &b))
            .transpose()?;
        if !scrub(&mut entry, gone) {
            continue;
        }
        if let Some(event) = entry.event.take() {
            tx.execute(
                "UPDATE events SET event = $3 WHERE tenant = $1 AND event_id = $2",
                &[&t, &event.event_id, &encode(&event)?],
            )
            .await
            .map_err(sql_error("unlinking a forgotten address"))?;
        }
        tx.execute(
            "UPDATE history SET entry = $5
             WHERE tenant = $1 AND address_hash = $2 AND at = $3 AND seq = $4",
            &[
                &t,
                &&ah[..],
                &row.get::<_, i64>(0),
                &row.get::<_, i64>(1),
                &encode(&entry)?,
            ],
        )
        .await
        .map_err(sql_error("unlinking a forgotten address"))?;
    }
    let logged = tx
        .query(
            "SELECT seq, change FROM changes WHERE tenant = $1 AND address_hash = $2",
            &[&t, &&ah[..]],
        )
        .await
        .map_err(sql_error("reading a linked change log"))?;
    for row in logged {
        let mut stored: StoredChange = decoded("changes.change", &row.get::<_, Vec<u8>>(1))?;
        let mut changed = false;
        for text in std::iter::once(&mut stored.change.note).chain(
            stored
                .change
                .suppression
                .as_mut()
                .map(|s| &mut s.smtp_response),
        ) {
            if text.contains(gone) {
                *text = text.replace(gone, crate::store::writer::FORGOTTEN_ADDRESS);
                changed = true;
            }
        }
        if changed {
            tx.execute(
                "UPDATE changes SET change = $3 WHERE tenant = $1 AND seq = $2",
                &[&t, &row.get::<_, i64>(0), &encode(&stored)?],
            )
            .await
            .map_err(sql_error("unlinking a forgotten address"))?;
        }
    }
    Ok(())
}
