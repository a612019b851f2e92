//! Starts the real server on 127.0.0.1:0 with a fresh data directory, and gives a client.

use std::path::PathBuf;

use suppressd::clock::Clock;
use suppressd::config::{ServeSettings, StorageEngine};
use suppressd::domain::Timestamp;
use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use suppressd::grpc::proto::{self as pb, Outcome};
use suppressd::startup::Application;
use suppressd::store::StoreError;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub type Client = SuppressionServiceClient<Channel>;

/// A running server and a client connected to it.
pub struct TestApp {
    pub addr: String,
    pub client: Client,
    pub data_dir: PathBuf,
    /// The server's clock: it stands still until a test moves it.
    pub clock: Clock,
    /// Where the server serves Prometheus metrics, when `metrics_listen` was set.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Keeps the temporary directory alive; `None` when the caller owns the directory.
    _dir: Option<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The storage engine the tests run against: `SUPPRESSD_TEST_ENGINE` (sled or redb), sled when
/// not set.
pub fn test_engine() -> StorageEngine {
    match std::env::var("SUPPRESSD_TEST_ENGINE").as_deref() {
        Err(_) | Ok("") | Ok("sled") => StorageEngine::Sled,
        Ok("redb") => StorageEngine::Redb,
        Ok("postgres") => StorageEngine::Postgres,
        Ok(other) => panic!("SUPPRESSD_TEST_ENGINE={other:?}: expected sled, redb or postgres"),
    }
}

/// The engine's name, as `--engine` and `SUPPRESSD_ENGINE` spell it.
pub fn test_engine_name() -> &'static str {
    match test_engine() {
        StorageEngine::Sled => "sled",
        StorageEngine::Redb => "redb",
        StorageEngine::Postgres => "postgres",
    }
}

/// Settings for a test server on 127.0.0.1:0 with data in `data_dir`, on the tests' engine.
pub fn test_settings(data_dir: PathBuf) -> ServeSettings {
    let mut settings = ServeSettings::local("127.0.0.1:0".parse().unwrap(), data_dir.clone());
    settings.engine = test_engine();
    settings.database_url = test_database_url(&data_dir);
    settings
}

/// On the postgres engine, the database of the test cluster that stands for `data_dir`: one
/// per data directory, so that a restart on the same directory finds its data again.
pub fn test_database_url(data_dir: &std::path::Path) -> Option<String> {
    (test_engine() == StorageEngine::Postgres)
        .then(|| suppressd::store::testing::postgres_test_database(&data_dir.to_string_lossy()))
}

/// The environment that points a server process at the tests' database (none for the
/// embedded engines).
pub fn test_database_env(data_dir: &std::path::Path) -> Vec<(&'static str, String)> {
    test_database_url(data_dir)
        .map(|url| ("SUPPRESSD_DATABASE_URL", url))
        .into_iter()
        .collect()
}

/// A clock moved by hand, starting at the current wall time (so that results reported without
/// a time and results dated by the test agree).
pub fn test_clock() -> Clock {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    Clock::manual(Timestamp(now.as_micros() as i64))
}

/// A protobuf timestamp `secs_ago` seconds before the server's clock.
pub fn seconds_before(clock: &Clock, secs_ago: i64) -> Option<prost_types::Timestamp> {
    let (seconds, nanos) = clock.now().to_parts();
    Some(prost_types::Timestamp {
        seconds: seconds - secs_ago,
        nanos,
    })
}

/// A server with default settings on a new data directory.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server on a new data directory, with settings adjusted by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut ServeSettings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data");
    let mut app = start(path, test_clock(), tweak).await;
    app._dir = Some(dir);
    app
}

/// A server on `data_dir` (which the caller owns), with settings adjusted by `tweak`.
pub async fn spawn_app_in(data_dir: PathBuf, tweak: impl FnOnce(&mut ServeSettings)) -> TestApp {
    start(data_dir, test_clock(), tweak).await
}

async fn start(data_dir: PathBuf, clock: Clock, tweak: impl FnOnce(&mut ServeSettings)) -> TestApp {
    let mut settings = test_settings(data_dir.clone());
    settings.clock = clock;
    tweak(&mut settings);
    let clock = settings.clock.clone();
    // sled lets go of its file lock from background threads a moment after a store closes, so
    // a restart on the same directory may find it still held for a little while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let app = loop {
        match Application::build(settings.clone()).await {
            Err(e)
                if std::time::Instant::now() < deadline
                    && e.chain().any(|c| {
                        matches!(c.downcast_ref::<StoreError>(), Some(StoreError::Locked(_)))
                    }) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            built => break built.expect("server builds"),
        }
    };
    // The postgres engine reaches its database in the background after start.
    let mut ready = app.store_ready();
    tokio::time::timeout(std::time::Duration::from_secs(30), ready.wait_for(|r| *r))
        .await
        .expect("the store is ready within 30 s")
        .expect("the store reports its readiness");
    let addr = format!("http://127.0.0.1:{}", app.port());
    let metrics_addr = app.metrics_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = SuppressionServiceClient::connect(addr.clone())
        .await
        .expect("client connects")
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    TestApp {
        addr,
        client,
        data_dir,
        clock,
        metrics_addr,
        _dir: None,
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl TestApp {
    /// Stops the server gracefully and waits until its store is closed.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    /// Stops the server and starts a new one on the same data directory and clock.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let dir = self._dir.take();
        let mut app = start(self.data_dir.clone(), self.clock.clone(), |_| {}).await;
        app._dir = dir;
        app
    }

    pub async fn report(
        &mut self,
        tenant: &str,
        result: pb::SendResult,
    ) -> pb::ReportSendResultResponse {
        self.client
            .report_send_result(pb::ReportSendResultRequest {
                tenant: tenant.into(),
                result: Some(result),
            })
            .await
            .expect("report succeeds")
            .into_inner()
    }

    /// Opens a CheckImport stream sending `requests`; the verdicts come back on the result.
    pub async fn check_import(
        &mut self,
        requests: Vec<pb::CheckImportRequest>,
    ) -> tonic::Streaming<pb::CheckImportResponse> {
        self.client
            .check_import(tokio_stream::iter(requests))
            .await
            .expect("import stream opens")
            .into_inner()
    }

    pub async fn status(&mut self, tenant: &str, address: &str) -> pb::AddressStatus {
        self.client
            .get_suppression_status(pb::GetSuppressionStatusRequest {
                tenant: tenant.into(),
                address: address.into(),
                ..Default::default()
            })
            .await
            .expect("status succeeds")
            .into_inner()
            .status
            .expect("status present")
    }

    pub async fn state(&mut self, tenant: &str, address: &str) -> pb::AddressState {
        self.status(tenant, address).await.state()
    }
}

