//! The schema's migrations: the versioned SQL files of `migrations/postgres`, applied at start
//! under an advisory lock so that replicas starting together do not race, each in a
//! transaction of its own with the row that records it. A database whose schema is newer than
//! this build is refused. A runner of our own: about a dozen lines over the lock, where a crate
//! (refinery) would bring its own connection handling and history table format for the same.

use std::collections::BTreeSet;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::sql_error;
use crate::store::StoreError;

/// The migrations, in order: (version, name, SQL). Never edit one that was released: add the
/// next.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/postgres/V1__init.sql"),
    ),
    (
        2,
        "erasure_and_domain_marks",
        include_str!("../../../migrations/postgres/V2__erasure_and_domain_marks.sql"),
    ),
    (
        3,
        "changes_by_seq",
        include_str!("../../../migrations/postgres/V3__changes_by_seq.sql"),
    ),
];

/// The advisory lock key that migrations hold ("suppress" in ASCII).
const MIGRATION_LOCK: i64 = 0x7375_7070_7265_7373;

/// The schema version this build reads and writes.
pub(super) fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Brings the database's schema up to [`latest`]; refuses one that is newer.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let locked = match client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
    {
        Ok(_) => true,
        // CockroachDB (and older YugabyteDB) keep no advisory locks: the version rows guard
        // the migrations there (see `apply`).
        Err(e)
            if e.code() == Some(&SqlState::UNDEFINED_FUNCTION)
                || e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) =>
        {
            tracing::warn!(error = %e, "no advisory locks: migrating without the lock");
            false
        }
        Err(e) => return Err(sql_error("taking the migration lock")(e)),
    };
    let applied = apply(client).await;
    if !locked {
        return applied;
    }
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(sql_error("releasing the migration lock"));
    applied.and(unlocked.map(|_| ()))
}

async fn apply(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS suppressd_schema (
                 version INT PRIMARY KEY,
                 name TEXT NOT NULL
             )",
        )
        .await
        .map_err(sql_error("creating the schema version table"))?;
    let applied: BTreeSet<i32> = client
        .query("SELECT version FROM suppressd_schema", &[])
        .await
        .map_err(sql_error("reading the schema version"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(&found) = applied.last() {
        if found > latest() {
            return Err(StoreError::SchemaTooNew {
                path: "the database".into(),
                found: u8::try_from(found).unwrap_or(u8::MAX),
                supported: u8::try_from(latest()).unwrap_or(u8::MAX),
            });
        }
    }
    for &(version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        let tx = client
            .transaction()
            .await
            .map_err(sql_error("starting a migration"))?;
        // The version row first: where advisory locks are not kept (CockroachDB), a second
        // replica's insert of the same version fails and it applies nothing.
        match tx
            .execute(
                "INSERT INTO suppressd_schema (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await
        {
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => continue,
            other => other.map_err(sql_error("recording a migration"))?,
        };
        tx.batch_execute(sql)
            .await
            .map_err(sql_error(format!("applying migration V{version}__{name}")))?;
        tx.commit()
            .await
            .map_err(sql_error("committing a migration"))?;
        tracing::info!(version, name, "database schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::postgres_test_database;

    async fn client(url: &str) -> Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("the test cluster answers");
        tokio::spawn(connection);
        client
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
    async fn on_postgres_replicas_migrating_together_apply_each_version_once_and_a_newer_schema_is_refused(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let url = postgres_test_database(&format!("migrations {}", dir.path().display()));
        let (mut a, mut b) = (client(&url).await, client(&url).await);
        // Two replicas starting together: both succeed, each version is applied once.
        let (first, second) = tokio::join!(migrate(&mut a), migrate(&mut b));
        first.unwrap();
        second.unwrap();
        let versions: Vec<i32> = a
            .query("SELECT version FROM suppressd_schema ORDER BY version", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expected: Vec<i32> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions, expected);
        // Again: nothing to do.
        migrate(&mut a).await.unwrap();

        // A newer binary migrated the database: this one refuses it and changes nothing.
        a.execute(
            "INSERT INTO suppressd_schema (version, name) VALUES ($1, 'from the future')",
            &[&(latest() + 1)],
        )
        .await
        .unwrap();
        match migrate(&mut b).await {
            Err(StoreError::SchemaTooNew {
                found, supported, ..
            }) => {
                assert_eq!(i32::from(found), latest() + 1);
                assert_eq!(i32::from(supported), latest());
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
}
