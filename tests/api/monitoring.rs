//! Bounce-rate monitoring by source, campaign and segment.

use std::time::Duration;

use suppressd::grpc::proto::{self as pb, Outcome, SourceHealth, StatsDimension, StatsMetric};

use crate::helpers::*;

fn sent(id: &str, address: &str, outcome: Outcome, source: &str) -> pb::SendResult {
    let smtp = match outcome {
        Outcome::HardBounce => USER_UNKNOWN,
        Outcome::SoftBounce => MAILBOX_FULL,
        Outcome::Block => GMAIL_UNSOLICITED,
        _ => "",
    };
    pb::SendResult {
        source: source.into(),
        campaign: "autumn".into(),
        segment: "vip".into(),
        ..result(id, address, outcome, smtp)
    }
}

/// `delivered` deliveries, `hard` hard bounces and `complaints` complaints from `source`.
fn mix(source: &str, delivered: usize, hard: usize, complaints: usize) -> Vec<pb::SendResult> {
    let mut out = Vec::new();
    for i in 0..delivered {
        out.push(sent(
            &format!("{source}-d{i}"),
            &format!("d{i}@{source}.example"),
            Outcome::Delivered,
            source,
        ));
    }
    for i in 0..hard {
        out.push(sent(
            &format!("{source}-h{i}"),
            &format!("h{i}@{source}.example"),
            Outcome::HardBounce,
            source,
        ));
    }
    for i in 0..complaints {
        out.push(sent(
            &format!("{source}-c{i}"),
            &format!("c{i}@{source}.example"),
            Outcome::Complaint,
            source,
        ));
    }
    out
}

async fn ingest(
    client: &mut Client,
    tenant: &str,
    results: Vec<pb::SendResult>,
) -> pb::ReportSendResultsResponse {
    client
        .report_send_results(tokio_stream::iter(vec![pb::ReportSendResultsRequest {
            tenant: tenant.into(),
            results,
        }]))
        .await
        .unwrap()
        .into_inner()
}

