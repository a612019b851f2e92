//! Status lookups gathered into rounds: concurrent `GetSuppressionStatus` calls share one
//! statement of the database instead of one each.
//!
//! A lookup is queued; a gatherer task takes every lookup queued so far (up to
//! [`MAX_ROUND`]) into a round as soon as one of [`ROUNDS_IN_FLIGHT`] slots is free, and the
//! round reads the records and domain marks of all its addresses in one statement per tenant
//! ([`ROUND_SQL`]). When the engine is idle a lookup starts its round at once, alone, so a
//! single caller waits no longer than before; under load, lookups that arrive while the slots
//! are busy share the next round, and the database answers one `= ANY` statement for them
//! instead of one statement each.
//!
//! Exact as a lookup of its own: a round starts after every lookup in it was queued, so its
//! statement's snapshot is later than each call, and every write acknowledged before a call
//! was sent (committed before it) is in the answer.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{connection, domains, read, sql_error, Inner};
use crate::domain::{AddressRecord, Tenant};
use crate::store::{DomainFacts, StoreError};

/// The most lookups one round reads.
const MAX_ROUND: usize = 1_024;
/// Rounds that may run at once (each on a pooled connection of its own).
const ROUNDS_IN_FLIGHT: usize = 4;
/// Lookups that may wait for a round before callers wait to queue theirs.
const QUEUE: usize = 8_192;

/// What a status lookup reads: the address's record and what its domain's marks say.
pub(super) type StatusInputs = (Option<AddressRecord>, Option<DomainFacts>);

/// One queued lookup.
pub(super) struct Lookup {
    tenant: Tenant,
    hash: [u8; 16],
    domain: String,
    reply: oneshot::Sender<Result<StatusInputs, StoreError>>,
}

/// The queue of lookups waiting for a round.
pub(super) struct Lookups {
    queue: mpsc::Sender<Lookup>,
}

impl Lookups {
    /// The queue, and the gatherer that runs its rounds (to spawn on the engine's runtime).
    pub(super) fn start(
        inner: std::sync::Weak<Inner>,
    ) -> (
        Lookups,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (queue, waiting) = mpsc::channel(QUEUE);
        (Lookups { queue }, gather(inner, waiting))
    }

    /// The status inputs of the address with keyed hash `hash` (domain `domain`), read in the
    /// next round.
    pub(super) async fn lookup(
        &self,
        tenant: Tenant,
        hash: [u8; 16],
        domain: String,
    ) -> Result<StatusInputs, StoreError> {
        let (reply, answer) = oneshot::channel();
        let lookup = Lookup {
            tenant,
            hash,
            domain,
            reply,
        };
        self.queue
            .send(lookup)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Takes queued lookups into rounds, each as soon as a slot is free, until the store is gone.
async fn gather(inner: std::sync::Weak<Inner>, mut waiting: mpsc::Receiver<Lookup>) {
    let slots = Arc::new(Semaphore::new(ROUNDS_IN_FLIGHT));
    loop {
        // The slot first: lookups that arrive while every slot is busy gather in the queue.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut round = Vec::new();
        if waiting.recv_many(&mut round, MAX_ROUND).await == 0 {
            return;
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            run(&inner, round).await;
            drop(slot);
        });
    }
}

/// Reads a round's lookups, a statement per tenant, and answers each.
async fn run(inner: &Inner, round: Vec<Lookup>) {
    let mut by_tenant: HashMap<Tenant, Vec<Lookup>> = HashMap::new();
    for lookup in round {
        by_tenant
            .entry(lookup.tenant.clone())
            .or_default()
            .push(lookup);
    }
    for (tenant, lookups) in by_tenant {
        match read_round(inner, &tenant, &lookups).await {
            Ok(answers) => {
                for (lookup, answer) in lookups.into_iter().zip(answers) {
                    let _ = lookup.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                let unavailable = matches!(e, StoreError::Unavailable { .. });
                let text = super::super::ErrorChain(&e).to_string();
                for lookup in lookups {
                    let _ = lookup.reply.send(Err(shared_error(unavailable, &text)));
                }
            }
        }
    }
}

/// The error each lookup of a failed round gets (the error of the round, as text).
fn shared_error(unavailable: bool, text: &str) -> StoreError {
    let context = "reading addresses' status".to_string();
    if unavailable {
        StoreError::Unavailable {
            context,
            source: text.to_string().into(),
        }
    } else {
        StoreError::engine(context, text.to_string())
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

/// The status inputs of each of `lookups` (all of `tenant`), in order.
async fn read_round(
    inner: &Inner,
    tenant: &Tenant,
    lookups: &[Lookup],
) -> Result<Vec<StatusInputs>, StoreError> {
    let hashes: Vec<&[u8]> = lookups.iter().map(|l| &l.hash[..]).collect();
    let mut names: Vec<&str> = lookups.iter().map(|l| l.domain.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let wanted = domains::wanted(&names);
    let client = connection(&inner.pool).await?;
    let statement = client
        .prepare_cached(ROUND_SQL)
        .await
        .map_err(sql_error("reading addresses' status"))?;
    let rows = client
        .query(&statement, &[&tenant.as_str(), &hashes, &wanted])
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
        facts[at] = Some(f);
    }
    lookups
        .iter()
        .map(|l| {
            let record = match found.get(&l.hash[..]) {
                Some(Some(bytes)) => {
                    Some(read::decoded::<AddressRecord>("addresses.record", bytes)?)
                }
                _ => None,
            };
            let facts = names
                .binary_search(&l.domain.as_str())
                .ok()
                .and_then(|at| facts[at].clone());
            Ok((record, facts))
        })
        .collect()
}
