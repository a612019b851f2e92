//! Raw bounce messages through the real server: ParseBounceMessage reads and stores nothing;
//! ReportBounceMessage records each failed, delayed or complained-about recipient once, however
//! often the mailbox is scanned. And `suppressd parse-bounce` on the command line.

use std::process::Command;

use suppressd::grpc::proto::{
    self as pb, AddressState, BounceAction, BounceMessageKind, BounceReason, OutcomeType,
};

use crate::helpers::*;

/// A Postfix DSN: one recipient unknown, the original's headers enclosed.
pub(crate) const DSN: &str = "\
Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: news@sender.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <20240501120000.AB12@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=\"BOUNDARY\"

--BOUNDARY
Content-Type: text/plain

This is the mail system at host mx.example.net.

<Bob.Smith@Example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1
    <bob.smith@example.com>: Recipient address rejected: User unknown

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; Bob.Smith@Example.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; 550 5.1.1 <bob.smith@example.com>: Recipient address
    rejected: User unknown

--BOUNDARY
Content-Type: text/rfc822-headers

From: news@sender.example
To: bob.smith@example.com
Subject: Spring sale
Message-ID: <campaign-42.bob@sender.example>
List-Id: Spring news <spring.sender.example>
X-Campaign: spring-2024

--BOUNDARY--
";

/// The same kind of report for a delay: the server goes on trying.
const DELAYED: &str = "\
From: MAILER-DAEMON@mx.example.net
To: news@sender.example
Subject: Delayed Mail (still being retried)
Message-ID: <delay-1@mx.example.net>
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"

--B
Content-Type: text/plain

Your message is delayed.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; slow@example.com
Action: delayed
Status: 4.4.1
Diagnostic-Code: smtp; 421 4.4.1 Connection timed out

--B--
";

/// An ARF feedback report from a mailbox provider.
pub(crate) const ARF: &str = "\
From: feedback@fbl.example.org
To: abuse@sender.example
Subject: FW: Spring sale
Message-ID: <fbl-1@fbl.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"

--F
Content-Type: text/plain

This is an email abuse report for an email message received from 192.0.2.9.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: <Fan@Example.org>

--F
Content-Type: text/rfc822-headers

From: news@sender.example
To: fan@example.org
Message-ID: <campaign-42.fan@sender.example>

--F--
";

/// An out-of-office reply.
pub(crate) const AUTO_REPLY: &str = "\
From: Carol <carol@example.com>
To: news@sender.example
Subject: Out of office: Spring sale
Auto-Submitted: auto-replied
Message-ID: <ooo-1@example.com>

I am away until Monday.
";

/// An Exim bounce without a delivery status part.
const EXIM: &str = "\
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: news@sender.example
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: gone@example.com
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  gone@example.com
    host mx.example.com [192.0.2.7]
    SMTP error from remote mail server after RCPT TO:<gone@example.com>:
    550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown

------ This is a copy of the message, including all the headers. ------

From: news@sender.example
To: gone@example.com
Subject: Spring sale
";

/// One report for three recipients: two unknown, one whose server goes on trying.
const THREE: &str = "\
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: news@sender.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <three-1@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=\"T\"

--T
Content-Type: text/plain

Your message could not be delivered to some of its recipients.

--T
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; ann@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown

Final-Recipient: rfc822; ben@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <ben@example.com>: Recipient address rejected: User unknown

Final-Recipient: rfc822; cal@example.com
Action: delayed
Status: 4.4.1
Diagnostic-Code: smtp; 421 4.4.1 Connection timed out

--T--
";

