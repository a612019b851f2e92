//! The message's MIME tree, flattened into what the recognisers read: the top-level headers,
//! every leaf part's type and decoded text, and the headers of the original message when the
//! bounce carries one. `mail-parser` does the MIME work (multipart, transfer encodings,
//! charsets, encoded words); this module bounds what is kept of it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use mail_parser::{HeaderName, HeaderValue, Message, MessageParser, PartType};

/// Deepest nesting of parts followed (multipart in message in multipart ...).
const MAX_DEPTH: usize = 8;
/// Most leaf parts kept of one message.
const MAX_PARTS: usize = 256;
/// Most bytes of text kept of one part.
const MAX_PART_TEXT: usize = 256 * 1024;
/// Most headers kept of one header block.
const MAX_HEADERS: usize = 512;
/// Longest header value kept, in bytes.
const MAX_HEADER_VALUE: usize = 8 * 1024;

/// A header as read: its name lowercased, its value unfolded and decoded.
pub type Headers = Vec<(String, String)>;

/// One leaf part.
#[derive(Debug, Clone)]
pub struct Part {
    /// `type/subtype`, lowercased (`text/plain` when the part does not say).
    pub content_type: String,
    /// The decoded body, as text (invalid UTF-8 replaced), cut at a bound.
    pub text: String,
}

/// What the recognisers read of a message.
#[derive(Debug, Clone, Default)]
pub struct Walked {
    /// The message's own headers.
    pub headers: Headers,
    /// Leaf parts in document order (the bodies of nested messages excluded).
    pub parts: Vec<Part>,
    /// Headers of the first enclosed original message (`message/rfc822` or
    /// `text/rfc822-headers`), if any.
    pub original: Option<Headers>,
    /// The text of the first enclosed `message/rfc822` (its first text body, bounded): what a
    /// relay that reports a bounce it got back encloses as "the original".
    pub original_text: String,
}

impl Walked {
    /// The first value of header `name` (lowercase) of the message itself.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The message's `Content-Type` as `type/subtype; name=value...` (type and names lowercased).
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }
}

/// The first value of header `name` (lowercase) in `headers`.
pub fn header<'h>(headers: &'h Headers, name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Parses and flattens a raw message. `None` when it has no headers at all. Never panics: a
/// panic inside the MIME parser is caught and taken as "not a message".
pub fn walk(raw: &[u8]) -> Option<Walked> {
    catch_unwind(AssertUnwindSafe(|| {
        let parser = MessageParser::new()
            .with_mime_headers()
            .with_address_headers()
            .default_header_text();
        let message = parser.parse(raw)?;
        let mut out = Walked {
            headers: headers_of(&message, 0),
            ..Walked::default()
        };
        collect(&message, 0, 0, &mut out);
        Some(out)
    }))
    .ok()
    .flatten()
}

/// The headers of part `id` of `message`.
fn headers_of(message: &Message<'_>, id: usize) -> Headers {
    let Some(part) = message.parts.get(id) else {
        return Vec::new();
    };
    part.headers
        .iter()
        .take(MAX_HEADERS)
        .map(|h| {
            let name = h.name.as_str().to_ascii_lowercase();
            let mut value = value_text(&h.value);
            cut(&mut value, MAX_HEADER_VALUE);
            (name, value)
        })
        .collect()
}

/// A header value as one line of text.
fn value_text(v: &HeaderValue<'_>) -> String {
    match v {
        HeaderValue::Text(t) => unfold(t),
        HeaderValue::TextList(l) => l.iter().map(|t| unfold(t)).collect::<Vec<_>>().join(", "),
        HeaderValue::Address(a) => a
            .iter()
            .map(|addr| match (addr.name(), addr.address()) {
                (Some(n), Some(a)) => format!("{n} <{a}>"),
                (None, Some(a)) => format!("<{a}>"),
                (Some(n), None) => n.to_string(),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        HeaderValue::ContentType(ct) => {
            let mut s = ct.ctype().to_ascii_lowercase();
            if let Some(sub) = ct.subtype() {
                s.push('/');
                s.push_str(&sub.to_ascii_lowercase());
            }
            for a in ct.attributes().unwrap_or_default() {
                s.push_str("; ");
                s.push_str(&a.name.to_ascii_lowercase());
                s.push('=');
                s.push_str(&a.value);
            }
            s
        }
        HeaderValue::DateTime(d) => d.to_rfc3339(),
        HeaderValue::Received(_) | HeaderValue::Empty => String::new(),
    }
}

/// Folded lines joined with single spaces.
pub fn unfold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, line) in s.split(['\r', '\n']).filter(|l| !l.is_empty()).enumerate() {
        if i > 0 {
            out.push(' ');
            out.push_str(line.trim_start());
        } else {
            out.push_str(line);
        }
    }
    out.trim().to_string()
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The `type/subtype` of part `id` of `message`, lowercased.
fn content_type_of(message: &Message<'_>, id: usize) -> String {
    let ct = message.parts.get(id).and_then(|p| {
        p.headers
            .iter()
            .find(|h| h.name == HeaderName::ContentType)
            .and_then(|h| h.value.as_content_type())
    });
    match ct {
        Some(ct) => format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("plain").to_ascii_lowercase()
        ),
        None => "text/plain".to_string(),
    }
}

