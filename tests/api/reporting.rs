//! Reporting send results and what they do to an address.

use suppressd::grpc::proto::{self as pb, AddressState, BounceReason, Outcome, OutcomeType};

use std::time::Duration;

use suppressd::clock::Clock;

use crate::helpers::*;

/// Day `day` of the last ten days by the server's clock (day 10 is today), so the soft-bounce
/// window covers them.
fn at_day(clock: &Clock, day: i64) -> Option<prost_types::Timestamp> {
    seconds_before(clock, (10 - day) * 86_400)
}

#[tokio::test]
async fn a_hard_bounce_suppresses_the_address_at_once_with_its_cause() {
    let mut app = spawn_app().await;
    let r = app
        .report(
            "",
            result(
                "ev-1",
                "Sarah.Smith@Company.com",
                Outcome::Bounce,
                USER_UNKNOWN,
            ),
        )
        .await;
    let c = r.classification.unwrap();
    assert_eq!(c.outcome_type(), OutcomeType::Hard);
    assert_eq!(c.reason(), BounceReason::MailboxNotFound);
    assert!(!c.rule_id.is_empty());
    assert!(!r.duplicate);
    assert_eq!(r.status.unwrap().state(), AddressState::Suppressed);

    let status = app.status("", "sarah.smith@company.com").await;
    assert_eq!(status.state(), AddressState::Suppressed);
    assert_eq!(status.address, "sarah.smith@company.com");
    let s = status.suppression.unwrap();
    assert_eq!(s.reason(), BounceReason::MailboxNotFound);
    assert_eq!(s.outcome_type(), OutcomeType::Hard);
    assert_eq!(s.event_id, "ev-1");
    assert_eq!(s.source, "test-source");
    assert_eq!(s.smtp_response, USER_UNKNOWN);
    assert!(s.since.is_some());
}

#[tokio::test]
async fn a_complaint_suppresses_the_address() {
    let mut app = spawn_app().await;
    app.report("", result("c-1", "fan@example.com", Outcome::Complaint, ""))
        .await;
    let status = app.status("", "fan@example.com").await;
    assert_eq!(status.state(), AddressState::Suppressed);
    assert_eq!(
        status.suppression.unwrap().reason(),
        BounceReason::Complaint
    );
}

#[tokio::test]
async fn a_sender_side_block_never_suppresses_the_recipient() {
    let mut app = spawn_app().await;
    for i in 0..5 {
        let r = app
            .report(
                "",
                result(
                    &format!("b-{i}"),
                    "customer@gmail.com",
                    Outcome::Bounce,
                    GMAIL_UNSOLICITED,
                ),
            )
            .await;
        assert_eq!(r.classification.unwrap().outcome_type(), OutcomeType::Block);
    }
    let status = app.status("", "customer@gmail.com").await;
    assert_eq!(status.state(), AddressState::Allowed);
    assert_eq!(status.recent_soft_bounces, 0);
}

#[tokio::test]
async fn soft_bounces_suppress_at_the_threshold_and_a_delivery_resets_the_count() {
    let mut app = spawn_app().await;
    let clock = app.clock.clone();
    let soft = |id: &str, addr: &str, day: i64| pb::SendResult {
        occurred_at: at_day(&clock, day),
        ..result(id, addr, Outcome::SoftBounce, MAILBOX_FULL)
    };
    // Two soft bounces, a delivery, two more: never three in a row.
    app.report("", soft("a1", "reset@example.com", 1)).await;
    app.report("", soft("a2", "reset@example.com", 2)).await;
    assert_eq!(
        app.status("", "reset@example.com")
            .await
            .recent_soft_bounces,
        2
    );
    app.report(
        "",
        pb::SendResult {
            occurred_at: at_day(&app.clock, 3),
            ..result(
                "a3",
                "reset@example.com",
                Outcome::Delivered,
                "250 2.0.0 OK",
            )
        },
    )
    .await;
    app.report("", soft("a4", "reset@example.com", 4)).await;
    app.report("", soft("a5", "reset@example.com", 5)).await;
    let status = app.status("", "reset@example.com").await;
    assert_eq!(status.state(), AddressState::Allowed);

    // Three within the window: suppressed with reason "repeated soft bounce".
    for (i, day) in [1, 2, 3].into_iter().enumerate() {
        let r = app
            .report("", soft(&format!("s{i}"), "full@example.com", day))
            .await;
        let expect = if i < 2 {
            AddressState::Allowed
        } else {
            AddressState::Suppressed
        };
        assert_eq!(
            r.status.unwrap().state(),
            expect,
            "after soft bounce {}",
            i + 1
        );
    }
    let s = app
        .status("", "full@example.com")
        .await
        .suppression
        .unwrap();
    assert_eq!(s.reason(), BounceReason::RepeatedSoftBounce);
    assert_eq!(s.event_id, "s2");
}

