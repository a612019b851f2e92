//! Unit tests of the bounce-message parser.

use super::*;

use crate::classify::Classifier;
use proptest::prelude::*;
use std::sync::LazyLock;

static PARSER: LazyLock<BounceParser> = LazyLock::new(BounceParser::new);
static CLASSIFIER: LazyLock<Classifier> = LazyLock::new(Classifier::new);

/// A few corpus messages of different kinds to mutate.
fn seeds() -> Vec<Vec<u8>> {
    [
        "lhost-postfix-02.eml",
        "arf-14.eml",
        "rfc3834-01.eml",
        "lhost-qmail-01.eml",
    ]
    .iter()
    .map(|f| {
        std::fs::read(format!(
            "{}/tests/data/dsn/emails/{f}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("seed message")
    })
    .collect()
}

static SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(seeds);

/// What every answer must satisfy, whatever the input.
fn check_answer(raw: &[u8], m: &ParsedMessage) {
    assert!(m.bounces.len() <= MAX_RECIPIENTS);
    for b in &m.bounces {
        assert!(!b.recipient.is_empty());
        assert!(b.diagnostic.len() <= MAX_DIAGNOSTIC_BYTES);
    }
    if matches!(
        m.kind,
        BounceMessageKind::AutoReply | BounceMessageKind::NotABounce
    ) {
        assert!(m.bounces.iter().all(|b| !b.action.is_bounce()), "{raw:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let m = PARSER.parse(&raw, "", &CLASSIFIER);
        check_answer(&raw, &m);
    }

    #[test]
    fn mutated_corpus_messages_never_panic(
        seed in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..40),
    ) {
        let mut raw = SEEDS[seed].clone();
        for (at, op, byte) in edits {
            if raw.is_empty() {
                raw.push(byte);
                continue;
            }
            let i = at.index(raw.len());
            match op {
                0 => raw[i] = byte,
                1 => raw.insert(i, byte),
                2 => { raw.remove(i); }
                // a run of MIME-significant bytes
                _ => {
                    let piece: &[u8] = match byte % 4 {
                        0 => b"\n--",
                        1 => b"\nContent-Type: multipart/mixed; boundary=\"x\"\n\n--x\n",
                        2 => b"\nContent-Type: message/rfc822\n\n",
                        _ => b"=?utf-8?B?",
                    };
                    raw.splice(i..i, piece.iter().copied());
                }
            }
        }
        let m = PARSER.parse(&raw, "", &CLASSIFIER);
        check_answer(&raw, &m);
    }
}

#[test]
fn a_dsn_is_read_field_by_field() {
    let raw = b"From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered Mail\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
Final-Recipient: rfc822; A@Example.COM\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 no such\r\n user\r\n\r\n\
Final-Recipient: rfc822; b@example.com\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n--b--\r\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert_eq!(m.kind, BounceMessageKind::DeliveryStatus);
    assert_eq!(m.bounces.len(), 2);
    assert_eq!(m.bounces[0].recipient, "a@example.com");
    assert_eq!(m.bounces[0].action, Action::Failed);
    assert_eq!(m.bounces[0].diagnostic, "550 5.1.1 no such user");
    assert_eq!(m.bounces[0].reporting_mta, "mx.example");
    assert_eq!(m.bounces[0].classification.bounce_type, BounceType::Hard);
    assert_eq!(m.bounces[1].action, Action::Delivered);
    assert_eq!(
        m.bounces[1].classification.bounce_type,
        BounceType::Delivered
    );
}

#[test]
fn a_delivered_only_report_has_no_bounce_action() {
    let raw = b"From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
--b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; ok@example.com\nAction: relayed\nStatus: 2.0.0\n\n--b--\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert!(m.bounces.iter().all(|b| !b.action.is_bounce()));
    assert_eq!(m.bounces[0].action, Action::Relayed);
}

#[test]
fn actions_read_case_insensitively_and_unknown_ones_are_none() {
    assert_eq!(Action::parse("Failed"), Some(Action::Failed));
    assert_eq!(Action::parse(" delayed (retrying)"), Some(Action::Delayed));
    assert_eq!(Action::parse("EXPANDED"), Some(Action::Expanded));
    assert_eq!(Action::parse("weird"), None);
}

#[test]
fn the_built_in_formats_compile_and_a_broken_file_is_refused() {
    assert!(!Formats::builtin().unwrap().is_empty());
    assert!(Formats::compile("version = 2\n[generic]\n").is_err());
    let no_group = FORMATS_FOR_TEST.replace("(?P<rcpt>", "(");
    assert!(Formats::compile(&no_group).is_err());
}

const FORMATS_FOR_TEST: &str = r#"version = 1
[generic]
from = []
subject = []
body = []
end = []
recipient = []
reply = '\d'
[[format]]
name = "x"
recipient = ['^(?P<rcpt>\S+@\S+)$']
"#;

#[test]
fn a_recipient_is_normalized_and_a_quoted_local_part_kept() {
    assert_eq!(
        normalize_recipient("rfc822; <Bob@Example.COM>").as_deref(),
        Some("bob@example.com")
    );
    assert_eq!(
        normalize_recipient("rfc822; \"a..b\"@example.org").as_deref(),
        Some("\"a..b\"@example.org")
    );
    assert_eq!(
        normalize_recipient("rfc822; user@mailhub").as_deref(),
        Some("user@mailhub")
    );
    assert_eq!(normalize_recipient("rfc822; nobody"), None);
}

#[test]
fn recipients_written_without_a_blank_line_between_are_each_read() {
    let raw = b"From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\
Final-Recipient: rfc822; full@example.com\nAction: failed\nStatus: 5.2.2\nDiagnostic-Code: smtp; 552 5.2.2 Mailbox Full\n\
Final-Recipient: rfc822; gone@example.com\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User Unknown\n\n--b--\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    let got = recipients_and_types(&m);
    assert_eq!(
        got,
        vec![
            ("full@example.com", BounceType::Soft),
            ("gone@example.com", BounceType::Hard)
        ]
    );
}

#[test]
fn a_status_comment_is_the_diagnostic_when_there_is_no_diagnostic_code() {
    let raw = b"From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
--b\nContent-Type: text/plain\n\nThis report relates to a message with these header fields:\n\n  To: a@nowhere.example\n\n\
--b\nContent-Type: message/delivery-status\n\nFinal-recipient: rfc822;a@nowhere.example\nAction: failed\n\
Status: 5.4.4 (Illegal host/domain name found)\n\n--b--\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert_eq!(m.bounces.len(), 1);
    assert_eq!(m.bounces[0].diagnostic, "Illegal host/domain name found");
    assert_eq!(m.bounces[0].classification.bounce_type, BounceType::Hard);
}

#[test]
fn iso_2022_jp_text_is_decoded_where_no_charset_says_so() {
    // "ユーザー" in ISO-2022-JP, in a delivery-status field (which declares no charset)
    let raw = b"From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
--b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822;u@example.jp\nAction: failed\nStatus: 5.0.0\n\
Diagnostic-Code: X-Notes; \x1b$B%f!<%6!<\x1b(B (u@example.jp)\n\n--b--\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert_eq!(m.bounces.len(), 1);
    assert!(
        m.bounces[0].diagnostic.starts_with("ユーザー"),
        "{}",
        m.bounces[0].diagnostic
    );
}

#[test]
fn a_report_without_a_quoted_to_names_the_address_the_original_was_received_for() {
    let raw = b"From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example>\nTo: sender@example.org\n\
Subject: Returned mail\n\nThe message could not be delivered.\n\n----- Original message -----\n\
Received: from a.example by mx.example\n\tfor <lost@example.net>; Thu, 1 Jan 2015 00:00:00 +0000\n\
Subject: hello\n\nhello\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    let got: Vec<&str> = m.bounces.iter().map(|b| b.recipient.as_str()).collect();
    assert_eq!(got, vec!["lost@example.net"]);
}

#[test]
fn an_fml_notice_names_the_list_that_refused_the_post() {
    let raw = b"From: neko-admin@example.org\nTo: poster@example.net\n\
Subject: You poster@example.net are not member (neko ML)\nX-MLServer: fml [fml 4.0.3]\n\n\
You are not a member of this mailing list <neko@example.org>.\n\n\
If you know the general guide of this list, please send mail with\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert_eq!(m.format, "fml");
    let got: Vec<&str> = m.bounces.iter().map(|b| b.recipient.as_str()).collect();
    assert_eq!(got, vec!["neko@example.org"]);
    // the list refuses this sender for as long as it is not a member: hard, the classifier's
    // "recipient refuses" (rules.toml; the decision in docs/bounce-messages.md)
    assert_eq!(m.bounces[0].action, Action::Failed);
    assert_eq!(m.bounces[0].classification.rule_id, "recipient.refuses");
}

#[test]
fn a_sendmail_transcript_keeps_the_local_agents_words_before_its_reply() {
    let raw = b"From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>\n\
To: <sender@example.org>\nSubject: Returned mail: Service unavailable\nMIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n\
--B\n\n   ----- The following addresses had permanent fatal errors -----\n<bob@example.net>\n\n\
   ----- Transcript of session follows -----\nmail.local: unknown user: bob\n\
554 <bob@example.net>... Service unavailable\n\n\
--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n\
Final-Recipient: RFC822; <bob@example.net>\nAction: failed\nStatus: 5.5.0\n\n--B--\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert_eq!(m.bounces.len(), 1);
    let b = &m.bounces[0];
    assert_eq!(
        b.diagnostic,
        "mail.local: unknown user: bob 554 <bob@example.net>... Service unavailable"
    );
    assert_eq!(b.classification.bounce_type, BounceType::Hard);
}

#[test]
fn a_list_of_bare_recipients_takes_the_sentence_that_introduces_it_for_a_diagnostic() {
    let raw = b"From: postmaster@mail.example.net\nTo: sender@example.org\n\
Subject: Delivery Status Notification (Failure)\nMIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n\
--B\nContent-Type: text/plain\n\nThis is an automatically generated Delivery Status Notification.\n\n\
Unable to deliver message to the following recipients, due to being unable to connect \
successfully to the destination mail server.\n\n       ann@example.com\n       ben@example.com\n\n\
--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns;mail.example.net\n\n\
Final-Recipient: rfc822;ann@example.com\nAction: failed\nStatus: 4.4.7\n\n\
Final-Recipient: rfc822;ben@example.com\nAction: failed\nStatus: 4.4.7\n\n--B--\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    let got: Vec<(&str, &str)> = m
        .bounces
        .iter()
        .map(|b| (b.recipient.as_str(), b.diagnostic.as_str()))
        .collect();
    let why = "Unable to deliver message to the following recipients, due to being unable to \
connect successfully to the destination mail server.";
    assert_eq!(
        got,
        vec![("ann@example.com", why), ("ben@example.com", why)]
    );
    assert!(m
        .bounces
        .iter()
        .all(|b| b.classification.bounce_type == BounceType::Soft));
}

#[test]
fn a_relays_report_takes_the_reply_from_the_bounce_it_encloses() {
    let raw = b"From: postmaster@relay.example.com\nTo: <list@example.org>\n\
Subject: Mail could not be delivered\nMIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"R\"\n\n\
--R\nContent-type: text/plain\n\n****** Message from InterScan Messaging Security Suite ******\n\
The following mail could not be delivered.\n\
Reason:  Unable to deliver message to <bob@example.jp> (and other recipients in the same domain).\n\n\
--R\nContent-type: message/rfc822\n\nFrom: list@example.org\nTo: bob@example.jp\nSubject: hello\n\n\
   ----- Transcript of the session follows -----\n... while talking to 192.0.2.1:\n\
>>> RCPT To:<bob@example.jp>\n<<< 550 5.1.1 <bob@example.jp>... Invalid recipient\n\n--R--\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert_eq!(m.bounces.len(), 1);
    let b = &m.bounces[0];
    assert_eq!(b.recipient, "bob@example.jp");
    assert_eq!(
        b.diagnostic,
        "550 5.1.1 <bob@example.jp>... Invalid recipient"
    );
    assert_eq!(b.classification.bounce_type, BounceType::Hard);
}

/// A Sieve `reject` as Dovecot sends it: a disposition notification, deleted automatically.
fn sieve_rejection(disposition: &str) -> Vec<u8> {
    format!(
        "From: Mail Delivery Subsystem <admin@mx.example>\nTo: <sender@example.org>\n\
Subject: Automatically rejected mail\nAuto-Submitted: auto-replied (rejected)\nMIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=disposition-notification; boundary=\"b\"\n\n\
--b\nContent-Type: text/plain; charset=utf-8\n\n\
Your message to <full@example.net> was automatically rejected:\nQuota exceeded (mailbox for user is full)\n\
--b\nContent-Type: message/disposition-notification\n\n\
Reporting-UA: mx.example; Dovecot Mail Delivery Agent\nFinal-Recipient: rfc822; full@example.net\n\
Original-Message-ID: <1@example.org>\nDisposition: {disposition}\n\n--b--\n"
    )
    .into_bytes()
}

#[test]
fn a_sieve_rejection_is_a_failure_for_its_final_recipient_with_the_reason_given() {
    let m = PARSER.parse(
        &sieve_rejection("automatic-action/MDN-sent-automatically; deleted"),
        "",
        &CLASSIFIER,
    );
    assert_eq!(m.kind, BounceMessageKind::DeliveryStatus);
    assert_eq!(m.format, "rfc5429");
    assert_eq!(m.bounces.len(), 1);
    let b = &m.bounces[0];
    assert_eq!(
        (b.recipient.as_str(), b.action),
        ("full@example.net", Action::Failed)
    );
    assert!(
        b.diagnostic.starts_with("Quota exceeded"),
        "{}",
        b.diagnostic
    );
    assert_ne!(b.classification.bounce_type, BounceType::Hard);
}

#[test]
fn a_read_receipt_or_a_deletion_by_hand_is_no_failure() {
    for disposition in [
        "manual-action/MDN-sent-manually; displayed",
        "manual-action/MDN-sent-manually; deleted",
        "automatic-action/MDN-sent-automatically; processed",
    ] {
        let m = PARSER.parse(&sieve_rejection(disposition), "", &CLASSIFIER);
        assert!(
            m.bounces.iter().all(|b| !b.action.is_bounce()),
            "{disposition}: {m:?}"
        );
    }
}

/// A feedback report of type `feedback_type` about a message to `fan@example.org`.
fn feedback_report(feedback_type: &str) -> Vec<u8> {
    format!(
        "From: reports@receiver.example\nTo: dmarc@sender.example\nSubject: Report\n\
MIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\n\n\
--F\nContent-Type: text/plain\n\nA report.\n\n--F\nContent-Type: message/feedback-report\n\n\
Feedback-Type: {feedback_type}\nUser-Agent: Example/1.0\nVersion: 1\n\n\
--F\nContent-Type: text/rfc822-headers\n\nFrom: news@sender.example\nTo: fan@example.org\n\n--F--\n"
    )
    .into_bytes()
}

#[test]
fn an_authentication_failure_or_not_spam_report_names_no_complainer() {
    for kind in ["auth-failure", "not-spam", "Auth-Failure"] {
        let m = PARSER.parse(&feedback_report(kind), "", &CLASSIFIER);
        assert_eq!(m.kind, BounceMessageKind::FeedbackReport, "{kind}");
        assert!(m.bounces.is_empty(), "{kind}: {m:?}");
    }
    for kind in ["abuse", "fraud", "opt-out"] {
        let m = PARSER.parse(&feedback_report(kind), "", &CLASSIFIER);
        let got = recipients_and_types(&m);
        assert_eq!(
            got,
            vec![("fan@example.org", BounceType::Complaint)],
            "{kind}"
        );
    }
}

#[test]
fn a_disposition_notification_whose_fields_are_unreadable_names_no_one() {
    // the parts lost their headers (a blank line after each boundary): the enclosed original's
    // To: is whoever the sender wrote, not the mailbox that rejected it
    let raw = b"From: Mail Delivery Subsystem <postmaster@mx.example>\nTo: <sender@example.org>\n\
Subject: Automatically rejected mail\nMIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=disposition-notification; boundary=\"b\"\n\n\
--b\n\nContent-Type: text/plain\n\n--b\n\nContent-Type: message/disposition-notification\n\n\
--b\n\nContent-Type: message/rfc822\n\nDelivered-To: box@example.net\n\
From: sender@example.org\nTo: someone@example.net\nSubject: hello\n\n--b--\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert!(m.bounces.is_empty(), "{m:?}");
    assert_eq!(m.kind, BounceMessageKind::NotABounce);
}

#[test]
fn a_failure_sentence_ending_in_the_address_names_it_not_the_originals_recipient() {
    // SMTP32 (IMail): the reason, a colon, the address; then the original, sent to another
    let raw = b"From: \"Postmaster\" <postmaster@mx.example>\nTo: <sender@example.org>\n\
Subject: Undeliverable Mail\nX-Mailer: <SMTP32 v8.15>\n\n\
User mailbox exceeds allowed size: full@example.net\n\n\nOriginal message follows.\n\n\
From: sender@example.org\nTo: <alias@example.net>\nSubject: hello\n\nhello\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    let got: Vec<&str> = m.bounces.iter().map(|b| b.recipient.as_str()).collect();
    assert_eq!(got, vec!["full@example.net"]);
    assert_ne!(m.bounces[0].classification.bounce_type, BounceType::Hard);
    // a sentence that says nothing failed is no recipient line
    let raw = b"From: \"Postmaster\" <postmaster@mx.example>\nTo: <sender@example.org>\n\
Subject: Undeliverable Mail\n\nPlease write to our help desk: help@example.net\n\n\
Original message follows.\n\nFrom: sender@example.org\nTo: <gone@example.net>\n\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    let got: Vec<&str> = m.bounces.iter().map(|b| b.recipient.as_str()).collect();
    assert!(!got.contains(&"help@example.net"), "{got:?}");
}

#[test]
fn a_list_post_or_news_article_returned_without_a_recipient_names_no_one() {
    // the quoted original went to the list (its List-Post address), not to the subscriber
    let raw =
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example>\nTo: list-bounces@lists.example\n\
Subject: Mail delivery failed\n\nA message that you sent could not be delivered.\n\n\
----- Original message -----\nTo: neko@lists.example\nList-Post: <mailto:neko@lists.example>\n\
Subject: [neko] hello\n\nhello\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert!(m.bounces.is_empty(), "{m:?}");
    // an administrative message of the same list to a person names that person
    let raw =
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example>\nTo: list-bounces@lists.example\n\
Subject: Mail delivery failed\n\nA message that you sent could not be delivered.\n\n\
----- Original message -----\nTo: cat@example.net\nList-Id: <neko.lists.example>\n\
Subject: Your message awaits moderator approval\n\nhello\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    let got: Vec<&str> = m.bounces.iter().map(|b| b.recipient.as_str()).collect();
    assert_eq!(got, vec!["cat@example.net"]);
}

#[test]
fn old_mailers_recipient_lines_are_read() {
    for (body, rcpt, hard) in [
        // SMTP32 (IMail)
        (
            "Unknown user: Gone@example.net\n\nRCPT TO generated following response:\n\
553 5.3.0 <Gone@example.net>... Addressee unknown, relay=[192.0.2.1]\n",
            "gone@example.net",
            true,
        ),
        ("Invalid final delivery userid: gone@example.net\n", "gone@example.net", true),
        // LSMTP / LISTSERV
        (
            "--> Error description:\nError-for:  gone@example.net\nError-Code: 0\n",
            "gone@example.net",
            false,
        ),
        // Exchange 5.5
        (
            "Your message\n\ndid not reach the following recipient(s):\n\n\
c=US;a= ;p=EX;o=Nexus2;dda:SMTP=gone@example.net; on Fri, 4 Oct 2002\n",
            "gone@example.net",
            false,
        ),
        (
            "Sorry, unable to deliver your message to gone@example.net for\nthe following reason:\n",
            "gone@example.net",
            false,
        ),
    ] {
        let raw = format!(
            "From: \"Postmaster\" <postmaster@mx.example>\nTo: <sender@example.org>\n\
Subject: Undeliverable Mail\n\n{body}\n\nOriginal message follows.\n\nMessage removed\n"
        );
        let m = PARSER.parse(raw.as_bytes(), "", &CLASSIFIER);
        let got: Vec<&str> = m.bounces.iter().map(|b| b.recipient.as_str()).collect();
        assert_eq!(got, vec![rcpt], "{body}");
        if hard {
            assert_eq!(
                m.bounces[0].classification.bounce_type,
                BounceType::Hard,
                "{body}"
            );
        }
    }
}

#[test]
fn a_report_that_names_its_recipient_only_in_the_subject_is_read_from_it() {
    let raw = b"From: Campus Mailserver <MAILER-DAEMON@mx.example>\nTo: list-owner@example.org\n\
Subject: Your message to gone@example.net could not be delivered.\n\n\
Hello,\n\nthis address is wrong or no longer valid.\n\nYour message has NOT been delivered.\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    let got: Vec<&str> = m.bounces.iter().map(|b| b.recipient.as_str()).collect();
    assert_eq!(got, vec!["gone@example.net"]);
    // a subject that names no one adds nobody
    let raw = b"From: MAILER-DAEMON@mx.example\nTo: sender@example.org\n\
Subject: Undelivered Mail Returned to Sender\n\nThe mail system could not deliver it.\n";
    assert!(PARSER.parse(raw, "", &CLASSIFIER).bounces.is_empty());
}

/// Each bounce's recipient and type, in order.
fn recipients_and_types(m: &ParsedMessage) -> Vec<(&str, BounceType)> {
    m.bounces
        .iter()
        .map(|b| (b.recipient.as_str(), b.classification.bounce_type))
        .collect()
}

#[test]
fn a_banner_after_a_rule_line_is_no_recipients_diagnostic() {
    // a DSN without Diagnostic-Code, whose text part ends with a virus scanner's banner
    let raw = b"From: postmaster@example.co.uk\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
--b\nContent-Type: text/plain\n\nDelivery to the following recipients failed.\n\n       bob@example.com\n\n\
________________________________________________________________________\n\
**** This email has been scanned for all viruses and potentially offensive content ****\n\n\
--b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822;bob@example.com\nAction: failed\nStatus: 5.1.1\n\n--b--\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert_eq!(m.bounces.len(), 1);
    let b = &m.bounces[0];
    assert!(!b.diagnostic.contains("viruses"), "{}", b.diagnostic);
    assert_eq!(b.classification.bounce_type, BounceType::Hard);
}

#[test]
fn a_null_sender_notice_that_you_sent_mail_to_an_unknown_user_is_a_bounce() {
    let raw = b"From: <>\nTo: bounces@sender.example\nAuto-Submitted: auto-replied\n\n\
You sent mail to gone@example.net. That's not a valid user here.\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    assert_eq!(m.kind, BounceMessageKind::DeliveryStatus);
    let got: Vec<(&str, BounceType)> = m
        .bounces
        .iter()
        .map(|b| (b.recipient.as_str(), b.classification.bounce_type))
        .collect();
    assert_eq!(got, vec![("gone@example.net", BounceType::Hard)]);
    // the same words from a person's address are their auto-reply, not a bounce
    let person = b"From: Ann <ann@example.net>\nTo: bounces@sender.example\n\
Auto-Submitted: auto-replied\nSubject: Thank you for your e-mail\n\n\
You sent mail to ann@example.net. I will reply as soon as possible.\n";
    let m = PARSER.parse(person, "", &CLASSIFIER);
    assert_eq!(m.kind, BounceMessageKind::AutoReply);
    assert!(m.bounces.is_empty());
}

#[test]
fn exims_undisclosed_address_is_the_address_it_was_generated_from() {
    let raw = b"From: Mail Delivery System <Mailer-Daemon@mx.example>\nTo: sender@example.org\n\
X-Failed-Recipients: bounce@example.net\nSubject: Mail delivery failed: returning message to sender\n\n\
This message was created automatically by mail delivery software.\n\n\
A message that you sent could not be delivered to one or more of its\n\
recipients. This is a permanent error. The following address(es) failed:\n\n\
  bounce@example.net\n    Unrouteable address\n  an undisclosed address\n    (generated from alias@example.net)\n\n\
------ This is a copy of the message, including all the headers. ------\n\nSubject: hi\n\nhi\n";
    let m = PARSER.parse(raw, "", &CLASSIFIER);
    let got: Vec<&str> = m.bounces.iter().map(|b| b.recipient.as_str()).collect();
    assert_eq!(got, vec!["bounce@example.net", "alias@example.net"]);
}

#[test]
fn a_one_label_final_recipient_gives_way_to_the_original_recipient() {
    let dsn = |final_rcpt: &str| {
        format!(
            "From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n\
Original-Recipient: rfc822;bob@example.com\nFinal-Recipient: rfc822;{final_rcpt}\nAction: failed\n\
Status: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\n\n--b--\n"
        )
    };
    let recipients = |raw: String| -> Vec<String> {
        PARSER
            .parse(raw.as_bytes(), "", &CLASSIFIER)
            .bounces
            .into_iter()
            .map(|b| b.recipient)
            .collect()
    };
    // a name inside the receiving system: the address the sender wrote is the original
    assert_eq!(recipients(dsn("bob@mailhub0")), vec!["bob@example.com"]);
    // a full address (a forward): the Final-Recipient, as Sisimai reads it
    assert_eq!(
        recipients(dsn("robert@mail.example.net")),
        vec!["robert@mail.example.net"]
    );
}