/// Walks part `id` of `message` depth-first, bounded in depth and parts.
fn collect(message: &Message<'_>, id: usize, depth: usize, out: &mut Walked) {
    if depth > MAX_DEPTH || out.parts.len() >= MAX_PARTS {
        return;
    }
    let Some(part) = message.parts.get(id) else {
        return;
    };
    let content_type = content_type_of(message, id);
    let text = match &part.body {
        PartType::Multipart(children) => {
            for &child in children.iter().take(MAX_PARTS) {
                let child = child as usize;
                // a part never contains itself or an earlier part
                if child > id {
                    collect(message, child, depth + 1, out);
                }
            }
            return;
        }
        PartType::Message(inner) => {
            // (only when the message is no report itself: then the enclosed one is the
            // original mail, even when that mail was a report)
            let report = content_type_of(inner, 0) == "multipart/report"
                && content_type_of(message, 0) != "multipart/report"
                && depth < 3;
            if report {
                // a bounce forwarded as an attachment: its report is read, its own original
                // message gives the original's headers
                collect(inner, 0, depth + 1, out);
            } else if out.original.is_none() {
                out.original = Some(headers_of(inner, 0));
                out.original_text = inner.body_text(0).map_or_else(String::new, |t| bounded(&t));
            }
            // otherwise the enclosed message's own parts are the original mail: not read
            return;
        }
        PartType::Text(t) | PartType::Html(t) => bounded(t),
        PartType::Binary(b) | PartType::InlineBinary(b) => {
            bounded(&String::from_utf8_lossy(&b[..b.len().min(MAX_PART_TEXT)]))
        }
    };
    if content_type == "text/rfc822-headers" && out.original.is_none() {
        out.original = Some(parse_header_block(&text));
    }
    out.parts.push(Part { content_type, text });
}

fn bounded(t: &str) -> String {
    let mut s = t.to_string();
    cut(&mut s, MAX_PART_TEXT);
    iso_2022_jp(s)
}

/// Text still in ISO-2022-JP (its escape sequences written as they came: a part that names no
/// charset, or a delivery-status part, which has none), decoded.
fn iso_2022_jp(s: String) -> String {
    if !(s.contains("\u{1b}$B") || s.contains("\u{1b}$@")) {
        return s;
    }
    match mail_parser::decoders::charsets::map::charset_decoder(b"iso-2022-jp") {
        Some(decode) => decode(s.as_bytes()),
        None => s,
    }
}

/// Reads a block of `Name: value` lines (continuation lines unfolded) up to its first blank
/// line; lines that are not fields are skipped.
pub fn parse_header_block(text: &str) -> Headers {
    let mut out: Headers = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if out.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                if v.len() < MAX_HEADER_VALUE {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            if !name.is_empty() && !name.contains(' ') && out.len() < MAX_HEADERS {
                out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    out
}

/// Splits `text` into field blocks separated by blank lines (RFC 3464's per-message and
/// per-recipient groups), each unfolded.
pub fn field_blocks(text: &str) -> Vec<Headers> {
    let mut blocks = Vec::new();
    let mut current: Headers = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
                if blocks.len() >= MAX_HEADERS {
                    return blocks;
                }
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = current.last_mut() {
                if v.len() < MAX_HEADER_VALUE {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            // a recipient's fields written straight after the previous one's, without the
            // blank line between: its recipient field starts its block
            let repeated = matches!(name.as_str(), "final-recipient" | "original-recipient")
                && current.iter().any(|(n, _)| *n == name);
            if repeated {
                blocks.push(std::mem::take(&mut current));
                if blocks.len() >= MAX_HEADERS {
                    return blocks;
                }
            }
            if !name.is_empty() && !name.contains(' ') && current.len() < MAX_HEADERS {
                current.push((name, value.trim().to_string()));
            }
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}
