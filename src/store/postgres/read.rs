//! The store's reads, one query each (or two in one read-only snapshot).

use tokio_postgres::types::ToSql;

use super::{change_head, connection, read_snapshot, sql_error, Inner};
use crate::domain::{
    AddressId, AddressRecord, Dimension, DomainRecord, EmailAddress, HistoryEntry, OutcomeCounts,
    RecordedEvent, StateChange, Tenant, Timestamp,
};
use crate::store::kv_store::{StoredChange, StoredEntry};
use crate::store::records::{bounce_type_number, decode, reason_number, Record};
use crate::store::{
    BounceQuery, ChangePage, Granularity, Page, StoreError, SuppressedAddress, SuppressionQuery,
};

/// A value read from column `what`.
pub(super) fn decoded<T: Record>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    decode(what.as_bytes(), bytes)
}

/// A cursor of (instant, sequence number), with a count of items to skip.
pub(super) fn cursor_parts(cursor: &[u8]) -> Result<(i64, i64, u32), StoreError> {
    // A page token of an embedded engine's store migrated here.
    if let Some(parts) = super::snapshot::embedded_cursor(cursor) {
        return Ok(parts);
    }
    if cursor.len() != 20 {
        return Err(StoreError::BadCursor);
    }
    let at = i64::from_be_bytes(cursor[..8].try_into().map_err(|_| StoreError::BadCursor)?);
    let seq = i64::from_be_bytes(
        cursor[8..16]
            .try_into()
            .map_err(|_| StoreError::BadCursor)?,
    );
    let skip = u32::from_be_bytes(cursor[16..].try_into().map_err(|_| StoreError::BadCursor)?);
    Ok((at, seq, skip))
}

/// The cursor of [`cursor_parts`].
pub(super) fn cursor_of(at: i64, seq: i64, skip: u32) -> Vec<u8> {
    let mut c = Vec::with_capacity(20);
    c.extend_from_slice(&at.to_be_bytes());
    c.extend_from_slice(&seq.to_be_bytes());
    c.extend_from_slice(&skip.to_be_bytes());
    c
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(super) async fn record(
    inner: &Inner,
    tenant: &Tenant,
    address: &str,
) -> Result<Option<AddressRecord>, StoreError> {
    let ah = inner.meta()?.hasher.hash(tenant.as_str(), address);
    let client = connection(&inner.pool).await?;
    let statement = client
        .prepare_cached(RECORD_SQL)
        .await
        .map_err(sql_error("reading an address"))?;
    let row = client
        .query_opt(&statement, &[&tenant.as_str(), &&ah.bytes()[..]])
        .await
        .map_err(sql_error("reading an address"))?;
    record_of(row.as_ref().and_then(|r| r.get::<_, Option<&[u8]>>(0)))
}

/// One address's record, by its keyed hash.
const RECORD_SQL: &str = "SELECT record FROM addresses WHERE tenant = $1 AND address_hash = $2";

/// The record an `addresses.record` column holds (`NULL`: none).
pub(super) fn record_of(bytes: Option<&[u8]>) -> Result<Option<AddressRecord>, StoreError> {
    bytes.map(|b| decoded("addresses.record", b)).transpose()
}

/// The records of those of `addresses` that have one, as (index, record) in index order; with
/// `suppressed_or_listed`, only those suppressed (and, when it is true, those unsubscribed from
/// a list).
pub(super) async fn records(
    inner: &Inner,
    tenant: &Tenant,
    addresses: &[String],
    suppressed_or_listed: Option<bool>,
) -> Result<Vec<(usize, AddressRecord)>, StoreError> {
    if addresses.is_empty() {
        return Ok(Vec::new());
    }
    let hasher = &inner.meta()?.hasher;
    let hashes: Vec<[u8; 16]> = addresses
        .iter()
        .map(|a| *hasher.hash(tenant.as_str(), a).bytes())
        .collect();
    records_of(inner, tenant, &hashes, suppressed_or_listed).await
}

/// [`records`] of addresses given by their keyed hashes.
pub(super) async fn records_of(
    inner: &Inner,
    tenant: &Tenant,
    hashes: &[[u8; 16]],
    suppressed_or_listed: Option<bool>,
) -> Result<Vec<(usize, AddressRecord)>, StoreError> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
    let client = connection(&inner.pool).await?;
    // Prepared once per connection: one round trip per read.
    let rows = match suppressed_or_listed {
        None => {
            let statement = client
                .prepare_cached(
                    "SELECT address_hash, record FROM addresses
                     WHERE tenant = $1 AND address_hash = ANY($2) AND record IS NOT NULL",
                )
                .await
                .map_err(sql_error("reading addresses"))?;
            client.query(&statement, &[&tenant.as_str(), &keys]).await
        }
        Some(lists) => {
            let statement = client
                .prepare_cached(
                    "SELECT address_hash, record FROM addresses
                     WHERE tenant = $1 AND address_hash = ANY($2) AND record IS NOT NULL
                       AND (suppressed_since IS NOT NULL OR ($3 AND list_unsubscribed))",
                )
                .await
                .map_err(sql_error("reading addresses"))?;
            client
                .query(&statement, &[&tenant.as_str(), &keys, &lists])
                .await
        }
    }
    .map_err(sql_error("reading addresses"))?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let hash: Vec<u8> = row.get(0);
        let bytes: Vec<u8> = row.get(1);
        found.insert(hash, decoded::<AddressRecord>("addresses.record", &bytes)?);
    }
    Ok(hashes
        .iter()
        .enumerate()
        .filter_map(|(i, h)| found.get(&h[..]).map(|r| (i, r.clone())))
        .collect())
}