async fn parse(app: &mut TestApp, raw: &str) -> pb::ParseBounceMessageResponse {
    app.client
        .parse_bounce_message(pb::ParseBounceMessageRequest {
            raw_message: raw.as_bytes().to_vec(),
            provider: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn report_request(tenant: &str, raw: &[u8]) -> pb::ReportBounceMessageRequest {
    pb::ReportBounceMessageRequest {
        tenant: tenant.into(),
        raw_message: raw.to_vec(),
        source: "newsletter-form".into(),
        campaign: "spring-2024".into(),
        segment: String::new(),
        provider: String::new(),
    }
}

async fn report(app: &mut TestApp, raw: &str) -> pb::ReportBounceMessageResponse {
    app.client
        .report_bounce_message(report_request("", raw.as_bytes()))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn parse_reads_a_dsn_recipient_by_recipient_and_stores_nothing() {
    let mut app = spawn_app().await;
    let r = parse(&mut app, DSN).await;
    assert_eq!(r.kind(), BounceMessageKind::DeliveryStatus);
    assert_eq!(r.format, "rfc3464");
    assert_eq!(r.message_id, "20240501120000.AB12@mx.example.net");
    assert_eq!(r.bounces.len(), 1);
    let b = &r.bounces[0];
    assert_eq!(b.recipient, "bob.smith@example.com");
    assert_eq!(b.action(), BounceAction::Failed);
    assert_eq!(b.enhanced_status, "5.1.1");
    assert_eq!(
        b.diagnostic,
        "550 5.1.1 <bob.smith@example.com>: Recipient address rejected: User unknown"
    );
    assert_eq!(b.reporting_mta, "mx.example.net");
    assert_eq!(b.remote_mta, "mx.example.com");
    assert_eq!(b.original_message_id, "campaign-42.bob@sender.example");
    let headers: Vec<(&str, &str)> = b
        .original_headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_str()))
        .collect();
    assert!(
        headers.contains(&("x-campaign", "spring-2024")),
        "{headers:?}"
    );
    assert!(headers.iter().any(|(n, _)| *n == "list-id"), "{headers:?}");
    let c = b.classification.clone().unwrap();
    assert_eq!(c.outcome_type(), OutcomeType::Hard);
    assert_eq!(c.reason(), BounceReason::MailboxNotFound);

    // nothing was stored
    let status = app.status("", "bob.smith@example.com").await;
    assert_ne!(status.state(), AddressState::Suppressed);
}

#[tokio::test]
async fn parse_tells_a_complaint_an_auto_reply_and_a_non_standard_bounce_apart() {
    let mut app = spawn_app().await;

    let arf = parse(&mut app, ARF).await;
    assert_eq!(arf.kind(), BounceMessageKind::FeedbackReport);
    assert_eq!(arf.bounces.len(), 1);
    assert_eq!(arf.bounces[0].recipient, "fan@example.org");
    assert_eq!(arf.bounces[0].feedback_type, "abuse");
    let c = arf.bounces[0].classification.clone().unwrap();
    assert_eq!(c.outcome_type(), OutcomeType::Complaint);

    let ooo = parse(&mut app, AUTO_REPLY).await;
    assert_eq!(ooo.kind(), BounceMessageKind::AutoReply);
    assert!(ooo.bounces.is_empty());

    let exim = parse(&mut app, EXIM).await;
    assert_eq!(exim.kind(), BounceMessageKind::DeliveryStatus);
    assert_eq!(exim.format, "exim");
    assert_eq!(exim.bounces.len(), 1);
    assert_eq!(exim.bounces[0].recipient, "gone@example.com");
    assert!(exim.bounces[0].diagnostic.starts_with("550 5.1.1"));
    let c = exim.bounces[0].classification.clone().unwrap();
    assert_eq!(c.outcome_type(), OutcomeType::Hard);

    let plain = parse(
        &mut app,
        "From: a@example.com\nSubject: hello\n\nJust a note.\n",
    )
    .await;
    assert_eq!(plain.kind(), BounceMessageKind::NotABounce);
    assert!(plain.bounces.is_empty());
}

#[tokio::test]
async fn a_hard_bounce_message_suppresses_and_a_second_scan_records_nothing_more() {
    let mut app = spawn_app().await;
    let first = report(&mut app, DSN).await;
    assert_eq!(first.kind(), BounceMessageKind::DeliveryStatus);
    assert_eq!(first.results.len(), 1);
    let r = &first.results[0];
    assert!(r.recorded);
    assert!(!r.duplicate);
    assert!(r.event_id.starts_with("bounce-"));
    assert_eq!(r.status.clone().unwrap().state(), AddressState::Suppressed);

    let status = app.status("", "bob.smith@example.com").await;
    assert_eq!(status.state(), AddressState::Suppressed);
    let s = status.suppression.unwrap();
    assert_eq!(s.reason(), BounceReason::MailboxNotFound);
    assert_eq!(s.event_id, r.event_id);
    assert_eq!(s.source, "newsletter-form");

    let again = report(&mut app, DSN).await;
    assert_eq!(again.results.len(), 1);
    assert!(again.results[0].duplicate);
    assert_eq!(again.results[0].event_id, r.event_id);

    let history = app.history("", "bob.smith@example.com").await;
    let results = history
        .iter()
        .filter(|e| matches!(e.entry, Some(pb::history_entry::Entry::SendResult(_))))
        .count();
    assert_eq!(results, 1, "{history:?}");
}

#[tokio::test]
async fn a_message_of_several_recipients_is_recorded_in_one_durable_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path().join("data"));
    // Fault injection needs an engine with a writer thread of its own; the batching is the
    // same on every engine.
    if settings.engine == suppressd::config::StorageEngine::Postgres {
        settings.engine = suppressd::config::StorageEngine::Sled;
    }
    // The engine fails its second commit: a message recorded recipient by recipient would
    // fail at its second recipient.
    let store = suppressd::store::testing::open_with_commit_panic(
        suppressd::startup::Application::store_options(&settings),
        2,
    )
    .unwrap();
    let app = suppressd::startup::Application::with_store(settings, store)
        .await
        .unwrap();
    let addr = format!("http://127.0.0.1:{}", app.port());
    let _server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let mut client = Client::connect(addr).await.unwrap();

    let r = client
        .report_bounce_message(report_request("", THREE.as_bytes()))
        .await
        .expect("the three results are one commit")
        .into_inner();
    let seen: Vec<(String, bool, AddressState)> = r
        .results
        .iter()
        .map(|x| {
            (
                x.bounce.as_ref().unwrap().recipient.clone(),
                x.recorded && !x.duplicate,
                x.status.as_ref().unwrap().state(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ann@example.com".into(), true, AddressState::Suppressed),
            ("ben@example.com".into(), true, AddressState::Suppressed),
            ("cal@example.com".into(), true, AddressState::Allowed),
        ]
    );
    let ids: std::collections::BTreeSet<&str> =
        r.results.iter().map(|x| x.event_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "one event id per recipient");
    for address in ["ann@example.com", "ben@example.com"] {
        let status = client
            .get_suppression_status(pb::GetSuppressionStatusRequest {
                tenant: String::new(),
                address: address.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.status.unwrap().state(),
            AddressState::Suppressed,
            "{address}"
        );
    }
}

#[tokio::test]
async fn a_message_of_several_recipients_scanned_twice_records_each_once() {
    let mut app = spawn_app().await;
    let first = report(&mut app, THREE).await;
    assert_eq!(first.results.len(), 3);
    assert!(first.results.iter().all(|r| r.recorded && !r.duplicate));
    let again = report(&mut app, THREE).await;
    let verdicts: Vec<(bool, bool)> = again
        .results
        .iter()
        .map(|r| (r.recorded, r.duplicate))
        .collect();
    assert_eq!(verdicts, [(true, true); 3]);
    let ids = |r: &pb::ReportBounceMessageResponse| -> Vec<String> {
        r.results.iter().map(|x| x.event_id.clone()).collect()
    };
    assert_eq!(ids(&first), ids(&again));
    // the delayed recipient's soft bounce is kept as one result, not two
    let history = app.history("", "cal@example.com").await;
    let results = history
        .iter()
        .filter(|e| matches!(e.entry, Some(pb::history_entry::Entry::SendResult(_))))
        .count();
    assert_eq!(results, 1, "{history:?}");
}

#[tokio::test]
async fn a_feedback_report_suppresses_as_a_complaint() {
    let mut app = spawn_app().await;
    let r = report(&mut app, ARF).await;
    assert_eq!(r.kind(), BounceMessageKind::FeedbackReport);
    assert!(r.results[0].recorded);
    let status = app.status("", "fan@example.org").await;
    assert_eq!(status.state(), AddressState::Suppressed);
    assert_eq!(
        status.suppression.unwrap().reason(),
        BounceReason::Complaint
    );
}

#[tokio::test]
async fn a_dmarc_failure_report_is_no_complaint_and_suppresses_no_one() {
    let mut app = spawn_app().await;
    let failure = ARF.replace("Feedback-Type: abuse", "Feedback-Type: auth-failure");
    let r = report(&mut app, &failure).await;
    assert_eq!(r.kind(), BounceMessageKind::FeedbackReport);
    assert!(r.results.is_empty(), "{r:?}");
    let status = app.status("", "fan@example.org").await;
    assert_ne!(status.state(), AddressState::Suppressed);
    let history = app.history("", "fan@example.org").await;
    assert!(history.is_empty(), "{history:?}");
}

#[tokio::test]
async fn a_delay_counts_as_a_soft_bounce_and_does_not_suppress() {
    let mut app = spawn_app().await;
    let r = report(&mut app, DELAYED).await;
    let b = &r.results[0];
    assert!(b.recorded);
    let bounce = b.bounce.clone().unwrap();
    assert_eq!(bounce.action(), BounceAction::Delayed);
    let c = bounce.classification.unwrap();
    assert_eq!(c.outcome_type(), OutcomeType::Soft);
    let status = app.status("", "slow@example.com").await;
    assert_ne!(status.state(), AddressState::Suppressed);
}

#[tokio::test]
async fn an_auto_reply_or_a_message_that_is_no_bounce_records_nothing() {
    let mut app = spawn_app().await;
    let r = report(&mut app, AUTO_REPLY).await;
    assert_eq!(r.kind(), BounceMessageKind::AutoReply);
    assert!(r.results.is_empty());
    let status = app.status("", "carol@example.com").await;
    assert_ne!(status.state(), AddressState::Suppressed);
    let history = app.history("", "carol@example.com").await;
    assert!(history.is_empty(), "{history:?}");
}

#[tokio::test]
async fn a_message_over_the_limit_is_resource_exhausted_naming_the_limit() {
    let mut app = spawn_app_with(|s| s.max_bounce_message_bytes = 4096).await;
    let big = format!("{DSN}{}", "x".repeat(5000));
    let err = app
        .client
        .report_bounce_message(report_request("", big.as_bytes()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("4096"), "{}", err.message());
    let err = app
        .client
        .parse_bounce_message(pb::ParseBounceMessageRequest {
            raw_message: big.into_bytes(),
            provider: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    // nothing was recorded
    let status = app.status("", "bob.smith@example.com").await;
    assert_ne!(status.state(), AddressState::Suppressed);
}

#[tokio::test]
async fn the_default_limit_is_ten_mebibytes_and_the_transport_lets_such_a_message_through() {
    let mut app = spawn_app().await;
    let near = format!("{DSN}{}", "x".repeat(10 * 1024 * 1024 - DSN.len() - 1));
    let r = app
        .client
        .parse_bounce_message(pb::ParseBounceMessageRequest {
            raw_message: near.into_bytes(),
            provider: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kind(), BounceMessageKind::DeliveryStatus);
    let over = vec![b'x'; 10 * 1024 * 1024 + 1];
    let err = app
        .client
        .parse_bounce_message(pb::ParseBounceMessageRequest {
            raw_message: over,
            provider: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("10485760"), "{}", err.message());
}

#[tokio::test]
async fn bad_fields_are_invalid_argument_naming_the_field_and_change_nothing() {
    let mut app = spawn_app().await;
    let err = app
        .client
        .report_bounce_message(report_request("Not A Tenant!", DSN.as_bytes()))
        .await
        .unwrap_err();
    assert_invalid(&err, "tenant");

    let err = app
        .client
        .report_bounce_message(report_request("", b""))
        .await
        .unwrap_err();
    assert_invalid(&err, "raw_message");

    let mut bad_source = report_request("", DSN.as_bytes());
    bad_source.source = "x".repeat(300);
    let err = app
        .client
        .report_bounce_message(bad_source)
        .await
        .unwrap_err();
    assert_invalid(&err, "source");

    let err = app
        .client
        .parse_bounce_message(pb::ParseBounceMessageRequest {
            raw_message: DSN.as_bytes().to_vec(),
            provider: "p".repeat(300),
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "provider");

    let status = app.status("", "bob.smith@example.com").await;
    assert_ne!(status.state(), AddressState::Suppressed);
}

#[tokio::test]
async fn hostile_bytes_are_answered_not_a_bounce() {
    let mut app = spawn_app().await;
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = app
        .client
        .parse_bounce_message(pb::ParseBounceMessageRequest {
            raw_message: garbage,
            provider: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kind(), BounceMessageKind::NotABounce);
    // deeply nested multiparts
    let mut nested = String::from("From: MAILER-DAEMON@x.example\nSubject: Undelivered Mail\n");
    for i in 0..500 {
        nested.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
        ));
    }
    let r = parse(&mut app, &nested).await;
    assert!(r.bounces.len() <= 1);
}

/// `suppressd parse-bounce --json FILE...`, which must succeed: one JSON object per message.
fn parse_bounce_json(files: &[&std::path::Path]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_suppressd"))
        .args(["parse-bounce", "--json"])
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn parse_bounce_prints_what_the_rpc_would_answer() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = dir.path().join("dsn.eml");
    let ooo = dir.path().join("ooo.eml");
    std::fs::write(&dsn, DSN).unwrap();
    std::fs::write(&ooo, AUTO_REPLY).unwrap();
    let lines = parse_bounce_json(&[&dsn, &ooo]);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["kind"], "BOUNCE_MESSAGE_KIND_DELIVERY_STATUS");
    assert_eq!(lines[0]["bounces"][0]["recipient"], "bob.smith@example.com");
    assert_eq!(lines[0]["bounces"][0]["action"], "BOUNCE_ACTION_FAILED");
    assert_eq!(
        lines[0]["bounces"][0]["classification"]["outcome_type"],
        "OUTCOME_TYPE_HARD"
    );
    assert_eq!(lines[1]["kind"], "BOUNCE_MESSAGE_KIND_AUTO_REPLY");

    let text = Command::new(env!("CARGO_BIN_EXE_suppressd"))
        .args(["parse-bounce"])
        .arg(&dsn)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("delivery_status (rfc3464)"), "{text}");
    assert!(
        text.contains("bob.smith@example.com failed 5.1.1 -> Hard"),
        "{text}"
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_suppressd"))
        .args(["parse-bounce"])
        .arg(dir.path().join("nope.eml"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

/// Two bounces in one mbox file, as a mail spool keeps them.
fn mbox_of_two() -> String {
    let second = DSN
        .replace("Bob.Smith@Example.com", "carol@example.org")
        .replace("bob.smith@example.com", "carol@example.org")
        .replace("20240501120000.AB12", "20240501120500.CD34");
    format!(
        "From MAILER-DAEMON Wed May  1 12:00:00 2024\n{DSN}\nFrom MAILER-DAEMON Wed May  1 12:05:00 2024\n{second}\n"
    )
}

#[tokio::test]
async fn an_mbox_file_of_several_messages_is_invalid_argument_and_records_nothing() {
    let mut app = spawn_app().await;
    let mbox = mbox_of_two();
    let err = app
        .client
        .parse_bounce_message(pb::ParseBounceMessageRequest {
            raw_message: mbox.as_bytes().to_vec(),
            provider: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "raw_message");
    assert!(err.message().contains("2 messages"), "{err:?}");
    let err = app
        .client
        .report_bounce_message(report_request("", mbox.as_bytes()))
        .await
        .unwrap_err();
    assert_invalid(&err, "raw_message");
    for address in ["bob.smith@example.com", "carol@example.org"] {
        let status = app.status("", address).await;
        assert_ne!(status.state(), AddressState::Suppressed, "{address}");
    }

    // one message behind an mbox envelope line is one message
    let one = format!("From MAILER-DAEMON Wed May  1 12:00:00 2024\n{DSN}");
    let r = report(&mut app, &one).await;
    assert_eq!(r.results.len(), 1);
    let status = app.status("", "bob.smith@example.com").await;
    assert_eq!(status.state(), AddressState::Suppressed);
}

#[test]
fn parse_bounce_reads_an_mbox_file_message_by_message() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("bounces.mbox");
    std::fs::write(&mbox, mbox_of_two()).unwrap();
    let lines = parse_bounce_json(&[&mbox]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let name = mbox.display().to_string();
    assert_eq!(lines[0]["file"], format!("{name}#1"));
    assert_eq!(lines[0]["bounces"][0]["recipient"], "bob.smith@example.com");
    assert_eq!(lines[1]["file"], format!("{name}#2"));
    assert_eq!(lines[1]["bounces"][0]["recipient"], "carol@example.org");
}

#[test]
fn parse_bounce_reads_every_message_of_a_maildir_and_refuses_a_plain_directory() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(maildir.join("new/1700000000.1.host"), DSN).unwrap();
    std::fs::write(maildir.join("cur/1700000001.2.host:2,S"), AUTO_REPLY).unwrap();
    let lines = parse_bounce_json(&[&maildir]);
    let mut kinds: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let file = l["file"].as_str().unwrap();
            let name = std::path::Path::new(file).file_name().unwrap();
            (name.to_string_lossy().into_owned(), l["kind"].to_string())
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            (
                "1700000000.1.host".to_string(),
                "\"BOUNCE_MESSAGE_KIND_DELIVERY_STATUS\"".to_string()
            ),
            (
                "1700000001.2.host:2,S".to_string(),
                "\"BOUNCE_MESSAGE_KIND_AUTO_REPLY\"".to_string()
            ),
        ]
    );

    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_suppressd"))
        .args(["parse-bounce"])
        .arg(&plain)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a Maildir"),
        "{out:?}"
    );
}

#[test]
fn parse_bounce_holds_each_message_of_an_mbox_file_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("bounces.mbox");
    let file = mbox_of_two();
    std::fs::write(&mbox, &file).unwrap();
    // a limit above each message but below the file: both are read
    let limit = (file.len() * 2 / 3).to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_suppressd"))
        .args(["parse-bounce", "--json", "--max-bytes", &limit])
        .arg(&mbox)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    // below each message: both are refused, named
    let out = Command::new(env!("CARGO_BIN_EXE_suppressd"))
        .args(["parse-bounce", "--max-bytes", "100"])
        .arg(&mbox)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bounces.mbox#1") && stderr.contains("bounces.mbox#2"),
        "{stderr}"
    );
}
