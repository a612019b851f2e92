//! "Which sources produce our bounces?"

use std::collections::HashSet;

use suppressd::grpc::proto::{self as pb, Outcome, OutcomeType};

use crate::helpers::*;

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn bounce(id: &str, source: &str, campaign: &str, seconds: i64) -> pb::SendResult {
    pb::SendResult {
        source: source.into(),
        campaign: campaign.into(),
        occurred_at: at(seconds),
        ..result(
            id,
            &format!("{id}@example.com"),
            Outcome::Bounce,
            USER_UNKNOWN,
        )
    }
}

async fn ingest(app: &mut TestApp, results: Vec<pb::SendResult>) {
    let summary = app
        .client
        .report_send_results(tokio_stream::iter(vec![pb::ReportSendResultsRequest {
            tenant: String::new(),
            results,
        }]))
        .await
        .unwrap()
        .into_inner();
    assert!(summary.rejections.is_empty(), "{:?}", summary.rejections);
}

async fn list(
    app: &mut TestApp,
    req: pb::ListBouncesRequest,
) -> Result<pb::ListBouncesResponse, tonic::Status> {
    app.client.list_bounces(req).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn pages_through_one_source_newest_first_while_new_events_arrive() {
    let mut app = spawn_app().await;
    let base = 1_780_000_000;
    ingest(
        &mut app,
        (0..250)
            .map(|i| bounce(&format!("p{i}"), "purchased-list-7", "", base + i))
            .collect(),
    )
    .await;
    ingest(
        &mut app,
        (0..50)
            .map(|i| bounce(&format!("w{i}"), "webinar", "", base + i))
            .collect(),
    )
    .await;

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(
            &mut app,
            pb::ListBouncesRequest {
                source: "purchased-list-7".into(),
                page_size: 40,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        pages += 1;
        assert!(page.bounces.len() <= 40);
        seen.extend(page.bounces.iter().map(|b| b.event_id.clone()));
        // New events, newer and older than the cursor, arrive between pages.
        if pages <= 3 {
            let n = pages as i64;
            ingest(
                &mut app,
                vec![
                    bounce(
                        &format!("new{n}"),
                        "purchased-list-7",
                        "",
                        base + 10_000 + n,
                    ),
                    bounce(
                        &format!("old{n}"),
                        "purchased-list-7",
                        "",
                        base - 10_000 - n,
                    ),
                ],
            )
            .await;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(pages >= 7);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    for i in 0..250 {
        assert!(unique.contains(&format!("p{i}")), "p{i} missing");
    }
    // Events older than the cursor arrive in later pages; newer ones are not in this walk.
    for n in 1..=3 {
        assert!(unique.contains(&format!("old{n}")), "old{n} missing");
    }
    assert!(
        !seen.iter().any(|id| id.starts_with('w')),
        "other source listed"
    );
    let p: Vec<i64> = seen
        .iter()
        .filter_map(|id| id.strip_prefix('p'))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(p.windows(2).all(|w| w[0] > w[1]), "newest first");
}

#[tokio::test]
async fn filters_by_type_campaign_and_time() {
    let mut app = spawn_app().await;
    let base = 1_780_000_000;
    ingest(
        &mut app,
        vec![
            bounce("a", "s", "spring", base + 1),
            bounce("b", "s", "summer", base + 2),
            bounce("c", "s", "spring", base + 3),
            pb::SendResult {
                source: "s".into(),
                campaign: "spring".into(),
                occurred_at: at(base + 4),
                ..result("d", "d@example.com", Outcome::Bounce, GMAIL_UNSOLICITED)
            },
            pb::SendResult {
                source: "s".into(),
                occurred_at: at(base + 5),
                ..result("e", "e@example.com", Outcome::Delivered, "250 OK")
            },
        ],
    )
    .await;
    let ids = |r: pb::ListBouncesResponse| {
        r.bounces
            .into_iter()
            .map(|b| b.event_id)
            .collect::<Vec<_>>()
    };

    let all = list(
        &mut app,
        pb::ListBouncesRequest {
            source: "s".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        ids(all),
        vec!["d", "c", "b", "a"],
        "deliveries are not bounces"
    );

    let hard = list(
        &mut app,
        pb::ListBouncesRequest {
            source: "s".into(),
            outcome_types: vec![OutcomeType::Hard as i32],
            campaign: "spring".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(hard), vec!["c", "a"]);

    let window = list(
        &mut app,
        pb::ListBouncesRequest {
            start_time: at(base + 2),
            end_time: at(base + 4),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        ids(window),
        vec!["c", "b"],
        "start inclusive, end exclusive, every source"
    );
    let first = list(
        &mut app,
        pb::ListBouncesRequest {
            source: "s".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let b = &first.bounces[0];
    assert_eq!(
        b.classification.as_ref().unwrap().outcome_type(),
        OutcomeType::Block
    );
    assert_eq!(b.result.as_ref().unwrap().smtp_response, GMAIL_UNSOLICITED);
}

#[tokio::test]
async fn a_tampered_or_foreign_page_token_is_invalid_argument() {
    let mut app = spawn_app().await;
    ingest(
        &mut app,
        (0..5)
            .map(|i| bounce(&format!("x{i}"), "s", "", 1_780_000_000 + i))
            .collect(),
    )
    .await;
    let page = list(
        &mut app,
        pb::ListBouncesRequest {
            source: "s".into(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let token = page.next_page_token;
    assert!(!token.is_empty());

    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let cases = vec![
        pb::ListBouncesRequest {
            source: "s".into(),
            page_token: String::from_utf8(tampered).unwrap(),
            ..Default::default()
        },
        pb::ListBouncesRequest {
            source: "other".into(),
            page_token: token.clone(),
            ..Default::default()
        },
        pb::ListBouncesRequest {
            tenant: "acme".into(),
            source: "s".into(),
            page_token: token.clone(),
            ..Default::default()
        },
        pb::ListBouncesRequest {
            source: "s".into(),
            page_token: "garbage!".into(),
            ..Default::default()
        },
    ];
    for req in cases {
        let err = list(&mut app, req).await.unwrap_err();
        assert_invalid(&err, "page_token");
    }
    // The genuine token still works.
    let next = list(
        &mut app,
        pb::ListBouncesRequest {
            source: "s".into(),
            page_size: 2,
            page_token: token,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(next.bounces.len(), 2);
}

#[tokio::test]
async fn pages_through_every_source_at_once_newest_first() {
    let mut app = spawn_app().await;
    let base = 1_780_000_000;
    // Three sources (one of them none at all) interleaved in time, and a delivery.
    let sources = ["alpha", "beta", ""];
    let mut results: Vec<pb::SendResult> = (0..90)
        .map(|i| bounce(&format!("b{i}"), sources[i % 3], "", base + i as i64))
        .collect();
    results.push(pb::SendResult {
        occurred_at: at(base + 45),
        ..result("d1", "d1@example.com", Outcome::Delivered, "250 OK")
    });
    ingest(&mut app, results).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            &mut app,
            pb::ListBouncesRequest {
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(page.bounces.len() <= 7);
        seen.extend(page.bounces.iter().map(|b| b.event_id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let want: Vec<String> = (0..90).rev().map(|i| format!("b{i}")).collect();
    assert_eq!(
        seen, want,
        "every bounce of every source once, newest first"
    );

    // A time window over every source: start inclusive, end exclusive.
    let page = list(
        &mut app,
        pb::ListBouncesRequest {
            start_time: at(base + 10),
            end_time: at(base + 20),
            page_size: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ids: Vec<&str> = page.bounces.iter().map(|b| b.event_id.as_str()).collect();
    let want: Vec<String> = (10..20).rev().map(|i| format!("b{i}")).collect();
    assert_eq!(ids, want);
}
