//! Authentication: the principals of the auth file (`--auth-file`), found by the bearer token a
//! caller sends or by the client certificate it presented, and re-read when the file changes
//! or on SIGHUP so that a revoked token stops working without a restart.
//!
//! The file is TOML:
//!
//! ```toml
//! [[principal]]
//! name = "crm-sync"             # recorded as the actor in history
//! token_sha256 = "9f86d0...0a08" # hex SHA-256 of the bearer token; never the token itself
//! tenants = ["acme", "globex"]   # or ["*"]
//! roles = ["importer", "reader"]
//!
//! [[principal]]
//! name = "mta-eu"
//! client_cert_subject = "CN=mta-eu.internal" # matched against a verified client certificate
//! tenants = ["*"]
//! roles = ["reporter"]
//! ```

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context;
use arc_swap::ArcSwap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use toml::Spanned;

use crate::domain::{Label, Principal, Role, Tenant, TenantScope};

/// The hex SHA-256 of a token, as the auth file keeps it.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFileToml {
    #[serde(default)]
    principal: Vec<Spanned<PrincipalToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalToml {
    name: Spanned<String>,
    token_sha256: Option<Spanned<String>>,
    client_cert_subject: Option<Spanned<String>>,
    tenants: Spanned<Vec<String>>,
    roles: Spanned<Vec<String>>,
}

/// The principals of one reading of the auth file.
#[derive(Debug, Default)]
pub struct Principals {
    /// Token hashes and their principals.
    by_token: Vec<([u8; 32], Arc<Principal>)>,
    /// Certificate subjects and their principals.
    by_subject: Vec<(String, Arc<Principal>)>,
}

/// Line number (from 1) of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

impl Principals {
    /// Parses an auth file; an error names the line and what is wrong there.
    pub fn parse(text: &str) -> Result<Principals, String> {
        let doc: AuthFileToml = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            format!("{line}{}", e.message())
        })?;
        let mut principals = Principals::default();
        let mut names = HashSet::new();
        for entry in doc.principal {
            let at = |span: std::ops::Range<usize>| line_of(text, span.start);
            let entry_line = at(entry.span());
            let p = entry.into_inner();
            let err = |span: std::ops::Range<usize>, what: String| {
                Err(format!("line {}: {what}", at(span)))
            };
            let name = match Label::required(p.name.get_ref()) {
                Ok(n) => n,
                Err(e) => return err(p.name.span(), format!("name {e}")),
            };
            if !names.insert(name.clone()) {
                return err(
                    p.name.span(),
                    format!("principal {name:?} is defined twice"),
                );
            }
            let tenants = p.tenants.get_ref();
            let scope = if tenants.is_empty() {
                return err(p.tenants.span(), format!("{name}: tenants is empty"));
            } else if tenants.iter().any(|t| t == "*") {
                if tenants.len() > 1 {
                    return err(
                        p.tenants.span(),
                        format!("{name}: \"*\" (every tenant) stands alone in tenants"),
                    );
                }
                TenantScope::All
            } else {
                let mut set = BTreeSet::new();
                for t in tenants {
                    match Tenant::parse(t) {
                        Ok(t) => {
                            set.insert(t);
                        }
                        Err(e) => {
                            return err(p.tenants.span(), format!("{name}: tenant {t:?} {e}"))
                        }
                    }
                }
                TenantScope::Only(set)
            };
            if p.roles.get_ref().is_empty() {
                return err(p.roles.span(), format!("{name}: roles is empty"));
            }
            let mut roles = BTreeSet::new();
            for r in p.roles.get_ref() {
                match Role::parse(r) {
                    Some(role) => {
                        roles.insert(role);
                    }
                    None => {
                        let known: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
                        return err(
                            p.roles.span(),
                            format!("{name}: unknown role {r:?} (known: {})", known.join(", ")),
                        );
                    }
                }
            }
            let principal = Arc::new(Principal::new(name.clone(), scope, roles));
            if p.token_sha256.is_none() && p.client_cert_subject.is_none() {
                return Err(format!(
                    "line {entry_line}: {name} has neither token_sha256 nor client_cert_subject"
                ));
            }
            if let Some(hash) = &p.token_sha256 {
                let bytes: [u8; 32] = match hex::decode(hash.get_ref().trim()) {
                    Ok(b) => match b.try_into() {
                        Ok(b) => b,
                        Err(_) => {
                            return err(
                                hash.span(),
                                format!("{name}: token_sha256 must be 64 hex digits"),
                            )
                        }
                    },
                    Err(e) => {
                        return err(hash.span(), format!("{name}: token_sha256 is not hex: {e}"))
                    }
                };
                if principals.by_token.iter().any(|(h, _)| *h == bytes) {
                    return err(
                        hash.span(),
                        format!("{name}: the same token is given to another principal"),
                    );
                }
                principals.by_token.push((bytes, principal.clone()));
            }
            if let Some(subject) = &p.client_cert_subject {
                let s = subject.get_ref().trim();
                if s.is_empty() {
                    return err(
                        subject.span(),
                        format!("{name}: client_cert_subject is empty"),
                    );
                }
                if principals
                    .by_subject
                    .iter()
                    .any(|(other, _)| other.eq_ignore_ascii_case(s))
                {
                    return err(
                        subject.span(),
                        format!("{name}: client_cert_subject {s:?} is given to another principal"),
                    );
                }
                principals.by_subject.push((s.to_string(), principal));
            }
        }
        Ok(principals)
    }

    /// The principal of a bearer token. Every known hash is compared, in constant time, so
    /// the answer takes as long whichever principal (if any) holds the token.
    pub fn by_token(&self, token: &str) -> Option<Arc<Principal>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (hash, principal) in &self.by_token {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(principal);
            }
        }
        found.cloned()
    }

    /// The principal whose certificate subject `names_peer` accepts.
    pub fn by_subject(&self, names_peer: impl Fn(&str) -> bool) -> Option<Arc<Principal>> {
        self.by_subject
            .iter()
            .find(|(subject, _)| names_peer(subject))
            .map(|(_, p)| p.clone())
    }

    /// Number of principals with a token.
    pub fn tokens(&self) -> usize {
        self.by_token.len()
    }
}

