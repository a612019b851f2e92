//! ImportSuppressions and the provider exports `suppressd import` reads: each sample export is
//! imported twice; the second time everything is already suppressed and no history is added.

use suppressd::cli::import::{parse, Format, ImportRow, Parsed, Row};
use suppressd::grpc::import_client::import_rows;
use suppressd::grpc::proto::{
    self as pb, AddressState, BounceReason, ImportOutcome, StateChangeKind,
};

use crate::helpers::*;

fn sample(name: &str) -> Vec<Row> {
    let path = format!("{}/tests/data/import/{name}", env!("CARGO_MANIFEST_DIR"));
    let format = match name {
        n if n.starts_with("ses") => Format::Ses,
        n if n.starts_with("sendgrid") => Format::Sendgrid,
        n if n.starts_with("postmark") => Format::Postmark,
        n if n.starts_with("mailgun") => Format::Mailgun,
        _ => Format::Csv,
    };
    parse(format, None, name, std::fs::File::open(&path).unwrap()).unwrap()
}

fn items(rows: &[Row]) -> Vec<ImportRow> {
    rows.iter()
        .filter_map(|r| match &r.parsed {
            Parsed::Import(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

async fn import(
    app: &mut TestApp,
    rows: &[ImportRow],
    source: &str,
) -> pb::ImportSuppressionsResponse {
    import_rows(&mut app.client, None, "", source, rows, 2, |_| {})
        .await
        .expect("import succeeds")
}

/// Imports `file` twice: the first time `imported` rows are imported and `invalid` refused, the
/// second time every valid row is already suppressed and no address's history grows.
async fn twice(app: &mut TestApp, file: &str, imported: u64, invalid: u64) -> Vec<ImportRow> {
    let rows = items(&sample(file));
    let first = import(app, &rows, "import:test").await;
    assert_eq!(
        (first.imported, first.invalid),
        (imported, invalid),
        "{file}: {first:?}"
    );
    let rows: Vec<ImportRow> = rows;
    let valid: Vec<&ImportRow> = rows.iter().filter(|r| r.address.contains('@')).collect();
    let mut before = Vec::new();
    for r in &valid {
        before.push(app.changes("", &r.address).await.len());
    }
    let second = import(app, &rows, "import:test").await;
    assert_eq!(
        (second.imported, second.already_suppressed, second.invalid),
        (0, imported, invalid),
        "{file}: {second:?}"
    );
    assert!(second
        .verdicts
        .iter()
        .filter(|v| v.outcome() == ImportOutcome::AlreadySuppressed)
        .all(|v| v.message.is_empty()));
    for (r, n) in valid.iter().zip(before) {
        assert_eq!(app.changes("", &r.address).await.len(), n, "{}", r.address);
    }
    rows
}

/// The address is suppressed for `reason` since `since`, and its history holds one change by
/// the caller whose note names the original reason and date.
async fn assert_imported(
    app: &mut TestApp,
    address: &str,
    reason: BounceReason,
    original: &str,
    since: &str,
) {
    let status = app.status("", address).await;
    assert_eq!(status.state(), AddressState::Suppressed, "{address}");
    let s = status.suppression.unwrap();
    assert_eq!(s.reason(), reason, "{address}");
    let since_ts = s.since.unwrap();
    let got = suppressd::domain::Timestamp::from_parts(since_ts.seconds, since_ts.nanos);
    assert_eq!(got.to_rfc3339(), since, "{address}");
    let changes = app.changes("", address).await;
    assert_eq!(changes.len(), 1, "{address}: {changes:?}");
    assert_eq!(changes[0].kind(), StateChangeKind::ManuallySuppressed);
    assert!(
        changes[0].note.contains(&format!("\"{original}\"")) && changes[0].note.contains(since),
        "{address}: {}",
        changes[0].note
    );
}

#[tokio::test]
async fn ses_json_and_csv_import_once_with_their_reasons_and_dates() {
    let mut app = spawn_app().await;
    twice(&mut app, "ses.json", 2, 0).await;
    assert_imported(
        &mut app,
        "bounced@example.com",
        BounceReason::MailboxNotFound,
        "BOUNCE",
        "2024-01-02T03:04:05Z",
    )
    .await;
    assert_imported(
        &mut app,
        "complained@example.com",
        BounceReason::Complaint,
        "COMPLAINT",
        "2024-01-03T10:00:00Z",
    )
    .await;
    let csv = sample("ses.csv");
    assert_eq!(
        csv.iter()
            .filter(|r| matches!(r.parsed, Parsed::Invalid(_)))
            .map(|r| r.line)
            .collect::<Vec<_>>(),
        vec![4]
    );
    // The CSV names the same suppressions (the first at the same time): nothing new.
    let again = import(&mut app, &items(&csv), "import:test").await;
    assert_eq!(again.imported, 0);
}

#[tokio::test]
async fn sendgrid_bounces_spam_reports_and_unsubscribes_import_and_blocks_are_skipped() {
    let mut app = spawn_app().await;
    // One of the bounces is not an address: the server refuses it by its position.
    let rows = twice(&mut app, "sendgrid_bounces.csv", 2, 1).await;
    let refused = import(&mut app, &rows, "import:test").await;
    let bad: Vec<_> = refused
        .verdicts
        .iter()
        .filter(|v| v.outcome() == ImportOutcome::Invalid)
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(rows[bad[0].index as usize].address, "not-an-address");
    assert!(bad[0].message.starts_with("address"), "{}", bad[0].message);
    assert_imported(
        &mut app,
        "gone@example.com",
        BounceReason::MailboxNotFound,
        "5.1.1 550 5.1.1 The email account does not exist",
        "2024-01-02T03:04:05Z",
    )
    .await;
    assert_imported(
        &mut app,
        "typo@example.com",
        BounceReason::InvalidAddress,
        "5.1.3 550 5.1.3 Invalid address syntax",
        "2024-01-03T02:46:40Z",
    )
    .await;

    let blocks = sample("sendgrid_blocks.csv");
    assert!(items(&blocks).is_empty());
    assert_eq!(
        blocks
            .iter()
            .filter(|r| matches!(r.parsed, Parsed::Skipped(_)))
            .count(),
        2
    );
    assert_eq!(
        app.status("", "blocked@example.com").await.state(),
        AddressState::Allowed
    );

    twice(&mut app, "sendgrid_spam_reports.csv", 1, 0).await;
    assert_imported(
        &mut app,
        "spam@example.com",
        BounceReason::Complaint,
        "spam report",
        "2024-01-02T03:04:05Z",
    )
    .await;
    twice(&mut app, "sendgrid_unsubscribes.csv", 1, 0).await;
    assert_imported(
        &mut app,
        "leaver@example.com",
        BounceReason::Unsubscribed,
        "global unsubscribe",
        "2024-01-02T03:04:05Z",
    )
    .await;
}

#[tokio::test]
async fn a_postmark_dump_imports_once_with_unsubscribes_by_the_recipient() {
    let mut app = spawn_app().await;
    twice(&mut app, "postmark.json", 4, 0).await;
    assert_imported(
        &mut app,
        "hard@example.com",
        BounceReason::MailboxNotFound,
        "HardBounce (origin Recipient)",
        "2024-01-02T03:04:05Z",
    )
    .await;
    assert_imported(
        &mut app,
        "unsub@example.com",
        BounceReason::Unsubscribed,
        "ManualSuppression (origin Recipient)",
        "2024-01-04T15:00:00Z",
    )
    .await;
    assert_imported(
        &mut app,
        "byhand@example.com",
        BounceReason::Manual,
        "ManualSuppression (origin Customer)",
        "2024-01-05T15:00:00Z",
    )
    .await;
}

#[tokio::test]
async fn mailgun_bounces_complaints_and_tagged_unsubscribes_import_once() {
    let mut app = spawn_app().await;
    let bounces = sample("mailgun_bounces.csv");
    assert_eq!(
        bounces
            .iter()
            .filter(|r| matches!(r.parsed, Parsed::Invalid(_)))
            .map(|r| r.line)
            .collect::<Vec<_>>(),
        vec![3]
    );
    twice(&mut app, "mailgun_bounces.csv", 1, 0).await;
    assert_imported(
        &mut app,
        "nobody@example.com",
        BounceReason::MailboxNotFound,
        "550 No such mailbox",
        "2024-01-02T03:04:05Z",
    )
    .await;
    twice(&mut app, "mailgun_complaints.csv", 1, 0).await;
    twice(&mut app, "mailgun_unsubscribes.csv", 2, 0).await;
    assert_imported(
        &mut app,
        "everything@example.com",
        BounceReason::Unsubscribed,
        "unsubscribed from every mail",
        "2024-01-04T10:00:00Z",
    )
    .await;
    // A tag is a list: other mail still goes out.
    assert_eq!(
        app.status("", "weekly@example.com").await.state(),
        AddressState::Allowed
    );
    assert_eq!(
        app.status_for_list("", "weekly@example.com", "newsletter")
            .await
            .state(),
        AddressState::Suppressed
    );
    let changes = app.changes("", "weekly@example.com").await;
    assert_eq!(changes[0].kind(), StateChangeKind::UnsubscribedFromList);
}

#[tokio::test]
async fn our_csv_imports_once_and_an_address_suppressed_otherwise_is_left_alone() {
    let mut app = spawn_app().await;
    app.client
        .suppress(pb::SuppressRequest {
            address: "legal@example.com".into(),
            note: "ticket 9".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let rows = items(&sample("generic.csv"));
    let first = import(&mut app, &rows, "import:csv").await;
    assert_eq!(
        (first.imported, first.already_suppressed, first.invalid),
        (3, 1, 0)
    );
    assert_imported(
        &mut app,
        "old-bounce@example.com",
        BounceReason::MailboxNotFound,
        "mailbox-not-found",
        "2023-06-01T00:00:00Z",
    )
    .await;
    let changes = app.changes("", "legal@example.com").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].note, "ticket 9");
    let second = import(&mut app, &rows, "import:csv").await;
    assert_eq!((second.imported, second.already_suppressed), (0, 4));
}

#[tokio::test]
async fn items_from_the_future_or_with_a_list_and_another_reason_are_invalid() {
    let mut app = spawn_app().await;
    let now = app.clock.now();
    let rows = vec![
        ImportRow {
            address: "later@example.com".into(),
            reason: suppressd::domain::BounceReason::Complaint,
            original_reason: "x".into(),
            original_time: now.plus(std::time::Duration::from_secs(3600)),
            list_id: String::new(),
        },
        ImportRow {
            address: "listed@example.com".into(),
            reason: suppressd::domain::BounceReason::Complaint,
            original_reason: "x".into(),
            original_time: now,
            list_id: "news".into(),
        },
    ];
    let answer = import(&mut app, &rows, "import:test").await;
    assert_eq!((answer.imported, answer.invalid), (0, 2));
    assert!(answer.verdicts[0].message.starts_with("original_time"));
    assert!(answer.verdicts[1].message.starts_with("list_id"));
    assert_eq!(
        app.status("", "later@example.com").await.state(),
        AddressState::Allowed
    );
}
