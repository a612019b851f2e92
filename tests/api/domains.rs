//! Whole domains: suppressed by an operator (with or without their subdomains) or after
//! repeated DOMAIN_NOT_FOUND bounces, lifted by an operator or by a delivery; accept-all domains
//! marked by an operator or inferred, and what that means for status, imports, replacements and
//! source statistics.

use std::time::Duration;

use suppressd::auth::token_sha256;
use suppressd::grpc::proto::{
    self as pb, AcceptAllOrigin, AddressState, BounceReason, EvidenceKind, ImportDecision, Outcome,
    StateChangeKind,
};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

use crate::helpers::*;

const DOMAIN_NOT_FOUND: &str = "550 5.1.2 We weren't able to find the recipient domain. Please check for any spelling errors, and make sure you didn't enter any spaces, periods, or other punctuation after the recipient's email address.";
const DAY: Duration = Duration::from_secs(86_400);

fn as_operator<T>(message: T, who: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-caller-id", MetadataValue::try_from(who).unwrap());
    request
}

async fn suppress_domain(
    app: &mut TestApp,
    domain: &str,
    include_subdomains: bool,
) -> pb::SuppressDomainResponse {
    app.client
        .suppress_domain(as_operator(
            pb::SuppressDomainRequest {
                domain: domain.into(),
                note: format!("{domain} closed down"),
                include_subdomains,
                ..Default::default()
            },
            "ops-7",
        ))
        .await
        .expect("SuppressDomain succeeds")
        .into_inner()
}

async fn domain_status(app: &mut TestApp, domain: &str) -> pb::GetDomainStatusResponse {
    app.client
        .get_domain_status(pb::GetDomainStatusRequest {
            domain: domain.into(),
            ..Default::default()
        })
        .await
        .expect("GetDomainStatus succeeds")
        .into_inner()
}

async fn set_accept_all(app: &mut TestApp, domain: &str, accept_all: bool) -> pb::DomainStatus {
    app.client
        .set_domain_policy(as_operator(
            pb::SetDomainPolicyRequest {
                domain: domain.into(),
                accept_all,
                note: "verification provider: catch-all".into(),
                ..Default::default()
            },
            "ops-7",
        ))
        .await
        .expect("SetDomainPolicy succeeds")
        .into_inner()
        .status
        .expect("status present")
}

/// The refusal of a ReactivateDomain call.
async fn reactivate_refused(app: &mut TestApp, domain: &str, justification: &str) -> tonic::Status {
    app.client
        .reactivate_domain(pb::ReactivateDomainRequest {
            domain: domain.into(),
            justification: justification.into(),
            ..Default::default()
        })
        .await
        .expect_err("ReactivateDomain is refused")
}

/// A DOMAIN_NOT_FOUND hard bounce.
fn not_found(id: &str, address: &str) -> pb::SendResult {
    result(id, address, Outcome::Bounce, DOMAIN_NOT_FOUND)
}

fn delivered(id: &str, address: &str) -> pb::SendResult {
    result(id, address, Outcome::Delivered, "250 2.0.0 OK")
}

/// The kinds and actors of a domain's history, newest first.
fn history(status: &pb::GetDomainStatusResponse) -> Vec<(StateChangeKind, String)> {
    status
        .history
        .iter()
        .map(|e| {
            let c = e.change.as_ref().expect("change present");
            (c.kind(), c.actor.clone())
        })
        .collect()
}

