//! The non-standard bounce formats: Postfix, Sendmail, Exim, qmail, Exchange, Gmail, Yahoo,
//! SES and the others that write the failure in prose instead of (or besides) RFC 3464
//! fields. What tells each format apart and how it writes recipients is data, in
//! `formats.toml`; this module reads the report section of a message with it.

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::mime::Walked;
use super::{first_address, Action, Found, ADDRESS, MAX_RECIPIENTS};

const FORMATS_TOML: &str = include_str!("formats.toml");

/// Most bytes of a message's text read for a report section.
const MAX_SECTION_BYTES: usize = 64 * 1024;
/// Recipients whose reply is looked for in an enclosed bounce: bounds the work a report of
/// many recipients without replies can cause.
const ENCLOSED_RECIPIENTS: usize = 64;
/// Most lines after a recipient read as its diagnostic.
const MAX_DIAGNOSTIC_LINES: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    generic: GenericEntry,
    #[serde(default)]
    format: Vec<FormatEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericEntry {
    from: Vec<String>,
    subject: Vec<String>,
    body: Vec<String>,
    end: Vec<String>,
    recipient: Vec<String>,
    reply: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatEntry {
    name: String,
    #[serde(default)]
    from: Vec<String>,
    #[serde(default)]
    subject: Vec<String>,
    #[serde(default)]
    body: Vec<String>,
    #[serde(default)]
    start: Vec<String>,
    #[serde(default)]
    end: Vec<String>,
    #[serde(default)]
    recipient: Vec<String>,
    /// The message is delayed, not failed, when the section has one of these.
    #[serde(default)]
    delayed: Vec<String>,
}

/// One compiled format.
#[derive(Debug)]
struct Format {
    name: String,
    from: Vec<String>,
    subject: Vec<String>,
    body: Vec<String>,
    start: Vec<String>,
    end: Vec<String>,
    recipient: Vec<Regex>,
    delayed: Vec<String>,
}

/// The compiled recognisers of `formats.toml`.
#[derive(Debug)]
pub struct Formats {
    formats: Vec<Format>,
    bounce_from: Vec<String>,
    bounce_subject: Vec<String>,
    bounce_body: Vec<String>,
    end: Vec<String>,
    recipient: Vec<Regex>,
    reply: Regex,
}

fn lower(v: Vec<String>) -> Vec<String> {
    v.into_iter().map(|s| s.to_lowercase()).collect()
}

fn patterns(v: &[String]) -> Result<Vec<Regex>, String> {
    v.iter()
        .map(|p| {
            RegexBuilder::new(p)
                .case_insensitive(true)
                .multi_line(true)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("pattern {p:?}: {e}"))
        })
        .collect()
}

impl Formats {
    /// The built-in recognisers.
    pub fn builtin() -> Result<Formats, String> {
        Self::compile(FORMATS_TOML)
    }

