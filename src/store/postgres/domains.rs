//! Domain marks (suppressed, accept-all) on PostgreSQL: kept in the `domains` rows (`marks`,
//! and `suppressed_since` for the listing), set by operators' domain writes (a transaction of
//! their own, the domain's row locked) and by the domain rules in the writer's groups.
//!
//! Every replica reads the marks from the database at each call rather than from a copy in
//! memory: a mark acknowledged by one replica then applies to every call that reaches any
//! replica afterwards. One indexed query per call (a partial index holds only the marked
//! domains).

use std::collections::BTreeSet;

use super::read::decoded;
use super::write::{number16, publish_head};
use super::{connection, sql_error, Inner};
use crate::domain::{
    list_change, self_and_parents, ChangeKind, DomainMarks, DomainRecord, DomainSuppression,
    ListChange, StateChange, StateChangeKind, Suppression, Tenant,
};
use crate::store::domain_index::DomainIndex;
use crate::store::kv_store::{DomainActivity, StoredChange, StoredEntry};
use crate::store::records::{change_kind_number, encode};
use crate::store::writer::decided;
use crate::store::{DomainDecision, DomainFacts, DomainOutcome, DomainWrite, Page, StoreError};

/// Whether any domain of `tenant` is marked.
pub(super) async fn has_marked(inner: &Inner, tenant: &Tenant) -> Result<bool, StoreError> {
    let client = connection(&inner.pool).await?;
    let statement = client
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM domains WHERE tenant = $1 AND marks IS NOT NULL)",
        )
        .await
        .map_err(sql_error("reading domain marks"))?;
    let row = client
        .query_one(&statement, &[&tenant.as_str()])
        .await
        .map_err(sql_error("reading domain marks"))?;
    Ok(row.get(0))
}

/// The marked rows among a set of domains (from [`wanted`]).
const MARKS_SQL: &str = "SELECT domain, marks FROM domains
     WHERE tenant = $1 AND domain = ANY($2) AND marks IS NOT NULL";

/// `domains` with all their parents, once each: the rows [`MARKS_SQL`] asks for.
pub(super) fn wanted<'d>(domains: &[&'d str]) -> Vec<&'d str> {
    let wanted: BTreeSet<&str> = domains.iter().flat_map(|d| self_and_parents(d)).collect();
    wanted.into_iter().collect()
}

/// What the marked `rows` of [`MARKS_SQL`] say about each of `domains` (the rows' domain and
/// marks from column `at` on).
pub(super) fn facts_of(
    tenant: &Tenant,
    rows: Vec<tokio_postgres::Row>,
    at: usize,
    domains: &[&str],
) -> Result<Vec<(usize, DomainFacts)>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // The embedded engines' index answers from the rows read: one rule for both.
    let index = DomainIndex::default();
    for row in rows {
        let domain: String = row.get(at);
        let marks: DomainMarks = decoded("domains.marks", &row.get::<_, Vec<u8>>(at + 1))?;
        index.set(tenant.as_str(), &domain, marks);
    }
    Ok(index.facts(tenant.as_str(), domains))
}

/// What the marks say about each of `domains`: their own marks and those of their parents (a
/// suppression that covers subdomains), read in one query.
pub(super) async fn facts(
    inner: &Inner,
    tenant: &Tenant,
    domains: &[String],
) -> Result<Vec<(usize, DomainFacts)>, StoreError> {
    let domains: Vec<&str> = domains.iter().map(String::as_str).collect();
    let wanted = wanted(&domains);
    let client = connection(&inner.pool).await?;
    let statement = client
        .prepare_cached(MARKS_SQL)
        .await
        .map_err(sql_error("reading domain marks"))?;
    let rows = client
        .query(&statement, &[&tenant.as_str(), &wanted])
        .await
        .map_err(sql_error("reading domain marks"))?;
    facts_of(tenant, rows, 0, &domains)
}

