//! Sends a running server a small mix of calls so that every `suppressd_*` metric family has a
//! sample: to try the Grafana dashboard (deploy/README.md) and for CI's scrape of a real server.
//!
//! `cargo run --example metrics_traffic -- http://127.0.0.1:50051 [TOKEN]`; with a token (an
//! admin's, for every tenant) one call is also made without it, to be refused. Results go to
//! tenant `demo`: source `demo-bad` is made to PAUSE (10 % hard bounces), one result is labelled
//! differently from what its SMTP reply says, one is replayed, and an import is screened.

use std::time::Duration;

use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use suppressd::grpc::proto::{self as pb, Outcome, SourceHealth, StatsDimension};
use tonic::transport::Channel;

const TENANT: &str = "demo";
const USER_UNKNOWN: &str = "550 5.1.1 <{}>: Recipient address rejected: User unknown";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_string());
    let token = args.get(1).cloned();
    tokio::runtime::Runtime::new()?.block_on(run(addr, token))
}

/// A request carrying the bearer token, when there is one.
fn call<T>(message: T, token: Option<&str>) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    Ok(request)
}

fn send_result(i: usize, outcome: Outcome, smtp: &str) -> pb::SendResult {
    let address = format!("user{i}@demo-bad.example");
    pb::SendResult {
        event_id: format!("demo-{i}"),
        smtp_response: smtp.replace("{}", &address),
        address,
        outcome: outcome as i32,
        source: "demo-bad".into(),
        campaign: "demo-launch".into(),
        segment: "demo-all".into(),
        provider: "example-mta".into(),
        ..Default::default()
    }
}

async fn run(addr: String, token: Option<String>) -> anyhow::Result<()> {
    let token = token.as_deref();
    let mut client: SuppressionServiceClient<Channel> =
        SuppressionServiceClient::connect(addr.clone()).await?;

    if token.is_some() {
        let refused = client
            .get_suppression_status(pb::GetSuppressionStatusRequest {
                tenant: TENANT.into(),
                address: "someone@demo.example".into(),
                ..Default::default()
            })
            .await
            .expect_err("a call without a token is refused");
        println!("without a token: {:?}", refused.code());
    }

    let mut watch = client
        .watch_source_health(call(
            pb::WatchSourceHealthRequest {
                tenant: TENANT.into(),
                dimension: StatsDimension::Source as i32,
                value: "demo-bad".into(),
            },
            token,
        )?)
        .await?
        .into_inner();

    // 180 deliveries and 20 hard bounces; the last delivery is labelled delivered although its
    // reply says the mailbox does not exist, so the classification disagrees with the label.
    let mut results: Vec<pb::SendResult> = (0..200)
        .map(|i| {
            if i < 180 {
                send_result(i, Outcome::Delivered, "250 2.0.0 OK")
            } else {
                send_result(i, Outcome::HardBounce, USER_UNKNOWN)
            }
        })
        .collect();
    results[179].smtp_response = USER_UNKNOWN.replace("{}", &results[179].address);
    let response = client
        .report_send_results(call(
            tokio_stream::iter(vec![pb::ReportSendResultsRequest {
                tenant: TENANT.into(),
                results,
            }]),
            token,
        )?)
        .await?
        .into_inner();
    println!(
        "reported 200 results ({} refused)",
        response.rejections.len()
    );
    let replay = client
        .report_send_result(call(
            pb::ReportSendResultRequest {
                tenant: TENANT.into(),
                result: Some(send_result(0, Outcome::Delivered, "250 2.0.0 OK")),
            },
            token,
        )?)
        .await?
        .into_inner();
    println!("replayed one result (duplicate: {})", replay.duplicate);

    let mut verdicts = client
        .check_import(call(
            tokio_stream::iter(vec![pb::CheckImportRequest {
                tenant: TENANT.into(),
                contacts: vec![
                    pb::ImportContact {
                        address: "user190@demo-bad.example".into(),
                        ..Default::default()
                    },
                    pb::ImportContact {
                        address: "new.contact@demo.example".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }]),
            token,
        )?)
        .await?
        .into_inner();
    while let Some(batch) = verdicts.message().await? {
        let decisions: Vec<_> = batch.verdicts.iter().map(|v| v.decision()).collect();
        println!("import screened: {decisions:?}");
    }

    loop {
        let change = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .map_err(|_| anyhow::anyhow!("no verdict change for demo-bad within 30 s"))??
            .ok_or_else(|| anyhow::anyhow!("the health stream ended"))?;
        let health = change.verdict.as_ref().map(|v| v.health());
        println!("demo-bad is now {health:?}");
        if health == Some(SourceHealth::Pause) {
            return Ok(());
        }
    }
}
