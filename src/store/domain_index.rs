//! The in-memory index of domain marks: every suppressed or accept-all domain of every tenant,
//! loaded from the `M` records at open and changed by the writer only once a commit is
//! durable. Status lookups and import screens ask it about each address's domain; while no
//! tenant has a marked domain they get their answer from one atomic load, and a tenant without
//! marks costs them one hash lookup of the tenant.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use foldhash::HashMap;

use super::DomainFacts;
use crate::domain::{self_and_parents, DomainMarks, DomainSuppression, Timestamp};

/// The marked domains of one tenant.
#[derive(Debug, Default)]
struct TenantDomains {
    /// Every domain with a mark, and its marks.
    marks: HashMap<String, DomainMarks>,
    /// The suppressed domains, newest suppression first.
    by_since: BTreeSet<(Reverse<i64>, String)>,
    /// How many suppressions cover subdomains: lookups walk up to the parent domains only when
    /// some do.
    with_subdomains: usize,
}

impl TenantDomains {
    /// What the marks say about addresses at `domain`: the suppression that applies (the
    /// domain's own, else the nearest parent's that covers subdomains) and its accept-all mark.
    fn facts(&self, domain: &str) -> Option<DomainFacts> {
        let own = self.marks.get_key_value(domain);
        let own_suppression = own.and_then(|(d, m)| Some((d.as_str(), m.suppression.as_ref()?)));
        let suppressed = own_suppression.or_else(|| self.parent_suppression(domain));
        let accept_all = own.and_then(|(_, m)| m.accept_all.as_ref());
        if suppressed.is_none() && accept_all.is_none() {
            return None;
        }
        Some(DomainFacts {
            suppressed: suppressed.map(|(d, s)| (d.to_string(), s.clone())),
            accept_all: accept_all.cloned(),
        })
    }

    /// The suppression of the nearest parent of `domain` that covers its subdomains.
    fn parent_suppression(&self, domain: &str) -> Option<(&str, &DomainSuppression)> {
        if self.with_subdomains == 0 {
            return None;
        }
        self_and_parents(domain).skip(1).find_map(|parent| {
            let (d, m) = self.marks.get_key_value(parent)?;
            m.suppression
                .as_ref()
                .filter(|s| s.include_subdomains)
                .map(|s| (d.as_str(), s))
        })
    }

    fn forget(&mut self, domain: &str) {
        if let Some(old) = self.marks.remove(domain) {
            if let Some(s) = old.suppression {
                self.by_since
                    .remove(&(Reverse(s.since.micros()), domain.to_string()));
                if s.include_subdomains {
                    self.with_subdomains -= 1;
                }
            }
        }
    }

    fn insert(&mut self, domain: &str, marks: DomainMarks) {
        if let Some(s) = &marks.suppression {
            self.by_since
                .insert((Reverse(s.since.micros()), domain.to_string()));
            if s.include_subdomains {
                self.with_subdomains += 1;
            }
        }
        self.marks.insert(domain.to_string(), marks);
    }
}

/// Every marked domain of every tenant.
#[derive(Debug, Default)]
pub(super) struct DomainIndex {
    tenants: RwLock<HashMap<String, TenantDomains>>,
    /// How many tenants have a marked domain.
    populated: AtomicUsize,
}

impl DomainIndex {
    /// True while no tenant has a marked domain.
    pub(super) fn is_empty(&self) -> bool {
        self.populated.load(Ordering::Acquire) == 0
    }

    /// Whether `tenant` has a marked domain.
    pub(super) fn has_tenant(&self, tenant: &str) -> bool {
        self.with_tenant(tenant, |_| true)
    }

    /// Sets a domain's marks (empty marks remove it).
    pub(super) fn set(&self, tenant: &str, domain: &str, marks: DomainMarks) {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        let had = tenants.get(tenant).is_some_and(|t| !t.marks.is_empty());
        let entry = tenants.entry(tenant.to_string()).or_default();
        entry.forget(domain);
        if !marks.is_empty() {
            entry.insert(domain, marks);
        }
        let has = !entry.marks.is_empty();
        if !has {
            tenants.remove(tenant);
        }
        match (had, has) {
            (false, true) => {
                self.populated.fetch_add(1, Ordering::Release);
            }
            (true, false) => {
                self.populated.fetch_sub(1, Ordering::Release);
            }
            _ => {}
        }
    }

