//! Unsubscribes: from every mail (suppressing like a complaint) or from one list (blocking only
//! calls that name that list), reported by senders or recorded by operators, kept apart from
//! bounces.

use suppressd::grpc::proto::{
    self as pb, AddressState, BounceReason, ImportDecision, Outcome, OutcomeType, StateChangeKind,
    StatsDimension,
};

use crate::helpers::*;

const WEEKLY: &str = "newsletter-weekly";

/// An unsubscribe reported by a sender: from `list`, or from every list when it is empty.
fn unsubscribe(id: &str, address: &str, list: &str) -> pb::SendResult {
    pb::SendResult {
        list_id: list.into(),
        ..result(id, address, Outcome::Unsubscribe, "")
    }
}

fn decisions(verdicts: &[pb::ImportVerdict]) -> Vec<ImportDecision> {
    verdicts.iter().map(|v| v.decision()).collect()
}

#[tokio::test]
async fn an_unsubscribe_from_every_list_suppresses_every_mail_like_a_complaint() {
    let mut app = spawn_app().await;
    // Whatever text comes with it: the sender alone knows of an unsubscribe.
    let mut r = unsubscribe("u1", "gone@example.com", "");
    r.smtp_response = "250 2.0.0 OK".into();
    let reported = app.report("", r).await;
    let c = reported.classification.unwrap();
    assert_eq!(
        (c.outcome_type(), c.reason(), c.rule_id.as_str()),
        (
            OutcomeType::Unsubscribe,
            BounceReason::Unsubscribed,
            "label.unsubscribe"
        )
    );
    let s = reported.status.unwrap();
    assert_eq!(s.state(), AddressState::Suppressed);
    let suppression = s.suppression.unwrap();
    assert_eq!(suppression.reason(), BounceReason::Unsubscribed);
    assert_eq!(suppression.list_id, "");

    for list in ["", WEEKLY, "product-updates"] {
        assert_eq!(
            app.status_for_list("", "gone@example.com", list)
                .await
                .state(),
            AddressState::Suppressed,
            "{list:?}"
        );
        let verdicts = app.import_verdicts("", &["gone@example.com"], list).await;
        assert_eq!(decisions(&verdicts), [ImportDecision::BlockSuppressed]);
    }
}

#[tokio::test]
async fn an_unsubscribe_from_one_list_blocks_only_calls_that_name_it() {
    let mut app = spawn_app().await;
    let reported = app
        .report("", unsubscribe("u1", "reader@example.com", WEEKLY))
        .await;
    let s = reported.status.unwrap();
    assert_eq!(
        s.state(),
        AddressState::Allowed,
        "transactional mail is unaffected"
    );
    assert_eq!(s.unsubscribed_lists, [WEEKLY]);

    let s = app.status_for_list("", "reader@example.com", WEEKLY).await;
    assert_eq!(s.state(), AddressState::Suppressed);
    let suppression = s.suppression.unwrap();
    assert_eq!(
        (suppression.reason(), suppression.list_id.as_str()),
        (BounceReason::Unsubscribed, WEEKLY)
    );
    assert!(suppression.since.is_some());
    assert_eq!(suppression.event_id, "u1");
    let other = app
        .status_for_list("", "reader@example.com", "product-updates")
        .await;
    assert_eq!(other.state(), AddressState::Allowed);
    assert_eq!(other.unsubscribed_lists, [WEEKLY]);

    let batch = ["reader@example.com", "someone@example.com"];
    assert_eq!(
        app.batch_states("", &batch, WEEKLY).await,
        [AddressState::Suppressed, AddressState::Allowed]
    );
    assert_eq!(
        app.batch_states("", &batch, "").await,
        [AddressState::Allowed, AddressState::Allowed]
    );

    let verdicts = app.import_verdicts("", &batch, WEEKLY).await;
    assert_eq!(
        decisions(&verdicts),
        [ImportDecision::BlockSuppressed, ImportDecision::Allow]
    );
    assert_eq!(verdicts[0].suppression.as_ref().unwrap().list_id, WEEKLY);
    assert!(
        verdicts[0].detail.contains(WEEKLY),
        "{}",
        verdicts[0].detail
    );
    for list in ["", "product-updates"] {
        let verdicts = app.import_verdicts("", &batch, list).await;
        assert_eq!(
            decisions(&verdicts),
            [ImportDecision::Allow, ImportDecision::Allow],
            "{list:?}"
        );
    }
    // Another tenant's reader is not unsubscribed.
    assert_eq!(
        app.batch_states("globex", &batch, WEEKLY).await,
        [AddressState::Allowed, AddressState::Allowed]
    );

    let changes = app.changes("", "reader@example.com").await;
    assert_eq!(changes[0].kind(), StateChangeKind::UnsubscribedFromList);
    assert_eq!(changes[0].actor, "system");
    assert!(changes[0].note.contains(WEEKLY), "{}", changes[0].note);
}