pub(super) async fn event(
    inner: &Inner,
    tenant: &Tenant,
    event_id: &str,
) -> Result<Option<RecordedEvent>, StoreError> {
    let client = connection(&inner.pool).await?;
    let row = client
        .query_opt(
            "SELECT event FROM events WHERE tenant = $1 AND event_id = $2",
            &[&tenant.as_str(), &event_id],
        )
        .await
        .map_err(sql_error("reading an event"))?;
    row.map(|r| decoded("events.event", &r.get::<_, Vec<u8>>(0)))
        .transpose()
}

/// Bounce events, newest first (ties: the later written first), after `cursor`.
pub(super) async fn bounces(
    inner: &Inner,
    tenant: &Tenant,
    query: &BounceQuery,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<Page<RecordedEvent>, StoreError> {
    let mut q = Conditions::new(
        "SELECT event, occurred_at, seq FROM events WHERE tenant = $1 AND is_bounce",
        Box::new(tenant.as_str().to_string()),
    );
    if let Some(source) = &query.source {
        q.add(" AND source = ?", Box::new(source.clone()));
    }
    if !query.types.is_empty() {
        let types: Vec<i16> = query
            .types
            .iter()
            .map(|t| i16::try_from(bounce_type_number(*t)).unwrap_or(0))
            .collect();
        q.add(" AND bounce_type = ANY(?)", Box::new(types));
    }
    if let Some(campaign) = &query.campaign {
        q.add(" AND campaign = ?", Box::new(campaign.clone()));
    }
    if let Some(start) = query.start {
        q.add(" AND occurred_at >= ?", Box::new(start.micros()));
    }
    if let Some(end) = query.end {
        q.add(" AND occurred_at < ?", Box::new(end.micros()));
    }
    if let Some(c) = &cursor {
        let (at, seq, _) = cursor_parts(c)?;
        q.add(" AND (occurred_at < ?", Box::new(at));
        q.add(" OR (occurred_at = ?", Box::new(at));
        q.add(" AND seq < ?))", Box::new(seq));
    }
    q.add(
        " ORDER BY occurred_at DESC, seq DESC LIMIT ?",
        Box::new(limit_param(limit.saturating_add(1))),
    );
    let rows = q.query(&inner.pool, "listing bounces").await?;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut next = None;
    for (i, row) in rows.iter().enumerate() {
        if i == limit {
            break;
        }
        items.push(decoded("events.event", &row.get::<_, Vec<u8>>(0))?);
        if i + 1 == limit && rows.len() > limit {
            next = Some(cursor_of(row.get(1), row.get(2), 0));
        }
    }
    Ok(Page { items, next })
}

/// An address's history, newest first, item by item (an entry holds a send result and the
/// changes it caused).
pub(super) async fn history(
    inner: &Inner,
    tenant: &Tenant,
    address: &str,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<Page<HistoryEntry>, StoreError> {
    let ah = inner.meta()?.hasher.hash(tenant.as_str(), address);
    let (start, skip) = match &cursor {
        Some(c) => {
            let (at, seq, skip) = cursor_parts(c)?;
            (Some((at, seq)), skip as usize)
        }
        None => (None, 0),
    };
    let (at, seq) = start.unwrap_or((i64::MAX, i64::MAX));
    let client = connection(&inner.pool).await?;
    // Every entry holds at least one item: `limit + 1` entries fill the page and tell whether
    // more follow.
    let rows = client
        .query(
            "SELECT h.at, h.seq, h.entry, e.event FROM history h
             LEFT JOIN events e ON e.tenant = h.tenant AND e.event_id = h.event_id
             WHERE h.tenant = $1 AND h.address_hash = $2
               AND (h.at < $3 OR (h.at = $3 AND h.seq <= $4))
             ORDER BY h.at DESC, h.seq DESC LIMIT $5",
            &[
                &tenant.as_str(),
                &&ah.bytes()[..],
                &at,
                &seq,
                &limit_param(limit.saturating_add(1 + skip)),
            ],
        )
        .await
        .map_err(sql_error("reading a history"))?;
    let mut items = Vec::new();
    let mut next = None;
    let mut first = true;
    'entries: for row in rows {
        let (entry_at, entry_seq): (i64, i64) = (row.get(0), row.get(1));
        let mut entry: StoredEntry = decoded("history.entry", &row.get::<_, Vec<u8>>(2))?;
        if let Some(bytes) = row.get::<_, Option<Vec<u8>>>(3) {
            entry.event = Some(decoded("events.event", &bytes)?);
        }
        let skipped = if first { skip } else { 0 };
        first = false;
        for (i, item) in entry.items().enumerate().skip(skipped) {
            if items.len() == limit {
                next = Some(cursor_of(
                    entry_at,
                    entry_seq,
                    u32::try_from(i).unwrap_or(u32::MAX),
                ));
                break 'entries;
            }
            items.push(item);
        }
    }
    Ok(Page { items, next })
}

pub(super) async fn counters(
    inner: &Inner,
    tenant: &Tenant,
    dimension: Dimension,
    value: &str,
    granularity: Granularity,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, OutcomeCounts)>, StoreError> {
    if from >= to {
        return Ok(Vec::new());
    }
    let client = connection(&inner.pool).await?;
    let rows = client
        .query(
            "SELECT bucket, sent, delivered, hard, soft, block, complaint, unsubscribe, to_accept_all
             FROM counters
             WHERE tenant = $1 AND dimension = $2 AND value = $3 AND granularity = $4
               AND bucket >= $5 AND bucket < $6
             ORDER BY bucket",
            &[
                &tenant.as_str(),
                &i16::from(dimension.code()),
                &value,
                &granularity_code(granularity),
                &from,
                &to,
            ],
        )
        .await
        .map_err(sql_error("reading counters"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let n = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
            (
                row.get(0),
                OutcomeCounts {
                    sent: n(1),
                    delivered: n(2),
                    hard: n(3),
                    soft: n(4),
                    block: n(5),
                    complaint: n(6),
                    unsubscribe: n(7),
                    to_accept_all: n(8),
                },
            )
        })
        .filter(|(_, c)| *c != OutcomeCounts::default())
        .collect())
}

