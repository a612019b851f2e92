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
        Engine::Postgres => return Err(super::postgres::unsupported("open_with_commit_panic")),
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

/// The environment variable that names the PostgreSQL cluster of the tests (a libpq URL of a
/// role that may create databases), as `.ci/postgres.sh` prints it.
pub const TEST_DATABASE_URL: &str = "SUPPRESSD_TEST_DATABASE_URL";

/// A URL of a database for one test, in the cluster that [`TEST_DATABASE_URL`] names: one
/// database per `key` (the test's data directory, say), made empty on first use and kept for
/// later opens with the same key. Panics when the variable is not set: a test of the postgres
/// engine without a database must fail, not pass. For tests only.
pub fn postgres_test_database(key: &str) -> String {
    let base = std::env::var(TEST_DATABASE_URL).unwrap_or_else(|_| {
        panic!(
            "{TEST_DATABASE_URL} is not set: start a cluster with `eval \"$(.ci/postgres.sh start)\"` \
             (docs/postgres.md)"
        )
    });
    let name = format!(
        "suppressd_test_{:016x}",
        xxhash_rust::xxh3::xxh3_64(key.as_bytes())
    );
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p.to_string(), format!("?{q}")),
        None => (base.clone(), String::new()),
    };
    let server = match path.rsplit_once('/') {
        Some((server, _))
            if server.contains("://") && server.len() > server.find("://").unwrap_or(0) + 3 =>
        {
            server.to_string()
        }
        _ => path.clone(),
    };
    let url = format!("{server}/{name}{query}");
    let create = format!("CREATE DATABASE {name} TEMPLATE template0");
    // On a thread of its own: callers may be inside a runtime.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot reach the test cluster at {base}: {e}"));
            tokio::spawn(connection);
            match client.batch_execute(&create).await {
                Ok(()) => {}
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
                Err(e) => panic!("cannot create a test database: {e}"),
            }
        });
    })
    .join()
    .expect("the test database is made");
    url
}

/// Waits until `store` is ready to serve (the postgres engine reaches its database in the
/// background), for at most `within`. For tests only.
pub fn wait_until_ready(store: &dyn SuppressionStore, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    let ready = store.ready();
    while !*ready.borrow() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store was not ready within {within:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Where the database at `url` holds `needle` in its live rows: `table.column` of every text or
/// bytea column (records are stored as bytes) of the public schema with a row that contains it.
/// What an erasure must leave empty. For tests only.
pub fn postgres_rows_holding(url: &str, needle: &str) -> Vec<String> {
    let (url, needle) = (url.to_string(), needle.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot reach the test database at {url}: {e}"));
            tokio::spawn(connection);
            let columns = client
                .query(
                    "SELECT table_name::text, column_name::text, data_type::text
                     FROM information_schema.columns
                     WHERE table_schema = 'public' AND data_type IN ('text', 'bytea')
                     ORDER BY 1, 2",
                    &[],
                )
                .await
                .expect("the columns are listed");
            let mut found = Vec::new();
            for column in columns {
                let (table, name, kind): (String, String, String) =
                    (column.get(0), column.get(1), column.get(2));
                let test = if kind == "bytea" {
                    format!("position(convert_to($1, 'UTF8') IN \"{name}\") > 0")
                } else {
                    format!("strpos(\"{name}\", $1) > 0")
                };
                let sql = format!("SELECT EXISTS (SELECT 1 FROM \"{table}\" WHERE {test})");
                let row = client
                    .query_one(&sql, &[&needle])
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                if row.get::<_, bool>(0) {
                    found.push(format!("{table}.{name}"));
                }
            }
            found
        })
    })
    .join()
    .expect("the database is searched")
}