    /// A domain's marks (empty when it has none).
    pub(super) fn get(&self, tenant: &str, domain: &str) -> DomainMarks {
        if self.is_empty() {
            return DomainMarks::default();
        }
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        tenants
            .get(tenant)
            .and_then(|t| t.marks.get(domain))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `domain` itself has a suppression that a delivery lifts.
    pub(super) fn automatic(&self, tenant: &str, domain: &str) -> bool {
        self.with_tenant(tenant, |t| {
            t.marks
                .get(domain)
                .and_then(|m| m.suppression.as_ref())
                .is_some_and(|s| s.automatic)
        })
    }

    /// Whether `domain` is marked accept-all.
    pub(super) fn accept_all(&self, tenant: &str, domain: &str) -> bool {
        self.with_tenant(tenant, |t| {
            t.marks.get(domain).is_some_and(|m| m.accept_all.is_some())
        })
    }

    /// What the marks say about addresses at each of `domains`: (index, facts) for those with
    /// something to say, in index order. Nothing is allocated for a tenant without marks.
    pub(super) fn facts(&self, tenant: &str, domains: &[&str]) -> Vec<(usize, DomainFacts)> {
        if self.is_empty() {
            return Vec::new();
        }
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let Some(t) = tenants.get(tenant) else {
            return Vec::new();
        };
        domains
            .iter()
            .enumerate()
            .filter_map(|(i, d)| t.facts(d).map(|f| (i, f)))
            .collect()
    }

    /// Up to `limit` suppressed domains of `tenant`, newest suppression first, after
    /// (`since`, `domain`) when given; and whether more follow.
    pub(super) fn suppressed_page(
        &self,
        tenant: &str,
        after: Option<(Timestamp, &str)>,
        limit: usize,
    ) -> (Vec<(String, DomainMarks)>, bool) {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let Some(t) = tenants.get(tenant) else {
            return (Vec::new(), false);
        };
        let mut entries: Box<dyn Iterator<Item = &(Reverse<i64>, String)>> = match after {
            None => Box::new(t.by_since.iter()),
            Some((since, domain)) => {
                let from = (Reverse(since.micros()), domain.to_string());
                Box::new(
                    t.by_since
                        .range((std::ops::Bound::Excluded(from), std::ops::Bound::Unbounded)),
                )
            }
        };
        let mut page = Vec::new();
        for (_, domain) in entries.by_ref().take(limit) {
            if let Some(m) = t.marks.get(domain) {
                page.push((domain.clone(), m.clone()));
            }
        }
        let more = entries.next().is_some();
        (page, more)
    }

    fn with_tenant(&self, tenant: &str, f: impl FnOnce(&TenantDomains) -> bool) -> bool {
        if self.is_empty() {
            return false;
        }
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        tenants.get(tenant).is_some_and(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AcceptAll, AcceptAllOrigin, BounceReason};

    fn suppressed(since: i64, include_subdomains: bool) -> DomainMarks {
        DomainMarks {
            suppression: Some(DomainSuppression {
                reason: BounceReason::Manual,
                since: Timestamp(since),
                include_subdomains,
                automatic: false,
                note: String::new(),
                actor: "ops".into(),
                event_id: String::new(),
            }),
            accept_all: None,
        }
    }

    #[test]
    fn a_parent_covers_its_subdomains_only_when_it_says_so_and_the_own_suppression_wins() {
        let index = DomainIndex::default();
        assert!(index.is_empty());
        index.set("acme", "defunct.example", suppressed(1, false));
        index.set("acme", "closed.example", suppressed(2, true));
        index.set("acme", "eu.closed.example", suppressed(3, false));
        assert!(!index.is_empty());
        let facts = index.facts(
            "acme",
            &[
                "defunct.example",
                "mail.defunct.example",
                "mail.eu.closed.example",
                "x.closed.example",
                "fine.example",
            ],
        );
        let found: Vec<(usize, &str)> = facts
            .iter()
            .map(|(i, f)| (*i, f.suppressed.as_ref().unwrap().0.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (0, "defunct.example"),
                (2, "closed.example"),
                (3, "closed.example")
            ]
        );
        assert_eq!(
            index.facts("acme", &["eu.closed.example"])[0]
                .1
                .suppressed
                .as_ref()
                .unwrap()
                .0,
            "eu.closed.example"
        );
        assert!(index.facts("globex", &["defunct.example"]).is_empty());
    }

    #[test]
    fn marks_come_and_go_and_the_listing_is_newest_first() {
        let index = DomainIndex::default();
        for (i, d) in ["a.example", "b.example", "c.example"]
            .into_iter()
            .enumerate()
        {
            index.set("acme", d, suppressed(i as i64, false));
        }
        let (page, more) = index.suppressed_page("acme", None, 2);
        let names: Vec<&str> = page.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(names, ["c.example", "b.example"]);
        assert!(more);
        let (page, more) = index.suppressed_page("acme", Some((Timestamp(1), "b.example")), 2);
        assert_eq!(page[0].0, "a.example");
        assert!(!more);

        index.set(
            "acme",
            "b.example",
            DomainMarks {
                suppression: None,
                accept_all: Some(AcceptAll {
                    origin: AcceptAllOrigin::Set,
                    note: String::new(),
                    since: Timestamp(0),
                    actor: "ops".into(),
                }),
            },
        );
        assert!(index.accept_all("acme", "b.example"));
        assert_eq!(index.suppressed_page("acme", None, 10).0.len(), 2);
        for d in ["a.example", "b.example", "c.example"] {
            index.set("acme", d, DomainMarks::default());
        }
        assert!(index.is_empty());
        assert!(!index.accept_all("acme", "b.example"));
    }
}
