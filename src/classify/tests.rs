//! Unit tests: the rule file, every rule's example, misleading codes and wordings, labels,
//! and property tests.

use super::*;
use crate::domain::{BounceReason as R, BounceType as T, ReportedOutcome as L};
use std::sync::OnceLock;

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(Classifier::new)
}

fn run(reported: L, text: &str, status: Option<&str>, provider: &str) -> Classification {
    classifier().classify(&SmtpEvidence {
        reported,
        smtp_response: text,
        enhanced_status: status,
        provider,
    })
}

#[test]
fn builtin_rules_compile_and_their_version_is_rules_version() {
    let rs = rules::compile(RULES_TOML).expect("rules.toml compiles");
    assert_eq!(
        rs.version, RULES_VERSION,
        "bump RULES_VERSION together with `version` in rules.toml"
    );
    assert!(rs.rules.len() > 50);
    let dbg = format!("{:?}", classifier());
    assert!(dbg.contains("rules_version"));
}

#[test]
fn classifier_can_be_shared_between_threads_and_debug_printed() {
    fn check<X: Send + Sync + std::fmt::Debug>() {}
    check::<Classifier>();
}

#[test]
fn every_rule_example_is_decided_by_its_rule() {
    let rs = &classifier().rules;
    let mut failures = Vec::new();
    for r in &rs.rules {
        let c = run(
            L::Bounce,
            &r.example,
            r.example_status.as_deref(),
            r.example_provider.as_deref().unwrap_or(""),
        );
        let expected = r.decided_by.as_deref().unwrap_or(&r.id);
        if c.rule_id != expected {
            failures.push(format!(
                "rule {} example {:?}: decided by {} ({:?}/{:?})",
                r.id, r.example, c.rule_id, c.bounce_type, c.reason
            ));
            continue;
        }
        if r.decided_by.is_none() {
            // the rule's own verdict, unless the example's reply is temporary
            let temporary = c.bounce_type == T::Soft && r.kind == T::Hard;
            assert!(
                c.bounce_type == r.kind || temporary,
                "rule {}: {:?}",
                r.id,
                c
            );
            assert_eq!(c.reason, r.reason, "rule {}", r.id);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_fallback_example_is_decided_by_its_entry() {
    let rs = &classifier().rules;
    for r in &rs.status_rules {
        // given as the reporter's status field, with no text
        let status = parse_status(&r.example).expect("status examples hold a status code");
        let field = format!("{}.{}.{}", status.0, status.1, status.2);
        let c = run(L::Bounce, "", Some(&field), "");
        assert_eq!(c.rule_id, r.id, "status-only {:?}", r.example);
        assert!(c.confidence < 0.85, "fallbacks are weaker than text rules");
    }
    for r in &rs.code_rules {
        let c = run(L::Bounce, &r.example, None, "");
        assert_eq!(c.rule_id, r.id, "example {:?}", r.example);
        assert!(c.confidence < 0.85, "fallbacks are weaker than text rules");
    }
}

#[test]
fn rule_ids_are_readable() {
    for r in &classifier().rules.rules {
        assert!(
            r.id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._".contains(c)),
            "rule id {:?}",
            r.id
        );
        assert!((0.6..=0.99).contains(&r.confidence), "{}", r.id);
    }
}

/// One row per misleading code or wording (a trap for a classifier that reads codes only): (what, reporter label, text, enhanced status, provider,
/// expected type, expected reason).
#[allow(clippy::type_complexity)]
const TRAPS: &[(&str, L, &str, Option<&str>, &str, T, R)] = &[
    // ── text beats codes ──
    ("552 but mailbox does not exist", L::Bounce, "552 Requested action not taken: mailbox does not exist", None, "", T::Hard, R::MailboxNotFound),
    ("552 5.1.1 no such user", L::Bounce, "552 5.1.1 <bob@example.com>... No such user", None, "", T::Hard, R::MailboxNotFound),
    ("550 quota is full, soft", L::Bounce, "550 5.2.2 <bob@example.jp>... Mailbox Full", None, "", T::Soft, R::MailboxFull),
    ("552 quota is full, soft", L::Bounce, "552 5.2.2 Over quota", None, "", T::Soft, R::MailboxFull),
    ("550 over quota without status", L::HardBounce, "550 User mailbox exceeds allowed size: bob@example.co.jp", None, "", T::Soft, R::MailboxFull),
    ("qmail over quota with #5.1.1", L::Bounce, "552 sorry, mailbox bob@example.org is over quota temporarily (#5.1.1)", None, "", T::Soft, R::MailboxFull),
    ("5xx with 4.4.7 queue expiry", L::Bounce, "550 4.4.7 QUEUE.Expired; message expired", None, "", T::Soft, R::TemporaryFailure),
    ("5xx with 4.x.x expired after retries", L::Bounce, "554 4.4.7 Message expired: unable to deliver in 840 minutes.<421 4.4.2 Connection timed out>", None, "", T::Soft, R::TemporaryFailure),
    ("5xx whose status is 4.x.x, unknown text", L::Bounce, "550 4.2.0 something went wrong", None, "", T::Soft, R::TemporaryFailure),
    ("Yahoo no such user, no enhanced code", L::Bounce, "554 delivery error: dd This user doesn't have a yahoo.com account (bob@yahoo.com) [0] - mta1061.mail.ne1.yahoo.com", None, "", T::Hard, R::MailboxNotFound),
    ("Outlook.com mailbox unavailable", L::Bounce, "550 Requested action not taken: mailbox unavailable (-2147467259:308:-2147467259)", None, "", T::Hard, R::MailboxNotFound),
    ("AOL mailbox not found", L::Bounce, "552 1 Requested mail action aborted, mailbox not found", None, "", T::Hard, R::MailboxNotFound),
    ("Mail.ru user not found", L::Bounce, "550 Message was not accepted -- invalid mailbox. Local mailbox bob@mail.ru is unavailable: user not found", None, "", T::Hard, R::MailboxNotFound),
    ("qmail no mailbox", L::Bounce, "550 sorry, no mailbox here by that name (#5.1.1 - chkusr)", None, "", T::Hard, R::MailboxNotFound),
    ("Exchange recipient not recognized", L::Bounce, "The recipient name is not recognized MSEXCH:IMS:EXAMPLE:HQ:MAIL1 0 (000C05A6) Unknown Recipient", None, "", T::Hard, R::MailboxNotFound),
    ("Comcast not our customer", L::Bounce, "550 5.1.1 <bob@comcast.net> Not our Customer", None, "", T::Hard, R::MailboxNotFound),
    ("Domino not listed", L::Bounce, "User Bob Smith (bob@example.jp) not listed in Domino Directory", None, "", T::Hard, R::MailboxNotFound),
    ("450 4.1.1 user unknown: misused class", L::Bounce, "450 4.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual alias table", None, "", T::Hard, R::MailboxNotFound),
    ("450 user unknown without status: temporary", L::Bounce, "450 <bob@example.org>: User unknown, try again later", None, "", T::Soft, R::TemporaryFailure),
    // ── sender-side problems are never the recipient's fault ──
    ("Spamhaus", L::HardBounce, "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1", None, "", T::Block, R::SenderBlocked),
    ("Barracuda", L::HardBounce, "554 Service unavailable; Client host [192.0.2.1] blocked using Barracuda Reputation; http://www.barracudanetworks.com/reputation/?pr=1&ip=192.0.2.1", None, "", T::Block, R::SenderBlocked),
    ("SpamCop", L::Bounce, "550 5.7.1 Blocked - see http://www.spamcop.net/bl.shtml?192.0.2.1", None, "", T::Block, R::SenderBlocked),
    ("Microsoft S3150", L::HardBounce, "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. [AM5EUR02FT011.eop-EUR02.prod.protection.outlook.com]", None, "", T::Block, R::SenderBlocked),
    ("Microsoft banned sending IP", L::Bounce, "550 5.7.606 Access denied, banned sending IP [192.0.2.225]. To request removal from this list please visit https://sender.office.com/ and follow the directions.", None, "", T::Block, R::SenderBlocked),
    ("Yahoo TSS04", L::Bounce, "421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes", None, "", T::Block, R::SenderBlocked),
    ("AOL TSS09", L::HardBounce, "553 5.7.2 [TSS09] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes", None, "", T::Block, R::SenderBlocked),
    ("Comcast BL000", L::HardBounce, "554 resimta-ch2-18v.sys.comcast.net comcast 192.0.2.1 found on one or more DNSBLs, see http://postmaster.comcast.net/smtp-error-codes.php#BL000001", None, "", T::Block, R::SenderBlocked),
    ("Gmail unauthenticated", L::HardBounce, "550-5.7.26 This mail is unauthenticated, which poses a security risk to the sender and Gmail users, and has been blocked. The sender must authenticate with at least one of SPF or DKIM. - gsmtp", None, "", T::Block, R::AuthenticationFailed),
    ("DMARC reject", L::Bounce, "550 5.7.1 Email rejected per DMARC policy for example.org", None, "", T::Block, R::AuthenticationFailed),
    ("SPF fail", L::Bounce, "550 5.7.23 SPF validation failed", None, "", T::Block, R::AuthenticationFailed),
    ("DKIM fail", L::Bounce, "550 5.7.20 DKIM signature verification failed", None, "", T::Block, R::AuthenticationFailed),
    ("sender verify failed (Exim)", L::HardBounce, "550 Sender verify failed", None, "", T::Block, R::AuthenticationFailed),
    ("x.1.8 envelope sender", L::HardBounce, "501 5.1.8 Sender address rejected", None, "", T::Block, R::AuthenticationFailed),
    ("x.1.7 even when the text says no such domain", L::Bounce, "550 5.1.7 No such domain mailer.example.com.", None, "", T::Block, R::AuthenticationFailed),
    ("sender domain does not exist", L::Bounce, "553 5.1.8 <root@host1.example.jp>... Domain of sender address root@host1.example.jp does not exist", None, "", T::Block, R::AuthenticationFailed),
    ("Postfix sender domain not found", L::Bounce, "450 4.1.8 <bounce@example.net>: Sender address rejected: Domain not found", None, "", T::Block, R::AuthenticationFailed),
    ("missing reverse DNS", L::HardBounce, "550 5.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]", None, "", T::Block, R::SenderBlocked),
    ("Gmail PTR", L::Bounce, "550-5.7.25 [192.0.2.202] The IP address sending this message does not have a\r\n550-5.7.25 PTR record setup, or the corresponding forward DNS entry does not\r\n550-5.7.25 point to the sending IP. - gsmtp", None, "", T::Block, R::SenderBlocked),
    ("Microsoft IP reputation deferral", L::Bounce, "451 4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S3113)", None, "", T::Block, R::SenderBlocked),
    ("volume deferral", L::Bounce, "452 4.3.2 Too many connections from your IP", None, "", T::Soft, R::RateLimited),
    ("too many recipients with 5.1.1", L::Bounce, "550 5.1.1 <bob@example.com> - 192.0.2.22 has sent to too many recipients this hour. IB607", None, "", T::Soft, R::RateLimited),
    ("message too large", L::HardBounce, "552 5.3.4 Message size exceeds fixed limit", None, "", T::Block, R::MessageTooLarge),
    ("spam content", L::HardBounce, "550 5.7.1 Message content rejected, UBE, id=12345-02", None, "", T::Block, R::ContentRejected),
    ("virus", L::Bounce, "554 5.7.1 Virus found: Eicar-Test-Signature", None, "", T::Block, R::ContentRejected),
    ("Gmail likely unsolicited mail is block", L::HardBounce, "550-5.7.1 [192.0.2.1      12] Our system has detected that this message is\r\n550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\r\n550-5.7.1 this message has been blocked. Please visit\r\n550-5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError\r\n550 5.7.1  for more information. a1si123.456 - gsmtp", None, "", T::Block, R::SenderBlocked),
    ("Gmail unsolicited, collapsed", L::Bounce, "550-5.7.1 [192.0.2.1 12] Our system has detected that this message is 550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail, 550-5.7.1 this message has been blocked. - gsmtp", None, "", T::Block, R::SenderBlocked),
    // ── recipient-side permanent policy is hard ──
    ("RESOLVER.RST.AuthRequired", L::Bounce, "550 5.7.1 RESOLVER.RST.AuthRequired; authentication required", None, "", T::Hard, R::RecipientRejected),
    ("not authorized to receive", L::Bounce, "550 5.7.1 <team@example.com>: Recipient address rejected: team@example.com is not authorized to receive mail from external senders", None, "", T::Hard, R::RecipientRejected),
    ("Google Groups may not accept", L::Bounce, "550 5.7.1 The group team@googlegroups.com may not accept email from you. - gsmtp", None, "", T::Hard, R::RecipientRejected),
    ("Google Groups notice", L::Bounce, "We're writing to let you know that the group you tried to contact (team) may not exist, or you may not have permission to post messages to the group.", None, "", T::Hard, R::RecipientRejected),
    ("Postfix recipient access denied", L::Bounce, "554 5.7.1 <bob@example.ch>: Recipient address rejected: Access denied", None, "", T::Hard, R::RecipientRejected),
    ("Microsoft DBEB access denied is not found", L::Bounce, "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [BN1NAM02FT022.eop-nam02.prod.protection.outlook.com]", None, "", T::Hard, R::MailboxNotFound),
    ("Microsoft DBEB via the provider field", L::Bounce, "550 5.4.1 Recipient address rejected: Access denied", None, "office365", T::Hard, R::MailboxNotFound),
    ("access denied about the sender", L::HardBounce, "550 5.7.1 <root@host.example.jp>... Access denied", None, "", T::Block, R::SenderBlocked),
    ("Exchange 5.7.136 status only", L::Bounce, "", Some("5.7.136"), "", T::Hard, R::RecipientRejected),
    ("moved, no forwarding", L::Bounce, "550 5.1.6 <bob@example.org>: Recipient address rejected: Destination mailbox has moved, No forwarding address", None, "", T::Hard, R::RecipientRejected),
    ("disabled account", L::Bounce, "550-5.2.1 The email account that you tried to reach is disabled. Learn more at 550 5.2.1 https://support.google.com/mail/?p=DisabledUser - gsmtp", None, "", T::Hard, R::MailboxDisabled),
    ("suspended account", L::Bounce, "554 30 Sorry, your message to bob@yahoo.com cannot be delivered. This account has been disabled or discontinued [#102].", None, "", T::Hard, R::MailboxDisabled),
    ("iCloud inactive", L::Bounce, "550 5.1.1 <bob@icloud.com>: inactive email address", None, "", T::Hard, R::MailboxDisabled),
    ("temporarily locked stays soft", L::Bounce, "550 5.7.1 <bob@example.com>: Recipient address rejected: User bob@example.com temporary locked. Please try again later!", None, "", T::Soft, R::MailboxDisabled),
    // ── DSN-style inputs without a reply code ──
    ("Postfix host not found", L::Bounce, "Host or domain name not found. Name service error for name=example.invalid type=MX: Host not found", None, "", T::Hard, R::DomainNotFound),
    ("Postfix host not found, try again", L::Bounce, "Host or domain name not found. Name service error for name=example.com type=MX: Host not found, try again", None, "", T::Soft, R::TemporaryFailure),
    ("Postfix connection timed out", L::Bounce, "connect to mx.example.com[192.0.2.1]:25: Connection timed out", None, "", T::Soft, R::TemporaryFailure),
    ("Postfix delivery temporarily suspended", L::HardBounce, "delivery temporarily suspended: connect to mx.example.com[192.0.2.1]:25: Connection refused", None, "", T::Soft, R::TemporaryFailure),
    ("null MX", L::Bounce, "556 5.1.10 <bob@example.org>: Recipient address rejected: Domain example.org does not accept mail (nullMX)", None, "", T::Hard, R::DomainNotFound),
    ("Exim unrouteable", L::Bounce, "Unrouteable address", None, "", T::Hard, R::DomainNotFound),
    ("Exim retry timeout", L::HardBounce, "retry timeout exceeded", None, "", T::Soft, R::TemporaryFailure),
    ("qmail no host", L::Bounce, "Sorry, I couldn't find any host named example.invalid. (#5.1.2)", None, "", T::Hard, R::DomainNotFound),
    ("sendmail host unknown", L::Bounce, "550 5.1.2 <bob@example.org>... Host unknown (Name server: example.org: host not found)", None, "", T::Hard, R::DomainNotFound),
    ("greylisting", L::Bounce, "450 4.2.0 <bob@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html", None, "", T::Soft, R::TemporaryFailure),
    // ── status-only inputs ──
    ("status 5.1.1 only", L::Bounce, "", Some("5.1.1"), "", T::Hard, R::MailboxNotFound),
    ("status 4.1.1 only is soft", L::Bounce, "", Some("4.1.1"), "", T::Soft, R::TemporaryFailure),
    ("status 5.1.2 only", L::Bounce, "", Some("5.1.2"), "", T::Hard, R::DomainNotFound),
    ("status 5.1.10 only", L::Bounce, "", Some("5.1.10"), "", T::Hard, R::DomainNotFound),
    ("status 5.2.1 only", L::Bounce, "", Some("5.2.1"), "", T::Hard, R::MailboxDisabled),
    ("status 5.2.2 only", L::Bounce, "", Some("5.2.2"), "", T::Soft, R::MailboxFull),
    ("status 4.2.2 only", L::Bounce, "", Some("4.2.2"), "", T::Soft, R::MailboxFull),
    ("status 5.2.3 only", L::Bounce, "", Some("5.2.3"), "", T::Block, R::MessageTooLarge),
    ("status 5.3.4 only", L::Bounce, "", Some("5.3.4"), "", T::Block, R::MessageTooLarge),
    ("status 5.4.7 only", L::Bounce, "", Some("5.4.7"), "", T::Soft, R::TemporaryFailure),
    ("status 5.7.26 only", L::Bounce, "", Some("5.7.26"), "", T::Block, R::AuthenticationFailed),
    ("status 5.7.1 only", L::Bounce, "", Some("5.7.1"), "", T::Block, R::SenderBlocked),
    ("status 5.1.8 only", L::Bounce, "", Some("5.1.8"), "", T::Block, R::AuthenticationFailed),
    ("status 4.7.1 only is soft", L::Bounce, "", Some("4.7.1"), "", T::Soft, R::TemporaryFailure),
    ("status 5.0.0 only, reporter says hard", L::HardBounce, "", Some("5.0.0"), "", T::Hard, R::Unknown),
    ("status 5.0.0 only, reporter says bounce", L::Bounce, "", Some("5.0.0"), "", T::Soft, R::Unknown),
    ("status with text that says nothing", L::Bounce, "Delivery failed", Some("5.1.1"), "", T::Hard, R::MailboxNotFound),
    // ── prefixes and multi-line replies ──
    ("smtp; prefix", L::Bounce, "smtp; 550 5.1.1 <bob@example.com>... User Unknown", None, "", T::Hard, R::MailboxNotFound),
    ("SMTP; prefix", L::Bounce, "SMTP;550 5.1.1 <bob@example.com>... User Unknown", None, "", T::Hard, R::MailboxNotFound),
    ("X-Postfix; prefix", L::Bounce, "X-Postfix; Host or domain name not found. Name service error for name=example.invalid type=A: Host not found", None, "", T::Hard, R::DomainNotFound),
    ("Gmail multi-line", L::Bounce, "550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address for typos or\n550-5.1.1 unnecessary spaces. Learn more at\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si123 - gsmtp", None, "", T::Hard, R::MailboxNotFound),
    ("Gmail multi-line collapsed", L::Bounce, "550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 unnecessary spaces. Learn more at 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser a1si123 - gsmtp", None, "", T::Hard, R::MailboxNotFound),
    // ── other languages ──
    ("French user unknown", L::Bounce, "550 5.1.1 <jean@example.fr>: Utilisateur inconnu", None, "", T::Hard, R::MailboxNotFound),
    ("French mailbox full", L::Bounce, "552 5.2.2 <jean@example.fr>: Boîte aux lettres pleine", None, "", T::Soft, R::MailboxFull),
    ("German user unknown", L::Bounce, "550 5.1.1 <hans@example.de>: Benutzer unbekannt", None, "", T::Hard, R::MailboxNotFound),
    ("German mailbox full", L::Bounce, "552 <hans@example.de>: Postfach voll", None, "", T::Soft, R::MailboxFull),
    ("Spanish user unknown", L::Bounce, "550 <juan@example.es>: Usuario desconocido", None, "", T::Hard, R::MailboxNotFound),
    ("Spanish mailbox full", L::Bounce, "552 <juan@example.es>: Buzón lleno", None, "", T::Soft, R::MailboxFull),
    ("Portuguese user unknown", L::Bounce, "550 <joao@example.com.br>: Usuário desconhecido", None, "", T::Hard, R::MailboxNotFound),
    ("Portuguese mailbox full", L::Bounce, "552 <joao@example.com.br>: Caixa postal cheia", None, "", T::Soft, R::MailboxFull),
    ("Japanese user unknown", L::Bounce, "550 宛先不明のため配送できませんでした", None, "", T::Hard, R::MailboxNotFound),
    ("Japanese does not exist", L::Bounce, "550 指定されたメールアドレスは存在しません", None, "", T::Hard, R::MailboxNotFound),
    ("Japanese Domino", L::Bounce, "ユーザー田中 (tanaka@example.co.jp) は Domino ディレクトリには見つかりません。", None, "", T::Hard, R::MailboxNotFound),
    ("Japanese mailbox full", L::Bounce, "552 メールボックスの容量超過のため受信できません", None, "", T::Soft, R::MailboxFull),
    ("Russian user not found", L::Bounce, "550 Пользователь не найден", None, "", T::Hard, R::MailboxNotFound),
    ("Russian no such user", L::Bounce, "550 5.1.1 Нет такого пользователя", None, "", T::Hard, R::MailboxNotFound),
    ("Russian mailbox full", L::Bounce, "552 Почтовый ящик переполнен", None, "", T::Soft, R::MailboxFull),
    // ── weak evidence ──
    ("bare 550, reporter says bounce", L::Bounce, "550", None, "", T::Soft, R::Unknown),
    ("bare 550, reporter says hard", L::HardBounce, "550", None, "", T::Hard, R::Unknown),
    ("bare 550, reporter says block", L::Block, "550", None, "", T::Block, R::Unknown),
    ("bare 421", L::HardBounce, "421", None, "", T::Soft, R::TemporaryFailure),
    ("unknown text, no code", L::HardBounce, "--- Delivery report unavailable ---", None, "", T::Hard, R::Unknown),
    ("unknown text, no code, bounce", L::Bounce, "Something odd happened", None, "", T::Soft, R::Unknown),
    // ── relays ──
    ("SES global suppression", L::Bounce, "Amazon SES has suppressed sending to this address because it has a recent history of bouncing as an invalid address.", Some("5.1.1"), "ses", T::Hard, R::MailboxNotFound),
    ("SES relayed diagnostic", L::Bounce, "smtp; 550 5.1.1 user unknown", Some("5.1.1"), "ses", T::Hard, R::MailboxNotFound),
    ("SendGrid relayed reason", L::Bounce, "550 5.1.1 The email account that you tried to reach does not exist.", Some("5.1.1"), "sendgrid", T::Hard, R::MailboxNotFound),
    ("SendGrid dropped bounced address", L::Bounce, "Bounced Address", None, "sendgrid", T::Hard, R::Unknown),
    ("Postmark inactive", L::Bounce, "You tried to send to recipient(s) that have been marked as inactive.", None, "postmark", T::Hard, R::Unknown),
    ("Mailgun suppress-bounce", L::Bounce, "Not delivering to previously bounced address", None, "mailgun", T::Hard, R::Unknown),
    ("Mailgun suppress-complaint", L::Bounce, "Not delivering to a user who marked your messages as spam", None, "mailgun", T::Complaint, R::Complaint),
    ("Mailgun too old", L::Bounce, "Too old", None, "mailgun", T::Soft, R::TemporaryFailure),
];

#[test]
fn misleading_codes_and_wordings_get_the_type_and_reason_a_person_would_give() {
    let mut failures = Vec::new();
    for &(what, label, text, status, provider, t, r) in TRAPS {
        let c = run(label, text, status, provider);
        if c.bounce_type != t || c.reason != r {
            failures.push(format!(
                "{what}: expected {t:?}/{r:?}, got {:?}/{:?} by {} ({})",
                c.bounce_type, c.reason, c.rule_id, c.confidence
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn labels_decide_without_evidence() {
    let cases = [
        (L::Delivered, T::Delivered, R::None, "label.delivered"),
        (L::Complaint, T::Complaint, R::Complaint, "label.complaint"),
        (L::HardBounce, T::Hard, R::Unknown, "label.hard"),
        (L::SoftBounce, T::Soft, R::Unknown, "label.soft"),
        (L::Block, T::Block, R::Unknown, "label.block"),
        (L::Bounce, T::Soft, R::Unknown, "label.bounce"),
    ];
    for (label, t, r, id) in cases {
        for text in ["", "   ", "\r\n"] {
            let c = run(label, text, None, "");
            assert_eq!((c.bounce_type, c.reason, c.rule_id.as_str()), (t, r, id));
            assert_eq!(c.confidence, 0.5);
            assert!(!c.disagrees_with_reporter);
        }
        // an unreadable status is no evidence either
        let c = run(label, "", Some("n/a"), "");
        assert_eq!(c.rule_id, id);
    }
}

#[test]
fn a_reported_unsubscribe_is_one_whatever_the_smtp_text_says() {
    for text in [
        "",
        "550 5.1.1 user unknown",
        "250 2.0.0 OK queued",
        "452 4.2.2 mailbox full",
    ] {
        let c = run(L::Unsubscribe, text, Some("5.1.1"), "gmail");
        assert_eq!(
            (c.bounce_type, c.reason, c.rule_id.as_str()),
            (T::Unsubscribe, R::Unsubscribed, "label.unsubscribe"),
            "{text}"
        );
        assert_eq!(c.confidence, 1.0);
        assert!(!c.disagrees_with_reporter);
    }
}

#[test]
fn a_verdict_other_than_the_reporters_label_is_flagged_as_disagreement() {
    let c = run(L::HardBounce, "452 4.2.2 Mailbox full", None, "");
    assert_eq!(c.bounce_type, T::Soft);
    assert!(c.disagrees_with_reporter);

    let c = run(L::SoftBounce, "550 5.1.1 User unknown", None, "");
    assert_eq!(c.bounce_type, T::Hard);
    assert!(c.disagrees_with_reporter);

    let c = run(L::HardBounce, "550 5.1.1 User unknown", None, "");
    assert!(!c.disagrees_with_reporter);

    let c = run(
        L::Block,
        "554 5.7.1 blocked using zen.spamhaus.org",
        None,
        "",
    );
    assert!(!c.disagrees_with_reporter);

    // "Bounce" never disagrees
    for text in [
        "550 5.1.1 User unknown",
        "452 4.2.2 Mailbox full",
        "250 2.0.0 OK",
    ] {
        assert!(!run(L::Bounce, text, None, "").disagrees_with_reporter);
    }
}

#[test]
fn delivered_and_complaint_labels_stand_unless_the_text_is_clearly_a_failure() {
    // no failure in the text: the label stands
    for text in [
        "250 2.0.0 OK queued as 12345",
        "queued as 9A8B7C",
        "User unknown",
    ] {
        let c = run(L::Delivered, text, None, "");
        assert_eq!((c.bounce_type, c.reason), (T::Delivered, R::None), "{text}");
        assert!(!c.disagrees_with_reporter);
    }
    let c = run(L::Complaint, "abuse report: spam", None, "");
    assert_eq!((c.bounce_type, c.reason), (T::Complaint, R::Complaint));
    // a bare failure code is not clear enough
    let c = run(L::Delivered, "550", None, "");
    assert_eq!(c.bounce_type, T::Delivered);
    // a clear failure overrides the label, and says so
    let c = run(
        L::Delivered,
        "550 5.1.1 <bob@example.com>... User unknown",
        None,
        "",
    );
    assert_eq!((c.bounce_type, c.reason), (T::Hard, R::MailboxNotFound));
    assert!(c.disagrees_with_reporter);
    let c = run(L::Complaint, "", Some("5.1.1"), "");
    assert_eq!(c.bounce_type, T::Hard);
    assert!(c.disagrees_with_reporter);
}

#[test]
fn success_codes_are_delivered() {
    let c = run(L::Bounce, "250 2.1.5 Ok", None, "");
    assert_eq!((c.bounce_type, c.reason), (T::Delivered, R::None));
    // a success reply is not read for failure words
    let c = run(
        L::Bounce,
        "250 2.0.0 Message accepted; spam score 0.1",
        None,
        "",
    );
    assert_eq!(c.bounce_type, T::Delivered);
    let c = run(L::Bounce, "250 OK", None, "");
    assert_eq!(c.rule_id, "code.2xx");
}

#[test]
fn provider_rules_apply_only_to_mail_of_their_provider() {
    let text = "550 5.4.1 Recipient address rejected: Access denied";
    let c = run(L::Bounce, text, None, "");
    assert_eq!(c.reason, R::RecipientRejected);
    let c = run(L::Bounce, text, None, "Microsoft 365");
    assert_eq!(c.reason, R::MailboxNotFound);
    assert_eq!(c.rule_id, "microsoft.dbeb.recipient_not_found");
    // "Too old" is only Mailgun's wording
    let c = run(L::Bounce, "Too old", None, "postfix");
    assert_eq!(c.rule_id, "label.bounce");
}

#[test]
fn text_rules_are_surer_than_status_codes_than_reply_codes_than_labels() {
    let text_rule = run(L::Bounce, "550 5.1.1 User unknown", None, "").confidence;
    let status = run(L::Bounce, "", Some("5.1.1"), "").confidence;
    let code = run(L::Bounce, "550", None, "").confidence;
    let label = run(L::Bounce, "", None, "").confidence;
    assert!((0.9..=0.99).contains(&text_rule));
    assert!((0.6..=0.8).contains(&status));
    assert!(code < status && code >= label);
    assert_eq!(label, 0.5);
}

#[test]
fn parse_reply_reads_code_and_status_after_a_type_prefix() {
    let p = parse_reply("smtp;550-5.1.1 no");
    assert_eq!((p.code, p.enhanced), (Some(550), Some((5, 1, 1))));
}

#[test]
fn text_past_the_length_limit_is_ignored_and_odd_characters_do_no_harm() {
    let long = "x".repeat(100_000) + " user unknown";
    let c = run(L::Bounce, &long, None, "");
    assert_eq!(c.rule_id, "label.bounce", "text past the limit is ignored");
    let c = run(
        L::Bounce,
        "\u{0}\u{1}550\u{7f} 5.1.1 user\tunknown",
        None,
        "",
    );
    assert_eq!(c.bounce_type, T::Hard);
    let c = run(L::Bounce, "ÄÖÜ ß İ ﬁ 𝔘𝔫𝔨𝔫𝔬𝔴𝔫", Some("ß.1.1"), "Ω");
    assert_eq!(c.bounce_type, T::Soft);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn label() -> impl Strategy<Value = L> {
        prop_oneof![
            Just(L::Delivered),
            Just(L::HardBounce),
            Just(L::SoftBounce),
            Just(L::Block),
            Just(L::Complaint),
            Just(L::Bounce),
        ]
    }

    /// Any UTF-8 text up to ~4 KiB, and SMTP-looking text built from real fragments.
    fn text() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("550".to_string()),
            Just("550-".to_string()),
            Just("4.4.7".to_string()),
            Just("5.1.1".to_string()),
            Just("smtp;".to_string()),
            Just("user unknown".to_string()),
            Just("mailbox full".to_string()),
            Just("spamhaus".to_string()),
            Just("recipient address rejected".to_string()),
            Just("\r\n".to_string()),
            Just(" ".to_string()),
            "[ -~]{0,12}",
            "\\PC{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(any::<char>(), 0..1024).prop_map(String::from_iter),
            "\\PC{0,300}",
            prop::collection::vec(fragment, 0..40).prop_map(|v| v.concat()),
        ]
        .prop_map(|mut s| {
            if s.len() > 4096 {
                let mut end = 4096;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
            s
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_and_is_deterministic(
            reported in label(),
            text in text(),
            status in proptest::option::of(prop_oneof!["[0-9x.]{0,8}", "\\PC{0,10}"]),
            provider in "\\PC{0,20}",
        ) {
            let ev = SmtpEvidence {
                reported,
                smtp_response: &text,
                enhanced_status: status.as_deref(),
                provider: &provider,
            };
            let a = classifier().classify(&ev);
            let b = classifier().classify(&ev);
            prop_assert_eq!(&a, &b);
            static OTHER: OnceLock<Classifier> = OnceLock::new();
            let fresh = OTHER.get_or_init(Classifier::new).classify(&ev);
            prop_assert_eq!(&a, &fresh);
            prop_assert!((0.0..=1.0).contains(&a.confidence));
            prop_assert!(!a.rule_id.is_empty());
            if reported == L::Bounce {
                prop_assert!(!a.disagrees_with_reporter);
            }
            // Hard needs an address-level or recipient-refusal reason, or the reporter's word
            if a.bounce_type == T::Hard {
                prop_assert!(
                    a.reason.is_address_level()
                        || a.reason == R::RecipientRejected
                        || reported == L::HardBounce
                        || a.rule_id.starts_with("ses.")
                        || a.rule_id.starts_with("mailgun.")
                        || a.rule_id.starts_with("sendgrid.")
                        || a.rule_id.starts_with("postmark."),
                    "{:?}", a
                );
            }
        }

        #[test]
        fn parse_reply_never_panics(text in "\\PC{0,200}") {
            let p = parse_reply(&text);
            if let Some(c) = p.code { prop_assert!((200..600).contains(&c)); }
            if let Some(e) = p.enhanced { prop_assert!(matches!(e.0, 2 | 4 | 5)); }
        }
    }
}

#[test]
fn replies_of_sisimais_lexicon_read_as_it_reads_them() {
    // user unknown, suspended, moved, unknown domain (Sisimai::Reason::*, Lhost::qmail, Exim)
    let hard = [
        ("550 Recipient not OK", R::MailboxNotFound),
        ("553 sorry, badrcptto", R::MailboxNotFound),
        (
            "<bob@example.org>: 192.0.2.1 does not like recipient. Remote host said: 550 Rejected",
            R::MailboxNotFound,
        ),
        (
            "550 bob@example.org: mailbox is currently suspended",
            R::MailboxDisabled,
        ),
        (
            "550 bob@example.org has been replaced by bob@example.net",
            R::RecipientRejected,
        ),
        (
            "all host address lookups failed permanently",
            R::DomainNotFound,
        ),
    ];
    for (text, reason) in hard {
        let c = run(L::Bounce, text, None, "");
        assert_eq!((c.bounce_type, c.reason), (T::Hard, reason), "{text}");
    }
    // an address of the sending host refused: not the recipient's mailbox
    let c = run(
        L::Bounce,
        "554 Error: no valid recipients from 192.0.2.9",
        None,
        "",
    );
    assert_ne!(c.bounce_type, T::Hard);
}
