//! The one start-up path, shared by `main` and the tests: open the store, bind the listener,
//! serve until told to stop, then drain and close the store.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::app::{App, Limits, Settings};
use crate::auth::Authenticator;
use crate::classify::Classifier;
use crate::config::ServeSettings;
use crate::grpc::auth::AuthLayer;
use crate::grpc::error::oversize_is_resource_exhausted;
use crate::grpc::proto::suppression_admin_service_server::SuppressionAdminServiceServer;
use crate::grpc::proto::suppression_service_server::SuppressionServiceServer;
use crate::grpc::proto::FILE_DESCRIPTOR_SET;
use crate::grpc::{AdminApi, SuppressionApi};
use crate::policy::domains::DomainPolicy;
use crate::policy::health::HealthThresholds;
use crate::policy::{EscalationPolicy, SuppressionTtl};
use crate::store::{StoreOptions, SuppressionStore};
use crate::tls::{TlsAcceptor, TlsFiles};

/// How long in-flight calls may take to finish once the server stops.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// Full name of the service, as health checks name it.
pub const SERVICE_NAME: &str = "suppression.v1.SuppressionService";
/// Full name of the admin service.
pub const ADMIN_SERVICE_NAME: &str = "suppression.v1.SuppressionAdminService";

/// A built server: store open, listener bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    store: Arc<dyn SuppressionStore>,
    app: App,
    /// The principals allowed to call; `None` trusts every caller (loopback or insecure).
    auth: Option<Arc<Authenticator>>,
    /// TLS, when configured.
    tls: Option<TlsAcceptor>,
    max_message_bytes: usize,
    /// Where Prometheus metrics are served, when they are.
    metrics_addr: Option<SocketAddr>,
}

impl Application {
    /// Opens the store and binds the listener (port 0 picks a free port).
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Application> {
        // Refuse an unsafe configuration before touching the data.
        let (auth, tls) = Self::security(&settings)?;
        Self::suppression_ttl(&settings)?;
        let options = Self::store_options(&settings);
        let store = tokio::task::spawn_blocking(move || crate::store::open(options))
            .await
            .context("store opening task failed")?
            .with_context(|| {
                format!("cannot open data directory {}", settings.data_dir.display())
            })?;
        Self::assemble(settings, store, auth, tls).await
    }

