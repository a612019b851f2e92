//! The decision tree after a hard bounce: suppress, suggest, replace only with high
//! confidence, validate by the first delivery; and the enrichment queue.

use suppressd::grpc::proto::{
    self as pb, history_entry::Entry, AddressState, EvidenceKind, ImportDecision, Outcome,
    StateChangeKind,
};
use tokio_stream::StreamExt;

use crate::helpers::*;

const PEOPLE: [(&str, &str); 40] = [
    ("anna", "berg"),
    ("ben", "cole"),
    ("carla", "diaz"),
    ("dan", "evans"),
    ("eva", "fox"),
    ("finn", "gray"),
    ("gina", "hale"),
    ("hugo", "ives"),
    ("ida", "jones"),
    ("jack", "king"),
    ("kara", "lane"),
    ("leo", "moss"),
    ("mia", "nash"),
    ("nils", "owen"),
    ("olga", "park"),
    ("paul", "quinn"),
    ("rosa", "reed"),
    ("sam", "stone"),
    ("tina", "todd"),
    ("uwe", "vance"),
    ("vera", "wade"),
    ("will", "york"),
    ("xena", "zane"),
    ("yara", "abel"),
    ("zoe", "baker"),
    ("adam", "clark"),
    ("bea", "drake"),
    ("carl", "ellis"),
    ("dora", "ford"),
    ("emil", "grant"),
    ("fay", "hart"),
    ("gus", "irwin"),
    ("hana", "james"),
    ("ivan", "kent"),
    ("jill", "lloyd"),
    ("kurt", "mann"),
    ("lina", "noel"),
    ("marc", "otto"),
    ("nora", "price"),
    ("omar", "ross"),
];

