//! Fault injection, for tests only (including black-box tests outside the crate): stores whose
//! engine fails on purpose, to show how the service behaves when its storage does. Nothing in
//! the service uses it.

use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::kv::{Found, KvEngine, KvRead, KvSnapshot, KvTxn, Visit};
use super::kv_store::KvStore;
use super::{Engine, StoreError, StoreOptions, SuppressionStore};

/// Opens a store like [`super::open`] whose engine panics in its `panic_on_commit`-th write
/// transaction (counting from 1, after the open), inside the writer thread: the writer ends as
/// it would on a bug in the store or the engine. For tests only.
pub fn open_with_commit_panic(
    options: StoreOptions,
    panic_on_commit: usize,
) -> Result<Arc<dyn SuppressionStore>, StoreError> {
    Ok(match options.engine {
        Engine::Sled => Arc::new(KvStore::start(
            PanicOnCommit::new(super::sled_engine(&options)?, panic_on_commit),
            &options.path,
        )?),
        Engine::Redb => Arc::new(KvStore::start(
            PanicOnCommit::new(super::redb_engine(&options)?, panic_on_commit),
            &options.path,
        )?),
    })
}

/// An engine that panics in its n-th write transaction, and is the engine it wraps otherwise.
pub(super) struct PanicOnCommit<E> {
    inner: E,
    commits: AtomicUsize,
    panic_on: usize,
}

impl<E> PanicOnCommit<E> {
    pub(super) fn new(inner: E, panic_on: usize) -> Self {
        PanicOnCommit {
            inner,
            commits: AtomicUsize::new(0),
            panic_on,
        }
    }
}

impl<E: KvEngine> KvEngine for PanicOnCommit<E> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn snapshot(&self) -> Result<Box<dyn KvSnapshot>, StoreError> {
        self.inner.snapshot()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn reader(&self) -> Result<Box<dyn KvRead + '_>, StoreError> {
        self.inner.reader()
    }

    fn get_many(&self, keys: &[Vec<u8>], found: Found<'_>) -> Result<(), StoreError> {
        self.inner.get_many(keys, found)
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        self.inner.scan(start, end, visit)
    }

    fn transact<T>(
        &self,
        work: impl FnOnce(&mut dyn KvTxn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let n = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.panic_on {
            panic!("injected fault: write transaction {n} panics");
        }
        self.inner.transact(work)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        self.inner.last_seq()
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.meta_get(name)
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.meta_put(name, value)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}