    /// The authenticator and TLS acceptor the settings ask for, after checking that the
    /// server is not opened to the network without authentication by mistake.
    fn security(
        settings: &ServeSettings,
    ) -> anyhow::Result<(Option<Arc<Authenticator>>, Option<TlsAcceptor>)> {
        let loopback = settings.listen.ip().is_loopback();
        let auth = match &settings.auth_file {
            Some(path) => Some(Arc::new(Authenticator::load(path)?)),
            None if loopback => {
                tracing::warn!(
                    listen = %settings.listen,
                    "no --auth-file: every caller is trusted (loopback only)"
                );
                None
            }
            None if settings.insecure_no_auth => {
                tracing::warn!(
                    listen = %settings.listen,
                    "--insecure-no-auth: every caller that reaches this address is trusted"
                );
                None
            }
            None => anyhow::bail!(
                "refusing to listen on {} without authentication: anyone who reaches it could \
                 read and change every tenant's data. Give --auth-file (see README, Security), \
                 listen on a loopback address, or pass --insecure-no-auth to accept the risk",
                settings.listen
            ),
        };
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(TlsAcceptor::load(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: settings.tls_client_ca.clone(),
            })?),
            _ => None,
        };
        if tls.is_none() && !loopback {
            tracing::warn!(
                listen = %settings.listen,
                "no TLS on a non-loopback address: credentials and data cross the network in clear"
            );
        }
        Ok((auth, tls))
    }

    /// The lifetimes of suppressions by reason, from `--suppression-ttl`.
    fn suppression_ttl(settings: &ServeSettings) -> anyhow::Result<SuppressionTtl> {
        SuppressionTtl::from_entries(&settings.suppression_ttl)
            .map_err(|e| anyhow::anyhow!("--suppression-ttl: {e}"))
    }

    /// How `settings` open the store.
    pub fn store_options(settings: &ServeSettings) -> StoreOptions {
        StoreOptions {
            engine: settings.engine.into(),
            path: settings.data_dir.clone(),
            cache_bytes: settings.cache_mb * 1024 * 1024,
            journal_bytes: settings.journal_mb * 1024 * 1024,
            database_url: settings.database_url.clone(),
        }
    }

    /// Binds the listener and builds the services over a store opened by the caller (tests
    /// use it to serve a store with injected faults).
    pub async fn with_store(
        settings: ServeSettings,
        store: Arc<dyn SuppressionStore>,
    ) -> anyhow::Result<Application> {
        let (auth, tls) = Self::security(&settings)?;
        Self::assemble(settings, store, auth, tls).await
    }

    async fn assemble(
        settings: ServeSettings,
        store: Arc<dyn SuppressionStore>,
        auth: Option<Arc<Authenticator>>,
        tls: Option<TlsAcceptor>,
    ) -> anyhow::Result<Application> {
        let metrics_addr = match settings.metrics_listen {
            // The postgres engine keeps no data directory: its disk is the database's.
            Some(addr) => Some(crate::telemetry::serve_metrics(
                addr,
                (settings.engine != crate::config::StorageEngine::Postgres)
                    .then(|| settings.data_dir.clone()),
            )?),
            None => None,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let ttl = Self::suppression_ttl(&settings)?;
        for entry in ttl.entries() {
            tracing::info!(
                reason = entry.reason.name(),
                ttl = %humantime::format_duration(entry.ttl),
                "suppressions for this reason expire"
            );
        }
        let app_settings = Settings {
            policy: EscalationPolicy {
                soft_bounce_threshold: settings.soft_bounce_threshold,
                soft_bounce_window: Duration::from_secs(
                    u64::from(settings.soft_bounce_window_days) * 86_400,
                ),
                ttl,
            },
            limits: Limits {
                max_batch: settings.max_batch as usize,
                max_bounce_message_bytes: settings.max_bounce_message_bytes as usize,
                ..Limits::default()
            },
            health: HealthThresholds {
                hard_watch: settings.hard_bounce_watch_rate,
                hard_pause: settings.hard_bounce_pause_rate,
                complaint_watch: settings.complaint_watch_rate,
                complaint_pause: settings.complaint_pause_rate,
                min_sample: settings.health_min_sample,
            },
            correction_threshold: settings.correction_threshold,
            domains: DomainPolicy {
                suppression_threshold: settings.domain_suppression_threshold,
                suppression_window: settings.domain_suppression_window,
                accept_all_threshold: settings.accept_all_inference_threshold,
                ..crate::app::domains::default_policy()
            },
            clock: settings.clock.clone(),
            change_retention: Duration::from_secs(
                u64::from(settings.change_retention_days) * 86_400,
            ),
        };
        if settings.max_bounce_message_bytes as usize + 64 * 1024 > settings.max_message_bytes {
            tracing::warn!(
                max_bounce_message_bytes = settings.max_bounce_message_bytes,
                max_message_bytes = settings.max_message_bytes,
                "raw bounce messages near the bounce limit do not fit in one gRPC message: \
                 the message limit refuses them first"
            );
        }
        let app = App::new(store.clone(), Arc::new(Classifier::new()), app_settings);
        tracing::info!(
            %addr,
            data_dir = %settings.data_dir.display(),
            engine = ?settings.engine,
            suppressed = store.suppressed_count(),
            authentication = auth.is_some(),
            tls = tls.is_some(),
            "store open"
        );
        Ok(Application {
            listener,
            addr,
            store,
            app,
            auth,
            tls,
            max_message_bytes: settings.max_message_bytes,
            metrics_addr,
        })
    }

    /// The port actually bound.
    /// Whether the store can serve (the postgres engine reaches its database in the
    /// background: health says NOT_SERVING until it has).
    pub fn store_ready(&self) -> tokio::sync::watch::Receiver<bool> {
        self.store.ready()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the metrics listener bound, when `--metrics-listen` is given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Serves until `shutdown` resolves; then reports NOT_SERVING, drains in-flight calls,
    /// flushes and closes the store. If the store's writer ends first, the same happens and
    /// the result is an error, so that the process exits non-zero and is restarted.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        // SERVING while the store can serve: always for the embedded engines; for the postgres
        // engine, while its database is reachable and migrated (it retries in the background).
        let mut ready = self.store.ready();
        let ready_health = health.clone();
        let follower = tokio::spawn(async move {
            loop {
                let serving = *ready.borrow_and_update();
                let status = if serving {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                for name in ["", SERVICE_NAME, ADMIN_SERVICE_NAME] {
                    ready_health.set_service_status(name, status).await;
                }
                metrics::gauge!("suppressd_serving").set(if serving { 1.0 } else { 0.0 });
                if ready.changed().await.is_err() {
                    break;
                }
            }
        });

        // Both reflection versions: grpcurl and other tools still ask v1alpha first.
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("cannot build the reflection service")?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .context("cannot build the reflection service")?;

        let app = self.app.clone();
        let admin = SuppressionAdminServiceServer::new(AdminApi::new(self.app.clone()))
            .max_decoding_message_size(self.max_message_bytes);
        let suppression = SuppressionServiceServer::new(SuppressionApi::new(self.app))
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes.max(64 * 1024 * 1024));

        let client_certs = self
            .tls
            .as_ref()
            .is_some_and(TlsAcceptor::requires_client_certs);
        let auth_layer = AuthLayer::new(self.auth.clone(), client_certs);
        let reloader = tokio::spawn(reload_on_change(self.auth.clone(), self.tls.clone()));
        let drain_health = health.clone();
        let mut writer_failure = self.store.writer_failure();
        let failure: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let failed = failure.clone();
        let draining = Arc::new(tokio::sync::Notify::new());
        let drain_started = draining.clone();
        let watchers = app.clone();
        let signal = async move {
            tokio::select! {
                _ = shutdown => tracing::info!("shutting down: draining in-flight calls"),
                reason = writer_failure.wait_for(Option::is_some) => {
                    let reason = match reason {
                        Ok(r) => r.clone().unwrap_or_default(),
                        Err(_) => "the store went away".to_string(),
                    };
                    tracing::error!(%reason, "the store's writer stopped: draining, then exiting");
                    *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                }
            }
            follower.abort();
            for name in ["", SERVICE_NAME, ADMIN_SERVICE_NAME] {
                drain_health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            metrics::gauge!("suppressd_serving").set(0.0);
            // Streams that never end by themselves (WatchSourceHealth) end now, so that the
            // drain does not wait for their clients.
            watchers.shutdown().await;
            drain_started.notify_one();
        };

        let router = Server::builder()
            .layer(tower::util::MapResponseLayer::new(
                oversize_is_resource_exhausted,
            ))
            .layer(auth_layer)
            .initial_connection_window_size(4 * 1024 * 1024)
            .initial_stream_window_size(2 * 1024 * 1024)
            .trace_fn(|req| {
                let method = req.uri().path();
                // Status lookups are the high-rate calls: a span with formatted fields is about
                // a tenth of the server's CPU per lookup, so theirs is kept for debug logging.
                if method.ends_with("/GetSuppressionStatus") {
                    tracing::debug_span!(
                        "rpc",
                        method,
                        principal = tracing::field::Empty,
                        tenant = tracing::field::Empty,
                        items = tracing::field::Empty,
                        outcome = tracing::field::Empty,
                    )
                } else {
                    tracing::info_span!(
                        "rpc",
                        method,
                        principal = tracing::field::Empty,
                        tenant = tracing::field::Empty,
                        items = tracing::field::Empty,
                        outcome = tracing::field::Empty,
                    )
                }
            })
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(suppression)
            .add_service(admin);
        let serve: std::pin::Pin<
            Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
        > = match self.tls {
            Some(tls) => {
                Box::pin(router.serve_with_incoming_shutdown(tls.incoming(self.listener), signal))
            }
            None => Box::pin(router.serve_with_incoming_shutdown(
                TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                signal,
            )),
        };
        // In-flight calls get DRAIN_GRACE to finish; connections still open then (a client
        // holding a health watch, say) are dropped, so a stop never hangs.
        tokio::select! {
            served = serve => served.context("server failed")?,
            _ = async {
                draining.notified().await;
                tokio::time::sleep(DRAIN_GRACE).await;
            } => tracing::warn!(grace = ?DRAIN_GRACE, "calls still open after the grace period were cut"),
        }

        reloader.abort();
        app.shutdown().await;
        drop(app);
        let store = self.store;
        let closed = tokio::task::spawn_blocking(move || store.close())
            .await
            .context("store closing task failed")?
            .context("cannot close the store");
        let failure = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reason) = failure {
            if let Err(e) = closed {
                tracing::error!(error = %format!("{e:#}"), "closing after the writer stopped");
            }
            anyhow::bail!("the store's writer stopped: {reason}");
        }
        closed?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// How often the auth file is checked for changes.
const AUTH_FILE_POLL: Duration = Duration::from_secs(2);

/// Re-reads the auth file when it changes, and the auth file and TLS files on SIGHUP. A failed
/// reading is logged and keeps what is in force.
async fn reload_on_change(auth: Option<Arc<Authenticator>>, tls: Option<TlsAcceptor>) {
    if auth.is_none() && tls.is_none() {
        return;
    }
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut poll = tokio::time::interval(AUTH_FILE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = poll.tick() => {
                if let Some(auth) = &auth {
                    let auth = auth.clone();
                    let _ = tokio::task::spawn_blocking(move || auth.reload_if_changed()).await;
                }
            }
            _ = sighup => {
                tracing::info!("SIGHUP: reading the auth file and TLS files again");
                if let Some(auth) = auth.clone() {
                    let read = tokio::task::spawn_blocking(move || auth.reload()).await;
                    if let Ok(Err(e)) = read {
                        tracing::error!(error = %format!("{e:#}"), "auth file not reloaded; the previous principals stay");
                    }
                }
                if let Some(tls) = tls.clone() {
                    let read = tokio::task::spawn_blocking(move || tls.reload()).await;
                    if let Ok(Err(e)) = read {
                        tracing::error!(error = %format!("{e:#}"), "TLS files not reloaded; the previous certificates stay");
                    }
                }
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: a signal that arrives while the server starts serving stops it
/// gracefully instead of killing the process. Call it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for {name}");
                None
            }
        };
        (
            listen(SignalKind::interrupt(), "SIGINT"),
            listen(SignalKind::terminate(), "SIGTERM"),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let received = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = received(interrupt) => {},
                _ = received(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