#[tokio::test]
async fn soft_bounces_older_than_the_window_stop_counting_as_the_clock_moves_on() {
    let mut app = spawn_app().await;
    let soft = |id: &str| result(id, "slow@example.com", Outcome::SoftBounce, MAILBOX_FULL);
    app.report("", soft("w1")).await;
    app.report("", soft("w2")).await;
    assert_eq!(
        app.status("", "slow@example.com").await.recent_soft_bounces,
        2
    );

    // Fifteen days later the window (14 days) has let go of both.
    app.clock.advance(Duration::from_secs(15 * 86_400));
    assert_eq!(
        app.status("", "slow@example.com").await.recent_soft_bounces,
        0
    );
    let r = app.report("", soft("w3")).await;
    let status = r.status.unwrap();
    assert_eq!(
        status.state(),
        AddressState::Allowed,
        "only one in the window"
    );
    assert_eq!(status.recent_soft_bounces, 1);

    // Two more within the window make three: suppressed.
    app.clock.advance(Duration::from_secs(86_400));
    app.report("", soft("w4")).await;
    app.clock.advance(Duration::from_secs(86_400));
    let r = app.report("", soft("w5")).await;
    assert_eq!(r.status.unwrap().state(), AddressState::Suppressed);
}

#[tokio::test]
async fn a_later_delivery_does_not_lift_a_suppression() {
    let mut app = spawn_app().await;
    app.report(
        "",
        result("h", "gone@example.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;
    app.report(
        "",
        result("d", "gone@example.com", Outcome::Delivered, "250 OK"),
    )
    .await;
    assert_eq!(
        app.state("", "gone@example.com").await,
        AddressState::Suppressed
    );
}

#[tokio::test]
async fn replaying_an_event_id_changes_nothing_and_says_duplicate() {
    let mut app = spawn_app().await;
    let soft = result(
        "same-id",
        "twice@example.com",
        Outcome::SoftBounce,
        MAILBOX_FULL,
    );
    let first = app.report("", soft.clone()).await;
    assert!(!first.duplicate);
    for _ in 0..3 {
        let again = app.report("", soft.clone()).await;
        assert!(again.duplicate);
        assert_eq!(again.classification, first.classification);
    }
    let status = app.status("", "twice@example.com").await;
    assert_eq!(status.recent_soft_bounces, 1, "counted once");
    assert_eq!(status.state(), AddressState::Allowed);

    let history = app
        .client
        .get_address_history(pb::GetAddressHistoryRequest {
            address: "twice@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries.len(), 1, "stored once");
}

#[tokio::test]
async fn bulk_ingestion_accepts_good_items_and_lists_bad_ones_by_index() {
    let mut app = spawn_app().await;
    let first = pb::ReportSendResultsRequest {
        tenant: "acme".into(),
        results: vec![
            result("r0", "one@example.com", Outcome::Bounce, USER_UNKNOWN),
            result("r1", "not-an-address", Outcome::Bounce, USER_UNKNOWN),
            result("r2", "two@example.com", Outcome::Delivered, "250 OK"),
        ],
    };
    let second = pb::ReportSendResultsRequest {
        tenant: "acme".into(),
        results: vec![
            result("r0", "one@example.com", Outcome::Bounce, USER_UNKNOWN), // replay
            result("", "three@example.com", Outcome::Bounce, USER_UNKNOWN), // no event id
            result(
                "r5",
                "three@example.com",
                Outcome::Unspecified,
                USER_UNKNOWN,
            ), // no outcome
            result("r6", "four@example.com", Outcome::Complaint, ""),
            result("r6", "four@example.com", Outcome::Complaint, ""), // duplicate in one message
        ],
    };
    let summary = app
        .client
        .report_send_results(tokio_stream::iter(vec![first, second]))
        .await
        .expect("stream accepted")
        .into_inner();
    assert_eq!(summary.accepted, 3);
    assert_eq!(summary.duplicates, 2);
    assert_eq!(summary.newly_suppressed, 2);
    let rejected: Vec<(u64, &str)> = summary
        .rejections
        .iter()
        .map(|r| (r.index, r.field.as_str()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, "results[1].address"),
            (4, "results[1].event_id"),
            (5, "results[2].outcome"),
        ]
    );
    assert_eq!(
        app.state("acme", "one@example.com").await,
        AddressState::Suppressed
    );
    assert_eq!(
        app.state("acme", "four@example.com").await,
        AddressState::Suppressed
    );
    assert_eq!(
        app.state("acme", "two@example.com").await,
        AddressState::Allowed
    );
    assert_eq!(
        app.state("acme", "three@example.com").await,
        AddressState::Allowed
    );
}

#[tokio::test]
async fn a_streams_messages_are_applied_in_the_order_sent() {
    // More messages than the server queues ahead of their commits; every message replays the
    // same event id with its own source, so only the first message's version may be stored.
    let mut app = spawn_app().await;
    let messages: Vec<pb::ReportSendResultsRequest> = (0..12)
        .map(|k| pb::ReportSendResultsRequest {
            tenant: "acme".into(),
            results: vec![
                pb::SendResult {
                    source: format!("message-{k}"),
                    ..result(
                        "same",
                        "order@example.com",
                        Outcome::HardBounce,
                        USER_UNKNOWN,
                    )
                },
                result(
                    &format!("other-{k}"),
                    &format!("other-{k}@example.com"),
                    Outcome::HardBounce,
                    USER_UNKNOWN,
                ),
            ],
        })
        .collect();
    let summary = app
        .client
        .report_send_results(tokio_stream::iter(messages))
        .await
        .expect("stream accepted")
        .into_inner();
    assert_eq!(summary.accepted, 13);
    assert_eq!(summary.duplicates, 11);
    assert_eq!(summary.newly_suppressed, 13);
    let suppression = app
        .status("acme", "order@example.com")
        .await
        .suppression
        .expect("suppressed");
    assert_eq!(suppression.source, "message-0");
    for k in 0..12 {
        let address = format!("other-{k}@example.com");
        assert_eq!(
            app.state("acme", &address).await,
            AddressState::Suppressed,
            "{address}"
        );
    }
}

#[tokio::test]
async fn tenants_never_see_each_others_data() {
    let mut app = spawn_app().await;
    app.report(
        "acme",
        result(
            "e1",
            "shared@example.com",
            Outcome::HardBounce,
            USER_UNKNOWN,
        ),
    )
    .await;
    assert_eq!(
        app.state("acme", "shared@example.com").await,
        AddressState::Suppressed
    );
    assert_eq!(
        app.state("globex", "shared@example.com").await,
        AddressState::Allowed
    );
    assert_eq!(
        app.state("", "shared@example.com").await,
        AddressState::Allowed
    );
    // The same event id in another tenant is a different event.
    let r = app
        .report(
            "globex",
            result("e1", "other@example.com", Outcome::HardBounce, USER_UNKNOWN),
        )
        .await;
    assert!(!r.duplicate);
    let bounces = app
        .client
        .list_bounces(pb::ListBouncesRequest {
            tenant: "globex".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let addresses: Vec<_> = bounces.bounces.iter().map(|b| b.address.as_str()).collect();
    assert_eq!(addresses, vec!["other@example.com"]);
}
