//! Opaque page tokens: the store's cursor, bound to the tenant and the filters of the request
//! that produced it, signed so a tampered or foreign token is refused.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::FieldViolation;

const TOKEN_VERSION: u8 = 1;

/// The request a page token is bound to, written canonically: the RPC, then each filter as
/// `name=length:value`, so that no two different requests write the same scope (a value
/// holding a separator cannot pass for two fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    /// The scope of a listing RPC, before its filters.
    pub fn new(rpc: &str) -> Scope {
        Scope(rpc.to_string())
    }

    /// Adds a filter; an absent one is written as empty.
    pub fn with(mut self, name: &str, value: impl std::fmt::Display) -> Scope {
        let value = value.to_string();
        self.0.push('|');
        self.0.push_str(name);
        self.0.push('=');
        self.0.push_str(&value.len().to_string());
        self.0.push(':');
        self.0.push_str(&value);
        self
    }

    /// Adds an optional filter (absent and empty are told apart).
    pub fn with_optional(self, name: &str, value: Option<impl std::fmt::Display>) -> Scope {
        match value {
            Some(v) => self.with(name, format_args!("+{v}")),
            None => self.with(name, "-"),
        }
    }

    /// Adds a list of values, in the order given.
    pub fn with_list<T: std::fmt::Display>(mut self, name: &str, values: &[T]) -> Scope {
        self = self.with(&format!("{name}#"), values.len());
        for v in values {
            self = self.with(name, v);
        }
        self
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}
const MAC_LEN: usize = 16;

/// Issues and checks page tokens with a key kept in the store.
#[derive(Clone)]
pub struct PageTokens {
    /// HMAC key: from the store, so tokens survive restarts. Read at each use: a store that
    /// reaches its database after start (postgres) knows it only from then on.
    secret: std::sync::Arc<dyn Fn() -> [u8; 32] + Send + Sync>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens")
    }
}

impl PageTokens {
    /// Tokens signed with `secret`.
    #[cfg(test)]
    pub fn new(secret: [u8; 32]) -> Self {
        Self::from_source(move || secret)
    }

    /// Tokens signed with the secret that `secret` gives at each use.
    pub fn from_source(secret: impl Fn() -> [u8; 32] + Send + Sync + 'static) -> Self {
        PageTokens {
            secret: std::sync::Arc::new(secret),
        }
    }

    fn mac(&self, scope: &Scope, cursor: &[u8]) -> [u8; MAC_LEN] {
        let scope = scope.as_str();
        let mut mac = match Hmac::<Sha256>::new_from_slice(&(self.secret)()) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(&[TOKEN_VERSION]);
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope.as_bytes());
        mac.update(cursor);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// A token for `cursor`, valid only for requests with the same `scope` (RPC, tenant and
    /// filters).
    pub fn issue(&self, scope: &Scope, cursor: &[u8]) -> String {
        let mut raw = Vec::with_capacity(1 + cursor.len() + MAC_LEN);
        raw.push(TOKEN_VERSION);
        raw.extend_from_slice(cursor);
        raw.extend_from_slice(&self.mac(scope, cursor));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The cursor of a token; `None` for an empty token (first page).
    pub fn check(&self, scope: &Scope, token: &str) -> Result<Option<Vec<u8>>, FieldViolation> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = || {
            FieldViolation::new(
                "page_token",
                "is not valid for this request (tampered, or issued for another tenant or other filters)",
            )
        };
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        if raw.len() < 1 + MAC_LEN || raw[0] != TOKEN_VERSION {
            return Err(bad());
        }
        let (body, mac) = raw.split_at(raw.len() - MAC_LEN);
        let cursor = &body[1..];
        let expected = self.mac(scope, cursor);
        // Constant-time comparison via the hmac crate would need the full tag; these tags
        // protect integrity, not secrets, so a plain comparison is enough.
        if expected.as_slice() != mac {
            return Err(bad());
        }
        Ok(Some(cursor.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(tenant: &str, source: &str) -> Scope {
        Scope::new("ListBounces")
            .with("tenant", tenant)
            .with("source", source)
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering_and_other_scopes() {
        let t = PageTokens::new([7; 32]);
        let token = t.issue(&scope("acme", "src"), b"cursor-bytes");
        assert_eq!(
            t.check(&scope("acme", "src"), &token).unwrap(),
            Some(b"cursor-bytes".to_vec())
        );
        assert!(t.check(&scope("other", "src"), &token).is_err());
        let mut tampered = token.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        assert!(t
            .check(
                &scope("acme", "src"),
                std::str::from_utf8(&tampered).unwrap()
            )
            .is_err());
        assert!(t.check(&scope("acme", "src"), "not base64!").is_err());
        assert!(PageTokens::new([8; 32])
            .check(&scope("acme", "src"), &token)
            .is_err());
        assert_eq!(t.check(&Scope::new("x"), "").unwrap(), None);
    }

    #[test]
    fn a_value_holding_separators_cannot_pass_for_other_filters() {
        assert_ne!(scope("a|source=1:b", ""), scope("a", "b"));
        assert_ne!(
            Scope::new("L").with_optional("source", None::<&str>),
            Scope::new("L").with_optional("source", Some("")),
        );
        assert_ne!(
            Scope::new("L").with_list("reasons", &["a", "b"]),
            Scope::new("L")
                .with_list("reasons", &["a"])
                .with_list("reasons", &["b"]),
        );
    }
}
