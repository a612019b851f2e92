//! The import guard: CRM syncs stream contacts through it before re-importing them.

use suppressd::grpc::proto::{self as pb, BounceReason, ImportDecision, Outcome};
use tokio_stream::StreamExt;

use crate::helpers::*;

/// A fresh server where `bounced@example.com` hard-bounced in `tenant`.
async fn app_with_a_hard_bounce(tenant: &str) -> TestApp {
    let mut app = spawn_app().await;
    app.report(
        tenant,
        result(
            "h",
            "bounced@example.com",
            Outcome::HardBounce,
            USER_UNKNOWN,
        ),
    )
    .await;
    app
}

fn contact(address: &str, external_id: &str) -> pb::ImportContact {
    pb::ImportContact {
        address: address.into(),
        external_id: external_id.into(),
        source: "crm-sync".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn one_stream_with_suppressed_invalid_duplicate_and_clean_contacts_keeps_order() {
    let mut app = app_with_a_hard_bounce("acme").await;
    app.report(
        "acme",
        result("c", "angry@example.com", Outcome::Complaint, ""),
    )
    .await;

    let first = pb::CheckImportRequest {
        tenant: "acme".into(),
        contacts: vec![
            contact("clean@example.com", "crm-1"),
            contact("Bounced@Example.com", "crm-2"),
            contact("not an address", "crm-3"),
            contact("CLEAN@example.com", "crm-4"),
        ],
        ..Default::default()
    };
    let second = pb::CheckImportRequest {
        tenant: "acme".into(),
        contacts: vec![
            contact("angry@example.com", "crm-5"),
            contact("bounced@example.com", "crm-6"),
            contact("fresh@example.com", "crm-7"),
        ],
        ..Default::default()
    };
    let mut responses = app.check_import(vec![first, second]).await;
    let r1 = responses.next().await.unwrap().unwrap();
    let r2 = responses.next().await.unwrap().unwrap();
    assert!(responses.next().await.is_none());
    assert_eq!((r1.batch_index, r2.batch_index), (0, 1));

    let decisions = |r: &pb::CheckImportResponse| -> Vec<(String, ImportDecision)> {
        r.verdicts
            .iter()
            .map(|v| (v.external_id.clone(), v.decision()))
            .collect()
    };
    assert_eq!(
        decisions(&r1),
        vec![
            ("crm-1".into(), ImportDecision::Allow),
            ("crm-2".into(), ImportDecision::BlockSuppressed),
            ("crm-3".into(), ImportDecision::BlockInvalid),
            ("crm-4".into(), ImportDecision::Duplicate),
        ]
    );
    // A duplicate of a suppressed address seen earlier is still reported as a duplicate: the
    // earlier verdict already blocked it.
    assert_eq!(
        decisions(&r2),
        vec![
            ("crm-5".into(), ImportDecision::BlockSuppressed),
            ("crm-6".into(), ImportDecision::Duplicate),
            ("crm-7".into(), ImportDecision::Allow),
        ]
    );
    let blocked = &r1.verdicts[1];
    assert_eq!(blocked.address, "Bounced@Example.com");
    assert_eq!(blocked.normalized_address, "bounced@example.com");
    let s = blocked.suppression.as_ref().unwrap();
    assert_eq!(s.reason(), BounceReason::MailboxNotFound);
    assert!(s.since.is_some());
    assert!(!blocked.detail.is_empty());
    assert!(
        !r1.verdicts[2].detail.is_empty(),
        "invalid verdicts say what is wrong"
    );
    assert_eq!(
        r2.verdicts[0].suppression.as_ref().unwrap().reason(),
        BounceReason::Complaint
    );
}

#[tokio::test]
async fn a_hundred_thousand_contact_stream_is_screened_exactly() {
    let mut app = spawn_app().await;
    // Suppress every 10th address of the list.
    let suppressed: Vec<pb::SendResult> = (0..100_000)
        .step_by(10)
        .map(|i| {
            result(
                &format!("e{i}"),
                &format!("user{i}@list.example"),
                Outcome::HardBounce,
                USER_UNKNOWN,
            )
        })
        .collect();
    let summary = app
        .client
        .report_send_results(tokio_stream::iter(
            suppressed
                .chunks(1000)
                .map(|c| pb::ReportSendResultsRequest {
                    tenant: "big".into(),
                    results: c.to_vec(),
                })
                .collect::<Vec<_>>(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted, 10_000);

    let requests: Vec<pb::CheckImportRequest> = (0..100)
        .map(|b| pb::CheckImportRequest {
            tenant: "big".into(),
            contacts: (b * 1000..(b + 1) * 1000)
                .map(|i| contact(&format!("User{i}@List.example"), &i.to_string()))
                .collect(),
            ..Default::default()
        })
        .collect();
    let mut responses = app.check_import(requests).await;
    let (mut allowed, mut blocked, mut seen) = (0, 0, 0usize);
    while let Some(r) = responses.next().await {
        let r = r.unwrap();
        for v in r.verdicts {
            let i: usize = v.external_id.parse().unwrap();
            assert_eq!(i, seen, "verdicts arrive in contact order");
            seen += 1;
            match v.decision() {
                ImportDecision::Allow => {
                    assert_ne!(i % 10, 0, "{i} is suppressed");
                    allowed += 1;
                }
                ImportDecision::BlockSuppressed => {
                    assert_eq!(i % 10, 0, "{i} is clean");
                    blocked += 1;
                }
                other => panic!("unexpected {other:?} for {i}"),
            }
        }
    }
    assert_eq!((seen, allowed, blocked), (100_000, 90_000, 10_000));
}

#[tokio::test]
async fn changing_tenant_within_a_stream_is_refused() {
    let mut app = spawn_app().await;
    let requests = vec![
        pb::CheckImportRequest {
            tenant: "acme".into(),
            contacts: vec![contact("a@example.com", "1")],
            ..Default::default()
        },
        pb::CheckImportRequest {
            tenant: "globex".into(),
            contacts: vec![contact("b@example.com", "2")],
            ..Default::default()
        },
    ];
    let mut responses = app.check_import(requests).await;
    assert!(responses.next().await.unwrap().is_ok());
    let err = responses.next().await.unwrap().unwrap_err();
    assert_invalid(&err, "tenant");
}

#[tokio::test]
async fn compact_streams_send_bare_allow_verdicts_and_full_blocks() {
    let mut app = app_with_a_hard_bounce("").await;
    let request = pb::CheckImportRequest {
        tenant: String::new(),
        contacts: vec![
            contact("clean@example.com", "1"),
            contact("bounced@example.com", "2"),
            contact("broken", "3"),
        ],
        compact_allow: true,
        ..Default::default()
    };
    let mut responses = app.check_import(vec![request]).await;
    let verdicts = responses.next().await.unwrap().unwrap().verdicts;
    assert_eq!(
        verdicts[0],
        pb::ImportVerdict {
            decision: ImportDecision::Allow as i32,
            ..Default::default()
        }
    );
    assert_eq!(verdicts[1].decision(), ImportDecision::BlockSuppressed);
    assert_eq!(verdicts[1].external_id, "2");
    assert_eq!(verdicts[1].normalized_address, "bounced@example.com");
    assert_eq!(verdicts[2].decision(), ImportDecision::BlockInvalid);
    assert_eq!(verdicts[2].external_id, "3");
}

#[tokio::test]
async fn packed_streams_answer_one_byte_per_contact_and_detail_only_the_blocked() {
    let mut app = app_with_a_hard_bounce("acme").await;
    let first = pb::CheckImportRequest {
        tenant: "acme".into(),
        // Envelope contacts first, then bare lines; positions run on across both.
        contacts: vec![contact("Bounced@Example.com", "crm-1")],
        address_lines:
            "clean@example.com\r\nnot an address\n\nCLEAN@example.com\nother@example.org\n".into(),
        packed_decisions: true,
        ..Default::default()
    };
    let second = pb::CheckImportRequest {
        tenant: "acme".into(),
        // No final newline; a repeat of the first message and a suppressed address.
        address_lines: "other@example.org\nfresh@example.net\nbounced@example.com".into(),
        ..Default::default()
    };
    let mut responses = app.check_import(vec![first, second]).await;

    let one = responses.message().await.unwrap().unwrap();
    assert_eq!(one.batch_index, 0);
    let decisions: Vec<ImportDecision> = one
        .decisions
        .iter()
        .map(|&d| ImportDecision::try_from(d as i32).unwrap())
        .collect();
    assert_eq!(
        decisions,
        [
            ImportDecision::BlockSuppressed,
            ImportDecision::Allow,
            ImportDecision::BlockInvalid,
            ImportDecision::BlockInvalid,
            ImportDecision::Duplicate,
            ImportDecision::Allow,
        ]
    );
    // Complete verdicts only for what is not allowed, in position order.
    let detailed: Vec<(u32, ImportDecision)> = one
        .verdicts
        .iter()
        .map(|v| (v.position, v.decision()))
        .collect();
    assert_eq!(
        detailed,
        [
            (0, ImportDecision::BlockSuppressed),
            (2, ImportDecision::BlockInvalid),
            (3, ImportDecision::BlockInvalid),
            (4, ImportDecision::Duplicate),
        ]
    );
    let suppressed = &one.verdicts[0];
    assert_eq!(suppressed.external_id, "crm-1");
    assert_eq!(suppressed.normalized_address, "bounced@example.com");
    assert_eq!(
        suppressed.suppression.as_ref().unwrap().reason(),
        BounceReason::MailboxNotFound
    );
    assert_eq!(one.verdicts[1].address, "not an address");
    assert!(!one.verdicts[1].detail.is_empty());
    assert_eq!(
        one.verdicts[2].address, "",
        "an empty line is an empty address"
    );
    assert_eq!(one.verdicts[3].normalized_address, "clean@example.com");

    // The format chosen by the first message holds for the whole stream.
    let two = responses.message().await.unwrap().unwrap();
    assert_eq!(two.batch_index, 1);
    assert_eq!(
        two.decisions,
        [
            ImportDecision::Duplicate as u8,
            ImportDecision::Allow as u8,
            ImportDecision::Duplicate as u8,
        ]
    );
    assert_eq!(
        two.verdicts.iter().map(|v| v.position).collect::<Vec<_>>(),
        [0, 2]
    );
    assert!(responses.message().await.unwrap().is_none());
}

#[tokio::test]
async fn address_lines_get_full_verdicts_without_packing() {
    let mut app = app_with_a_hard_bounce("").await;
    let request = pb::CheckImportRequest {
        address_lines: "ok@example.com\nbounced@example.com\n".into(),
        ..Default::default()
    };
    let mut responses = app.check_import(vec![request]).await;
    let response = responses.message().await.unwrap().unwrap();
    assert!(response.decisions.is_empty(), "packing was not asked for");
    let verdicts = response.verdicts;
    assert_eq!(verdicts.len(), 2);
    assert_eq!(verdicts[0].decision(), ImportDecision::Allow);
    assert_eq!(verdicts[0].address, "ok@example.com");
    assert_eq!(verdicts[0].normalized_address, "ok@example.com");
    assert_eq!(verdicts[1].decision(), ImportDecision::BlockSuppressed);
    assert_eq!(verdicts[1].position, 1);
}

#[tokio::test]
async fn a_new_stream_remembers_nothing_of_the_streams_before_it() {
    let mut app = app_with_a_hard_bounce("acme").await;
    // Enough addresses that the stream's seen-address table grows well past its first size;
    // ended streams hand their tables on to later ones.
    let lines: String = (0..5_000)
        .map(|i| format!("user{i}@example.com\n"))
        .collect();
    let packed = |lines: &str| pb::CheckImportRequest {
        tenant: "acme".into(),
        address_lines: lines.to_string(),
        packed_decisions: true,
        ..Default::default()
    };
    for round in 0..3 {
        let mut responses = app.check_import(vec![packed(&lines), packed(&lines)]).await;
        let first = responses.message().await.unwrap().unwrap();
        assert!(
            first
                .decisions
                .iter()
                .all(|&d| d == ImportDecision::Allow as u8),
            "stream {round}: an address of an earlier stream was taken for a repeat"
        );
        assert_eq!(first.decisions.len(), 5_000);
        let second = responses.message().await.unwrap().unwrap();
        assert!(
            second
                .decisions
                .iter()
                .all(|&d| d == ImportDecision::Duplicate as u8),
            "stream {round}: a repeat within the stream was not recognized"
        );
        assert!(responses.message().await.unwrap().is_none());
    }
}
