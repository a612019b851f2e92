//! Email addresses as the service keys them.
//!
//! Normalization, so that one mailbox has one key and a suppression cannot be dodged by
//! spelling the same address differently:
//! - surrounding whitespace is trimmed;
//! - the domain is lowercased and converted to its ASCII (IDNA/punycode) form, so
//!   `bücher.example` and `xn--bcher-kva.example` are the same domain;
//! - the local part is lowercased. RFC 5321 lets a server treat `Jane` and `jane` as different
//!   mailboxes, but no mainstream provider does, and the cost of the two mistakes is not equal:
//!   mailing a suppressed address again damages the sender's reputation, while conflating two
//!   mailboxes that differ only in case is a risk no real system is known to run into.
//!
//! Validation follows RFC 5321/5322 for the parts that matter to delivery: one `@`, a dot-atom
//! local part of at most 64 octets (UTF-8 allowed, as RFC 6531 does), a domain of at most
//! 253 octets in ASCII form made of valid labels of at most 63 octets, at least two labels, and
//! a whole address of at most 254 octets.

use std::fmt;
use std::ops::Range;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// Longest address accepted, in octets (RFC 5321 path limit less the angle brackets).
pub const MAX_ADDRESS_LEN: usize = 254;
/// Longest local part, in octets (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest domain, in octets of its ASCII form (RFC 1035 less the root dot).
pub const MAX_DOMAIN_LEN: usize = 253;

/// A normalized, validated email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    /// The whole normalized address: `local@domain`.
    normalized: String,
    /// Byte offset of the `@` in `normalized`, so both halves are free to get.
    at: usize,
}

/// Why a string is not an acceptable email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address is longer than {MAX_ADDRESS_LEN} octets")]
    TooLong,
    #[error("address has no '@'")]
    MissingAt,
    #[error("address has more than one '@' (quoted local parts are not supported)")]
    MultipleAt,
    #[error("local part (before '@') is empty")]
    EmptyLocal,
    #[error("local part is longer than {MAX_LOCAL_LEN} octets")]
    LocalTooLong,
    #[error("local part contains the character {0:?}, which is not allowed unquoted")]
    LocalBadChar(char),
    #[error("local part has a leading, trailing or doubled '.'")]
    LocalBadDot,
    #[error("domain (after '@') is empty")]
    EmptyDomain,
    #[error("address literals such as [192.0.2.1] are not supported")]
    DomainLiteral,
    #[error("domain is not a valid internet domain name")]
    DomainInvalid,
    #[error("domain is longer than {MAX_DOMAIN_LEN} octets")]
    DomainTooLong,
    #[error("domain has a label longer than 63 octets")]
    DomainLabelTooLong,
    #[error("domain needs at least two labels (e.g. example.com)")]
    DomainSingleLabel,
    #[error("domain ends in an all-numeric label")]
    DomainNumericTld,
}

impl EmailAddress {
    /// Normalizes and validates `input`.
    pub fn parse(input: &str) -> Result<EmailAddress, AddressError> {
        let s = input.trim();
        // Most addresses are plain ASCII: normalize those in one pass and one allocation.
        // Anything unusual (UTF-8, punycode labels, errors) takes the full path, which also
        // words the errors.
        if let Some(address) = parse_plain_ascii(s) {
            return Ok(address);
        }
        parse_full(s)
    }

    /// Normalizes and validates `input` as [`EmailAddress::parse`] does, but appends the
    /// normalized address to `out` and gives its range there: screening a batch of plain ASCII
    /// addresses this way allocates nothing per address. On error `out` is unchanged.
    pub fn normalize_into(input: &str, out: &mut String) -> Result<Range<usize>, AddressError> {
        let s = input.trim();
        let start = out.len();
        match plain_ascii(s) {
            Some((_, len)) => {
                out.push_str(&s[..len]);
                out[start..].make_ascii_lowercase();
            }
            None => out.push_str(parse_full(s)?.as_str()),
        }
        Ok(start..out.len())
    }
}

