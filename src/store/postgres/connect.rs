//! The database URL, TLS to the database, and the connection pool.
//!
//! The URL is libpq's (`postgres://user@host:port/db?sslmode=...`); tokio-postgres reads it,
//! except for the parameters it does not know, which are taken out here first:
//! `sslmode=verify-ca` / `verify-full` (TLS, the certificate verified; tokio-postgres knows only
//! `disable`, `prefer` and `require`) and `sslrootcert=FILE` (the CA certificates, PEM). With
//! `sslmode=require` the certificate is verified too (stricter than libpq, which only encrypts):
//! against `sslrootcert`, or the system's CA certificates. `pool_size=N` (suppressd's own, not
//! libpq's) bounds the connections a replica keeps open, 16 unless given.

use std::time::Duration;

use deadpool_postgres::{Hook, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_postgres::config::SslMode;

use crate::store::StoreError;

/// Connections the pool keeps at most, unless the URL says `pool_size`.
const POOL_SIZE: usize = 16;
/// The fewest `pool_size` allows: the writer holds one for each group, and everything else
/// (reads, status rounds, the index's catch-up) needs at least one more.
const MIN_POOL_SIZE: usize = 2;
/// The most `pool_size` allows.
const MAX_POOL_SIZE: usize = 1_000;
/// How long making a connection may take (unless the URL says `connect_timeout`), and how long
/// a call waits for one from the pool: a database that does not answer fails calls, it does
/// not hang them.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect.
pub(super) struct Target {
    config: tokio_postgres::Config,
    tls: Option<rustls::ClientConfig>,
    pool_size: usize,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("tls", &self.tls.is_some())
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

fn config_error(message: impl Into<String>) -> StoreError {
    StoreError::engine("reading --database-url", message.into())
}

/// Reads a database URL (see the module's documentation).
pub(super) fn parse(url: &str) -> Result<Target, StoreError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut tls_mode: Option<String> = None;
    let mut root_file: Option<String> = None;
    let mut pool_size = POOL_SIZE;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => tls_mode = Some(value.to_string()),
            "sslrootcert" => root_file = Some(value.to_string()),
            "pool_size" => {
                pool_size = value
                    .parse()
                    .ok()
                    .filter(|n| (MIN_POOL_SIZE..=MAX_POOL_SIZE).contains(n))
                    .ok_or_else(|| {
                        config_error(format!(
                            "pool_size must be a whole number from {MIN_POOL_SIZE} to \
                             {MAX_POOL_SIZE}, not {value:?}"
                        ))
                    })?
            }
            _ => kept.push(pair),
        }
    }
    let tls_wanted = match tls_mode.as_deref() {
        None | Some("disable") | Some("allow") | Some("prefer") => false,
        Some("require") | Some("verify-ca") | Some("verify-full") => true,
        Some(other) => return Err(config_error(format!("unknown sslmode {other:?}"))),
    };
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = rebuilt
        .parse()
        .map_err(|e| StoreError::engine("reading --database-url", e))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("suppressd");
    }
    let tls = if tls_wanted {
        config.ssl_mode(SslMode::Require);
        Some(client_tls(root_file.as_deref())?)
    } else {
        config.ssl_mode(SslMode::Disable);
        None
    };
    Ok(Target {
        config,
        tls,
        pool_size,
    })
}

/// rustls (ring) verifying the server against `root_file` or the system's CA certificates.
fn client_tls(root_file: Option<&str>) -> Result<rustls::ClientConfig, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match root_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| StoreError::engine(format!("reading sslrootcert {path}"), e))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| StoreError::engine(format!("reading sslrootcert {path}"), e))?;
                roots
                    .add(cert)
                    .map_err(|e| StoreError::engine(format!("reading sslrootcert {path}"), e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(config_error(
            "TLS to the database asked for, but no CA certificate found (give sslrootcert=FILE)",
        ));
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::engine("setting up TLS to the database", e))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl Target {
    /// The pool of connections to the target (connections are made on first use).
    pub(super) fn pool(&self) -> Result<Pool, StoreError> {
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            Some(tls) => Manager::from_config(
                self.config.clone(),
                tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone()),
                manager_config,
            ),
            None => {
                Manager::from_config(self.config.clone(), tokio_postgres::NoTls, manager_config)
            }
        };
        Pool::builder(manager)
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    // PostgreSQL's JIT compiler compiles a statement whose estimated cost passes
                    // `jit_above_cost` at each execution, and a prepared statement's generic
                    // plan (an unknown range of the change log, a subquery per row) passes it
                    // however few rows it reads: the compiling then costs far more than the
                    // point reads and small writes this engine runs. A database without the
                    // setting (CockroachDB) refuses it, which changes nothing.
                    if let Err(e) = client.batch_execute("SET jit = off").await {
                        tracing::debug!(error = %e, "the database has no jit setting");
                    }
                    Ok(())
                })
            }))
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(WAIT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::engine("building the connection pool", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::postgres_test_database;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: SUPPRESSD_TEST_DATABASE_URL (docs/postgres.md)"]
    async fn on_postgres_pooled_connections_run_without_the_jit_compiler() {
        let url = postgres_test_database("pool settings");
        let pool = parse(&url).unwrap().pool().unwrap();
        for _ in 0..3 {
            let client = pool.get().await.expect("a connection");
            let row = client.query_one("SHOW jit", &[]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), "off");
        }
    }

    #[test]
    fn the_pool_size_is_read_from_the_url_and_bounded() {
        let target =
            parse("postgres://suppressd@db/suppressd?pool_size=4&connect_timeout=3").unwrap();
        assert_eq!(target.pool_size, 4);
        assert_eq!(target.pool().unwrap().status().max_size, 4);
        assert_eq!(
            target.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        for wrong in ["1", "0", "1001", "many", ""] {
            let e = parse(&format!("postgres://db/x?pool_size={wrong}")).unwrap_err();
            assert!(e.to_string().contains("--database-url"), "{e}");
            assert!(
                crate::store::ErrorChain(&e)
                    .to_string()
                    .contains("pool_size"),
                "{wrong}: {e}"
            );
        }
    }

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let plain = parse("postgres://suppressd@db:5433/suppressd?connect_timeout=3").unwrap();
        assert!(plain.tls.is_none());
        assert_eq!(plain.config.get_dbname(), Some("suppressd"));
        assert_eq!(plain.config.get_ports(), [5433]);
        assert_eq!(
            plain.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        assert!(parse("postgres://db/x?sslmode=sometimes").is_err());
        assert_eq!(plain.pool_size, POOL_SIZE);
        assert!(parse("postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent.pem").is_err());
        assert!(parse("postgres://db/x?sslmode=disable")
            .unwrap()
            .tls
            .is_none());
    }
}
