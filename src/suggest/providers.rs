//! The built-in list of popular mailbox providers, the split of a domain into its name and its
//! public suffix, and the table of common top-level-domain typos.

/// Popular consumer mailbox provider domains (lowercase, ASCII).
///
/// Two jobs: they are the targets of domain typo fixes, and a domain on this list is never
/// "corrected" (so `mail.com`, `gmx.com`, `live.fr`... are listed because they are real
/// providers one edit away from another provider). Company-pattern suggestions are never made
/// for these domains: people choose their own local part at a free-mail provider.
pub(super) const POPULAR: &[&str] = &[
    // Google
    "gmail.com",
    "googlemail.com",
    // Yahoo
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "yahoo.de",
    "yahoo.it",
    "yahoo.es",
    "yahoo.ca",
    "yahoo.co.jp",
    "yahoo.co.in",
    "yahoo.com.au",
    "yahoo.com.br",
    "yahoo.com.mx",
    "ymail.com",
    "rocketmail.com",
    // Microsoft
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "hotmail.de",
    "hotmail.it",
    "hotmail.es",
    "hotmail.nl",
    "hotmail.be",
    "hotmail.ca",
    "hotmail.com.br",
    "outlook.com",
    "outlook.fr",
    "outlook.de",
    "outlook.es",
    "outlook.it",
    "live.com",
    "live.co.uk",
    "live.fr",
    "live.de",
    "live.it",
    "live.nl",
    "live.ca",
    "msn.com",
    // AOL, Apple
    "aol.com",
    "aim.com",
    "icloud.com",
    "me.com",
    "mac.com",
    // US ISPs
    "comcast.net",
    "verizon.net",
    "att.net",
    "sbcglobal.net",
    "bellsouth.net",
    "cox.net",
    "charter.net",
    "earthlink.net",
    "optonline.net",
    // Germany, Austria, Switzerland
    "gmx.de",
    "gmx.net",
    "gmx.com",
    "gmx.at",
    "gmx.ch",
    "web.de",
    "t-online.de",
    "freenet.de",
    "bluewin.ch",
    // France
    "orange.fr",
    "wanadoo.fr",
    "free.fr",
    "laposte.net",
    "sfr.fr",
    // UK, Ireland
    "btinternet.com",
    "sky.com",
    "virginmedia.com",
    "ntlworld.com",
    // Italy, Spain, Benelux
    "libero.it",
    "virgilio.it",
    "tiscali.it",
    "telenet.be",
    "ziggo.nl",
    // Russia
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "rambler.ru",
    "inbox.ru",
    "list.ru",
    "bk.ru",
    // Asia
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "naver.com",
    "daum.net",
    "hanmail.net",
    "rediffmail.com",
    // Americas, Oceania
    "uol.com.br",
    "bol.com.br",
    "terra.com.br",
    "shaw.ca",
    "rogers.com",
    "bigpond.com",
    // Poland, Czechia
    "wp.pl",
    "o2.pl",
    "onet.pl",
    "interia.pl",
    "seznam.cz",
    // Privacy-focused and independent providers
    "protonmail.com",
    "protonmail.ch",
    "proton.me",
    "pm.me",
    "tutanota.com",
    "zoho.com",
    "fastmail.com",
    "mail.com",
    "email.com",
    "hey.com",
];

/// The providers that take most consumer mail; a typo that is equally close to one of these and
/// to a smaller provider most likely meant the big one.
const MAJOR: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "icloud.com",
    "aol.com",
];

/// Whether `domain` is one of the [`MAJOR`] providers.
pub(super) fn is_major(domain: &str) -> bool {
    MAJOR.contains(&domain)
}

/// Whether `domain` is on the built-in popular provider list.
pub(super) fn is_popular(domain: &str) -> bool {
    POPULAR.contains(&domain)
}

/// Second-level labels under which country-code registries sell names (`co.uk`, `com.au`...).
const SECOND_LEVEL: &[&str] = &["co", "com", "net", "org", "ac", "gov", "edu", "ne", "or"];

