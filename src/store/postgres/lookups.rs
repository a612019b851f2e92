//! Status lookups gathered into rounds: concurrent `GetSuppressionStatus` calls share one
//! statement of the database instead of one each.
//!
//! A lookup is queued; when no round is running, its caller starts one on the engine's
//! runtime, which reads every lookup queued so far (up to [`MAX_ROUND`]) in one statement per
//! tenant ([`ROUND_SQL`]), answers them, and goes on with the lookups queued meanwhile until
//! none is left. When the engine is idle a lookup is a round of its own, so a single caller
//! waits no longer than for a query of its own; under load, the lookups that arrive during a
//! round share the next, and the database answers one `= ANY` statement for them instead of
//! one statement each. One round at a time: a second would take lookups from the first's next
//! round and make both smaller (bench/README.md, "Status lookups in rounds").
//!
//! Exact as a lookup of its own: a round starts after every lookup in it was queued, so its
//! statement's snapshot is later than each call, and every write acknowledged before a call
//! was sent (committed before it) is in the answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;

use super::{connection, domains, read, shared_error, sql_error, Inner};
use crate::domain::Tenant;
use crate::store::{DomainFacts, StatusInputs, StoreError};

/// The most lookups one round reads.
const MAX_ROUND: usize = 1_024;

/// One queued lookup.
struct Lookup {
    tenant: Tenant,
    hash: [u8; 16],
    domain: String,
    reply: oneshot::Sender<Result<StatusInputs, StoreError>>,
}

/// The lookups waiting for a round, and whether one runs.
#[derive(Default)]
struct Waiting {
    running: bool,
    lookups: Vec<Lookup>,
}

/// The queue of lookups of one store.
pub(super) struct Lookups {
    waiting: Mutex<Waiting>,
    handle: tokio::runtime::Handle,
}

