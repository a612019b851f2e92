//! `suppressd backup`, `restore` and `migrate` as an operator runs them: the binary against a
//! real server started in-process, and on data directories no server holds.

use std::path::{Path, PathBuf};

use suppressd::config::{ServeSettings, StorageEngine};
use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use suppressd::grpc::proto::{self as pb, AddressState, Outcome};
use suppressd::startup::Application;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[path = "support/cli.rs"]
mod cli;
use cli::{counts, path, run, text};

type Client = SuppressionServiceClient<tonic::transport::Channel>;

/// A server on a data directory.
struct Server {
    addr: String,
    client: Client,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<anyhow::Result<()>>,
}

fn settings(data_dir: &Path, engine: StorageEngine) -> ServeSettings {
    let mut settings = ServeSettings::local("127.0.0.1:0".parse().unwrap(), data_dir.into());
    settings.engine = engine;
    settings
}

async fn serve(data_dir: &Path, engine: StorageEngine) -> Server {
    // sled lets go of its lock from background threads a moment after a store closes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let app = loop {
        match Application::build(settings(data_dir, engine)).await {
            Err(e)
                if std::time::Instant::now() < deadline
                    && format!("{e:#}").contains("in use by another") =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            built => break built.expect("server builds"),
        }
    };
    let addr = format!("127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = SuppressionServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Server {
        addr,
        client,
        stop,
        handle,
    }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.await.unwrap().expect("server stops cleanly");
    }

    async fn bounce(&mut self, event_id: &str, address: &str) {
        self.client
            .report_send_result(pb::ReportSendResultRequest {
                tenant: "acme".into(),
                result: Some(pb::SendResult {
                    event_id: event_id.into(),
                    address: address.into(),
                    outcome: Outcome::HardBounce as i32,
                    smtp_response:
                        "550 5.1.1 The email account that you tried to reach does not exist".into(),
                    source: "crm-sync".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }

    async fn bounces(&mut self, page_token: &str) -> pb::ListBouncesResponse {
        self.client
            .list_bounces(pb::ListBouncesRequest {
                tenant: "acme".into(),
                page_size: 2,
                page_token: page_token.into(),
                ..Default::default()
            })
            .await
            .expect("bounces listed")
            .into_inner()
    }

    async fn state(&mut self, address: &str) -> AddressState {
        self.client
            .get_suppression_status(pb::GetSuppressionStatusRequest {
                tenant: "acme".into(),
                address: address.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .state()
    }
}

/// A sled store with five hard bounces of tenant acme, and the first two pages of its bounce
/// listing (two per page).
async fn bounced_store(data: &Path) -> (pb::ListBouncesResponse, pb::ListBouncesResponse) {
    let mut server = serve(data, StorageEngine::Sled).await;
    for i in 0..5 {
        server
            .bounce(&format!("evt-{i}"), &format!("gone{i}@example.com"))
            .await;
    }
    let first = server.bounces("").await;
    let second = server.bounces(&first.next_page_token).await;
    assert_eq!(second.bounces.len(), 2);
    server.stop().await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_migrates_between_engines_with_its_counts_and_its_page_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let sled_dir = dir.path().join("sled");
    let (first, second) = bounced_store(&sled_dir).await;
    let redb_dir = dir.path().join("redb");
    let back_dir = dir.path().join("back");

    let there = run(&[
        "migrate",
        "--from-engine",
        "sled",
        "--from-data-dir",
        path(&sled_dir),
        "--to-engine",
        "redb",
        "--to-data-dir",
        path(&redb_dir),
    ])
    .await;
    assert!(there.status.success(), "{}", text(&there.stderr));
    assert!(text(&there.stdout).contains("counts per kind checked"));
    let back = run(&[
        "migrate",
        "--from-engine",
        "redb",
        "--from-data-dir",
        path(&redb_dir),
        "--to-engine",
        "sled",
        "--to-data-dir",
        path(&back_dir),
    ])
    .await;
    assert!(back.status.success(), "{}", text(&back.stderr));
    assert!(
        counts(&there).iter().any(|l| l == "  events: 5"),
        "{:?}",
        counts(&there)
    );
    assert_eq!(counts(&there), counts(&back), "the same entries both ways");

    // A target that holds data is refused, and left as it is.
    let again = run(&[
        "migrate",
        "--from-engine",
        "sled",
        "--from-data-dir",
        path(&sled_dir),
        "--to-engine",
        "redb",
        "--to-data-dir",
        path(&redb_dir),
    ])
    .await;
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("not empty"),
        "{}",
        text(&again.stderr)
    );

    // Served from either copy: the page token handed out before the migration still reads the
    // next page, and the bounced addresses are still suppressed.
    for (data, engine) in [
        (&redb_dir, StorageEngine::Redb),
        (&back_dir, StorageEngine::Sled),
    ] {
        let mut server = serve(data, engine).await;
        let page = server.bounces(&first.next_page_token).await;
        let ids = |p: &pb::ListBouncesResponse| -> Vec<String> {
            p.bounces.iter().map(|b| b.event_id.clone()).collect()
        };
        assert_eq!(ids(&page), ids(&second), "{engine:?}");
        assert_eq!(
            server.state("gone3@example.com").await,
            AddressState::Suppressed
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_restores_into_either_engine_and_a_damaged_one_is_refused_naming_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = serve(&data, StorageEngine::Sled).await;
    for i in 0..5 {
        server
            .bounce(&format!("evt-{i}"), &format!("gone{i}@example.com"))
            .await;
    }
    let backup_dir = dir.path().join("backup");
    let taken = run(&["backup", "--to", path(&backup_dir), "--addr", &server.addr]).await;
    assert!(taken.status.success(), "{}", text(&taken.stderr));
    let manifest = std::fs::read_to_string(backup_dir.join("manifest.toml")).unwrap();
    assert!(manifest.contains("events = 5"), "{manifest}");
    assert!(manifest.contains("snapshot_seq = "), "{manifest}");
    let twice = run(&["backup", "--to", path(&backup_dir), "--addr", &server.addr]).await;
    assert_eq!(twice.status.code(), Some(2), "{}", text(&twice.stderr));
    server.stop().await;

    let restored: PathBuf = dir.path().join("restored");
    let done = run(&[
        "restore",
        "--from",
        path(&backup_dir),
        "--data-dir",
        path(&restored),
        "--engine",
        "redb",
    ])
    .await;
    assert!(done.status.success(), "{}", text(&done.stderr));
    let mut server = serve(&restored, StorageEngine::Redb).await;
    assert_eq!(
        server.state("gone4@example.com").await,
        AddressState::Suppressed
    );
    assert_eq!(
        server.state("never@example.com").await,
        AddressState::Allowed
    );
    server.stop().await;

    // Not into a directory that holds anything.
    let refused = run(&[
        "restore",
        "--from",
        path(&backup_dir),
        "--data-dir",
        path(&restored),
    ])
    .await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("not empty"),
        "{}",
        text(&refused.stderr)
    );

    // A flipped byte in the data (an event id of a key) is refused, naming its chunk.
    let damaged_dir = dir.path().join("damaged");
    std::fs::create_dir(&damaged_dir).unwrap();
    std::fs::copy(
        backup_dir.join("manifest.toml"),
        damaged_dir.join("manifest.toml"),
    )
    .unwrap();
    let mut stream = std::fs::read(backup_dir.join("store.snap")).unwrap();
    let at = stream.windows(5).position(|w| w == b"evt-3").unwrap();
    stream[at + 4] ^= 0x01;
    std::fs::write(damaged_dir.join("store.snap"), stream).unwrap();
    let target = dir.path().join("target");
    let refused = run(&[
        "restore",
        "--from",
        path(&damaged_dir),
        "--data-dir",
        path(&target),
    ])
    .await;
    assert_eq!(refused.status.code(), Some(1));
    let message = text(&refused.stderr);
    assert!(
        message.contains("data chunk 0") && message.contains("checksum"),
        "{message}"
    );
    // What it left is marked unfinished: no server opens it, and a restore starts it over.
    let err = Application::build(settings(&target, StorageEngine::Sled))
        .await
        .err()
        .expect("an unfinished restore is not served");
    assert!(format!("{err:#}").contains("did not finish"), "{err:#}");
    let over = run(&[
        "restore",
        "--from",
        path(&backup_dir),
        "--data-dir",
        path(&target),
    ])
    .await;
    assert!(over.status.success(), "{}", text(&over.stderr));
    let mut server = serve(&target, StorageEngine::Sled).await;
    assert_eq!(
        server.state("gone0@example.com").await,
        AddressState::Suppressed
    );
    server.stop().await;
}
