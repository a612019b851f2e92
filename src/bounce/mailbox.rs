//! Mailbox files: an mbox file (messages one after the other, each after a `From ` line) holds
//! several bounces. `mail-parser`'s mbox reader splits it; a split is only taken when it is
//! plainly one (the file starts with a `From ` line, each message ends with a blank line and
//! the next starts with a header field), so a single message whose body has a line starting
//! with `From ` stays whole.

use mail_parser::mailbox::mbox::MessageIterator;

/// The messages of `raw` when it is an mbox file of two or more; `None` for one message.
pub fn messages(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    if !raw.starts_with(b"From ") || !has_second_envelope_line(raw) {
        return None;
    }
    let mut out = Vec::new();
    for message in MessageIterator::new(raw) {
        out.push(message.ok()?.unwrap_contents());
    }
    let plain = out.len() >= 2
        && out
            .windows(2)
            .all(|w| ends_blank(&w[0]) && starts_with_header(&w[1]))
        && starts_with_header(&out[0]);
    plain.then_some(out)
}

/// Whether a line after the first starts with `From ` (a cheap test before splitting).
fn has_second_envelope_line(raw: &[u8]) -> bool {
    lines(raw).skip(1).any(|line| line.starts_with(b"From "))
}

fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.split(|&b| b == b'\n')
}

fn ends_blank(message: &[u8]) -> bool {
    message.ends_with(b"\n\n") || message.ends_with(b"\r\n\r\n")
}

/// Whether the first line is a header field (`Name: value`, RFC 5322 field-name characters).
fn starts_with_header(message: &[u8]) -> bool {
    let line = message.split(|&b| b == b'\n').next().unwrap_or_default();
    match line.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => line[..colon].iter().all(|&b| (33..=126).contains(&b)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "Return-Path: <>\nSubject: Undelivered Mail\n\nbody one\n\n";
    const TWO: &str = "Received: from x\nSubject: Mail delivery failed\n\nbody two\n";

    #[test]
    fn an_mbox_file_of_two_messages_is_split_at_its_envelope_lines() {
        let file = format!(
            "From MAILER-DAEMON Tue Mar 02 09:44:33 1999\n{ONE}From MAILER-DAEMON Tue Mar 02 09:45:00 1999\n{TWO}"
        );
        let got = messages(file.as_bytes()).expect("two messages");
        assert_eq!(got, vec![ONE.as_bytes().to_vec(), TWO.as_bytes().to_vec()]);
    }

    #[test]
    fn one_message_stays_whole_even_with_a_from_line_in_its_body() {
        // an envelope line, then a body line starting with "From " that no blank line precedes
        let file = "From MAILER-DAEMON Tue Mar 02 09:44:33 1999\nSubject: x\n\nhello\nFrom here on it fails\nmore\n";
        assert_eq!(messages(file.as_bytes()), None);
        // after a blank line, but what follows is prose, not a header
        let file =
            "From a Tue Mar 02 09:44:33 1999\nSubject: x\n\nhello\n\nFrom the report: it failed\n";
        assert_eq!(messages(file.as_bytes()), None);
        // no envelope line at all
        assert_eq!(messages(ONE.as_bytes()), None);
        assert_eq!(messages(b""), None);
    }

    #[test]
    fn a_quoted_from_line_is_unquoted_inside_its_message() {
        let file = "From a Tue Mar 02 09:44:33 1999\nSubject: one\n\n>From the start\n\nFrom b Tue Mar 02 09:44:34 1999\nSubject: two\n\nx\n";
        let got = messages(file.as_bytes()).expect("two messages");
        assert_eq!(got[0], b"Subject: one\n\nFrom the start\n\n".to_vec());
    }
}