/// The full normalization: IDNA for the domain, Unicode lowercasing, worded errors.
fn parse_full(s: &str) -> Result<EmailAddress, AddressError> {
    {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        // Cheap guard before any work: anything this long cannot normalize to 254 octets
        // (IDNA may lengthen a domain, never shorten it by more than its case mapping).
        if s.len() > MAX_ADDRESS_LEN * 4 {
            return Err(AddressError::TooLong);
        }
        let at = s.rfind('@').ok_or(AddressError::MissingAt)?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if local.contains('@') {
            return Err(AddressError::MultipleAt);
        }
        let local = normalize_local(local)?;
        let domain = normalize_domain(domain)?;
        let mut normalized = String::with_capacity(local.len() + 1 + domain.len());
        normalized.push_str(&local);
        normalized.push('@');
        normalized.push_str(&domain);
        if normalized.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        Ok(EmailAddress {
            at: local.len(),
            normalized,
        })
    }
}

/// Bytes allowed unquoted in a local part (RFC 5322 `atext` and `.`), ASCII only (every byte of
/// 128 and above is false: it belongs to a UTF-8 sequence, for the full path).
const LOCAL_ASCII: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'/'
                    | b'='
                    | b'?'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'{'
                    | b'|'
                    | b'}'
                    | b'~'
                    | b'.'
            );
        c += 1;
    }
    t
};

/// The fast path of [`EmailAddress::parse`] for plain ASCII addresses with no punycode labels;
/// `None` hands the input to the full path. Gives exactly what the full path gives.
fn parse_plain_ascii(s: &str) -> Option<EmailAddress> {
    let (at, len) = plain_ascii(s)?;
    let mut normalized = s[..len].to_string();
    normalized.make_ascii_lowercase();
    Some(EmailAddress { normalized, at })
}

/// What a byte can be in a domain of the fast path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DomainByte {
    /// Not allowed (anything but ASCII letters, digits, `-` and `.`).
    Other,
    Letter,
    Digit,
    Hyphen,
    Dot,
}

const DOMAIN_BYTES: [DomainByte; 256] = {
    let mut t = [DomainByte::Other; 256];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        t[c] = if b.is_ascii_alphabetic() {
            DomainByte::Letter
        } else if b.is_ascii_digit() {
            DomainByte::Digit
        } else if b == b'-' {
            DomainByte::Hyphen
        } else if b == b'.' {
            DomainByte::Dot
        } else {
            DomainByte::Other
        };
        c += 1;
    }
    t
};

/// Checks that `s` is a plain ASCII address with no punycode labels that normalizes to its
/// first `len` bytes lowercased (only a trailing root dot is dropped); gives the offset of the
/// `@` and `len`. `None`: the full path must decide. One pass over the bytes.
fn plain_ascii(s: &str) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    if b.len() > MAX_ADDRESS_LEN + 1 {
        return None;
    }
    // The local part: allowed bytes, no leading, trailing or doubled dot.
    let mut at = 0;
    let mut prev = b'.';
    loop {
        let c = *b.get(at)?;
        if c == b'@' {
            break;
        }
        if !LOCAL_ASCII[c as usize] || (c == b'.' && prev == b'.') {
            return None;
        }
        prev = c;
        at += 1;
    }
    if at == 0 || at > MAX_LOCAL_LEN || prev == b'.' {
        return None;
    }
    // The domain, less one root dot: labels of 1-63 letters, digits and inner hyphens, no
    // punycode, at least two, the last not all digits.
    let rest = &b[at + 1..];
    let domain = rest.strip_suffix(b".").unwrap_or(rest);
    if domain.is_empty() || domain.len() > MAX_DOMAIN_LEN {
        return None;
    }
    let mut labels = 0;
    let mut start = 0;
    let mut all_digits = true;
    for i in 0..=domain.len() {
        let class = domain
            .get(i)
            .map_or(DomainByte::Dot, |&c| DOMAIN_BYTES[c as usize]);
        match class {
            DomainByte::Letter => all_digits = false,
            DomainByte::Digit => {}
            DomainByte::Hyphen => {
                if i == start {
                    return None;
                }
                all_digits = false;
            }
            DomainByte::Dot => {
                let label = &domain[start..i];
                if label.is_empty()
                    || label.len() > 63
                    || label[label.len() - 1] == b'-'
                    || (label.len() >= 4 && label[..4].eq_ignore_ascii_case(b"xn--"))
                {
                    return None;
                }
                labels += 1;
                if i == domain.len() && all_digits {
                    return None; // an all-numeric last label
                }
                start = i + 1;
                all_digits = true;
            }
            DomainByte::Other => return None,
        }
    }
    let len = at + 1 + domain.len();
    (labels >= 2 && len <= MAX_ADDRESS_LEN).then_some((at, len))
}