impl Lookups {
    /// Lookups whose rounds run on the runtime of `handle` (the engine's).
    pub(super) fn new(handle: tokio::runtime::Handle) -> Lookups {
        Lookups {
            waiting: Mutex::default(),
            handle,
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status inputs of the address with keyed hash `hash` (domain `domain`), read in the
    /// next round.
    pub(super) async fn lookup(
        self: Arc<Self>,
        inner: Arc<Inner>,
        tenant: Tenant,
        hash: [u8; 16],
        domain: String,
    ) -> Result<StatusInputs, StoreError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut waiting = self.waiting();
            waiting.lookups.push(Lookup {
                tenant,
                hash,
                domain,
                reply,
            });
            !std::mem::replace(&mut waiting.running, true)
        };
        if start {
            let running = Running(self.clone(), false);
            self.handle.spawn(rounds(running, inner));
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Rounds marked as running. Should the task that runs them end without finishing (a panic, or
/// a runtime shut down before it ran), the lookups still queued are dropped, so that their
/// callers get [`StoreError::Closed`] instead of waiting for ever, and the next lookup starts
/// rounds again.
struct Running(Arc<Lookups>, bool);

impl Drop for Running {
    fn drop(&mut self) {
        if !self.1 {
            let mut waiting = self.0.waiting();
            waiting.running = false;
            waiting.lookups.clear();
        }
    }
}

/// Runs rounds until no lookup waits.
async fn rounds(mut running: Running, inner: Arc<Inner>) {
    loop {
        let round: Vec<Lookup> = {
            let mut waiting = running.0.waiting();
            if waiting.lookups.is_empty() {
                waiting.running = false;
                drop(waiting);
                running.1 = true;
                return;
            }
            let n = waiting.lookups.len().min(MAX_ROUND);
            waiting.lookups.drain(..n).collect()
        };
        metrics::histogram!("suppressd_status_round_lookups").record(round.len() as f64);
        run(&inner, round).await;
    }
}

/// Reads a round's lookups, a statement per tenant, and answers each. The statements of
/// several tenants run at once, each on a pooled connection of its own, so that a round of many
/// tenants takes about as long as one statement.
async fn run(inner: &Arc<Inner>, round: Vec<Lookup>) {
    let mut by_tenant: HashMap<Tenant, Vec<Lookup>> = HashMap::new();
    for lookup in round {
        by_tenant
            .entry(lookup.tenant.clone())
            .or_default()
            .push(lookup);
    }
    if by_tenant.len() == 1 {
        for (tenant, lookups) in by_tenant {
            answer(inner, &tenant, lookups).await;
        }
        return;
    }
    let mut reads = tokio::task::JoinSet::new();
    for (tenant, lookups) in by_tenant {
        let inner = inner.clone();
        reads.spawn(async move { answer(&inner, &tenant, lookups).await });
    }
    while reads.join_next().await.is_some() {}
}

/// Reads the lookups of one tenant in one statement and answers each.
async fn answer(inner: &Inner, tenant: &Tenant, lookups: Vec<Lookup>) {
    let keys: Vec<([u8; 16], &str)> = lookups
        .iter()
        .map(|l| (l.hash, l.domain.as_str()))
        .collect();
    match read_round(inner, tenant, &keys).await {
        Ok(answers) => {
            for (lookup, answer) in lookups.into_iter().zip(answers) {
                let _ = lookup.reply.send(Ok(answer));
            }
        }
        Err(e) => {
            let unavailable = matches!(e, StoreError::Unavailable { .. });
            let text = super::super::ErrorChain(&e).to_string();
            for lookup in lookups {
                let _ = lookup.reply.send(Err(shared_error(
                    "reading addresses' status",
                    unavailable,
                    &text,
                )));
            }
        }
    }
}

/// The records of a round's addresses (rows of kind 0: the hash, and the record or `NULL`) and
/// the marked ones among their domains and the domains' parents (rows of kind 1: the domain
/// and its marks), in one statement.
const ROUND_SQL: &str = "SELECT 0::int2, address_hash, NULL::text, record FROM addresses
     WHERE tenant = $1 AND address_hash = ANY($2)
     UNION ALL
     SELECT 1::int2, NULL::bytea, domain, marks FROM domains
     WHERE tenant = $1 AND domain = ANY($3) AND marks IS NOT NULL";

/// [`ROUND_SQL`] for a round of one lookup. PostgreSQL plans `= ANY($2)` again at each
/// execution (its generic plan, for an array of unknown length, looks dearer than a plan for
/// the array given), which costs a lone lookup more than reading the row; a point read by the
/// key keeps its generic plan.
const ONE_SQL: &str = "SELECT 0::int2, address_hash, NULL::text, record FROM addresses
     WHERE tenant = $1 AND address_hash = $2
     UNION ALL
     SELECT 1::int2, NULL::bytea, domain, marks FROM domains
     WHERE tenant = $1 AND domain = ANY($3) AND marks IS NOT NULL";

/// The status inputs of many addresses of `tenant`, given as (keyed hash, domain), in order:
/// a statement per [`MAX_ROUND`] of them.
pub(super) async fn read_many(
    inner: &Inner,
    tenant: &Tenant,
    keys: &[([u8; 16], String)],
) -> Result<Vec<StatusInputs>, StoreError> {
    let mut inputs = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_ROUND) {
        let chunk: Vec<([u8; 16], &str)> = chunk.iter().map(|(h, d)| (*h, d.as_str())).collect();
        inputs.extend(read_round(inner, tenant, &chunk).await?);
    }
    Ok(inputs)
}

/// The status inputs of each of `keys` (keyed hash, domain; all of `tenant`), in order.
async fn read_round(
    inner: &Inner,
    tenant: &Tenant,
    keys: &[([u8; 16], &str)],
) -> Result<Vec<StatusInputs>, StoreError> {
    let hashes: Vec<&[u8]> = keys.iter().map(|(h, _)| &h[..]).collect();
    let mut names: Vec<&str> = keys.iter().map(|(_, d)| *d).collect();
    names.sort_unstable();
    names.dedup();
    let wanted = domains::wanted(&names);
    let client = connection(&inner.pool).await?;
    let statement = client
        .prepare_cached(if hashes.len() == 1 {
            ONE_SQL
        } else {
            ROUND_SQL
        })
        .await
        .map_err(sql_error("reading addresses' status"))?;
    let tenant_name = tenant.as_str();
    let params: [&(dyn ToSql + Sync); 3] = match &hashes[..] {
        [one] => [&tenant_name, one, &wanted],
        _ => [&tenant_name, &hashes, &wanted],
    };
    let rows = client
        .query(&statement, &params)
        .await
        .map_err(sql_error("reading addresses' status"))?;
    drop(client);
    let (records, marks): (Vec<_>, Vec<_>) =
        rows.into_iter().partition(|r| r.get::<_, i16>(0) == 0);
    let mut found: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::with_capacity(records.len());
    for row in records {
        found.insert(row.get(1), row.get(3));
    }
    let mut facts: Vec<Option<DomainFacts>> = vec![None; names.len()];
    for (at, f) in domains::facts_of(tenant, marks, 2, &names)? {
        if let Some(slot) = facts.get_mut(at) {
            *slot = Some(f);
        }
    }
    keys.iter()
        .map(|(hash, domain)| {
            let record = read::record_of(found.get(&hash[..]).and_then(|b| b.as_deref()))?;
            let facts = names
                .binary_search(domain)
                .ok()
                .and_then(|at| facts[at].clone());
            Ok((record, facts))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A round that can never run (its runtime is gone) fails the lookups waiting for it
    // instead of leaving them waiting for ever.
    #[tokio::test]
    async fn a_lookup_whose_round_cannot_run_fails_as_closed() {
        let store = super::super::open("postgres://nobody@127.0.0.1:1/none").unwrap();
        let dead = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = dead.handle().clone();
        dead.shutdown_background();
        let lookups = Arc::new(Lookups::new(handle));
        let tenant = Tenant::parse("acme").unwrap();
        for _ in 0..2 {
            let answer = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                lookups.clone().lookup(
                    store.inner.clone(),
                    tenant.clone(),
                    [7; 16],
                    "example.com".into(),
                ),
            )
            .await
            .expect("answered, not left waiting");
            assert!(matches!(answer, Err(StoreError::Closed)), "{answer:?}");
        }
    }
}