async fn import_full(app: &mut TestApp, addresses: &[&str]) -> Vec<pb::ImportVerdict> {
    let mut stream = app
        .check_import(vec![pb::CheckImportRequest {
            contacts: addresses
                .iter()
                .map(|a| pb::ImportContact {
                    address: a.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }])
        .await;
    stream
        .message()
        .await
        .expect("a response")
        .expect("one message")
        .verdicts
}

#[tokio::test]
async fn an_operator_suppresses_a_domain_and_every_address_there_answers_suppressed() {
    let mut app = spawn_app().await;
    app.report(
        "",
        result(
            "h1",
            "own@defunct.example",
            Outcome::HardBounce,
            USER_UNKNOWN,
        ),
    )
    .await;

    let first = suppress_domain(&mut app, "Defunct.EXAMPLE", false).await;
    assert!(!first.already_suppressed);
    let status = first.status.unwrap();
    assert_eq!(status.domain, "defunct.example");
    assert_eq!(status.suppressed_domain, "defunct.example");
    let s = status.suppression.unwrap();
    assert_eq!(s.reason(), BounceReason::Manual);
    assert!(!s.automatic && !s.include_subdomains);
    assert_eq!(s.actor, "ops-7");
    assert!(
        suppress_domain(&mut app, "defunct.example", false)
            .await
            .already_suppressed
    );

    let anyone = app.status("", "Anyone@Defunct.example").await;
    assert_eq!(anyone.state(), AddressState::Suppressed);
    assert!(anyone.domain_level);
    assert_eq!(anyone.suppressed_domain, "defunct.example");
    let s = anyone.suppression.unwrap();
    assert_eq!(s.reason(), BounceReason::Manual);
    assert_eq!(s.source, "domain");
    assert_eq!(
        s.smtp_response, "Defunct.EXAMPLE closed down",
        "the operator's note"
    );

    // Its own suppression is the more specific answer.
    let own = app.status("", "own@defunct.example").await;
    assert_eq!(own.state(), AddressState::Suppressed);
    assert!(!own.domain_level && own.suppressed_domain.is_empty());
    assert_eq!(own.suppression.unwrap().event_id, "h1");

    // Neither another domain nor a domain under it without include_subdomains.
    for other in [
        "a@fine.example",
        "a@mail.defunct.example",
        "a@notdefunct.example",
    ] {
        assert_eq!(app.state("", other).await, AddressState::Allowed, "{other}");
    }
    // Nor another tenant.
    assert_eq!(
        app.state("acme", "a@defunct.example").await,
        AddressState::Allowed
    );

    let batch = app
        .client
        .batch_get_suppression_status(pb::BatchGetSuppressionStatusRequest {
            addresses: vec!["x@defunct.example".into(), "x@fine.example".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .statuses;
    assert!(batch[0].domain_level && batch[0].state() == AddressState::Suppressed);
    assert_eq!(batch[1].state(), AddressState::Allowed);

    let status = domain_status(&mut app, "defunct.example").await;
    assert_eq!(
        history(&status),
        [(StateChangeKind::DomainSuppressed, "ops-7".to_string())]
    );
    assert!(status.history[0]
        .change
        .as_ref()
        .unwrap()
        .note
        .contains("closed down"));
}

#[tokio::test]
async fn no_correction_points_at_an_address_of_a_suppressed_domain() {
    let mut app = spawn_app().await;
    app.report(
        "",
        result("h1", "jane@gmial.com", Outcome::HardBounce, USER_UNKNOWN),
    )
    .await;
    let suggested = |app: &mut TestApp| {
        let mut client = app.client.clone();
        async move {
            client
                .suggest_corrections(pb::SuggestCorrectionsRequest {
                    address: "jane@gmial.com".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .suggestions
                .into_iter()
                .map(|s| s.address)
                .collect::<Vec<_>>()
        }
    };
    assert!(suggested(&mut app)
        .await
        .contains(&"jane@gmail.com".to_string()));
    suppress_domain(&mut app, "gmail.com", false).await;
    assert!(!suggested(&mut app)
        .await
        .contains(&"jane@gmail.com".to_string()));
    let err = app
        .client
        .replace_address(pb::ReplaceAddressRequest {
            old_address: "jane@gmial.com".into(),
            new_address: "jane@gmail.com".into(),
            evidence: EvidenceKind::TypoFix as i32,
            confidence: 0.99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("gmail.com"), "{}", err.message());
}

#[tokio::test]
async fn reactivating_a_domain_needs_a_justification_and_is_recorded_with_who_and_why() {
    let mut app = spawn_app().await;
    let err = reactivate_refused(&mut app, "defunct.example", "checked").await;
    assert_eq!(err.code(), Code::NotFound);

    suppress_domain(&mut app, "defunct.example", false).await;
    let err = reactivate_refused(&mut app, "defunct.example", "  ").await;
    assert_invalid(&err, "justification");
    assert_eq!(
        app.state("", "a@defunct.example").await,
        AddressState::Suppressed
    );

    let done = app
        .client
        .reactivate_domain(as_operator(
            pb::ReactivateDomainRequest {
                domain: "defunct.example".into(),
                justification: "the company was bought; its MX is back".into(),
                ..Default::default()
            },
            "support-2",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.lifted.unwrap().actor, "ops-7");
    assert!(done.status.unwrap().suppression.is_none());
    assert_eq!(
        app.state("", "a@defunct.example").await,
        AddressState::Allowed
    );

    let status = domain_status(&mut app, "defunct.example").await;
    assert_eq!(
        history(&status),
        [
            (StateChangeKind::DomainReactivated, "support-2".to_string()),
            (StateChangeKind::DomainSuppressed, "ops-7".to_string()),
        ]
    );
    assert_eq!(
        status.history[0].change.as_ref().unwrap().note,
        "the company was bought; its MX is back"
    );
}

#[tokio::test]
async fn include_subdomains_covers_every_domain_under_it() {
    let mut app = spawn_app().await;
    suppress_domain(&mut app, "closed.example", true).await;
    for covered in [
        "a@closed.example",
        "a@mail.closed.example",
        "a@x.eu.closed.example",
    ] {
        let s = app.status("", covered).await;
        assert_eq!(s.state(), AddressState::Suppressed, "{covered}");
        assert_eq!(s.suppressed_domain, "closed.example", "{covered}");
    }
    assert_eq!(
        app.state("", "a@notclosed.example").await,
        AddressState::Allowed
    );

    let under = domain_status(&mut app, "eu.closed.example").await;
    let status = under.status.unwrap();
    assert_eq!(status.suppressed_domain, "closed.example");
    assert!(status.suppression.unwrap().include_subdomains);

    // Only the suppressed domain itself can be reactivated; the answer names it.
    let err = reactivate_refused(&mut app, "eu.closed.example", "x").await;
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("closed.example"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn check_import_blocks_addresses_at_a_suppressed_domain_with_a_detail_naming_it() {
    let mut app = spawn_app().await;
    suppress_domain(&mut app, "defunct.example", false).await;
    let verdicts = import_full(&mut app, &["a@defunct.example", "b@fine.example"]).await;
    assert_eq!(verdicts[0].decision(), ImportDecision::BlockSuppressed);
    assert!(verdicts[0].domain_level);
    assert!(
        verdicts[0].detail.contains("defunct.example"),
        "{}",
        verdicts[0].detail
    );
    assert_eq!(verdicts[0].suppression.as_ref().unwrap().source, "domain");
    assert_eq!(verdicts[1].decision(), ImportDecision::Allow);
    assert!(!verdicts[1].domain_level);

    // Packed: one decision byte each, the blocked contact's verdict in full.
    let mut stream = app
        .check_import(vec![pb::CheckImportRequest {
            address_lines: "b@fine.example\nc@defunct.example\n".into(),
            packed_decisions: true,
            ..Default::default()
        }])
        .await;
    let response = stream.message().await.unwrap().unwrap();
    assert_eq!(
        response.decisions,
        [
            ImportDecision::Allow as i32 as u8,
            ImportDecision::BlockSuppressed as i32 as u8
        ]
    );
    assert_eq!(response.verdicts.len(), 1);
    assert!(response.verdicts[0].domain_level);
    assert_eq!(response.verdicts[0].position, 1);
}

#[tokio::test]
async fn k_domain_not_found_bounces_within_the_window_suppress_the_domain_automatically() {
    let mut app = spawn_app().await;
    for (i, local) in ["a", "b"].iter().enumerate() {
        app.report(
            "",
            not_found(&format!("n{i}"), &format!("{local}@gone.example")),
        )
        .await;
        app.clock.advance(DAY);
    }
    // Two addresses are not enough; the same one twice is still one.
    app.report("", not_found("n-again", "b@gone.example")).await;
    assert_eq!(app.state("", "c@gone.example").await, AddressState::Allowed);
    let status = domain_status(&mut app, "gone.example")
        .await
        .status
        .unwrap();
    assert_eq!(status.recent_domain_not_found, 2);
    assert!(status.suppression.is_none());

    app.report("", not_found("n2", "c@gone.example")).await;
    let other = app.status("", "never-mailed@gone.example").await;
    assert_eq!(other.state(), AddressState::Suppressed);
    assert!(other.domain_level);
    assert_eq!(
        other.suppression.as_ref().unwrap().reason(),
        BounceReason::DomainNotFound
    );
    assert_eq!(other.suppression.unwrap().event_id, "n2");

    let status = domain_status(&mut app, "gone.example").await;
    let s = status.status.as_ref().unwrap().suppression.clone().unwrap();
    assert!(s.automatic);
    assert_eq!(s.actor, "system");
    assert_eq!(
        history(&status),
        [(StateChangeKind::DomainSuppressed, "system".to_string())]
    );
    let note = &status.history[0].change.as_ref().unwrap().note;
    assert!(note.contains("n2"), "{note}");
    assert!(
        !note.contains("c@gone.example"),
        "no address text in a domain's history"
    );
}

#[tokio::test]
async fn bounces_spread_beyond_the_window_do_not_suppress_a_domain_and_the_window_is_a_setting() {
    let mut app = spawn_app().await;
    app.report("", not_found("n0", "a@slow.example")).await;
    app.clock.advance(4 * DAY);
    app.report("", not_found("n1", "b@slow.example")).await;
    app.clock.advance(4 * DAY);
    app.report("", not_found("n2", "c@slow.example")).await;
    assert_eq!(app.state("", "d@slow.example").await, AddressState::Allowed);
    let status = domain_status(&mut app, "slow.example")
        .await
        .status
        .unwrap();
    assert_eq!(status.recent_domain_not_found, 2, "the first is 8 days old");

    // Two bounces within 36 hours, when so configured.
    let mut app = spawn_app_with(|s| {
        s.domain_suppression_threshold = 2;
        s.domain_suppression_window = Duration::from_secs(36 * 3600);
    })
    .await;
    app.report("", not_found("m0", "a@quick.example")).await;
    app.clock.advance(2 * DAY);
    app.report("", not_found("m1", "b@quick.example")).await;
    assert_eq!(
        app.state("", "z@quick.example").await,
        AddressState::Allowed
    );
    app.clock.advance(DAY);
    app.report("", not_found("m2", "c@quick.example")).await;
    assert_eq!(
        app.state("", "z@quick.example").await,
        AddressState::Suppressed
    );
}

#[tokio::test]
async fn popular_providers_and_domains_with_recent_deliveries_are_never_suppressed_automatically() {
    let mut app = spawn_app().await;
    // An early delivery to each of two domains.
    app.report("", delivered("d-recent", "old@recent.example"))
        .await;
    app.report("", delivered("d-old", "old@stale.example"))
        .await;
    app.clock.advance(20 * DAY);
    app.report("", delivered("d-recent-2", "old2@recent.example"))
        .await;
    app.clock.advance(20 * DAY);
    // 40 days after stale.example's delivery, 20 after recent.example's.
    for domain in ["gmail.com", "recent.example", "stale.example"] {
        for local in ["a", "b", "c"] {
            app.report(
                "",
                not_found(&format!("{local}-{domain}"), &format!("{local}@{domain}")),
            )
            .await;
        }
    }
    assert_eq!(
        app.state("", "z@gmail.com").await,
        AddressState::Allowed,
        "a provider"
    );
    assert_eq!(
        app.state("", "z@recent.example").await,
        AddressState::Allowed,
        "delivered 20 days ago"
    );
    assert_eq!(
        app.state("", "z@stale.example").await,
        AddressState::Suppressed
    );
    let recent = domain_status(&mut app, "recent.example")
        .await
        .status
        .unwrap();
    assert!(recent.last_delivered.is_some());
    assert_eq!(recent.recent_domain_not_found, 3);
}

#[tokio::test]
async fn a_delivery_lifts_an_automatic_suppression_and_the_history_says_why() {
    let mut app = spawn_app().await;
    for local in ["a", "b", "c"] {
        app.report(
            "",
            not_found(&format!("n-{local}"), &format!("{local}@back.example")),
        )
        .await;
    }
    assert_eq!(
        app.state("", "z@back.example").await,
        AddressState::Suppressed
    );
    app.clock.advance(DAY);
    app.report("", delivered("d-9", "someone@back.example"))
        .await;
    assert_eq!(app.state("", "z@back.example").await, AddressState::Allowed);

    let status = domain_status(&mut app, "back.example").await;
    assert_eq!(
        history(&status),
        [
            (StateChangeKind::DomainReactivated, "system".to_string()),
            (StateChangeKind::DomainSuppressed, "system".to_string()),
        ]
    );
    let change = status.history[0].change.as_ref().unwrap();
    assert_eq!(change.event_id, "d-9");
    assert!(change.note.contains("d-9"), "{}", change.note);
    assert!(
        !change.note.contains("someone@"),
        "no address text: {}",
        change.note
    );
    assert_eq!(status.status.unwrap().recent_domain_not_found, 0);

    // A manual suppression stays whatever is delivered.
    suppress_domain(&mut app, "back.example", false).await;
    app.report("", delivered("d-10", "someone@back.example"))
        .await;
    assert_eq!(
        app.state("", "z@back.example").await,
        AddressState::Suppressed
    );
}

#[tokio::test]
async fn an_accept_all_domain_makes_mailboxes_there_uncertain_until_a_person_is_seen() {
    let mut app = spawn_app().await;
    let status = set_accept_all(&mut app, "catchall.example", true).await;
    assert!(status.accept_all);
    assert_eq!(status.accept_all_origin(), AcceptAllOrigin::Set);
    assert_eq!(status.accept_all_note, "verification provider: catch-all");

    app.report("", delivered("d1", "jane@catchall.example"))
        .await;
    let jane = app.status("", "jane@catchall.example").await;
    assert_eq!(jane.state(), AddressState::Allowed);
    assert!(jane.uncertain_mailbox, "a delivery there proves nothing");
    assert!(jane.uncertain_mailbox_cause.contains("catchall.example"));
    assert!(jane.uncertain_mailbox_cause.contains("operator"));
    assert!(
        !app.status("", "jane@elsewhere.example")
            .await
            .uncertain_mailbox
    );

    // A complaint is a person acting through the mailbox.
    app.report(
        "",
        result("c1", "joe@catchall.example", Outcome::Complaint, ""),
    )
    .await;
    let joe = app.status("", "joe@catchall.example").await;
    assert_eq!(joe.state(), AddressState::Suppressed);
    assert!(!joe.uncertain_mailbox);

    let verdicts = import_full(
        &mut app,
        &[
            "jane@catchall.example",
            "joe@catchall.example",
            "new@catchall.example",
            "a@fine.example",
        ],
    )
    .await;
    let flags: Vec<(ImportDecision, bool)> = verdicts
        .iter()
        .map(|v| (v.decision(), v.uncertain_mailbox))
        .collect();
    assert_eq!(
        flags,
        [
            (ImportDecision::Allow, true),
            (ImportDecision::BlockSuppressed, false),
            (ImportDecision::Allow, true),
            (ImportDecision::Allow, false),
        ]
    );

    let cleared = set_accept_all(&mut app, "catchall.example", false).await;
    assert!(!cleared.accept_all);
    assert!(
        !app.status("", "jane@catchall.example")
            .await
            .uncertain_mailbox
    );
    let status = domain_status(&mut app, "catchall.example").await;
    assert_eq!(
        history(&status),
        [
            (StateChangeKind::DomainPolicyChanged, "ops-7".to_string()),
            (StateChangeKind::DomainPolicyChanged, "ops-7".to_string()),
        ]
    );
}

#[tokio::test]
async fn a_domain_is_inferred_accept_all_from_deliveries_that_later_bounced() {
    let mut app = spawn_app().await;
    for (i, local) in ["a", "b", "c"].iter().enumerate() {
        let address = format!("{local}@sink.example");
        app.report("", delivered(&format!("d{i}"), &address)).await;
        assert!(!app.status("", "x@sink.example").await.uncertain_mailbox);
        app.clock.advance(Duration::from_secs(3600));
        app.report(
            "",
            result(&format!("h{i}"), &address, Outcome::Bounce, USER_UNKNOWN),
        )
        .await;
    }
    let status = domain_status(&mut app, "sink.example").await;
    let s = status.status.as_ref().unwrap();
    assert!(s.accept_all);
    assert_eq!(s.accept_all_origin(), AcceptAllOrigin::Inferred);
    assert_eq!(s.bounced_after_delivery, 3);
    assert!(s.accept_all_note.contains("h2"), "{}", s.accept_all_note);
    assert_eq!(
        history(&status),
        [(StateChangeKind::DomainPolicyChanged, "system".to_string())]
    );
    let fresh = app.status("", "x@sink.example").await;
    assert!(fresh.uncertain_mailbox);
    assert!(fresh.uncertain_mailbox_cause.contains("inferred"));

    // An operator's clearing also clears the inference.
    let cleared = set_accept_all(&mut app, "sink.example", false).await;
    assert!(!cleared.accept_all);
    assert_eq!(cleared.bounced_after_delivery, 0);
}

#[tokio::test]
async fn a_pending_replacement_at_an_accept_all_domain_is_not_validated_by_a_delivery_alone() {
    let mut app = spawn_app().await;
    set_accept_all(&mut app, "catchall.example", true).await;
    for (i, old) in ["jnae@catchall.example", "jhon@catchall.example"]
        .iter()
        .enumerate()
    {
        app.report(
            "",
            result(&format!("h{i}"), old, Outcome::HardBounce, USER_UNKNOWN),
        )
        .await;
    }
    let replace = |old: &str, new: &str, evidence: EvidenceKind| pb::ReplaceAddressRequest {
        old_address: old.into(),
        new_address: new.into(),
        evidence: evidence as i32,
        confidence: 0.95,
        ..Default::default()
    };
    app.client
        .replace_address(replace(
            "jnae@catchall.example",
            "jane@catchall.example",
            EvidenceKind::CrmCorrection,
        ))
        .await
        .unwrap();
    app.report("", delivered("d1", "jane@catchall.example"))
        .await;
    let jane = app.status("", "jane@catchall.example").await;
    assert!(
        jane.pending_validation,
        "accepted by a catch-all: proves nothing"
    );
    assert!(jane.uncertain_mailbox);

    // Confirmed by the contact: the delivery validates it.
    app.client
        .replace_address(replace(
            "jhon@catchall.example",
            "john@catchall.example",
            EvidenceKind::VerifiedReplacement,
        ))
        .await
        .unwrap();
    assert!(
        app.status("", "john@catchall.example")
            .await
            .pending_validation
    );
    app.report("", delivered("d2", "john@catchall.example"))
        .await;
    let john = app.status("", "john@catchall.example").await;
    assert!(!john.pending_validation);
    assert!(!john.uncertain_mailbox);
}

#[tokio::test]
async fn results_to_accept_all_domains_are_counted_in_source_stats() {
    let mut app = spawn_app().await;
    set_accept_all(&mut app, "catchall.example", true).await;
    let sent = |id: &str, address: &str, outcome: Outcome, smtp: &str| {
        let mut r = result(id, address, outcome, smtp);
        r.source = "purchased-list".into();
        r
    };
    let results = [
        sent("r1", "a@catchall.example", Outcome::Delivered, ""),
        sent("r2", "b@catchall.example", Outcome::Bounce, USER_UNKNOWN),
        sent("r3", "c@catchall.example", Outcome::Bounce, MAILBOX_FULL),
        sent("r4", "d@fine.example", Outcome::Delivered, ""),
    ];
    for r in results {
        app.report("", r).await;
    }
    let stats = app
        .client
        .get_source_stats(pb::GetSourceStatsRequest {
            dimension: pb::StatsDimension::Source as i32,
            value: "purchased-list".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let counts = stats.current.unwrap().counts.unwrap();
    assert_eq!(counts.sent, 4);
    assert_eq!(counts.to_accept_all_domains, 3);
}

#[tokio::test]
async fn invalid_domain_requests_are_refused_naming_the_field_and_change_nothing() {
    let mut app = spawn_app().await;
    for bad in [
        "",
        "a@defunct.example",
        "localhost",
        "exa_mple.com",
        "[192.0.2.1]",
    ] {
        let err = app
            .client
            .suppress_domain(pb::SuppressDomainRequest {
                domain: bad.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(&err, "domain");
        let err = app
            .client
            .set_domain_policy(pb::SetDomainPolicyRequest {
                domain: bad.into(),
                accept_all: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(&err, "domain");
        let err = app
            .client
            .get_domain_status(pb::GetDomainStatusRequest {
                domain: bad.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(&err, "domain");
    }
    let bad_requests = [
        (
            pb::SuppressDomainRequest {
                domain: "defunct.example".into(),
                note: "n".repeat(1025),
                ..Default::default()
            },
            "note",
        ),
        (
            pb::SuppressDomainRequest {
                domain: "defunct.example".into(),
                reason: 999,
                ..Default::default()
            },
            "reason",
        ),
        (
            pb::SuppressDomainRequest {
                tenant: "Not A Tenant".into(),
                domain: "defunct.example".into(),
                ..Default::default()
            },
            "tenant",
        ),
    ];
    for (request, field) in bad_requests {
        let err = app.client.suppress_domain(request).await.unwrap_err();
        assert_invalid(&err, field);
    }
    let err = app
        .client
        .list_suppressed_domains(pb::ListSuppressedDomainsRequest {
            page_token: "forged".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "page_token");

    let listed = app
        .client
        .list_suppressed_domains(pb::ListSuppressedDomainsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.domains.is_empty());
    assert_eq!(
        app.state("", "a@defunct.example").await,
        AddressState::Allowed
    );
    assert!(!app.status("", "a@defunct.example").await.uncertain_mailbox);
}

#[tokio::test]
async fn suppressed_domains_are_listed_newest_first_in_signed_pages() {
    let mut app = spawn_app().await;
    for i in 0..5 {
        suppress_domain(&mut app, &format!("d{i}.example"), false).await;
        app.clock.advance(Duration::from_secs(60));
    }
    set_accept_all(&mut app, "only-accept-all.example", true).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .list_suppressed_domains(pb::ListSuppressedDomainsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.domains.len() <= 2);
        seen.extend(page.domains.into_iter().map(|d| d.domain));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        // A token of one tenant is refused for another.
        let err = app
            .client
            .list_suppressed_domains(pb::ListSuppressedDomainsRequest {
                tenant: "acme".into(),
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(&err, "page_token");
    }
    assert_eq!(
        seen,
        [
            "d4.example",
            "d3.example",
            "d2.example",
            "d1.example",
            "d0.example"
        ]
    );
}

fn principal(name: &str, role: &str) -> String {
    format!(
        "[[principal]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\ntenants = [\"acme\"]\nroles = [\"{role}\"]\n\n",
        token_sha256(&format!("t-{name}"))
    )
}

fn with_token<T>(message: T, name: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer t-{name}")).unwrap(),
    );
    request
}

#[tokio::test]
async fn domain_changes_need_the_operator_role_and_the_callers_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    std::fs::write(
        &path,
        principal("reader-svc", "reader") + &principal("operator-svc", "operator"),
    )
    .unwrap();
    let mut app = spawn_app_with(move |s| s.auth_file = Some(path)).await;
    let suppress = |tenant: &str| pb::SuppressDomainRequest {
        tenant: tenant.into(),
        domain: "defunct.example".into(),
        ..Default::default()
    };

    let denied = [
        app.client
            .suppress_domain(with_token(suppress("acme"), "reader-svc"))
            .await
            .unwrap_err(),
        app.client
            .set_domain_policy(with_token(
                pb::SetDomainPolicyRequest {
                    tenant: "acme".into(),
                    domain: "defunct.example".into(),
                    accept_all: true,
                    ..Default::default()
                },
                "reader-svc",
            ))
            .await
            .unwrap_err(),
        app.client
            .reactivate_domain(with_token(
                pb::ReactivateDomainRequest {
                    tenant: "acme".into(),
                    domain: "defunct.example".into(),
                    justification: "x".into(),
                },
                "reader-svc",
            ))
            .await
            .unwrap_err(),
        app.client
            .suppress_domain(with_token(suppress("globex"), "operator-svc"))
            .await
            .unwrap_err(),
    ];
    for err in denied {
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
    let read = || pb::GetDomainStatusRequest {
        tenant: "acme".into(),
        domain: "defunct.example".into(),
    };
    let status = app
        .client
        .get_domain_status(with_token(read(), "reader-svc"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        status.status.unwrap().suppression.is_none(),
        "nothing was written"
    );

    let done = app
        .client
        .suppress_domain(with_token(suppress("acme"), "operator-svc"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        done.status.unwrap().suppression.unwrap().actor,
        "operator-svc"
    );
    let listed = app
        .client
        .list_suppressed_domains(with_token(
            pb::ListSuppressedDomainsRequest {
                tenant: "acme".into(),
                ..Default::default()
            },
            "reader-svc",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.domains.len(), 1);
}

#[tokio::test]
async fn a_restart_keeps_domain_suppressions_marks_evidence_and_history() {
    let mut app = spawn_app().await;
    suppress_domain(&mut app, "closed.example", true).await;
    set_accept_all(&mut app, "catchall.example", true).await;
    app.clock.advance(Duration::from_secs(60));
    for local in ["a", "b", "c"] {
        app.report(
            "",
            not_found(&format!("n-{local}"), &format!("{local}@gone.example")),
        )
        .await;
    }
    app.report("", not_found("n-x", "x@other.example")).await;
    let before = domain_status(&mut app, "gone.example").await;

    let mut app = app.restart().await;
    assert_eq!(
        app.status("", "a@mail.closed.example")
            .await
            .suppressed_domain,
        "closed.example"
    );
    assert!(app.status("", "a@catchall.example").await.uncertain_mailbox);
    assert_eq!(
        app.state("", "z@gone.example").await,
        AddressState::Suppressed
    );
    assert_eq!(domain_status(&mut app, "gone.example").await, before);
    let other = domain_status(&mut app, "other.example")
        .await
        .status
        .unwrap();
    assert_eq!(other.recent_domain_not_found, 1, "the evidence is kept");
    let listed = app
        .client
        .list_suppressed_domains(pb::ListSuppressedDomainsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.domains.iter().map(|d| d.domain.as_str()).collect();
    assert_eq!(names, ["gone.example", "closed.example"]);

    // The automatic suppression is still lifted by a delivery.
    app.clock.advance(DAY);
    app.report("", delivered("d1", "someone@gone.example"))
        .await;
    assert_eq!(app.state("", "z@gone.example").await, AddressState::Allowed);
}
