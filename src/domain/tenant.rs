//! Tenants partition every piece of data; no call ever sees another tenant's records.

use std::fmt;

/// A validated tenant id: `[a-z0-9][a-z0-9_-]{0,63}`; empty input means `default`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

/// Why a string is not a valid tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant must match [a-z0-9][a-z0-9_-]{{0,63}} (got {0:?})")]
pub struct TenantError(pub String);

impl Tenant {
    /// The tenant of requests that name none.
    pub const DEFAULT: &'static str = "default";

    /// Validates a tenant id; empty means [`Tenant::DEFAULT`].
    pub fn parse(input: &str) -> Result<Tenant, TenantError> {
        if input.is_empty() {
            return Ok(Tenant(Self::DEFAULT.to_string()));
        }
        let b = input.as_bytes();
        let first_ok = b[0].is_ascii_lowercase() || b[0].is_ascii_digit();
        let rest_ok = b[1..]
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
        if first_ok && rest_ok && b.len() <= 64 {
            Ok(Tenant(input.to_string()))
        } else {
            let shown: String = input.chars().take(80).collect();
            Err(TenantError(shown))
        }
    }

    /// The tenant id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_default() {
        assert_eq!(Tenant::parse("").unwrap().as_str(), "default");
    }

    #[test]
    fn accepts_and_rejects_by_the_documented_pattern() {
        for ok in ["acme", "a", "0", "acme-eu_1", &"a".repeat(64)] {
            assert!(Tenant::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Acme",
            "-acme",
            "_a",
            "ac me",
            "acme/1",
            "é",
            &"a".repeat(65),
        ] {
            assert!(Tenant::parse(bad).is_err(), "{bad}");
        }
    }
}