impl EmailAddress {
    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// The normalized address, by value.
    pub fn into_string(self) -> String {
        self.normalized
    }

    /// The normalized local part (before the `@`).
    pub fn local_part(&self) -> &str {
        &self.normalized[..self.at]
    }

    /// The normalized ASCII domain (after the `@`).
    pub fn domain(&self) -> &str {
        &self.normalized[self.at + 1..]
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.normalized
    }
}

/// `atext` of RFC 5322 plus UTF-8 (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

fn normalize_local(local: &str) -> Result<String, AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocal);
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::LocalBadDot);
    }
    if let Some(c) = local.chars().find(|&c| c != '.' && !is_atext(c)) {
        return Err(AddressError::LocalBadChar(c));
    }
    let lowered = if local.is_ascii() {
        local.to_ascii_lowercase()
    } else {
        local.to_lowercase()
    };
    if lowered.len() > MAX_LOCAL_LEN {
        return Err(AddressError::LocalTooLong);
    }
    Ok(lowered)
}

/// Normalizes and validates a domain: IDNA to ASCII, lowercase, label rules.
pub(super) fn normalize_domain(domain: &str) -> Result<String, AddressError> {
    if domain.is_empty() {
        return Err(AddressError::EmptyDomain);
    }
    if domain.starts_with('[') {
        return Err(AddressError::DomainLiteral);
    }
    // A single trailing root dot names the same domain.
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let ascii = Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Ignore,
        )
        .map_err(|_| AddressError::DomainInvalid)?;
    if ascii.len() > MAX_DOMAIN_LEN {
        return Err(AddressError::DomainTooLong);
    }
    let mut labels = 0usize;
    let mut last = "";
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(AddressError::DomainInvalid);
        }
        if label.len() > 63 {
            return Err(AddressError::DomainLabelTooLong);
        }
        labels += 1;
        last = label;
    }
    if labels < 2 {
        return Err(AddressError::DomainSingleLabel);
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::DomainNumericTld);
    }
    Ok(ascii.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalizes_case_whitespace_and_idna() {
        let a = EmailAddress::parse("  Jane.Smith@Bücher.Example ").unwrap();
        assert_eq!(a.as_str(), "jane.smith@xn--bcher-kva.example");
        assert_eq!(a.local_part(), "jane.smith");
        assert_eq!(a.domain(), "xn--bcher-kva.example");
        let b = EmailAddress::parse("jane.smith@xn--bcher-kva.example").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn trailing_root_dot_names_the_same_domain() {
        assert_eq!(
            EmailAddress::parse("a@example.com.").unwrap().as_str(),
            "a@example.com"
        );
    }

    #[test]
    fn utf8_local_parts_are_lowercased() {
        assert_eq!(
            EmailAddress::parse("ÜSER@example.com").unwrap().as_str(),
            "üser@example.com"
        );
    }

    #[test]
    fn rejects_malformed_addresses_with_a_reason() {
        let cases: &[(&str, AddressError)] = &[
            ("", AddressError::Empty),
            ("   ", AddressError::Empty),
            ("plainaddress", AddressError::MissingAt),
            ("a@b@example.com", AddressError::MultipleAt),
            ("@example.com", AddressError::EmptyLocal),
            ("jane@", AddressError::EmptyDomain),
            (".jane@example.com", AddressError::LocalBadDot),
            ("jane.@example.com", AddressError::LocalBadDot),
            ("ja..ne@example.com", AddressError::LocalBadDot),
            ("ja ne@example.com", AddressError::LocalBadChar(' ')),
            ("ja\"ne@example.com", AddressError::LocalBadChar('"')),
            ("jane@[192.0.2.1]", AddressError::DomainLiteral),
            ("jane@localhost", AddressError::DomainSingleLabel),
            ("jane@example..com", AddressError::DomainInvalid),
            ("jane@-example.com", AddressError::DomainInvalid),
            ("jane@exa_mple.com", AddressError::DomainInvalid),
            ("jane@192.168.0.1", AddressError::DomainNumericTld),
        ];
        for (input, want) in cases {
            assert_eq!(EmailAddress::parse(input).as_ref(), Err(want), "{input:?}");
        }
    }

    #[test]
    fn enforces_rfc_5321_lengths() {
        let local64 = "a".repeat(64);
        assert!(EmailAddress::parse(&format!("{local64}@example.com")).is_ok());
        assert_eq!(
            EmailAddress::parse(&format!("a{local64}@example.com")),
            Err(AddressError::LocalTooLong)
        );
        let label63 = "b".repeat(63);
        assert!(EmailAddress::parse(&format!("a@{label63}.com")).is_ok());
        assert_eq!(
            EmailAddress::parse(&format!("a@{label63}b.com")),
            Err(AddressError::DomainLabelTooLong)
        );
        // 64 + 1 + 189 = 254 octets: the longest accepted.
        let domain189 = format!(
            "{}.{}.{}.com",
            "c".repeat(60),
            "d".repeat(60),
            "e".repeat(63)
        );
        assert_eq!(domain189.len(), 189);
        assert!(EmailAddress::parse(&format!("{local64}@{domain189}")).is_ok());
        assert_eq!(
            EmailAddress::parse(&format!("{local64}@x{domain189}")),
            Err(AddressError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = EmailAddress::parse(&s);
        }

        #[test]
        fn normalization_is_idempotent(s in "\\PC{0,80}@\\PC{0,80}") {
            if let Ok(a) = EmailAddress::parse(&s) {
                let again = EmailAddress::parse(a.as_str()).expect("a normalized address parses");
                prop_assert_eq!(&again, &a);
                prop_assert!(a.as_str().len() <= MAX_ADDRESS_LEN);
            }
        }

        #[test]
        fn the_ascii_fast_path_agrees_with_the_full_path(
            s in "[a-zA-Z0-9._%+@-]{0,30}(@[a-zA-Z0-9.-]{0,30})?\\.?",
        ) {
            let full = parse_full(s.trim());
            if let Some(fast) = parse_plain_ascii(s.trim()) {
                prop_assert_eq!(Ok(fast), full);
            }
        }

        #[test]
        fn normalizing_into_a_buffer_agrees_with_parse(
            s in "[ a-zA-Z0-9._%+@ü-]{0,30}(@[a-zA-Zü0-9.-]{0,30})?\\.?",
        ) {
            let mut out = String::from("before;");
            let got = EmailAddress::normalize_into(&s, &mut out);
            match EmailAddress::parse(&s) {
                Ok(a) => {
                    let range = got.expect("parse accepted it");
                    prop_assert_eq!(&out[range.clone()], a.as_str());
                    prop_assert_eq!(range.end, out.len());
                }
                Err(e) => {
                    prop_assert_eq!(got, Err(e));
                    prop_assert_eq!(out.as_str(), "before;");
                }
            }
        }

        #[test]
        fn case_and_padding_do_not_change_the_key(
            local in "[a-zA-Z0-9._%+-]{1,20}",
            domain in "[a-zA-Z0-9]{1,20}\\.[a-zA-Z]{2,6}",
        ) {
            let plain = EmailAddress::parse(&format!("{local}@{domain}"));
            let shouted = EmailAddress::parse(&format!("  {}@{} ", local.to_uppercase(), domain.to_uppercase()));
            prop_assert_eq!(plain, shouted);
        }
    }
}