/// Splits a domain into its name (everything before the public suffix) and its public suffix:
/// `gmail.com` -> (`gmail`, `com`), `yahoo.co.uk` -> (`yahoo`, `co.uk`), `gmailcom` ->
/// (`gmailcom`, ``). A small built-in rule, not the Public Suffix List: the suffix is the last
/// label, or the last two when the second-to-last is a generic second level such as `co` and
/// there are at least three labels.
pub(super) fn split_suffix(domain: &str) -> (&str, &str) {
    let Some(last_dot) = domain.rfind('.') else {
        return (domain, "");
    };
    let head = &domain[..last_dot];
    if let Some(prev_dot) = head.rfind('.') {
        let second = &head[prev_dot + 1..];
        if SECOND_LEVEL.contains(&second) && prev_dot > 0 {
            return (&domain[..prev_dot], &domain[prev_dot + 1..]);
        }
    }
    (head, &domain[last_dot + 1..])
}

/// Common mistyped public suffixes and the suffix that was meant. Some of the typos are real
/// country codes (`.co` Colombia, `.cm` Cameroon, `.om` Oman, `.ne` Niger); they are only
/// corrected when the domain's name is exactly a popular or known-good domain's name, where the
/// typo is by far the likelier explanation.
const SUFFIX_TYPOS: &[(&str, &str)] = &[
    ("con", "com"),
    ("cmo", "com"),
    ("ocm", "com"),
    ("co", "com"),
    ("vom", "com"),
    ("xom", "com"),
    ("comm", "com"),
    ("coom", "com"),
    ("cm", "com"),
    ("om", "com"),
    ("cim", "com"),
    ("cpm", "com"),
    ("c0m", "com"),
    ("clm", "com"),
    ("comn", "com"),
    ("cok", "com"),
    ("dom", "com"),
    ("fom", "com"),
    ("nte", "net"),
    ("ent", "net"),
    ("ner", "net"),
    ("nt", "net"),
    ("ne", "net"),
    ("nett", "net"),
    ("nwt", "net"),
    ("ogr", "org"),
    ("rog", "org"),
    ("orgg", "org"),
    ("prg", "org"),
    ("co.k", "co.uk"),
    ("co.u", "co.uk"),
    ("co.ukk", "co.uk"),
    ("co.yk", "co.uk"),
    ("co.ul", "co.uk"),
    ("co.jk", "co.uk"),
    ("cp.uk", "co.uk"),
];

/// The suffix a mistyped suffix most likely stood for, if it is a known typo.
pub(super) fn suffix_typo(suffix: &str) -> Option<&'static str> {
    SUFFIX_TYPOS
        .iter()
        .find(|(typo, _)| *typo == suffix)
        .map(|(_, meant)| *meant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_lowercase_ascii_unique_and_sized() {
        assert!((60..=130).contains(&POPULAR.len()), "{}", POPULAR.len());
        for (i, d) in POPULAR.iter().enumerate() {
            assert!(d.is_ascii() && d.to_ascii_lowercase() == *d, "{d}");
            assert!(!POPULAR[..i].contains(d), "duplicate {d}");
            assert!(!split_suffix(d).1.is_empty(), "{d}");
        }
        for d in MAJOR {
            assert!(is_popular(d));
        }
    }

    #[test]
    fn a_domain_splits_into_its_name_and_public_suffix() {
        assert_eq!(split_suffix("gmail.com"), ("gmail", "com"));
        assert_eq!(split_suffix("yahoo.co.uk"), ("yahoo", "co.uk"));
        assert_eq!(split_suffix("uol.com.br"), ("uol", "com.br"));
        assert_eq!(split_suffix("yahoo.co.u"), ("yahoo", "co.u"));
        assert_eq!(split_suffix("mail.company.com"), ("mail.company", "com"));
        assert_eq!(split_suffix("gmailcom"), ("gmailcom", ""));
        assert_eq!(split_suffix("co.uk"), ("co", "uk"));
        assert_eq!(split_suffix(".co.uk"), (".co", "uk"));
        assert_eq!(split_suffix("a."), ("a", ""));
    }

    #[test]
    fn typo_table_targets_are_real_suffixes() {
        for (typo, meant) in SUFFIX_TYPOS {
            assert_ne!(typo, meant);
            assert!(["com", "net", "org", "co.uk"].contains(meant), "{meant}");
        }
        assert_eq!(suffix_typo("con"), Some("com"));
        assert_eq!(suffix_typo("com"), None);
    }
}