/// A send result with the given label and SMTP text.
pub fn result(event_id: &str, address: &str, outcome: Outcome, smtp: &str) -> pb::SendResult {
    pb::SendResult {
        event_id: event_id.into(),
        address: address.into(),
        outcome: outcome as i32,
        smtp_response: smtp.into(),
        source: "test-source".into(),
        ..Default::default()
    }
}

pub const USER_UNKNOWN: &str =
    "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos";
pub const MAILBOX_FULL: &str = "452-4.2.2 The email account that you tried to reach is over quota.";
pub const GMAIL_UNSOLICITED: &str = "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked.";

/// Asserts a gRPC error's code and that its message names `field`.
pub fn assert_invalid(err: &tonic::Status, field: &str) {
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains(field),
        "message {:?} should name {field}",
        err.message()
    );
}

/// A protobuf timestamp of an instant of the server's clock.
pub fn proto_time(t: Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = t.to_parts();
    prost_types::Timestamp { seconds, nanos }
}

impl TestApp {
    /// The status of `address` for mail of `list` (empty: of no list).
    pub async fn status_for_list(
        &mut self,
        tenant: &str,
        address: &str,
        list: &str,
    ) -> pb::AddressStatus {
        self.client
            .get_suppression_status(pb::GetSuppressionStatusRequest {
                tenant: tenant.into(),
                address: address.into(),
                list_id: list.into(),
            })
            .await
            .expect("status succeeds")
            .into_inner()
            .status
            .expect("status present")
    }

    /// The statuses of `addresses` in one batch lookup for mail of `list`, in request order.
    pub async fn batch_statuses(
        &mut self,
        tenant: &str,
        addresses: &[String],
        list: &str,
    ) -> Vec<pb::AddressStatus> {
        self.client
            .batch_get_suppression_status(pb::BatchGetSuppressionStatusRequest {
                tenant: tenant.into(),
                addresses: addresses.to_vec(),
                list_id: list.into(),
            })
            .await
            .expect("batch status succeeds")
            .into_inner()
            .statuses
    }

    /// The states of `addresses` in one batch lookup for mail of `list`.
    pub async fn batch_states(
        &mut self,
        tenant: &str,
        addresses: &[&str],
        list: &str,
    ) -> Vec<pb::AddressState> {
        let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        self.batch_statuses(tenant, &addresses, list)
            .await
            .iter()
            .map(|s| s.state())
            .collect()
    }

    /// The import guard's verdicts for `addresses`, in one message of a stream importing into
    /// `list`.
    pub async fn import_verdicts(
        &mut self,
        tenant: &str,
        addresses: &[&str],
        list: &str,
    ) -> Vec<pb::ImportVerdict> {
        use tokio_stream::StreamExt;
        let request = pb::CheckImportRequest {
            tenant: tenant.into(),
            contacts: addresses
                .iter()
                .map(|a| pb::ImportContact {
                    address: a.to_string(),
                    ..Default::default()
                })
                .collect(),
            list_id: list.into(),
            ..Default::default()
        };
        let mut responses = self.check_import(vec![request]).await;
        let response = responses
            .next()
            .await
            .expect("one response")
            .expect("screened");
        response.verdicts
    }

    /// The history of `address`, newest first (the first page of 1,000).
    pub async fn history(&mut self, tenant: &str, address: &str) -> Vec<pb::HistoryEntry> {
        self.client
            .get_address_history(pb::GetAddressHistoryRequest {
                tenant: tenant.into(),
                address: address.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("history succeeds")
            .into_inner()
            .entries
    }

    /// The state changes in the history of `address`, newest first.
    pub async fn changes(&mut self, tenant: &str, address: &str) -> Vec<pb::StateChange> {
        self.history(tenant, address)
            .await
            .into_iter()
            .filter_map(|e| match e.entry {
                Some(pb::history_entry::Entry::StateChange(c)) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// Waits (up to 30 s) until the history of `address` holds a change of `kind`, which
    /// background work (the expiry sweep) writes, and returns the newest.
    pub async fn wait_for_change(
        &mut self,
        tenant: &str,
        address: &str,
        kind: pb::StateChangeKind,
    ) -> pb::StateChange {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let found = self
                .changes(tenant, address)
                .await
                .into_iter()
                .find(|c| c.kind() == kind);
            if let Some(change) = found {
                return change;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {kind:?} in the history of {address}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
