//! Who may call what: a tower layer in front of every service that authenticates each call (a
//! bearer token, or the client certificate of an mTLS connection), checks the role its RPC
//! needs, and hands the caller to the handlers; tenant checks follow in the use cases. Health
//! and reflection stay open so that probes and `grpcurl list` work without credentials.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::Status;

use super::request::{ANONYMOUS, CALLER_ID_HEADER};
use crate::app::Caller;
use crate::auth::Authenticator;
use crate::domain::{Label, Role};

/// The role each RPC needs (`admin` has every role). Every RPC of the contract must be here: a
/// test reads the service descriptors and fails on one that is missing.
pub fn required_role(path: &str) -> Option<Role> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let role = match (service, method) {
        ("suppression.v1.SuppressionService", m) => match m {
            "ReportSendResult" | "ReportSendResults" | "ReportBounceMessage" => Role::Reporter,
            "GetSuppressionStatus"
            | "BatchGetSuppressionStatus"
            | "GetAddressHistory"
            | "ListBounces"
            | "ListSuppressions"
            | "GetSourceStats"
            | "ListSourceStats"
            | "WatchSourceHealth"
            | "SuggestCorrections"
            | "ClassifySmtpResponse"
            | "ParseBounceMessage"
            | "WatchSuppressions"
            | "GetDomainStatus"
            | "ListSuppressedDomains" => Role::Reader,
            "CheckImport" => Role::Importer,
            "Suppress" | "Reactivate" | "ReplaceAddress" | "SuppressDomain"
            | "ReactivateDomain" | "SetDomainPolicy" | "ForgetAddress" | "ImportSuppressions" => {
                Role::Operator
            }
            _ => return None,
        },
        ("suppression.v1.SuppressionAdminService", "Reclassify" | "Backup") => Role::Admin,
        _ => return None,
    };
    Some(role)
}

/// Services open without credentials: health checks and reflection.
pub fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// What the layer needs to authenticate calls. Without an authenticator every caller is
/// trusted (loopback development servers only; `startup` enforces that).
#[derive(Clone)]
pub struct AuthLayer {
    auth: Option<Arc<Authenticator>>,
    /// The caller of an unauthenticated server that names nobody, made once.
    anonymous: Caller,
    /// Whether connections carry verified client certificates (mTLS).
    client_certs: bool,
}

impl AuthLayer {
    /// Authenticates with `auth`, or trusts every caller without it.
    pub fn new(auth: Option<Arc<Authenticator>>, client_certs: bool) -> Self {
        AuthLayer {
            auth,
            anonymous: Caller::trusted(ANONYMOUS),
            client_certs,
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service the layer wraps.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

/// Why a call was refused, as the failure metric labels it.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    MissingCredentials,
    MalformedHeader,
    UnknownToken,
    UnknownCertificate,
    RoleDenied,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::MissingCredentials => "missing_credentials",
            Refusal::MalformedHeader => "malformed_header",
            Refusal::UnknownToken => "unknown_token",
            Refusal::UnknownCertificate => "unknown_certificate",
            Refusal::RoleDenied => "role_denied",
        }
    }
}

fn refuse<B: Default>(reason: Refusal, status: Status) -> http::Response<B> {
    metrics::counter!("suppressd_auth_failures_total", "reason" => reason.label()).increment(1);
    tracing::debug!(
        reason = reason.label(),
        message = status.message(),
        "call refused"
    );
    status.into_http()
}

/// The caller named by the `x-caller-id` header, when it is a valid label.
fn named_caller(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(CALLER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Label::required(v).ok())
}

impl AuthLayer {
    /// The caller of a request, or the answer that refuses it.
    fn caller<B: Default, T>(&self, req: &http::Request<T>) -> Result<Caller, http::Response<B>> {
        let named = named_caller(req.headers());
        let Some(auth) = &self.auth else {
            return Ok(named.map_or_else(|| self.anonymous.clone(), Caller::trusted));
        };
        let principals = auth.principals();
        if let Some(header) = req.headers().get(http::header::AUTHORIZATION) {
            let token = header
                .to_str()
                .ok()
                .and_then(|h| {
                    let (scheme, token) = h.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .filter(|t| !t.is_empty());
            let Some(token) = token else {
                return Err(refuse(
                    Refusal::MalformedHeader,
                    Status::unauthenticated("the authorization header must be `Bearer <token>`"),
                ));
            };
            return match principals.by_token(token) {
                Some(principal) => Ok(Caller::authenticated(principal, named)),
                None => Err(refuse(
                    Refusal::UnknownToken,
                    Status::unauthenticated("the bearer token is not known to this server"),
                )),
            };
        }
        if self.client_certs {
            if let Some(peer) = req.extensions().get::<crate::tls::PeerIdentity>() {
                return match principals.by_subject(|subject| peer.matches(subject)) {
                    Some(principal) => Ok(Caller::authenticated(principal, named)),
                    None => Err(refuse(
                        Refusal::UnknownCertificate,
                        Status::unauthenticated(
                            "the client certificate names no principal of this server",
                        ),
                    )),
                };
            }
        }
        let expected = if self.client_certs {
            "send `authorization: Bearer <token>` or present a client certificate that names a principal"
        } else {
            "send `authorization: Bearer <token>`"
        };
        Err(refuse(
            Refusal::MissingCredentials,
            Status::unauthenticated(format!("this call needs credentials: {expected}")),
        ))
    }
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if is_open(path) {
            return Box::pin(self.inner.call(req));
        }
        let role = required_role(path);
        let caller = match self.layer.caller(&req) {
            Ok(c) => c,
            Err(refused) => return Box::pin(std::future::ready(Ok(refused))),
        };
        if let Some(role) = role {
            if let Err(e) = caller.require(role) {
                let status = Status::from(e);
                return Box::pin(std::future::ready(Ok(refuse(Refusal::RoleDenied, status))));
            }
        }
        tracing::Span::current().record("principal", caller.actor());
        req.extensions_mut().insert(caller);
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every RPC of the contract, as `/package.Service/Method`, read from the descriptors the
    /// server serves by reflection.
    fn every_rpc() -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(super::super::proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let mut out = Vec::new();
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    out.push(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
        out
    }

    #[test]
    fn every_rpc_of_the_contract_needs_a_role() {
        let rpcs = every_rpc();
        assert!(rpcs.len() >= 17, "{rpcs:?}");
        let missing: Vec<&String> = rpcs.iter().filter(|p| required_role(p).is_none()).collect();
        assert!(missing.is_empty(), "RPCs without a role: {missing:?}");
        assert!(rpcs.iter().all(|p| !is_open(p)), "no RPC of ours is open");
    }

    #[test]
    fn roles_follow_the_table() {
        let role = |m: &str| required_role(&format!("/suppression.v1.SuppressionService/{m}"));
        assert_eq!(role("ReportSendResults"), Some(Role::Reporter));
        assert_eq!(role("GetSuppressionStatus"), Some(Role::Reader));
        assert_eq!(role("CheckImport"), Some(Role::Importer));
        assert_eq!(role("Reactivate"), Some(Role::Operator));
        assert_eq!(
            required_role("/suppression.v1.SuppressionAdminService/Reclassify"),
            Some(Role::Admin)
        );
        assert_eq!(role("NoSuchCall"), None);
        assert!(is_open("/grpc.health.v1.Health/Check"));
        assert!(is_open(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
    }
}