/// The principals in force, from an auth file that is re-read when it changes.
pub struct Authenticator {
    path: PathBuf,
    current: ArcSwap<Principals>,
    /// Modification time and length of the file as last read, to see it change.
    seen: Mutex<Option<(SystemTime, u64)>>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Authenticator {
    /// Reads the auth file; an error names the file and the line.
    pub fn load(path: &Path) -> anyhow::Result<Authenticator> {
        let seen = stamp(path);
        let principals = read(path)?;
        Ok(Authenticator {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(principals),
            seen: Mutex::new(seen),
        })
    }

    /// Reads the file again. On error the principals in force stay, and the error is
    /// returned (and logged by the caller).
    pub fn reload(&self) -> anyhow::Result<()> {
        let seen = stamp(&self.path);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        let principals = read(&self.path)?;
        tracing::info!(
            path = %self.path.display(),
            with_tokens = principals.tokens(),
            "auth file read"
        );
        self.current.store(Arc::new(principals));
        Ok(())
    }

    /// Reads the file again if it changed since it was last read; a failed reading is logged
    /// and keeps the principals in force.
    pub fn reload_if_changed(&self) {
        let now = stamp(&self.path);
        let changed = *self.seen.lock().unwrap_or_else(|e| e.into_inner()) != now;
        if changed {
            if let Err(e) = self.reload() {
                tracing::error!(error = %format!("{e:#}"), "auth file not reloaded; the previous principals stay");
            }
        }
    }

    /// The principals in force.
    pub fn principals(&self) -> arc_swap::Guard<Arc<Principals>> {
        self.current.load()
    }
}

fn read(path: &Path) -> anyhow::Result<Principals> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the auth file {}", path.display()))?;
    Principals::parse(&text).map_err(|e| anyhow::anyhow!("auth file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
