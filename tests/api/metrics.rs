//! The Prometheus endpoint, scraped over HTTP as Prometheus would.

use std::collections::BTreeMap;
use std::time::Duration;

use suppressd::config::StorageEngine;
use suppressd::grpc::proto::{self as pb, Outcome, SourceHealth, StatsDimension};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// A tenant of its own: the verdicts on the endpoint are those of every server in this process.
const TENANT: &str = "metrics";

/// The body of one scrape of `/metrics`.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// The `suppressd_source_health` samples of our tenant, as (dimension, value) -> level.
fn health_series(body: &str) -> BTreeMap<(String, String), String> {
    let prefix = format!("suppressd_source_health{{tenant=\"{TENANT}\",dimension=\"");
    body.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            let (dimension, rest) = rest.split_once("\",value=\"").unwrap();
            let (value, level) = rest.rsplit_once("\"} ").unwrap();
            (
                (dimension.to_string(), value.to_string()),
                level.to_string(),
            )
        })
        .collect()
}

/// `delivered` deliveries then `hard` hard bounces from `source`, all in campaign `spring`.
fn results(source: &str, delivered: usize, hard: usize) -> Vec<pb::SendResult> {
    (0..delivered + hard)
        .map(|i| {
            let (outcome, smtp) = if i < delivered {
                (Outcome::Delivered, "")
            } else {
                (Outcome::HardBounce, USER_UNKNOWN)
            };
            pb::SendResult {
                source: source.into(),
                campaign: "spring".into(),
                segment: "all".into(),
                ..result(
                    &format!("{source}-{i}"),
                    &format!("r{i}@{}.example", source.len()),
                    outcome,
                    smtp,
                )
            }
        })
        .collect()
}

/// Reads verdict changes until the latest verdict of every value is `expected`'s.
async fn until_verdicts(
    watch: &mut tonic::Streaming<pb::WatchSourceHealthResponse>,
    expected: &BTreeMap<(StatsDimension, String), SourceHealth>,
) {
    let mut latest = BTreeMap::new();
    while expected.iter().any(|(k, v)| latest.get(k) != Some(v)) {
        let change = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .expect("verdict changes are announced")
            .unwrap()
            .expect("stream open");
        let health = change.verdict.as_ref().unwrap().health();
        latest.insert((change.dimension(), change.value.clone()), health);
    }
}

#[tokio::test]
async fn the_endpoint_publishes_the_verdicts_that_are_not_healthy_and_drops_them_on_recovery() {
    let mut app = spawn_app_with(|s| s.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let metrics = app.metrics_addr.expect("metrics served");
    let mut watch = app
        .client
        .watch_source_health(pb::WatchSourceHealthRequest {
            tenant: TENANT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // A source named with a quote, to be escaped in the exposition.
    let paused = "list \"B\"";
    let mut all = results(paused, 180, 20); // 10 %: PAUSE
    all.extend(results("webform", 970, 30)); // 3 %: WATCH
    all.extend(results("crm", 1000, 0)); // healthy
    app.client
        .report_send_results(tokio_stream::iter(vec![pb::ReportSendResultsRequest {
            tenant: TENANT.into(),
            results: all,
        }]))
        .await
        .unwrap();
    // The campaign and the segment hold all 2,200 results: 50 hard bounces, 2.3 %: WATCH.
    // "crm" stays healthy, so no change of it is announced.
    let expected = BTreeMap::from([
        (
            (StatsDimension::Source, paused.to_string()),
            SourceHealth::Pause,
        ),
        (
            (StatsDimension::Source, "webform".into()),
            SourceHealth::Watch,
        ),
        (
            (StatsDimension::Campaign, "spring".into()),
            SourceHealth::Watch,
        ),
        ((StatsDimension::Segment, "all".into()), SourceHealth::Watch),
    ]);
    until_verdicts(&mut watch, &expected).await;

    let body = scrape(metrics).await;
    assert_eq!(
        health_series(&body),
        BTreeMap::from([
            (("campaign".into(), "spring".into()), "1".into()),
            (("segment".into(), "all".into()), "1".into()),
            (("source".into(), "list \\\"B\\\"".into()), "2".into()),
            (("source".into(), "webform".into()), "1".into()),
        ]),
        "{body}"
    );
    assert!(
        body.contains("# TYPE suppressd_source_health gauge"),
        "{body}"
    );
    // The group-commit latency has buckets, so the p99 alert can take a quantile.
    assert!(
        body.contains("suppressd_group_commit_seconds_bucket{le=\"1\"}"),
        "{body}"
    );
    // The free space of the data directory's file system; the postgres engine keeps no data
    // directory (its disk is the database's, watched there), so it has no such gauge.
    let disk_gauge = body.contains("\nsuppressd_data_fs_avail_bytes ");
    assert_eq!(
        disk_gauge,
        test_engine() != StorageEngine::Postgres,
        "{body}"
    );

    // A day later the bad hours have slid out of the window: every value is healthy again, and
    // its series is gone rather than left at zero.
    app.clock.advance(Duration::from_secs(25 * 3600));
    let recovered = expected
        .keys()
        .map(|k| (k.clone(), SourceHealth::Healthy))
        .collect();
    until_verdicts(&mut watch, &recovered).await;
    let body = scrape(metrics).await;
    assert_eq!(health_series(&body), BTreeMap::new(), "{body}");
    assert!(
        body.contains("# TYPE suppressd_source_health gauge"),
        "{body}"
    );
}

/// The value of one `suppressd_bounce_messages_total` series (0 when it has none yet).
fn bounce_messages(body: &str, kind: &str, outcome: &str) -> u64 {
    let series =
        format!("suppressd_bounce_messages_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

#[tokio::test]
async fn bounce_messages_are_counted_by_kind_and_by_what_became_of_them() {
    use crate::bounce_messages::{ARF, AUTO_REPLY, DSN};
    let mut app = spawn_app_with(|s| s.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let metrics = app.metrics_addr.expect("metrics served");
    // Other tests of this process read bounce messages too: the counts may only rise by more.
    let series = [
        ("delivery_status", "parsed", 1),
        ("delivery_status", "recorded", 1),
        ("delivery_status", "duplicate", 2),
        ("feedback_report", "recorded", 1),
        ("auto_reply", "nothing_to_record", 1),
    ];
    let before = scrape(metrics).await;
    app.client
        .parse_bounce_message(pb::ParseBounceMessageRequest {
            raw_message: DSN.as_bytes().to_vec(),
            provider: String::new(),
        })
        .await
        .unwrap();
    for raw in [DSN, DSN, DSN, ARF, AUTO_REPLY] {
        app.client
            .report_bounce_message(pb::ReportBounceMessageRequest {
                tenant: TENANT.into(),
                raw_message: raw.as_bytes().to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let after = scrape(metrics).await;
    for (kind, outcome, at_least) in series {
        let rise = bounce_messages(&after, kind, outcome) - bounce_messages(&before, kind, outcome);
        assert!(rise >= at_least, "{kind} {outcome}: +{rise}\n{after}");
    }
    assert!(
        after.contains("# TYPE suppressd_bounce_messages_total counter"),
        "{after}"
    );
}
