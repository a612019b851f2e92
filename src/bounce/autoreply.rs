//! RFC 3834 automatic replies (out of office, vacation): not bounces. Known by
//! `Auto-Submitted: auto-replied`, the `X-Autoreply` / `X-Autorespond` family,
//! `Precedence: auto_reply`, and the subjects mail programs give them.

use super::mime::Walked;

/// Subject openings of automatic replies, lowercased.
const SUBJECTS: &[&str] = &[
    "auto:",
    "autoreply",
    "auto-reply",
    "auto reply",
    "automatic reply",
    "auto response",
    "autoresponse",
    "out of office",
    "out of the office",
    "on vacation",
    "vacation",
    "away from",
    "abwesenheitsnotiz",
    "abwesend",
    "réponse automatique",
    "reponse automatique",
    "risposta automatica",
    "respuesta automática",
    "automatisch antwoord",
    "thank you for your e-mail",
    "thank you for your email",
    "thank you for your message",
    "thanks for your e-mail",
    "thanks for your email",
    "thanks for your message",
    "不在",
];

/// Whether the message is an automatic reply.
pub fn is_auto_reply(m: &Walked) -> bool {
    let h = |n: &str| m.header(n).unwrap_or("").trim().to_ascii_lowercase();
    let auto_submitted = h("auto-submitted");
    if auto_submitted.starts_with("auto-replied") {
        return true;
    }
    if [
        "x-autoreply",
        "x-autorespond",
        "x-autoresponder",
        "x-auto-response-suppress",
    ]
    .iter()
    .any(|n| m.header(n).is_some() && *n != "x-auto-response-suppress")
    {
        return true;
    }
    let precedence = h("precedence");
    if precedence == "auto_reply" || precedence == "auto-reply" {
        return true;
    }
    let subject = h("subject").to_lowercase();
    SUBJECTS
        .iter()
        .any(|s| subject.starts_with(s) || subject.contains(&format!(" {s}")))
        || subject.contains("autoreply")
}