    /// Compiles a recogniser file.
    pub fn compile(text: &str) -> Result<Formats, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.version != 1 {
            return Err(format!("unknown formats version {}", file.version));
        }
        let mut formats = Vec::new();
        for f in file.format {
            for p in &f.recipient {
                if !p.contains("(?P<rcpt>") {
                    return Err(format!(
                        "format {}: pattern {p:?} has no rcpt group",
                        f.name
                    ));
                }
            }
            formats.push(Format {
                recipient: patterns(&f.recipient)?,
                name: f.name,
                from: lower(f.from),
                subject: lower(f.subject),
                body: lower(f.body),
                start: lower(f.start),
                end: lower(f.end),
                delayed: lower(f.delayed),
            });
        }
        let g = file.generic;
        Ok(Formats {
            formats,
            bounce_from: lower(g.from),
            bounce_subject: lower(g.subject),
            bounce_body: lower(g.body),
            end: lower(g.end),
            recipient: patterns(&g.recipient)?,
            reply: RegexBuilder::new(&g.reply)
                .case_insensitive(true)
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    /// How many formats there are.
    pub fn len(&self) -> usize {
        self.formats.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.formats.is_empty()
    }

    /// The recipients of a non-standard bounce, with the name of the format that read them;
    /// `None` when the message is not one.
    pub(super) fn read(&self, m: &Walked) -> Option<(String, Vec<Found>)> {
        self.read_at(m, 0)
    }

    /// [`Formats::read`] of a message, or (`depth` 1) of a bounce quoted in another's text.
    fn read_at(&self, m: &Walked, depth: usize) -> Option<(String, Vec<Found>)> {
        let from = m.header("from").unwrap_or("").to_lowercase();
        let subject = m.header("subject").unwrap_or("").to_lowercase();
        let text = body_text(m);
        let lower_text = text.to_ascii_lowercase();
        let format = self.formats.iter().find(|f| {
            f.from.iter().any(|s| from.contains(s.as_str()))
                || f.subject.iter().any(|s| subject.contains(s.as_str()))
                || f.body.iter().any(|s| lower_text.contains(s.as_str()))
        });
        // the null sender as From (`From: <>`), as only reports use
        let null_from = m
            .header("from")
            .is_some_and(|f| matches!(f.trim(), "" | "<>"));
        let is_bounce = format.is_some()
            || null_from
            || m.header("x-failed-recipients").is_some()
            || self.bounce_from.iter().any(|s| from.contains(s.as_str()))
            || self
                .bounce_subject
                .iter()
                .any(|s| subject.contains(s.as_str()))
            || self
                .bounce_body
                .iter()
                .any(|s| lower_text.contains(s.as_str()));
        if !is_bounce {
            return None;
        }
        let (start, end) = self.section(format, &lower_text);
        let section = text.get(start..end).unwrap_or(&text);
        // the addresses Exim hid, as the ones they were generated from (not in its header)
        let hidden: Vec<String> = UNDISCLOSED
            .captures_iter(section)
            .map(|c| c[2].to_ascii_lowercase())
            .collect();
        let section = if hidden.is_empty() {
            std::borrow::Cow::Borrowed(section)
        } else {
            UNDISCLOSED.replace_all(section, "$1$2")
        };
        let section = &*section;
        let mut found = Vec::new();
        if let Some(f) = format {
            found = self.recipients(&f.recipient, section);
        }
        if found.is_empty() {
            found = self.recipients(&self.recipient, section);
        }
        if found.is_empty() {
            // a report whose text names no one may say whom in its Subject ("Your message to
            // a@b could not be delivered")
            let subject = m.header("subject").unwrap_or("");
            found = self.recipients(&self.recipient, subject);
        }
        if found.is_empty() && depth == 0 {
            // a bounce quoted whole after the report's own text (a relay's report of a bounce)
            let rest = text.get(end..).unwrap_or("");
            let start = rest.find('\n').map_or(rest.len(), |i| i + 1);
            if let Some(inner) = super::mime::walk(&rest.as_bytes()[start..]) {
                let usable = |f: &Vec<Found>| {
                    f.iter()
                        .any(|f| super::normalize_recipient(&f.recipient).is_some())
                };
                if let Some(inner_found) = super::dsn::read(&inner).filter(usable) {
                    found = inner_found;
                } else if let Some((_, inner_found)) = self.read_at(&inner, depth + 1) {
                    found = inner_found;
                }
            }
        }
        if found.is_empty() && m.header("x-failed-recipients").is_none() {
            // a report that names no recipient: the original message's one recipient
            let quoted = super::mime::parse_header_block(text.get(end..).unwrap_or(""));
            // a mailing list's post is addressed to the list (its List-Post address), a news
            // article to its newsgroups: neither is the subscriber whose delivery failed
            let originals = [m.original.as_ref(), Some(&quoted)];
            let header = |name: &str| {
                originals
                    .iter()
                    .flatten()
                    .find_map(|h| super::mime::header(h, name))
            };
            let news = header("newsgroups").is_some();
            let list_address = header("list-post")
                .and_then(|p| ADDRESS.find(p))
                .map(|a| a.as_str().to_ascii_lowercase());
            let not_the_list =
                |a: &str| !news && list_address.as_deref() != Some(&a.to_ascii_lowercase());
            let to = m
                .original
                .as_ref()
                .and_then(|o| super::mime::header(o, "to"))
                .or_else(|| super::mime::header(&quoted, "to"))
                .unwrap_or("");
            let mut all = ADDRESS.find_iter(to);
            if let (Some(only), None) = (all.next(), all.next()) {
                if not_the_list(only.as_str()) {
                    found.push(Found {
                        recipient: only.as_str().to_string(),
                        ..Found::default()
                    });
                }
            } else if to.is_empty() {
                // no To quoted: the one address the quoted original was received for
                if let Some(only) =
                    received_for(text.get(end..).unwrap_or("")).filter(|a| not_the_list(a))
                {
                    found.push(Found {
                        recipient: only,
                        ..Found::default()
                    });
                }
            }
        }
        // Exim and Gmail name the failed recipients in a header: those are the recipients
        if let Some(failed) = m.header("x-failed-recipients") {
            let listed: Vec<String> = ADDRESS
                .find_iter(failed)
                .map(|a| a.as_str().to_ascii_lowercase())
                .collect();
            if !listed.is_empty() {
                found.retain(|f| {
                    let r = f.recipient.to_ascii_lowercase();
                    listed.contains(&r) || hidden.contains(&r)
                });
                for addr in listed {
                    if !found
                        .iter()
                        .any(|f| f.recipient.eq_ignore_ascii_case(&addr))
                    {
                        found.push(Found {
                            recipient: addr,
                            ..Found::default()
                        });
                    }
                }
            }
        }
        // the bounce goes to the original sender, who is not one of the failed recipients
        let sender: Vec<String> = ADDRESS
            .find_iter(m.header("to").unwrap_or(""))
            .map(|a| a.as_str().to_ascii_lowercase())
            .collect();
        if found
            .iter()
            .any(|f| !sender.contains(&f.recipient.to_ascii_lowercase()))
        {
            found.retain(|f| !sender.contains(&f.recipient.to_ascii_lowercase()));
        }
        found.truncate(MAX_RECIPIENTS);
        let delayed = format.is_some_and(|f| {
            let s = section.to_ascii_lowercase();
            f.delayed.iter().any(|d| s.contains(d.as_str()))
        });
        let single = found.len() == 1;
        let mut looked_up = 0;
        for f in &mut found {
            f.action = Some(if delayed {
                Action::Delayed
            } else {
                Action::Failed
            });
            // no reply in the recipient's own lines: the one in the section, when the message
            // is about this recipient alone
            if !self.reply.is_match(&f.diagnostic) && single {
                // the server's reply says more than the report's prose around it
                if let Some(reply) = self.reply_paragraph(section) {
                    f.diagnostic = reply;
                }
            }
            // still none: a bounce enclosed after the report or as its original message (a
            // relay's report of the bounce it got back) may quote the server's reply about
            // this recipient
            if !self.reply.is_match(&f.diagnostic) && looked_up < ENCLOSED_RECIPIENTS {
                looked_up += 1;
                let enclosed = text.get(end..).unwrap_or("");
                if let Some(reply) = self
                    .reply_line_about(enclosed, &f.recipient)
                    .or_else(|| self.reply_line_about(&m.original_text, &f.recipient))
                {
                    f.diagnostic = reply;
                }
            }
            f.diagnostic = super::from_reply_or_agent(&f.diagnostic);
            if f.diagnostic.trim().is_empty() && single {
                f.diagnostic = section
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .take(30)
                    .collect::<Vec<_>>()
                    .join(" ");
            }
        }
        let name = format.map_or("generic", |f| f.name.as_str()).to_string();
        Some((name, found))
    }

    /// The part of the text that reports the failure: from the format's start marker (if
    /// any) up to where the original message begins.
    fn section(&self, format: Option<&Format>, lower: &str) -> (usize, usize) {
        let mut start = 0;
        if let Some(f) = format {
            if let Some(i) = f.start.iter().filter_map(|s| lower.find(s.as_str())).min() {
                start = i;
            }
        }
        let ends = format
            .map(|f| f.end.iter())
            .into_iter()
            .flatten()
            .chain(self.end.iter());
        let end = ends
            .filter_map(|e| lower.get(start..)?.find(e.as_str()).map(|i| i + start))
            .filter(|&i| i > start)
            .min()
            .unwrap_or(lower.len());
        (start, end)
    }

    /// Recipients matched by `patterns` in `section`, each with the lines that follow it.
    fn recipients(&self, patterns: &[Regex], section: &str) -> Vec<Found> {
        let lines: Vec<&str> = section.lines().collect();
        let mut out: Vec<Found> = Vec::new();
        let mut i = 0;
        while i < lines.len() && out.len() < MAX_RECIPIENTS {
            let line = lines[i];
            let hit = patterns.iter().find_map(|p| p.captures(line));
            let Some(c) = hit else {
                i += 1;
                continue;
            };
            let Some(rcpt) = c.name("rcpt").and_then(|r| first_address(r.as_str())) else {
                i += 1;
                continue;
            };
            let mut diagnostic = c
                .name("diag")
                .map(|d| d.as_str().trim().to_string())
                .unwrap_or_default();
            // Sendmail's `554 <a@b>... reason`: the code before the address is the reply's
            if let Some(code) = c.name("code") {
                diagnostic = format!("{} {diagnostic}", code.as_str().trim());
            }
            // a reply on the recipient's own line goes on only on indented lines
            let complete = self.reply.is_match(&diagnostic);
            // the lines that follow, up to a blank line or the next recipient
            let mut j = i + 1;
            while j < lines.len() && j <= i + MAX_DIAGNOSTIC_LINES {
                let next = lines[j];
                if next.trim().is_empty() {
                    // nothing yet, or a label ("because:") that introduces the next paragraph
                    if (diagnostic.is_empty() && j == i + 1) || diagnostic.ends_with(':') {
                        j += 1;
                        continue;
                    }
                    break;
                }
                // the next recipient (the same one named again is part of the diagnostic)
                let other = patterns.iter().find_map(|p| {
                    let c = p.captures(next)?;
                    let r = first_address(c.name("rcpt")?.as_str())?;
                    (!r.eq_ignore_ascii_case(rcpt)).then_some(())
                });
                if other.is_some() || (complete && !next.starts_with([' ', '\t'])) {
                    break;
                }
                if !diagnostic.is_empty() {
                    diagnostic.push(' ');
                }
                diagnostic.push_str(next.trim());
                j += 1;
            }
            if !out.iter().any(|f| f.recipient.eq_ignore_ascii_case(rcpt)) {
                out.push(Found {
                    recipient: rcpt.to_string(),
                    diagnostic,
                    ..Found::default()
                });
            }
            i = j.max(i + 1);
        }
        out
    }

    /// The first line of `text` that names `recipient` and holds a reply code (Sendmail's
    /// `<<< 550 5.1.1 <a@b>... Invalid recipient`), from its reply code on.
    fn reply_line_about(&self, text: &str, recipient: &str) -> Option<String> {
        // a reply code, not an enhanced status alone: `5.4.3` is also a piece of an IP address
        static CODE: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"(?:^|[\s:;(\[<])[45]\d\d[\s-]").expect("code pattern"));
        const HEADERS: &[&str] = &["received:", "for ", "by ", "from ", "to:", "cc:", "x-"];
        let addr = first_address(recipient)?.to_ascii_lowercase();
        text.lines()
            .take(2_000)
            .map(str::trim)
            .find(|l| {
                if l.len() > 1_000 || !CODE.is_match(l) {
                    return false;
                }
                let lower = l.to_ascii_lowercase();
                lower.contains(&addr) && !HEADERS.iter().any(|h| lower.starts_with(h))
            })
            .map(|l| super::from_reply(l).to_string())
    }

