//! Manual suppression, reactivation and an address's history.

use suppressd::grpc::proto::{
    self as pb, history_entry::Entry, AddressState, BounceReason, Outcome, StateChangeKind,
};

use crate::helpers::*;

async fn history(app: &mut TestApp, address: &str) -> Vec<pb::HistoryEntry> {
    app.client
        .get_address_history(pb::GetAddressHistoryRequest {
            address: address.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

#[tokio::test]
async fn manual_suppression_is_idempotent() {
    let mut app = spawn_app().await;
    let req = pb::SuppressRequest {
        address: "optout@example.com".into(),
        note: "ticket 4711".into(),
        ..Default::default()
    };
    let first = app.client.suppress(req.clone()).await.unwrap().into_inner();
    assert!(!first.already_suppressed);
    let status = first.status.unwrap();
    assert_eq!(status.state(), AddressState::Suppressed);
    assert_eq!(status.suppression.unwrap().reason(), BounceReason::Manual);
    let second = app.client.suppress(req).await.unwrap().into_inner();
    assert!(second.already_suppressed);
    assert_eq!(history(&mut app, "optout@example.com").await.len(), 1);
}

#[tokio::test]
async fn reactivation_needs_a_justification_and_is_recorded_with_who_and_why() {
    let mut app = spawn_app().await;
    app.report(
        "",
        result("h1", "back@example.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;

    let err = app
        .client
        .reactivate(pb::ReactivateRequest {
            address: "back@example.com".into(),
            justification: "   ".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "justification");
    assert_eq!(
        app.state("", "back@example.com").await,
        AddressState::Suppressed
    );

    let mut req = tonic::Request::new(pb::ReactivateRequest {
        address: "back@example.com".into(),
        justification: "customer confirmed the mailbox by phone".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-caller-id", "support-agent-7".parse().unwrap());
    let r = app.client.reactivate(req).await.unwrap().into_inner();
    assert_eq!(r.status.unwrap().state(), AddressState::Allowed);
    assert_eq!(r.lifted.unwrap().event_id, "h1");
    assert_eq!(
        app.state("", "back@example.com").await,
        AddressState::Allowed
    );

    let entries = history(&mut app, "back@example.com").await;
    let kinds: Vec<_> = entries
        .iter()
        .map(|e| match e.entry.as_ref().unwrap() {
            Entry::SendResult(r) => format!("result:{}", r.event_id),
            Entry::StateChange(c) => format!("{:?}", c.kind()),
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["Reactivated", "Suppressed", "result:h1"],
        "newest first"
    );
    let Entry::StateChange(change) = entries[0].entry.as_ref().unwrap() else {
        unreachable!()
    };
    assert_eq!(change.kind(), StateChangeKind::Reactivated);
    assert_eq!(change.actor, "support-agent-7");
    assert_eq!(change.note, "customer confirmed the mailbox by phone");

    // Without a caller identity the actor is "anonymous".
    app.client
        .suppress(pb::SuppressRequest {
            address: "back@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    app.client
        .reactivate(pb::ReactivateRequest {
            address: "back@example.com".into(),
            justification: "again".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let Entry::StateChange(change) = history(&mut app, "back@example.com").await[0]
        .entry
        .clone()
        .unwrap()
    else {
        panic!("state change expected")
    };
    assert_eq!(change.actor, "anonymous");
}

#[tokio::test]
async fn reactivating_an_address_that_is_not_suppressed_is_not_found() {
    let mut app = spawn_app().await;
    let err = app
        .client
        .reactivate(pb::ReactivateRequest {
            address: "never@example.com".into(),
            justification: "why not".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn nothing_but_reactivate_lifts_a_suppression() {
    let mut app = spawn_app().await;
    app.report("", result("c1", "stay@example.com", Outcome::Complaint, ""))
        .await;
    app.report(
        "",
        result("d1", "stay@example.com", Outcome::Delivered, "250 2.0.0 OK"),
    )
    .await;
    app.client
        .suppress(pb::SuppressRequest {
            address: "stay@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stream = app
        .check_import(vec![pb::CheckImportRequest {
            compact_allow: false,
            tenant: String::new(),
            contacts: vec![pb::ImportContact {
                address: "stay@example.com".into(),
                ..Default::default()
            }],
            ..Default::default()
        }])
        .await;
    while stream.message().await.unwrap().is_some() {}
    let app = app.restart().await;
    let mut app = app;
    assert_eq!(
        app.state("", "stay@example.com").await,
        AddressState::Suppressed
    );
}

#[tokio::test]
async fn history_pages_newest_first() {
    let mut app = spawn_app().await;
    for i in 0..7 {
        app.report(
            "",
            pb::SendResult {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: 1_780_000_000 + i,
                    nanos: 0,
                }),
                ..result(
                    &format!("d{i}"),
                    "busy@example.com",
                    Outcome::Delivered,
                    "250 OK",
                )
            },
        )
        .await;
    }
    let mut token = String::new();
    let mut ids = Vec::new();
    loop {
        let page = app
            .client
            .get_address_history(pb::GetAddressHistoryRequest {
                address: "busy@example.com".into(),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for e in page.entries {
            if let Some(Entry::SendResult(r)) = e.entry {
                ids.push(r.event_id);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids, vec!["d6", "d5", "d4", "d3", "d2", "d1", "d0"]);
}