/// Suppressed domains with their records, newest suppression first (ties in name order),
/// after `cursor` (the last one's suppression time, as the embedded engines order it, and
/// name).
pub(super) async fn suppressed(
    inner: &Inner,
    tenant: &Tenant,
    cursor: Option<Vec<u8>>,
    limit: usize,
) -> Result<Page<(String, DomainRecord)>, StoreError> {
    let after = match &cursor {
        None => None,
        Some(c) => {
            let (since, domain) = c.split_at_checked(8).ok_or(StoreError::BadCursor)?;
            let since = <[u8; 8]>::try_from(since).map_err(|_| StoreError::BadCursor)?;
            let domain = std::str::from_utf8(domain).map_err(|_| StoreError::BadCursor)?;
            Some((
                crate::store::keys::i64_from_ordered(since),
                domain.to_string(),
            ))
        }
    };
    let (since, name) = after.unwrap_or((i64::MAX, String::new()));
    let first = cursor.is_none();
    let client = connection(&inner.pool).await?;
    let rows = client
        .query(
            "SELECT domain, marks, activity, suppressed_since FROM domains
             WHERE tenant = $1 AND marks IS NOT NULL AND suppressed_since IS NOT NULL
               AND ($2 OR suppressed_since < $3 OR (suppressed_since = $3 AND domain > $4))
             ORDER BY suppressed_since DESC, domain LIMIT $5",
            &[
                &tenant.as_str(),
                &first,
                &since,
                &name,
                &i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX),
            ],
        )
        .await
        .map_err(sql_error("listing suppressed domains"))?;
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    for row in rows.iter().take(limit) {
        let domain: String = row.get(0);
        let marks: DomainMarks = decoded("domains.marks", &row.get::<_, Vec<u8>>(1))?;
        let activity = match row.get::<_, Option<Vec<u8>>>(2) {
            Some(bytes) => decoded::<DomainActivity>("domains.activity", &bytes)?,
            None => DomainActivity::default(),
        };
        items.push((domain, activity.with_marks(marks)));
    }
    let next = match items.last() {
        Some((domain, record)) if more => {
            let since = record.suppression.as_ref().map_or(0, |s| s.since.micros());
            let mut c = crate::store::keys::ordered_i64(since).to_vec();
            c.extend_from_slice(domain.as_bytes());
            Some(c)
        }
        _ => None,
    };
    Ok(Page { items, next })
}

/// The `marks` and `suppressed_since` columns of a domain's record.
pub(super) fn mark_columns(
    record: &DomainRecord,
) -> Result<(Option<Vec<u8>>, Option<i64>), StoreError> {
    let marks = record.marks();
    let since = marks.suppression.as_ref().map(|s| s.since.micros());
    Ok((
        (!marks.is_empty()).then(|| encode(&marks)).transpose()?,
        since,
    ))
}

/// The change log's entries for a change of a domain's own suppression, set (`after` is
/// `Some`: suppressed, or its suppression replaced) or lifted, by an operator or by the
/// domain rules: DOMAIN_SUPPRESSED / DOMAIN_LIFTED, as the embedded engines log them.
pub(super) fn suppression_changes(
    tenant: &str,
    domain: &str,
    previous: &DomainRecord,
    record: &DomainRecord,
    changes: &[StateChange],
) -> Vec<ListChange> {
    if previous.suppression == record.suppression {
        return Vec::new();
    }
    let (before, after) = (previous.suppression.as_ref(), record.suppression.as_ref());
    let (what, automatic, kind, suppression): (_, _, _, &DomainSuppression) = match (before, after)
    {
        (_, Some(s)) => ("suppressed", s.automatic, ChangeKind::DomainSuppressed, s),
        (Some(s), None) => ("lifted", s.automatic, ChangeKind::DomainLifted, s),
        (None, None) => return Vec::new(),
    };
    let mut out = Vec::new();
    for change in changes.iter().filter(|c| {
        matches!(
            c.kind,
            StateChangeKind::DomainSuppressed | StateChangeKind::DomainReactivated
        )
    }) {
        let mut logged = list_change(
            kind,
            Some(Suppression::of_domain(suppression.clone())),
            Some(change),
            change.at,
        );
        logged.domain = domain.to_string();
        metrics::counter!(
            "suppressd_domain_suppression_changes_total",
            "change" => what,
            "automatic" => if automatic { "true" } else { "false" }
        )
        .increment(1);
        tracing::info!(
            tenant,
            domain,
            change = what,
            automatic,
            actor = change.actor.as_str(),
            "domain suppression changed"
        );
        out.push(logged);
    }
    out
}

