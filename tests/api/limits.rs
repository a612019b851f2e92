//! Bad input gets a clear error naming the field, and changes nothing.

use suppressd::grpc::proto::{self as pb, AddressState, Outcome};

use crate::helpers::*;

#[tokio::test]
async fn invalid_fields_in_unary_calls_are_invalid_argument_naming_the_field() {
    let mut app = spawn_app().await;
    let c = &mut app.client;
    let err = c
        .get_suppression_status(pb::GetSuppressionStatusRequest {
            tenant: "Bad Tenant".into(),
            address: "a@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "tenant");
    let err = c
        .get_suppression_status(pb::GetSuppressionStatusRequest {
            tenant: String::new(),
            address: "a@@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "address");
    // The BadRequest detail names the field too, for clients that read details.
    let details = tonic_types::StatusExt::get_error_details(&err);
    let violations = details
        .bad_request()
        .expect("bad request detail")
        .field_violations
        .clone();
    assert_eq!(violations[0].field, "address");

    let bad_results = [
        (
            pb::SendResult {
                event_id: String::new(),
                ..result("x", "a@example.com", Outcome::Bounce, "")
            },
            "result.event_id",
        ),
        (result("x", "nobody", Outcome::Bounce, ""), "result.address"),
        (
            result("x", "a@example.com", Outcome::Unspecified, ""),
            "result.outcome",
        ),
        (
            pb::SendResult {
                outcome: 99,
                ..result("x", "a@example.com", Outcome::Bounce, "")
            },
            "result.outcome",
        ),
        (
            result("x", "a@example.com", Outcome::Bounce, &"x".repeat(4097)),
            "result.smtp_response",
        ),
        (
            pb::SendResult {
                source: "s".repeat(129),
                ..result("x", "a@example.com", Outcome::Bounce, "")
            },
            "result.source",
        ),
        (
            pb::SendResult {
                campaign: "bad\u{0}name".into(),
                ..result("x", "a@example.com", Outcome::Bounce, "")
            },
            "result.campaign",
        ),
        (
            pb::SendResult {
                enhanced_status: Some("5.1".into()),
                ..result("x", "a@example.com", Outcome::Bounce, "")
            },
            "result.enhanced_status",
        ),
        (
            pb::SendResult {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                ..result("x", "a@example.com", Outcome::Bounce, "")
            },
            "result.occurred_at",
        ),
    ];
    for (bad, field) in bad_results {
        let err = c
            .report_send_result(pb::ReportSendResultRequest {
                tenant: String::new(),
                result: Some(bad),
            })
            .await
            .unwrap_err();
        assert_invalid(&err, field);
    }
    let err = c
        .report_send_result(pb::ReportSendResultRequest {
            tenant: String::new(),
            result: None,
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "result");
    // Nothing was stored by any of them.
    assert_eq!(app.state("", "a@example.com").await, AddressState::Allowed);
    let bounces = app
        .client
        .list_bounces(pb::ListBouncesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(bounces.bounces.is_empty());
}

#[tokio::test]
async fn batches_over_the_limit_are_refused_with_the_limit_in_the_message() {
    let mut app = spawn_app_with(|s| s.max_batch = 10).await;
    let addresses: Vec<String> = (0..11).map(|i| format!("u{i}@example.com")).collect();
    let err = app
        .client
        .batch_get_suppression_status(pb::BatchGetSuppressionStatusRequest {
            tenant: String::new(),
            addresses,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "addresses");
    assert!(err.message().contains("10"), "{}", err.message());

    let results: Vec<_> = (0..11)
        .map(|i| {
            result(
                &format!("e{i}"),
                &format!("u{i}@example.com"),
                Outcome::HardBounce,
                "",
            )
        })
        .collect();
    let err = app
        .client
        .report_send_results(tokio_stream::iter(vec![pb::ReportSendResultsRequest {
            tenant: String::new(),
            results,
        }]))
        .await
        .unwrap_err();
    assert_invalid(&err, "results");
    assert_eq!(
        app.state("", "u0@example.com").await,
        AddressState::Allowed,
        "nothing stored"
    );

    let contacts: Vec<_> = (0..11)
        .map(|i| pb::ImportContact {
            address: format!("u{i}@example.com"),
            ..Default::default()
        })
        .collect();
    let mut stream = app
        .check_import(vec![pb::CheckImportRequest {
            tenant: String::new(),
            contacts,
            ..Default::default()
        }])
        .await;
    let err = stream.message().await.unwrap_err();
    assert_invalid(&err, "contacts");

    // Bare address lines count toward the same limit, together with the contacts.
    let mut stream = app
        .check_import(vec![pb::CheckImportRequest {
            contacts: vec![pb::ImportContact {
                address: "first@example.com".into(),
                ..Default::default()
            }],
            address_lines: (0..10).map(|i| format!("u{i}@example.com\n")).collect(),
            ..Default::default()
        }])
        .await;
    let err = stream.message().await.unwrap_err();
    assert_invalid(&err, "address_lines");
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_with_the_limit() {
    let mut app = spawn_app_with(|s| s.max_message_bytes = 64 * 1024).await;
    let addresses: Vec<String> = (0..5000)
        .map(|i| format!("somebody-{i}@example.com"))
        .collect();
    let err = app
        .client
        .batch_get_suppression_status(pb::BatchGetSuppressionStatusRequest {
            tenant: String::new(),
            addresses,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
        ),
        "{err:?}"
    );
    assert!(err.message().contains("65536"), "{}", err.message());
}

#[tokio::test]
async fn page_sizes_above_the_maximum_are_reduced_to_it() {
    let mut app = spawn_app().await;
    let results: Vec<_> = (0..1005)
        .map(|i| {
            result(
                &format!("e{i}"),
                &format!("u{i}@example.com"),
                Outcome::HardBounce,
                "",
            )
        })
        .collect();
    app.client
        .report_send_results(tokio_stream::iter(vec![pb::ReportSendResultsRequest {
            tenant: String::new(),
            results,
        }]))
        .await
        .unwrap();
    let page = app
        .client
        .list_bounces(pb::ListBouncesRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.bounces.len(), 1000);
    assert!(!page.next_page_token.is_empty());
    let default_page = app
        .client
        .list_bounces(pb::ListBouncesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default_page.bounces.len(), 100);
}