/// The stored code of a counter granularity.
pub(super) fn granularity_code(g: Granularity) -> i16 {
    match g {
        Granularity::Hourly => 0,
        Granularity::Daily => 1,
    }
}

pub(super) async fn dimension_values(
    inner: &Inner,
    tenant: &Tenant,
    dimension: Dimension,
) -> Result<Vec<String>, StoreError> {
    let client = connection(&inner.pool).await?;
    let rows = client
        .query(
            "SELECT value FROM dimension_values WHERE tenant = $1 AND dimension = $2",
            &[&tenant.as_str(), &i16::from(dimension.code())],
        )
        .await
        .map_err(sql_error("reading dimension values"))?;
    let mut values: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    // Byte order, as the embedded engines' keys give them (not the database's collation).
    values.sort_unstable();
    Ok(values)
}

pub(super) async fn known_good_domains(
    inner: &Inner,
    tenant: &Tenant,
    limit: usize,
) -> Result<Vec<(String, u64)>, StoreError> {
    let client = connection(&inner.pool).await?;
    let rows = client
        .query(
            "SELECT domain, count(*) AS n FROM delivered_addresses WHERE tenant = $1
             GROUP BY domain ORDER BY n DESC, domain LIMIT $2",
            &[&tenant.as_str(), &limit_param(limit)],
        )
        .await
        .map_err(sql_error("reading delivered domains"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)))
        .collect())
}

