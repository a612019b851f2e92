//! Suppressions that end by themselves: per-reason lifetimes (`--suppression-ttl`), an expiry
//! given to Suppress, the instant at which every read stops blocking, and the sweep that
//! records the end. Time moves by the server's manual clock, never by sleeping.

use std::time::Duration;

use suppressd::domain::Timestamp;
use suppressd::grpc::proto::{
    self as pb, AddressState, BounceReason, ImportDecision, Outcome, StateChangeKind,
};

use crate::helpers::*;

const DAY: Duration = Duration::from_secs(86_400);

/// A server whose suppressions for each `REASON=DURATION` of `ttls` expire.
async fn spawn_with_ttls(ttls: &[&str]) -> TestApp {
    let entries = ttls
        .iter()
        .map(|t| t.parse().expect("a valid ttl"))
        .collect();
    spawn_app_with(|s| s.suppression_ttl = entries).await
}

/// The server's clock, rounded up to the next whole second, plus `d`.
fn whole_second_after(app: &TestApp, d: Duration) -> Timestamp {
    let now = app.clock.now().micros();
    let second = now.div_euclid(1_000_000) + 1;
    Timestamp(second * 1_000_000).plus(d)
}

async fn suppress_until(app: &mut TestApp, address: &str, end: Timestamp) -> pb::SuppressResponse {
    app.client
        .suppress(pb::SuppressRequest {
            address: address.into(),
            note: "until the dispute is settled".into(),
            expires_at: Some(proto_time(end)),
            ..Default::default()
        })
        .await
        .expect("suppress succeeds")
        .into_inner()
}

/// Status, batch status and the import guard, each asked once at the clock's instant.
async fn three_answers(
    app: &mut TestApp,
    address: &str,
) -> (AddressState, AddressState, ImportDecision) {
    let status = app.state("", address).await;
    let batch = app.batch_states("", &[address], "").await[0];
    let import = app.import_verdicts("", &[address], "").await[0].decision();
    (status, batch, import)
}