async fn stats(
    app: &mut TestApp,
    dimension: StatsDimension,
    value: &str,
) -> pb::GetSourceStatsResponse {
    app.client
        .get_source_stats(pb::GetSourceStatsRequest {
            dimension: dimension as i32,
            value: value.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn counts(r: &pb::GetSourceStatsResponse) -> pb::OutcomeCounts {
    r.current.as_ref().unwrap().counts.unwrap()
}

#[tokio::test]
async fn counters_are_exact_under_replays_and_eight_concurrent_reporters() {
    let mut app = spawn_app().await;
    let mut tasks = Vec::new();
    for reporter in 0..8 {
        let mut client = app.client.clone();
        tasks.push(tokio::spawn(async move {
            // Every reporter sends the same 100 shared events (replays of each other) and 50 of
            // its own, in small messages so that they interleave.
            let mut results: Vec<_> = (0..100)
                .map(|i| {
                    let outcome = if i % 10 == 0 {
                        Outcome::HardBounce
                    } else {
                        Outcome::Delivered
                    };
                    sent(
                        &format!("shared-{i}"),
                        &format!("s{i}@x.example"),
                        outcome,
                        "concurrent",
                    )
                })
                .collect();
            results.extend((0..50).map(|i| {
                let outcome = if i % 5 == 0 {
                    Outcome::SoftBounce
                } else {
                    Outcome::Delivered
                };
                sent(
                    &format!("own-{reporter}-{i}"),
                    &format!("o{reporter}-{i}@x.example"),
                    outcome,
                    "concurrent",
                )
            }));
            for chunk in results.chunks(7) {
                let r = ingest(&mut client, "", chunk.to_vec()).await;
                assert!(r.rejections.is_empty());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Replays, once more, through the unary call.
    for i in 0..10 {
        let r = app
            .report(
                "",
                sent(
                    &format!("shared-{i}"),
                    &format!("s{i}@x.example"),
                    Outcome::Delivered,
                    "concurrent",
                ),
            )
            .await;
        assert!(r.duplicate);
    }
    let expected = pb::OutcomeCounts {
        sent: 100 + 8 * 50,
        delivered: 90 + 8 * 40,
        hard_bounces: 10,
        soft_bounces: 8 * 10,
        blocks: 0,
        complaints: 0,
        ..Default::default()
    };
    for dimension in [
        StatsDimension::Source,
        StatsDimension::Campaign,
        StatsDimension::Segment,
    ] {
        let value = match dimension {
            StatsDimension::Source => "concurrent",
            StatsDimension::Campaign => "autumn",
            _ => "vip",
        };
        assert_eq!(
            counts(&stats(&mut app, dimension, value).await),
            expected,
            "{dimension:?}"
        );
    }
    // A restart keeps the counters.
    let mut app = app.restart().await;
    assert_eq!(
        counts(&stats(&mut app, StatsDimension::Source, "concurrent").await),
        expected
    );
}

#[tokio::test]
async fn verdicts_follow_the_thresholds_and_need_a_minimum_sample() {
    let mut app = spawn_app().await;
    let mut all = Vec::new();
    all.extend(mix("tiny", 2, 1, 0)); // 1 hard in 3: too small a sample
    all.extend(mix("fine", 990, 10, 0)); // 1 %
    all.extend(mix("watchme", 970, 30, 0)); // 3 %
    all.extend(mix("bad", 940, 60, 0)); // 6 %
    all.extend(mix("noisy", 998, 0, 2)); // complaints 0.2 %
    all.extend(mix("angry", 996, 0, 4)); // complaints 0.4 %
    for chunk in all.chunks(1000) {
        ingest(&mut app.client, "", chunk.to_vec()).await;
    }
    let expect = [
        ("tiny", SourceHealth::Healthy, true),
        ("fine", SourceHealth::Healthy, false),
        ("watchme", SourceHealth::Watch, false),
        ("bad", SourceHealth::Pause, false),
        ("noisy", SourceHealth::Watch, false),
        ("angry", SourceHealth::Pause, false),
    ];
    for (source, health, too_small) in expect {
        let r = stats(&mut app, StatsDimension::Source, source).await;
        let v = r.verdict.unwrap();
        assert_eq!(
            (v.health(), v.sample_too_small),
            (health, too_small),
            "{source}: {}",
            v.reason
        );
    }
    let bad = stats(&mut app, StatsDimension::Source, "bad").await;
    let current = bad.current.unwrap();
    assert!((current.hard_bounce_rate - 0.06).abs() < 1e-9);
    assert_eq!(bad.bucket_seconds, 3600);
    assert_eq!(bad.series.len(), 24);
    let series_total: u64 = bad.series.iter().map(|b| b.counts.unwrap().sent).sum();
    assert_eq!(series_total, 1000);
    assert_eq!(
        bad.previous.unwrap().counts.unwrap().sent,
        0,
        "nothing the day before"
    );

    // Ranked by hard-bounce rate, paged.
    let mut values = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_source_stats(pb::ListSourceStatsRequest {
                dimension: StatsDimension::Source as i32,
                order_by: StatsMetric::HardBounceRate as i32,
                page_size: 4,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        values.extend(page.rows.iter().map(|r| r.value.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        values,
        vec!["tiny", "bad", "watchme", "fine", "angry", "noisy"]
    );
}

#[tokio::test]
async fn the_previous_window_shows_the_trend() {
    let mut app = spawn_app().await;
    let yesterday: Vec<_> = mix("trend", 90, 10, 0)
        .into_iter()
        .map(|mut r| {
            r.event_id = format!("y-{}", r.event_id);
            r.occurred_at = seconds_before(&app.clock, 30 * 3600);
            r
        })
        .collect();
    ingest(&mut app.client, "", yesterday).await;
    ingest(&mut app.client, "", mix("trend", 99, 1, 0)).await;
    let r = stats(&mut app, StatsDimension::Source, "trend").await;
    assert_eq!(r.current.unwrap().counts.unwrap().hard_bounces, 1);
    let previous = r.previous.unwrap();
    assert_eq!(previous.counts.unwrap().hard_bounces, 10);
    assert!((previous.hard_bounce_rate - 0.1).abs() < 1e-9);

    let month = app
        .client
        .get_source_stats(pb::GetSourceStatsRequest {
            dimension: StatsDimension::Source as i32,
            value: "trend".into(),
            window: pb::StatsWindow::Last30Days as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(month.bucket_seconds, 86_400);
    assert_eq!(month.series.len(), 30);
    assert_eq!(month.current.unwrap().counts.unwrap().sent, 200);
}

#[tokio::test]
async fn the_watch_stream_announces_a_threshold_crossing() {
    let mut app = spawn_app().await;
    let mut watch = app
        .client
        .watch_source_health(pb::WatchSourceHealthRequest {
            dimension: StatsDimension::Source as i32,
            value: "risky".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    ingest(&mut app.client, "", mix("risky", 200, 0, 0)).await;
    ingest(&mut app.client, "", mix("other", 10, 10, 0)).await;
    ingest(&mut app.client, "", mix("risky", 0, 20, 0)).await; // 20 / 220 = 9 %
    let change = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("a change is announced")
        .unwrap()
        .expect("stream open");
    assert_eq!(change.value, "risky");
    assert_eq!(change.previous(), SourceHealth::Healthy);
    assert_eq!(
        change.verdict.as_ref().unwrap().health(),
        SourceHealth::Pause
    );
    assert_eq!(change.stats.unwrap().counts.unwrap().hard_bounces, 20);
}

#[tokio::test]
async fn the_last_24_hours_slide_with_the_clock() {
    let mut app = spawn_app().await;
    ingest(&mut app.client, "", mix("sliding", 95, 5, 0)).await;
    let now = stats(&mut app, StatsDimension::Source, "sliding").await;
    assert_eq!(now.current.unwrap().counts.unwrap().sent, 100);
    assert_eq!(now.verdict.unwrap().health(), SourceHealth::Pause);

    // A day and two hours later the results are in the previous window, not the current one.
    app.clock.advance(Duration::from_secs(26 * 3600));
    let later = stats(&mut app, StatsDimension::Source, "sliding").await;
    assert_eq!(later.current.unwrap().counts.unwrap().sent, 0);
    assert_eq!(later.previous.unwrap().counts.unwrap().sent, 100);
    assert_eq!(later.verdict.unwrap().health(), SourceHealth::Healthy);
}

#[tokio::test]
async fn the_watch_stream_announces_recovery_when_bad_hours_slide_out_of_the_window() {
    let mut app = spawn_app().await;
    let mut watch = app
        .client
        .watch_source_health(pb::WatchSourceHealthRequest {
            dimension: StatsDimension::Source as i32,
            value: "fading".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    ingest(&mut app.client, "", mix("fading", 180, 20, 0)).await; // 10 %
    let paused = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the pause is announced")
        .unwrap()
        .expect("stream open");
    assert_eq!(paused.verdict.unwrap().health(), SourceHealth::Pause);

    // No new results: only the window's sliding past them can change the verdict.
    app.clock.advance(Duration::from_secs(25 * 3600));
    let recovered = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the recovery is announced without waiting for the minute tick")
        .unwrap()
        .expect("stream open");
    assert_eq!(recovered.value, "fading");
    assert_eq!(recovered.previous(), SourceHealth::Pause);
    assert_eq!(recovered.verdict.unwrap().health(), SourceHealth::Healthy);
    assert_eq!(recovered.stats.unwrap().counts.unwrap().sent, 0);
}

#[tokio::test]
async fn stats_requests_are_validated() {
    let mut app = spawn_app().await;
    let err = app
        .client
        .get_source_stats(pb::GetSourceStatsRequest {
            value: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "dimension");
    let err = app
        .client
        .get_source_stats(pb::GetSourceStatsRequest {
            dimension: StatsDimension::Source as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "value");
    let err = app
        .client
        .get_source_stats(pb::GetSourceStatsRequest {
            dimension: StatsDimension::Source as i32,
            value: "x".into(),
            start_time: Some(prost_types::Timestamp {
                seconds: 2_000_000_000,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: 1_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "end_time");
}
