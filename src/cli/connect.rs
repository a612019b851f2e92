//! The connection to a server: `--addr` as `host:port` or a URL, TLS and mTLS, the bearer
//! token and the tenant.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::grpc::proto::suppression_admin_service_client::SuppressionAdminServiceClient;
use crate::grpc::proto::suppression_service_client::SuppressionServiceClient;

/// How a client command reaches the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Server: `host:port`, or a URL (`http://…`, `https://…`). `host:port` is reached over
    /// TLS when `--tls-ca` is given, in plaintext otherwise.
    #[arg(long, env = "SUPPRESSD_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// The tenant; empty means "default".
    #[arg(long, env = "SUPPRESSD_TENANT", default_value = "")]
    pub tenant: String,
    /// Bearer token, for a server with an auth file.
    #[arg(long, env = "SUPPRESSD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM bundle of the CA(s) the server's certificate must chain to; turns TLS on.
    #[arg(long, env = "SUPPRESSD_CLIENT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a server that requires one (mTLS); needs `--tls-key`.
    #[arg(long, env = "SUPPRESSD_CLIENT_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SUPPRESSD_CLIENT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry, when it is not the host of `--addr`.
    #[arg(long, env = "SUPPRESSD_CLIENT_TLS_SERVER_NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
}

/// The TLS flags of a client command.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFlags<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub server_name: Option<&'a str>,
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The suppression service's client as the commands use it.
pub type Client = SuppressionServiceClient<InterceptedService<Channel, BearerToken>>;

/// The admin service's client as the commands use it.
pub type AdminClient = SuppressionAdminServiceClient<InterceptedService<Channel, BearerToken>>;

impl ClientArgs {
    fn tls(&self) -> TlsFlags<'_> {
        TlsFlags {
            ca: self.tls_ca.as_deref(),
            cert: self.tls_cert.as_deref(),
            key: self.tls_key.as_deref(),
            server_name: self.tls_server_name.as_deref(),
        }
    }

    /// A connected client of the admin service.
    pub async fn connect_admin(&self) -> anyhow::Result<AdminClient> {
        let (channel, token) = self.channel().await?;
        Ok(
            SuppressionAdminServiceClient::with_interceptor(channel, token)
                .max_decoding_message_size(64 * 1024 * 1024),
        )
    }

    /// A connected client.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let (channel, token) = self.channel().await?;
        Ok(SuppressionServiceClient::with_interceptor(channel, token)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024))
    }

    /// A connection, and the interceptor that adds the bearer token.
    async fn channel(&self) -> anyhow::Result<(Channel, BearerToken)> {
        let token = match &self.token {
            Some(token) => Some(
                format!("Bearer {}", token.trim())
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| super::usage("--token holds characters a header cannot carry"))?,
            ),
            None => None,
        };
        let channel = endpoint(&self.addr, self.tls())?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        Ok((channel, BearerToken(token)))
    }
}

/// The endpoint `addr` names: `host:port` gets `https://` with a CA, `http://` without; a URL
/// is taken as written, and its scheme must agree with the CA flag.
pub fn endpoint(addr: &str, tls: TlsFlags<'_>) -> anyhow::Result<Endpoint> {
    let url = endpoint_url(addr, tls.ca.is_some());
    let endpoint = Endpoint::from_shared(url.clone()).map_err(|_| {
        super::usage(format!(
            "--addr {addr:?} is neither host:port nor a URL (http://host:port, https://host:port)"
        ))
    })?;
    let Some(ca) = tls.ca else {
        if url.starts_with("https://") {
            return Err(super::usage(format!(
                "--addr {url} asks for TLS: give --tls-ca with the CA that signed the server's certificate"
            )));
        }
        return Ok(endpoint);
    };
    if url.starts_with("http://") {
        return Err(super::usage(format!(
            "--addr {url} is plaintext but --tls-ca asks for TLS: write https://, or host:port"
        )));
    }
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(
        read_pem_certificates(ca, "--tls-ca")?,
    ));
    if let (Some(cert), Some(key)) = (tls.cert, tls.key) {
        let cert = read_pem_certificates(cert, "--tls-cert")?;
        let key_pem = std::fs::read(key)
            .with_context(|| format!("cannot read --tls-key {}", key.display()))?;
        PrivateKeyDer::from_pem_slice(&key_pem).with_context(|| {
            format!(
                "--tls-key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                key.display()
            )
        })?;
        config = config.identity(Identity::from_pem(cert, key_pem));
    }
    if let Some(name) = tls.server_name {
        config = config.domain_name(name);
    }
    endpoint
        .tls_config(config)
        .context("cannot set up TLS for the connection")
}

/// `host:port` becomes a URL; anything with a scheme is left as it is.
fn endpoint_url(addr: &str, tls: bool) -> String {
    let addr = addr.trim();
    if addr.contains("://") {
        addr.to_string()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// The file's bytes, once checked to hold at least one PEM certificate.
fn read_pem_certificates(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{flag} {} is not valid PEM", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!(
            "{flag} {} holds no certificate (expected a \"BEGIN CERTIFICATE\" PEM block)",
            path.display()
        );
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_becomes_a_url_of_the_scheme_tls_asks_for() {
        assert_eq!(
            endpoint_url("127.0.0.1:50051", false),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            endpoint_url("127.0.0.1:50051", true),
            "https://127.0.0.1:50051"
        );
        assert_eq!(endpoint_url("[::1]:50051", true), "https://[::1]:50051");
        assert_eq!(
            endpoint_url("http://localhost:50051", true),
            "http://localhost:50051"
        );
    }
}