pub(super) async fn known_good_locals(
    inner: &Inner,
    tenant: &Tenant,
    domain: &str,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let client = connection(&inner.pool).await?;
    let rows = client
        .query(
            "SELECT local_part FROM delivered_addresses WHERE tenant = $1 AND domain = $2
             ORDER BY address_hash LIMIT $3",
            &[&tenant.as_str(), &domain, &limit_param(limit)],
        )
        .await
        .map_err(sql_error("reading delivered addresses"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The tenant's changes after `after`, as far as they are committed: read with the change
/// log's head in one snapshot (sequence numbers are taken in commit order, see the schema).
pub(super) async fn changes(
    inner: &Inner,
    tenant: &Tenant,
    after: u64,
    limit: usize,
) -> Result<ChangePage, StoreError> {
    let mut client = connection(&inner.pool).await?;
    let tx = read_snapshot(&mut client, "reading the change log").await?;
    let head = change_head(&tx, "reading the change log").await?;
    let from = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            "SELECT seq, change FROM changes WHERE tenant = $1 AND seq > $2 AND seq <= $3
             ORDER BY seq LIMIT $4",
            &[
                &tenant.as_str(),
                &from,
                &head,
                &limit_param(limit.saturating_add(1)),
            ],
        )
        .await
        .map_err(sql_error("reading the change log"))?;
    let horizon: Option<i64> = tx
        .query_opt(
            "SELECT horizon FROM change_horizons WHERE tenant = $1",
            &[&tenant.as_str()],
        )
        .await
        .map_err(sql_error("reading the change log"))?
        .map(|r| r.get(0));
    tx.commit()
        .await
        .map_err(sql_error("reading the change log"))?;
    let horizon = u64::try_from(horizon.unwrap_or(0)).unwrap_or(0);
    if after < horizon {
        return Err(StoreError::ChangesPruned { horizon });
    }
    let head_now = u64::try_from(head).unwrap_or(0);
    if after > head_now {
        return Err(StoreError::PositionAhead { head: head_now });
    }
    let mut page = ChangePage {
        items: Vec::new(),
        read_to: after,
        more: false,
    };
    for row in rows {
        if page.items.len() == limit {
            page.more = true;
            break;
        }
        let seq = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        let mut stored: StoredChange = decoded("changes.change", &row.get::<_, Vec<u8>>(1))?;
        stored.change.seq = seq;
        page.read_to = seq;
        page.items.push(stored.change);
    }
    if !page.more {
        page.read_to = page.read_to.max(u64::try_from(head).unwrap_or(0));
    }
    Ok(page)
}

/// The addresses with something due at `now`, every tenant's, after `cursor`.
pub(super) async fn due_expiries(
    inner: &Inner,
    now: Timestamp,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<Page<(Tenant, EmailAddress)>, StoreError> {
    // The cursor: the last (tenant, ends_at, address hash) returned.
    let (after_tenant, after_at, after_hash) = match &cursor {
        None => (String::new(), i64::MIN, Vec::new()),
        Some(c) if c.len() >= 24 => {
            let at = i64::from_be_bytes(c[..8].try_into().map_err(|_| StoreError::BadCursor)?);
            let hash = c[8..24].to_vec();
            let tenant = String::from_utf8(c[24..].to_vec()).map_err(|_| StoreError::BadCursor)?;
            (tenant, at, hash)
        }
        Some(_) => return Err(StoreError::BadCursor),
    };
    let client = connection(&inner.pool).await?;
    // Tenant by tenant, as the embedded engines' keys order them.
    let rows = client
        .query(
            "SELECT x.ends_at, x.tenant, x.address_hash, a.address FROM expiries x
             JOIN addresses a ON a.tenant = x.tenant AND a.address_hash = x.address_hash
             WHERE x.ends_at <= $1 AND (x.tenant, x.ends_at, x.address_hash) > ($2, $3, $4)
             ORDER BY x.tenant, x.ends_at, x.address_hash LIMIT $5",
            &[
                &now.micros(),
                &after_tenant,
                &after_at,
                &after_hash,
                &limit_param(limit.saturating_add(1)),
            ],
        )
        .await
        .map_err(sql_error("reading due expiries"))?;
    let mut items = Vec::new();
    let mut next = None;
    for (i, row) in rows.iter().enumerate() {
        if i == limit {
            break;
        }
        let tenant: String = row.get(1);
        let address: String = row.get(3);
        let (Ok(t), Ok(a)) = (Tenant::parse(&tenant), EmailAddress::parse(&address)) else {
            return Err(StoreError::corrupt(
                address.as_bytes(),
                "a stored tenant or address that does not parse",
            ));
        };
        if items
            .iter()
            .all(|(pt, pa): &(Tenant, EmailAddress)| pt != &t || pa != &a)
        {
            items.push((t, a));
        }
        if i + 1 == limit && rows.len() > limit {
            let mut c = row.get::<_, i64>(0).to_be_bytes().to_vec();
            c.extend_from_slice(&row.get::<_, Vec<u8>>(2));
            c.extend_from_slice(tenant.as_bytes());
            next = Some(c);
        }
    }
    Ok(Page { items, next })
}

/// A domain's record: its marks and activity.
pub(super) async fn domain(
    inner: &Inner,
    tenant: &Tenant,
    domain: &str,
) -> Result<DomainRecord, StoreError> {
    let client = connection(&inner.pool).await?;
    let row = client
        .query_opt(
            "SELECT activity, marks FROM domains WHERE tenant = $1 AND domain = $2",
            &[&tenant.as_str(), &domain],
        )
        .await
        .map_err(sql_error("reading a domain"))?;
    match row {
        Some(row) => super::domains::record_of(row.get(0), row.get(1)),
        None => Ok(DomainRecord::default()),
    }
}

pub(super) async fn domain_history(
    inner: &Inner,
    tenant: &Tenant,
    domain: &str,
    limit: usize,
) -> Result<Vec<StateChange>, StoreError> {
    let client = connection(&inner.pool).await?;
    let rows = client
        .query(
            "SELECT change FROM domain_history WHERE tenant = $1 AND domain = $2
             ORDER BY at DESC, seq DESC LIMIT $3",
            &[&tenant.as_str(), &domain, &limit_param(limit)],
        )
        .await
        .map_err(sql_error("reading a domain's history"))?;
    rows.iter()
        .map(|r| {
            let entry: StoredEntry = decoded("domain_history.change", &r.get::<_, Vec<u8>>(0))?;
            entry
                .changes
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::corrupt(b"domain_history.change", "an empty entry"))
        })
        .collect()
}

/// Suppressed addresses, newest suppression first (ties in address hash order), after `cursor`
/// (the last one's suppression time and hash).
pub(super) async fn suppressions(
    inner: &Inner,
    tenant: &Tenant,
    query: &SuppressionQuery,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<Page<SuppressedAddress>, StoreError> {
    let mut q = Conditions::new(
        "SELECT address, address_hash, record, suppressed_since FROM addresses
         WHERE tenant = $1 AND suppressed_since IS NOT NULL",
        Box::new(tenant.as_str().to_string()),
    );
    if !query.reasons.is_empty() {
        let reasons: Vec<i16> = query
            .reasons
            .iter()
            .map(|r| i16::try_from(reason_number(*r)).unwrap_or(0))
            .collect();
        q.add(" AND suppression_reason = ANY(?)", Box::new(reasons));
    }
    if let Some(source) = &query.source {
        q.add(" AND suppression_source = ?", Box::new(source.clone()));
    }
    if let Some(start) = query.start {
        q.add(" AND suppressed_since >= ?", Box::new(start.micros()));
    }
    if let Some(end) = query.end {
        q.add(" AND suppressed_since < ?", Box::new(end.micros()));
    }
    if let Some(n) = query.needs_enrichment {
        q.add(" AND needs_enrichment = ?", Box::new(n));
    }
    if let Some(t) = query.in_force_at {
        q.add(
            " AND (suppression_expires IS NULL OR suppression_expires > ?)",
            Box::new(t.micros()),
        );
    }
    if let Some(c) = &cursor {
        let c = &super::snapshot::embedded_suppression_cursor(c).unwrap_or_else(|| c.clone());
        if c.len() != 24 {
            return Err(StoreError::BadCursor);
        }
        let since = i64::from_be_bytes(c[..8].try_into().map_err(|_| StoreError::BadCursor)?);
        let hash = c[8..].to_vec();
        q.add(" AND (suppressed_since < ?", Box::new(since));
        q.add(" OR (suppressed_since = ?", Box::new(since));
        q.add(" AND address_hash > ?))", Box::new(hash));
    }
    q.add(
        " ORDER BY suppressed_since DESC, address_hash LIMIT ?",
        Box::new(limit_param(limit.saturating_add(1))),
    );
    let rows = q.query(&inner.pool, "listing suppressions").await?;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut next = None;
    for (i, row) in rows.iter().enumerate() {
        if i == limit {
            break;
        }
        let hash: Vec<u8> = row.get(1);
        let Ok(id) = <[u8; 16]>::try_from(hash.as_slice()) else {
            return Err(StoreError::corrupt(
                &hash,
                "an address hash of the wrong length",
            ));
        };
        items.push(SuppressedAddress {
            address: row.get(0),
            id: AddressId(id),
            record: decoded("addresses.record", &row.get::<_, Vec<u8>>(2))?,
        });
        if i + 1 == limit && rows.len() > limit {
            let mut c = row.get::<_, i64>(3).to_be_bytes().to_vec();
            c.extend_from_slice(&hash);
            next = Some(c);
        }
    }
    Ok(Page { items, next })
}

/// A query whose conditions are added one at a time: each `?` of a condition becomes the next
/// numbered parameter, bound to the value given with it.
struct Conditions {
    sql: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Conditions {
    /// `sql` with its one parameter, `$1`.
    fn new(sql: &str, first: Box<dyn ToSql + Sync + Send>) -> Self {
        Conditions {
            sql: sql.to_string(),
            params: vec![first],
        }
    }

    /// Appends `condition`, its `?` numbered as the next parameter, bound to `value`.
    fn add(&mut self, condition: &str, value: Box<dyn ToSql + Sync + Send>) {
        self.params.push(value);
        self.sql
            .push_str(&condition.replace('?', &format!("${}", self.params.len())));
    }

    /// Runs the query on a connection of `pool`; `context` names it in errors.
    async fn query(
        &self,
        pool: &deadpool_postgres::Pool,
        context: &str,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = connection(pool).await?;
        let refs: Vec<&(dyn ToSql + Sync)> = self
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        client
            .query(&self.sql, &refs)
            .await
            .map_err(sql_error(context.to_string()))
    }
}