#[tokio::test]
async fn unsubscribes_are_not_bounces_but_are_counted_and_listed_apart() {
    let mut app = spawn_app().await;
    app.report("", unsubscribe("u-all", "all@example.com", ""))
        .await;
    app.report("", unsubscribe("u-list", "list@example.com", WEEKLY))
        .await;
    app.report(
        "",
        result(
            "h",
            "bounced@example.com",
            Outcome::HardBounce,
            USER_UNKNOWN,
        ),
    )
    .await;

    let bounces = app
        .client
        .list_bounces(pb::ListBouncesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .bounces;
    let ids: Vec<&str> = bounces.iter().map(|b| b.event_id.as_str()).collect();
    assert_eq!(ids, ["h"]);
    let err = app
        .client
        .list_bounces(pb::ListBouncesRequest {
            outcome_types: vec![OutcomeType::Unsubscribe as i32],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "outcome_types[0]");

    let unsubscribed: Vec<String> = app
        .client
        .list_suppressions(pb::ListSuppressionsRequest {
            reasons: vec![BounceReason::Unsubscribed as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .suppressions
        .into_iter()
        .map(|s| s.address)
        .collect();
    assert_eq!(unsubscribed, ["all@example.com"]);

    let stats = app
        .client
        .get_source_stats(pb::GetSourceStatsRequest {
            dimension: StatsDimension::Source as i32,
            value: "test-source".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let current = stats.current.unwrap();
    let counts = current.counts.unwrap();
    assert_eq!(
        (
            counts.sent,
            counts.unsubscribes,
            counts.hard_bounces,
            counts.complaints
        ),
        (3, 2, 1, 0)
    );
    assert!((current.hard_bounce_rate - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(current.complaint_rate, 0.0);
}

#[tokio::test]
async fn operators_unsubscribe_and_resubscribe_an_address_list_by_list_with_who_and_why() {
    let mut app = spawn_app().await;
    let address = "asked@example.com";
    let unsubscribe_request = || {
        let mut req = tonic::Request::new(pb::SuppressRequest {
            address: address.into(),
            reason: BounceReason::Unsubscribed as i32,
            list_id: WEEKLY.into(),
            note: "asked on the phone".into(),
            ..Default::default()
        });
        req.metadata_mut()
            .insert("x-caller-id", "agent-1".parse().unwrap());
        req
    };
    let done = app
        .client
        .suppress(unsubscribe_request())
        .await
        .unwrap()
        .into_inner();
    assert!(!done.already_suppressed);
    let s = done.status.unwrap();
    assert_eq!(s.state(), AddressState::Suppressed);
    assert_eq!(s.suppression.unwrap().list_id, WEEKLY);
    assert!(
        app.client
            .suppress(unsubscribe_request())
            .await
            .unwrap()
            .into_inner()
            .already_suppressed
    );
    assert_eq!(app.state("", address).await, AddressState::Allowed);

    let err = app
        .client
        .suppress(pb::SuppressRequest {
            address: address.into(),
            reason: BounceReason::Manual as i32,
            list_id: WEEKLY.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "list_id");
    assert_eq!(app.state("", address).await, AddressState::Allowed);

    // Without a list there is nothing to lift: the address is not suppressed.
    let err = app
        .client
        .reactivate(pb::ReactivateRequest {
            address: address.into(),
            justification: "resubscribed".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let mut req = tonic::Request::new(pb::ReactivateRequest {
        address: address.into(),
        justification: "resubscribed in the preference centre".into(),
        list_id: WEEKLY.into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-caller-id", "agent-2".parse().unwrap());
    let lifted = app.client.reactivate(req).await.unwrap().into_inner();
    assert_eq!(lifted.lifted.unwrap().list_id, WEEKLY);
    assert_eq!(lifted.status.unwrap().state(), AddressState::Allowed);
    assert_eq!(
        app.status_for_list("", address, WEEKLY).await.state(),
        AddressState::Allowed
    );
    let err = app
        .client
        .reactivate(pb::ReactivateRequest {
            address: address.into(),
            justification: "again".into(),
            list_id: WEEKLY.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let changes = app.changes("", address).await;
    let seen: Vec<(StateChangeKind, &str)> = changes
        .iter()
        .map(|c| (c.kind(), c.actor.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (StateChangeKind::Reactivated, "agent-2"),
            (StateChangeKind::UnsubscribedFromList, "agent-1"),
        ]
    );
    assert!(changes.iter().all(|c| c.note.contains(WEEKLY)));
    assert!(changes
        .iter()
        .all(|c| c.reason() == BounceReason::Unsubscribed));
}

#[tokio::test]
async fn an_operator_unsubscribe_from_every_list_is_listed_with_the_unsubscribes() {
    let mut app = spawn_app().await;
    let done = app
        .client
        .suppress(pb::SuppressRequest {
            address: "everything@example.com".into(),
            reason: BounceReason::Unsubscribed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status.unwrap().state(), AddressState::Suppressed);
    let listed = app
        .client
        .list_suppressions(pb::ListSuppressionsRequest {
            reasons: vec![BounceReason::Unsubscribed as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .suppressions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].address, "everything@example.com");
}

#[tokio::test]
async fn a_list_unsubscribe_survives_a_restart() {
    let mut app = spawn_app().await;
    app.report("", unsubscribe("u1", "reader@example.com", WEEKLY))
        .await;
    let mut app = app.restart().await;
    assert_eq!(
        app.status_for_list("", "reader@example.com", WEEKLY)
            .await
            .state(),
        AddressState::Suppressed
    );
    let verdicts = app
        .import_verdicts("", &["reader@example.com"], WEEKLY)
        .await;
    assert_eq!(decisions(&verdicts), [ImportDecision::BlockSuppressed]);
    assert_eq!(
        app.status("", "reader@example.com")
            .await
            .unsubscribed_lists,
        [WEEKLY]
    );
}

#[tokio::test]
async fn list_ids_are_checked_like_other_labels() {
    let mut app = spawn_app().await;
    let long = "l".repeat(129);
    let err = app
        .client
        .report_send_result(pb::ReportSendResultRequest {
            tenant: String::new(),
            result: Some(unsubscribe("u1", "a@example.com", &long)),
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "result.list_id");
    let err = app
        .client
        .get_suppression_status(pb::GetSuppressionStatusRequest {
            address: "a@example.com".into(),
            list_id: long.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "list_id");
    assert_eq!(app.state("", "a@example.com").await, AddressState::Allowed);
    // On a result that is not an unsubscribe, the list is ignored.
    let mut delivered = result("d1", "a@example.com", Outcome::Delivered, "");
    delivered.list_id = WEEKLY.into();
    app.report("", delivered).await;
    assert!(app
        .status("", "a@example.com")
        .await
        .unsubscribed_lists
        .is_empty());
}
