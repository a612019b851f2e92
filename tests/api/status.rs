//! "May I send to this address?"

use suppressd::grpc::proto::{AddressState, Outcome};

use crate::helpers::*;

#[tokio::test]
async fn an_unknown_address_is_allowed_and_normalized() {
    let mut app = spawn_app().await;
    let status = app.status("", "  New.Person@Bücher.Example ").await;
    assert_eq!(status.state(), AddressState::Allowed);
    assert_eq!(status.address, "new.person@xn--bcher-kva.example");
    assert!(status.suppression.is_none());
}

#[tokio::test]
async fn lookups_match_any_spelling_of_a_suppressed_address() {
    let mut app = spawn_app().await;
    app.report(
        "",
        result(
            "e",
            "jane@bücher.example",
            Outcome::HardBounce,
            USER_UNKNOWN,
        ),
    )
    .await;
    for spelling in [
        "JANE@BÜCHER.EXAMPLE",
        "jane@xn--bcher-kva.example",
        " jane@bücher.example.",
    ] {
        assert_eq!(
            app.state("", spelling).await,
            AddressState::Suppressed,
            "{spelling}"
        );
    }
}

#[tokio::test]
async fn batch_lookup_answers_in_request_order_with_invalid_slots() {
    let mut app = spawn_app().await;
    app.report(
        "",
        result("e", "bad@example.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;
    let addresses = vec![
        "ok@example.com".to_string(),
        "no-at-sign".to_string(),
        "BAD@example.com".to_string(),
        "".to_string(),
    ];
    let statuses = app.batch_statuses("", &addresses, "").await;
    let states: Vec<_> = statuses.iter().map(|s| s.state()).collect();
    assert_eq!(
        states,
        vec![
            AddressState::Allowed,
            AddressState::Invalid,
            AddressState::Suppressed,
            AddressState::Invalid
        ]
    );
    let given: Vec<_> = statuses.iter().map(|s| s.given_address.clone()).collect();
    assert_eq!(given, addresses);
    assert!(statuses[1].error.contains('@'), "{}", statuses[1].error);
}

#[tokio::test]
async fn a_batch_larger_than_one_read_answers_every_address_in_its_place() {
    let mut app = spawn_app().await;
    let gone: Vec<usize> = vec![0, 7, 1_023, 1_024, 1_500, 2_048, 2_499];
    for &i in &gone {
        app.report(
            "",
            result(
                &format!("e{i}"),
                &format!("p{i}@example.com"),
                Outcome::HardBounce,
                USER_UNKNOWN,
            ),
        )
        .await;
    }
    let mut addresses: Vec<String> = (0..2_500).map(|i| format!("p{i}@example.com")).collect();
    addresses[300] = "not an address".into();
    addresses[1_200] = "P1024@Example.COM".into();
    let statuses = app.batch_statuses("", &addresses, "").await;
    assert_eq!(statuses.len(), addresses.len());
    for (i, status) in statuses.iter().enumerate() {
        let expected = if i == 300 {
            AddressState::Invalid
        } else if gone.contains(&i) || i == 1_200 {
            AddressState::Suppressed
        } else {
            AddressState::Allowed
        };
        assert_eq!(status.state(), expected, "{}", addresses[i]);
        assert_eq!(status.given_address, addresses[i]);
    }
}