async fn listed(app: &mut TestApp) -> Vec<String> {
    app.client
        .list_suppressions(pb::ListSuppressionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .suppressions
        .into_iter()
        .map(|s| s.address)
        .collect()
}

fn soft(id: &str, address: &str) -> pb::SendResult {
    result(id, address, Outcome::SoftBounce, MAILBOX_FULL)
}

#[tokio::test]
async fn a_suppression_blocks_until_the_instant_of_its_expiry_in_status_batch_and_import_alike() {
    let mut app = spawn_app().await;
    let end = whole_second_after(&app, Duration::from_secs(600));
    let done = suppress_until(&mut app, "disputed@example.com", end).await;
    let suppression = done.status.unwrap().suppression.unwrap();
    assert_eq!(suppression.expires_at, Some(proto_time(end)));

    app.clock.set(Timestamp(end.micros() - 1));
    assert_eq!(
        three_answers(&mut app, "disputed@example.com").await,
        (
            AddressState::Suppressed,
            AddressState::Suppressed,
            ImportDecision::BlockSuppressed
        ),
        "a microsecond before the expiry"
    );
    assert_eq!(listed(&mut app).await, ["disputed@example.com"]);

    app.clock.set(end);
    assert_eq!(
        three_answers(&mut app, "disputed@example.com").await,
        (
            AddressState::Allowed,
            AddressState::Allowed,
            ImportDecision::Allow
        ),
        "at the instant of the expiry, swept or not"
    );
    assert!(
        listed(&mut app).await.is_empty(),
        "an expired suppression is not listed"
    );
}

#[tokio::test]
async fn a_suppression_whose_expiry_passed_before_it_was_reported_never_blocks() {
    // A soft-bounce escalation from old logs: its thirty days ended before the report.
    let mut app = spawn_with_ttls(&["repeated-soft-bounce=30d"]).await;
    for (i, days_ago) in [40i64, 39, 38].into_iter().enumerate() {
        let mut r = soft(&format!("old-{i}"), "old@example.com");
        r.occurred_at = seconds_before(&app.clock, days_ago * 86_400);
        app.report("", r).await;
    }
    assert_eq!(
        three_answers(&mut app, "old@example.com").await,
        (
            AddressState::Allowed,
            AddressState::Allowed,
            ImportDecision::Allow
        )
    );
    let status = app.status("", "old@example.com").await;
    assert_eq!(
        status.recent_soft_bounces, 0,
        "the count restarted at the expiry"
    );
}

#[tokio::test]
async fn the_sweep_records_the_expiry_in_history_by_the_system_and_the_soft_count_restarts() {
    let mut app = spawn_with_ttls(&["repeated-soft-bounce=30d"]).await;
    let address = "full@example.com";
    for i in 0..3 {
        app.report("", soft(&format!("s{i}"), address)).await;
        app.clock.advance(Duration::from_secs(3600));
    }
    let status = app.status("", address).await;
    assert_eq!(status.state(), AddressState::Suppressed);
    let suppression = status.suppression.unwrap();
    assert_eq!(suppression.reason(), BounceReason::RepeatedSoftBounce);
    let since = suppression.since.unwrap();
    let end = suppression.expires_at.expect("the reason's lifetime");
    assert_eq!(end.seconds - since.seconds, 30 * 86_400);
    // Soft bounces while suppressed do not count after the expiry.
    app.report("", soft("s-while-suppressed", address)).await;

    app.clock.advance(30 * DAY);
    assert_eq!(app.state("", address).await, AddressState::Allowed);
    let expired = app
        .wait_for_change("", address, StateChangeKind::Expired)
        .await;
    assert_eq!(expired.actor, "system");
    assert_eq!(expired.reason(), BounceReason::RepeatedSoftBounce);
    let entries = app.history("", address).await;
    let expired_at = entries
        .iter()
        .find(|e| {
            matches!(&e.entry, Some(pb::history_entry::Entry::StateChange(c))
                if c.kind() == StateChangeKind::Expired)
        })
        .and_then(|e| e.at);
    assert_eq!(expired_at, Some(end), "dated at the expiry");
    assert!(listed(&mut app).await.is_empty());

    // The count restarts: two soft bounces are not enough, the third suppresses again.
    for i in 0..2 {
        app.report("", soft(&format!("again-{i}"), address)).await;
    }
    let status = app.status("", address).await;
    assert_eq!(
        (status.state(), status.recent_soft_bounces),
        (AddressState::Allowed, 2)
    );
    app.report("", soft("again-2", address)).await;
    assert_eq!(app.state("", address).await, AddressState::Suppressed);
}

#[tokio::test]
async fn lifetimes_apply_per_reason_and_a_hard_bounce_stays_until_reactivated() {
    let mut app = spawn_with_ttls(&["manual=12h", "mailbox-full=14d"]).await;
    app.report(
        "",
        result("h", "gone@example.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;
    let manual = app
        .client
        .suppress(pb::SuppressRequest {
            address: "paused@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let s = manual.status.unwrap().suppression.unwrap();
    assert_eq!(
        s.expires_at.unwrap().seconds - s.since.unwrap().seconds,
        12 * 3600
    );
    let hard = app
        .status("", "gone@example.com")
        .await
        .suppression
        .unwrap();
    assert_eq!(hard.expires_at, None, "no lifetime for mailbox-not-found");

    app.clock.advance(Duration::from_secs(12 * 3600));
    assert_eq!(
        app.state("", "paused@example.com").await,
        AddressState::Allowed
    );
    app.clock.advance(365 * DAY);
    assert_eq!(
        app.state("", "gone@example.com").await,
        AddressState::Suppressed
    );
}

#[tokio::test]
async fn a_hard_bounce_during_a_suppression_that_would_end_outlasts_it() {
    let mut app = spawn_with_ttls(&["repeated-soft-bounce=30d"]).await;
    let address = "later-gone@example.com";
    for i in 0..3 {
        app.report("", soft(&format!("s{i}"), address)).await;
    }
    app.clock.advance(DAY);
    app.report("", result("h", address, Outcome::HardBounce, USER_UNKNOWN))
        .await;
    let s = app.status("", address).await.suppression.unwrap();
    assert_eq!(
        (s.reason(), s.event_id.as_str(), s.expires_at),
        (BounceReason::MailboxNotFound, "h", None)
    );
    app.clock.advance(60 * DAY);
    assert_eq!(app.state("", address).await, AddressState::Suppressed);
}

#[tokio::test]
async fn suppress_takes_an_expiry_only_in_the_future_and_a_refused_one_changes_nothing() {
    let mut app = spawn_app().await;
    let now = app.clock.now();
    for (what, expires_at) in [
        ("the past", proto_time(Timestamp(now.micros() - 1_000_000))),
        ("now", proto_time(now)),
        (
            "no valid time",
            prost_types::Timestamp {
                seconds: 1,
                nanos: -5,
            },
        ),
    ] {
        let err = app
            .client
            .suppress(pb::SuppressRequest {
                address: "x@example.com".into(),
                expires_at: Some(expires_at),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(&err, "expires_at");
        assert_eq!(
            app.state("", "x@example.com").await,
            AddressState::Allowed,
            "{what}"
        );
    }
    assert!(app.history("", "x@example.com").await.is_empty());
}

#[tokio::test]
async fn a_lifetime_given_by_the_server_stays_with_suppressions_made_under_it() {
    let mut app = spawn_with_ttls(&["manual=1d"]).await;
    app.client
        .suppress(pb::SuppressRequest {
            address: "kept@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Restarted without the setting: the suppression made under it still ends after a day.
    let mut app = app.restart().await;
    let s = app
        .status("", "kept@example.com")
        .await
        .suppression
        .unwrap();
    assert!(s.expires_at.is_some());
    app.clock.advance(DAY);
    assert_eq!(
        app.state("", "kept@example.com").await,
        AddressState::Allowed
    );
    app.wait_for_change("", "kept@example.com", StateChangeKind::Expired)
        .await;
    // A new one is made without a lifetime.
    app.client
        .suppress(pb::SuppressRequest {
            address: "kept@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let s = app
        .status("", "kept@example.com")
        .await
        .suppression
        .unwrap();
    assert_eq!(s.expires_at, None);
}

#[tokio::test]
async fn a_reason_given_two_lifetimes_keeps_the_server_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    settings.suppression_ttl = vec!["manual=1d".parse().unwrap(), "manual=2d".parse().unwrap()];
    let err = suppressd::startup::Application::build(settings)
        .await
        .err()
        .expect("refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("--suppression-ttl") && message.contains("manual"),
        "{message}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "before touching the data"
    );
}