async fn seed_company(app: &mut TestApp) {
    let mut results: Vec<pb::SendResult> = PEOPLE
        .iter()
        .map(|(f, l)| {
            result(
                &format!("seed-{f}"),
                &format!("{f}.{l}@company.com"),
                Outcome::Delivered,
                "250 2.0.0 OK",
            )
        })
        .collect();
    results.push(result(
        "seed-info",
        "info@company.com",
        Outcome::Delivered,
        "250 OK",
    ));
    results.push(result(
        "seed-sales",
        "sales@company.com",
        Outcome::Delivered,
        "250 OK",
    ));
    let r = app
        .client
        .report_send_results(tokio_stream::iter(vec![pb::ReportSendResultsRequest {
            tenant: String::new(),
            results,
        }]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.accepted, 42);
}

async fn suggest(
    app: &mut TestApp,
    address: &str,
    given: &str,
    family: &str,
) -> pb::SuggestCorrectionsResponse {
    app.client
        .suggest_corrections(pb::SuggestCorrectionsRequest {
            address: address.into(),
            given_name: given.into(),
            family_name: family.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn replace_request(old: &str, new: &str, confidence: f32) -> pb::ReplaceAddressRequest {
    pb::ReplaceAddressRequest {
        old_address: old.into(),
        new_address: new.into(),
        evidence: EvidenceKind::CompanyPattern as i32,
        confidence,
        note: "pattern of company.com".into(),
        ..Default::default()
    }
}

async fn suppressions(app: &mut TestApp, needs_enrichment: Option<bool>) -> Vec<String> {
    app.client
        .list_suppressions(pb::ListSuppressionsRequest {
            needs_enrichment,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .suppressions
        .into_iter()
        .map(|s| s.address)
        .collect()
}

#[tokio::test]
async fn the_whole_decision_tree_after_a_hard_bounce() {
    let mut app = spawn_app().await;
    seed_company(&mut app).await;

    // Hard bounce: suppressed at once.
    app.report(
        "",
        result("b1", "jnae@company.com", Outcome::Bounce, USER_UNKNOWN),
    )
    .await;
    assert_eq!(
        app.state("", "jnae@company.com").await,
        AddressState::Suppressed
    );

    // A suggestion from the company's pattern.
    let s = suggest(&mut app, "jnae@company.com", "Jane", "Smith").await;
    assert_eq!(s.domain_pattern, "first.last");
    assert_eq!(
        (s.domain_pattern_matching, s.domain_pattern_total),
        (40, 42)
    );
    let best = &s.suggestions[0];
    assert_eq!(best.address, "jane.smith@company.com");
    assert_eq!(best.evidence(), EvidenceKind::CompanyPattern);
    assert!(best.confidence >= 0.9, "{best:?}");

    // Low confidence: refused, and the contact is queued for enrichment.
    let err = app
        .client
        .replace_address(replace_request(
            "jnae@company.com",
            "jane.smith@company.com",
            0.6,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let old = app.status("", "jnae@company.com").await;
    assert!(old.needs_enrichment);
    assert!(old.replaced_by.is_empty());
    assert_eq!(
        app.state("", "jane.smith@company.com").await,
        AddressState::Allowed
    );
    assert_eq!(
        suppressions(&mut app, Some(true)).await,
        vec!["jnae@company.com"]
    );

    // High confidence: replaced. The old address stays suppressed.
    let r = app
        .client
        .replace_address(replace_request(
            "jnae@company.com",
            "jane.smith@company.com",
            best.confidence,
        ))
        .await
        .unwrap()
        .into_inner();
    let old = r.old_status.unwrap();
    assert_eq!(old.state(), AddressState::Suppressed);
    assert_eq!(old.replaced_by, "jane.smith@company.com");
    let new = r.new_status.unwrap();
    assert_eq!(new.state(), AddressState::Allowed);
    assert!(new.pending_validation);
    assert_eq!(new.replaces, "jnae@company.com");
    assert!(
        suppressions(&mut app, Some(true)).await.is_empty(),
        "enrichment done"
    );
    let again = app
        .client
        .replace_address(replace_request(
            "jnae@company.com",
            "jane.smith@company.com",
            0.95,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_replaced);

    // The import guard tells the CRM to fix its record.
    let mut verdicts = app
        .check_import(vec![pb::CheckImportRequest {
            compact_allow: false,
            tenant: String::new(),
            contacts: vec![pb::ImportContact {
                address: "JNAE@company.com".into(),
                external_id: "crm-9".into(),
                ..Default::default()
            }],
            ..Default::default()
        }])
        .await;
    let v = verdicts.next().await.unwrap().unwrap().verdicts.remove(0);
    assert_eq!(v.decision(), ImportDecision::Replace);
    assert_eq!(v.replacement_address, "jane.smith@company.com");

    // The first delivery validates the new address.
    app.report(
        "",
        result(
            "d1",
            "jane.smith@company.com",
            Outcome::Delivered,
            "250 2.0.0 OK",
        ),
    )
    .await;
    let new = app.status("", "jane.smith@company.com").await;
    assert!(!new.pending_validation);
    assert_eq!(new.state(), AddressState::Allowed);
    let history = app
        .client
        .get_address_history(pb::GetAddressHistoryRequest {
            address: "jane.smith@company.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<_> = history
        .entries
        .iter()
        .filter_map(|e| match &e.entry {
            Some(Entry::StateChange(c)) => Some(c.kind()),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            StateChangeKind::Validated,
            StateChangeKind::ReplacementPending
        ]
    );
    assert_eq!(
        app.state("", "jnae@company.com").await,
        AddressState::Suppressed,
        "a replacement is not a reactivation"
    );
}

#[tokio::test]
async fn a_replacement_is_refused_when_the_old_address_is_not_suppressed_for_an_address_problem_or_the_new_one_is_suppressed(
) {
    let mut app = spawn_app().await;
    app.report(
        "",
        result("c", "complainer@example.com", Outcome::Complaint, ""),
    )
    .await;
    app.report(
        "",
        result("h1", "gone@example.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;
    app.report(
        "",
        result(
            "h2",
            "alsogone@example.com",
            Outcome::HardBounce,
            USER_UNKNOWN,
        ),
    )
    .await;
    let cases = [
        replace_request("fine@example.com", "new@example.com", 1.0), // not suppressed
        replace_request("complainer@example.com", "new@example.com", 1.0), // not an address problem
        replace_request("gone@example.com", "alsogone@example.com", 1.0), // new one suppressed
    ];
    for req in cases {
        let err = app.client.replace_address(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    }
    let err = app
        .client
        .replace_address(replace_request("gone@example.com", "new@example.com", 1.5))
        .await
        .unwrap_err();
    assert_invalid(&err, "confidence");
    let err = app
        .client
        .replace_address(replace_request("gone@example.com", "not-an-address", 1.0))
        .await
        .unwrap_err();
    assert_invalid(&err, "new_address");
    let err = app
        .client
        .replace_address(pb::ReplaceAddressRequest {
            evidence: 0,
            ..replace_request("gone@example.com", "new@example.com", 1.0)
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "evidence");
    assert!(
        app.status("", "gone@example.com")
            .await
            .replaced_by
            .is_empty(),
        "nothing changed"
    );
}

#[tokio::test]
async fn typo_suggestions_for_popular_domains_and_none_for_a_correct_address() {
    let mut app = spawn_app().await;
    for (typo, fixed) in [
        ("jane@gmal.com", "jane@gmail.com"),
        ("jane@hotmial.com", "jane@hotmail.com"),
        ("jane@gmail.con", "jane@gmail.com"),
        ("jane@yaho.com", "jane@yahoo.com"),
    ] {
        let s = suggest(&mut app, typo, "", "").await;
        let best = s
            .suggestions
            .first()
            .unwrap_or_else(|| panic!("no suggestion for {typo}"));
        assert_eq!(best.address, fixed, "{typo}");
        assert_eq!(best.evidence(), EvidenceKind::TypoFix);
        assert!(!best.explanation.is_empty());
    }
    assert!(suggest(&mut app, "jane@gmail.com", "", "")
        .await
        .suggestions
        .is_empty());
    assert!(suggest(&mut app, "bob@company.com", "Bob", "Jones")
        .await
        .suggestions
        .is_empty());

    // A suppressed address is never suggested.
    app.report(
        "",
        result("h", "jane@gmail.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;
    let s = suggest(&mut app, "jane@gmal.com", "", "").await;
    assert!(
        s.suggestions.iter().all(|c| c.address != "jane@gmail.com"),
        "{s:?}"
    );
}

#[tokio::test]
async fn import_verdicts_carry_the_best_suggestion() {
    let mut app = spawn_app().await;
    app.report(
        "",
        result(
            "h",
            "bob@gmal.com",
            Outcome::HardBounce,
            "550 5.1.2 Host unknown: domain gmal.com not found",
        ),
    )
    .await;
    let mut responses = app
        .check_import(vec![pb::CheckImportRequest {
            compact_allow: false,
            tenant: String::new(),
            contacts: vec![
                pb::ImportContact {
                    address: "jane@gmail,com".into(),
                    external_id: "1".into(),
                    ..Default::default()
                },
                pb::ImportContact {
                    address: "bob@gmal.com".into(),
                    external_id: "2".into(),
                    ..Default::default()
                },
                pb::ImportContact {
                    address: "ok@example.com".into(),
                    external_id: "3".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }])
        .await;
    let verdicts = responses.next().await.unwrap().unwrap().verdicts;
    assert_eq!(verdicts[0].decision(), ImportDecision::BlockInvalid);
    assert_eq!(
        verdicts[0].suggestion.as_ref().unwrap().address,
        "jane@gmail.com"
    );
    assert_eq!(verdicts[1].decision(), ImportDecision::BlockSuppressed);
    assert_eq!(
        verdicts[1].suggestion.as_ref().unwrap().address,
        "bob@gmail.com"
    );
    assert!(verdicts[2].suggestion.is_none());
}

#[tokio::test]
async fn list_suppressions_filters_by_reason_and_pages() {
    let mut app = spawn_app().await;
    for i in 0..5 {
        app.report(
            "",
            result(
                &format!("h{i}"),
                &format!("h{i}@example.com"),
                Outcome::HardBounce,
                USER_UNKNOWN,
            ),
        )
        .await;
        app.report(
            "",
            result(
                &format!("c{i}"),
                &format!("c{i}@example.com"),
                Outcome::Complaint,
                "",
            ),
        )
        .await;
    }
    let mut token = String::new();
    let mut found = Vec::new();
    loop {
        let page = app
            .client
            .list_suppressions(pb::ListSuppressionsRequest {
                reasons: vec![pb::BounceReason::Complaint as i32],
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        found.extend(page.suppressions.into_iter().map(|s| s.address));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    found.sort();
    assert_eq!(
        found,
        (0..5)
            .map(|i| format!("c{i}@example.com"))
            .collect::<Vec<_>>()
    );
    assert_eq!(suppressions(&mut app, None).await.len(), 10);
}