    /// The paragraph of `section` that holds a server reply (a reply code or enhanced status).
    fn reply_paragraph(&self, section: &str) -> Option<String> {
        let mut paragraph: Vec<&str> = Vec::new();
        let mut best = None;
        for line in section.lines().chain(std::iter::once("")) {
            if line.trim().is_empty() {
                if !paragraph.is_empty() {
                    let p = paragraph.join(" ");
                    if self.reply.is_match(&p) {
                        best = Some(p);
                        break;
                    }
                    paragraph.clear();
                }
                continue;
            }
            if paragraph.len() < 20 {
                paragraph.push(line.trim());
            }
        }
        best
    }
}

/// The one address a quoted message's `Received: ... for <a@b>` lines name, if they name one.
fn received_for(quoted: &str) -> Option<String> {
    static FOR: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\bfor\s+<([^<>\s]{1,254}@[^<>\s]{1,254})>").expect("pattern")
    });
    let mut only: Option<String> = None;
    for c in FOR.captures_iter(quoted) {
        let a = first_address(&c[1])?.to_ascii_lowercase();
        match &only {
            Some(o) if *o != a => return None,
            _ => only = Some(a),
        }
    }
    only
}

/// The message's own text: its text parts (HTML stripped of tags), bounded.
fn body_text(m: &Walked) -> String {
    let mut out = String::new();
    for p in &m.parts {
        if out.len() >= MAX_SECTION_BYTES {
            break;
        }
        let ct = p.content_type.as_str();
        if ct == "text/html" {
            if m.parts.iter().any(|q| q.content_type == "text/plain") {
                continue;
            }
            out.push_str(&strip_html(&p.text));
        } else if (ct.starts_with("text/") || ct.starts_with("multipart/"))
            && ct != "text/rfc822-headers"
        {
            out.push_str(&p.text);
        } else {
            continue;
        }
        out.push('\n');
    }
    super::mime::cut(&mut out, MAX_SECTION_BYTES);
    unquote(out)
}