/// A domain's history entry as stored.
pub(super) fn history_entry(change: &StateChange) -> Result<Vec<u8>, StoreError> {
    encode(&StoredEntry {
        event: None,
        changes: vec![change.clone()],
    })
}

/// An operator's domain write, in a transaction of its own with the domain's row locked (the
/// writer's groups lock it too when a send result changes the domain).
pub(super) async fn commit_domain(
    inner: &Inner,
    write: &DomainWrite,
) -> Result<DomainOutcome, StoreError> {
    let t = write.tenant.as_str();
    let domain = write.domain.as_str();
    let mut client = connection(&inner.pool).await?;
    let tx = client
        .transaction()
        .await
        .map_err(sql_error("starting a domain write"))?;
    tx.execute(
        "INSERT INTO domains (tenant, domain) VALUES ($1, $2)
         ON CONFLICT (tenant, domain) DO NOTHING",
        &[&t, &domain],
    )
    .await
    .map_err(sql_error("making a domain row"))?;
    let row = tx
        .query_one(
            "SELECT activity, marks FROM domains WHERE tenant = $1 AND domain = $2 FOR UPDATE",
            &[&t, &domain],
        )
        .await
        .map_err(sql_error("locking a domain row"))?;
    let previous = record_of(row.get(0), row.get(1))?;
    let (record, changes) = match decided(|| (write.decide)(&previous))? {
        DomainDecision::Refuse(reason) => {
            return Ok(DomainOutcome {
                record: previous.clone(),
                previous,
                applied: false,
                refused: Some(reason),
            })
        }
        DomainDecision::Unchanged => {
            return Ok(DomainOutcome {
                record: previous.clone(),
                previous,
                applied: false,
                refused: None,
            })
        }
        DomainDecision::Apply { record, changes } => (record, changes),
    };
    let (marks, since) = mark_columns(&record)?;
    tx.execute(
        "UPDATE domains SET activity = $3, marks = $4, suppressed_since = $5
         WHERE tenant = $1 AND domain = $2",
        &[
            &t,
            &domain,
            &encode(&DomainActivity::of(&record))?,
            &marks,
            &since,
        ],
    )
    .await
    .map_err(sql_error("storing a domain"))?;
    for c in &changes {
        tx.execute(
            "INSERT INTO domain_history (tenant, domain, at, change) VALUES ($1, $2, $3, $4)",
            &[&t, &domain, &c.at.micros(), &history_entry(c)?],
        )
        .await
        .map_err(sql_error("storing a domain's history"))?;
    }
    let logged = suppression_changes(t, domain, &previous, &record, &changes);
    let mut last = None;
    if !logged.is_empty() {
        let n = i64::try_from(logged.len()).unwrap_or(i64::MAX);
        let top: i64 = tx
            .query_one(
                "UPDATE change_counter SET last_seq = last_seq + $1 WHERE id = 1
                 RETURNING last_seq",
                &[&n],
            )
            .await
            .map_err(sql_error("numbering changes"))?
            .get(0);
        for (seq, change) in (top - n + 1..).zip(logged) {
            let at = change.at.micros();
            let kind = number16(change_kind_number(change.kind));
            tx.execute(
                "INSERT INTO changes (tenant, seq, at, kind, address_hash, change)
                 VALUES ($1, $2, $3, $4, NULL, $5)",
                &[
                    &t,
                    &seq,
                    &at,
                    &kind,
                    &encode(&StoredChange::plain(None, change))?,
                ],
            )
            .await
            .map_err(sql_error("storing changes"))?;
        }
        last = u64::try_from(top).ok();
    }
    tx.commit()
        .await
        .map_err(sql_error("committing a domain write"))?;
    publish_head(inner, last);
    Ok(DomainOutcome {
        previous,
        record,
        applied: true,
        refused: None,
    })
}

/// A domain's record from its row's `activity` and `marks`.
pub(super) fn record_of(
    activity: Option<Vec<u8>>,
    marks: Option<Vec<u8>>,
) -> Result<DomainRecord, StoreError> {
    let activity = match activity {
        Some(bytes) => decoded::<DomainActivity>("domains.activity", &bytes)?,
        None => DomainActivity::default(),
    };
    let marks = match marks {
        Some(bytes) => decoded::<DomainMarks>("domains.marks", &bytes)?,
        None => DomainMarks::default(),
    };
    Ok(activity.with_marks(marks))
}