/// A bounce forwarded as a quotation (`> ` before every line) without its quotation marks.
fn unquote(text: String) -> String {
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    let (mut quoted, mut total) = (0usize, 0usize);
    for l in lines {
        total += 1;
        quoted += l.starts_with('>') as usize;
    }
    if total < 4 || quoted * 2 < total {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for l in text.lines() {
        let l = l.strip_prefix('>').unwrap_or(l);
        out.push_str(l.strip_prefix(' ').unwrap_or(l));
        out.push('\n');
    }
    out
}

/// HTML as plain text: tags dropped (block tags become line breaks), common entities decoded.
/// A `<` with no `>` within [`MAX_TAG`] bytes is text. One pass, whatever the input: the next
/// `>` is found once for every `<` before it.
fn strip_html(html: &str) -> String {
    /// The longest tag read as one.
    const MAX_TAG: usize = 2_000;
    let mut out = String::with_capacity(html.len());
    let mut at = 0;
    // The first `>` after the last `<` looked at (`html.len()` when there is none).
    let mut close = 0;
    while let Some(open) = html[at..].find('<').map(|p| at + p) {
        out.push_str(&html[at..open]);
        if close <= open {
            close = html[open..].find('>').map_or(html.len(), |p| open + p);
        }
        if close == html.len() || close - open - 1 > MAX_TAG {
            out.push('<');
            at = open + 1;
            continue;
        }
        let tag = html[open + 1..close].trim_start_matches('/');
        let name: String = tag
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .flat_map(char::to_lowercase)
            .collect();
        out.push_str(match name.as_str() {
            "br" | "p" | "div" | "tr" | "li" | "h1" | "h2" | "h3" | "table" => "\n",
            "td" => " ",
            _ => "",
        });
        at = close + 1;
    }
    out.push_str(&html[at..]);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Exim names an address a router hid (`hide_child_in_errors`) as "an undisclosed address" and,
/// on the next line, the address it was generated from: the one the sender wrote, so the one
/// that failed for them. The line pair is read as that address.
static UNDISCLOSED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?mi)^([ \t]*)an undisclosed address[ \t]*\r?\n[ \t]*\(generated from ([^()\s]+@[^()\s]+)\)",
    )
    .expect("undisclosed pattern")
});

#[cfg(test)]
mod tests {
    use super::strip_html;

    #[test]
    fn html_becomes_text_with_block_tags_as_line_breaks() {
        assert_eq!(
            strip_html("<P class=x>Hello</p><br/>World<td>x</TD><b>!</b>"),
            "\nHello\n\nWorld x !"
        );
        assert_eq!(
            strip_html("&lt;a@b&gt; &amp; &quot;q&quot;"),
            "<a@b> & \"q\""
        );
    }

    #[test]
    fn a_lone_or_unclosed_angle_bracket_is_text() {
        assert_eq!(strip_html("a < b and c"), "a < b and c");
        assert_eq!(strip_html("x <br> y < z"), "x \n y < z");
        let far = format!("<{}>tail", "a".repeat(2_001));
        assert_eq!(strip_html(&far), far);
        let near = format!("<{}>tail", "a".repeat(2_000));
        assert_eq!(strip_html(&near), "tail");
        // many brackets that never close: every one kept, in one pass
        let open = "<a ".repeat(100_000);
        assert_eq!(strip_html(&open), open);
    }
}
