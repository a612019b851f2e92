//! TLS and mTLS for the server: a reloadable acceptor whose handshakes run beside each other,
//! and the identity of the verified client certificate carried into every request.
//!
//! tonic's own `ServerTlsConfig` is fixed for the life of the server; certificates here are
//! re-read on demand ([`TlsAcceptor::reload`], called on SIGHUP), and each connection keeps the
//! configuration that was current when it was accepted, so a rotation never cuts a connection.
//! [`TlsAcceptor::incoming`] feeds `Server::serve_with_incoming_shutdown`; tonic then puts the
//! connection's [`PeerIdentity`] into the extensions of every request on it.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// How long a client may take to finish its handshake before the connection is dropped; a
/// client that opens a socket and says nothing must not hold resources for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; further connections wait in the listen backlog, so a
/// flood of slow clients costs bounded memory.
const MAX_PENDING_HANDSHAKES: usize = 1024;
/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;
/// Pause after an accept error that is not about one connection (out of file descriptors, say),
/// so that the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The PEM files the server's TLS configuration is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to; `Some` makes them required (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// Accepts TLS connections with the current configuration. Cheap to clone; clones share the
/// configuration, so a [`reload`](TlsAcceptor::reload) through one is seen by all.
#[derive(Clone)]
pub struct TlsAcceptor {
    shared: Arc<Shared>,
}

struct Shared {
    /// Where the configuration is re-read from on reload.
    files: TlsFiles,
    /// The configuration new connections get; replaced whole by a successful reload.
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("files", &self.shared.files)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Reads and checks the files; the error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> anyhow::Result<TlsAcceptor> {
        let config = server_config(&files)?;
        Ok(TlsAcceptor {
            shared: Arc::new(Shared {
                files,
                current: RwLock::new(config),
            }),
        })
    }

    /// Re-reads the files (certificate rotation). On error the previous configuration stays
    /// and the error is returned. Connections already open keep the configuration they were
    /// accepted with.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.shared.files)?;
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// True when client certificates are required (a client CA was given).
    pub fn requires_client_certs(&self) -> bool {
        self.shared.files.client_ca.is_some()
    }

    /// The files the configuration is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.shared.files
    }

    fn current(&self) -> Arc<ServerConfig> {
        self.shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Accepts connections from `listener` and performs handshakes concurrently: a slow or
    /// failing handshake never blocks others; failures are logged at debug and skipped, so the
    /// stream only yields connections that completed their handshake. Each connection uses the
    /// configuration current when it was accepted. Accepted sockets get `TCP_NODELAY`.
    ///
    /// Must be called within a Tokio runtime (it spawns the accept loop). The loop, and with it
    /// the listener, ends when the stream is dropped (the server stopped).
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> impl futures_core::Stream<Item = Result<TlsConnection, io::Error>> + Send + 'static {
        let (ready, taken) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(self.clone(), listener, ready));
        tokio_stream::wrappers::ReceiverStream::new(taken)
    }
}

/// Accepts until the receiving stream is dropped; one task per handshake.
async fn accept_loop(
    acceptor: TlsAcceptor,
    listener: TcpListener,
    ready: mpsc::Sender<io::Result<TlsConnection>>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = ready.closed() => return,
            permit = pending.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (tcp, remote) = tokio::select! {
            _ = ready.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
        }
        let config = acceptor.current();
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            drop(permit);
            let peer = PeerIdentity::of_session(Some(remote), stream.get_ref().1);
            // An error means the server stopped; the connection is dropped with it.
            let _ = ready.send(Ok(TlsConnection { stream, peer })).await;
        });
    }
}

/// Errors that concern one connection only (it was reset before we took it); the next accept
/// works at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Builds a server configuration from the files; every error names the file at fault.
fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = crypto_provider();
    let certs = read_certificates(&files.cert, "TLS certificate")?;
    let key = read_private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("the TLS library refuses its default protocol versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "the private key {} does not go with the certificate {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// rustls on *ring*, the provider of tonic's `tls-ring` client too. rustls 0.23.48 deprecates
/// it for lacking post-quantum key exchange; the provider that has it (aws-lc-rs) needs a C and
/// CMake build. Switching is this function and the Cargo features.
#[allow(deprecated)]
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

fn read_certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the {what} {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!(
            "the {what} {} holds no certificate (expected a \"BEGIN CERTIFICATE\" PEM block)",
            path.display()
        );
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_pem_file(path, "TLS private key")?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => bail!(
            "the TLS private key {} holds no private key (expected a PKCS#8, PKCS#1 or SEC1 PEM block)",
            path.display()
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "the TLS private key {} is not valid PEM",
            path.display()
        ))),
    }
}

fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for (n, cert) in read_certificates(path, "client CA bundle")?
        .into_iter()
        .enumerate()
    {
        roots.add(cert).with_context(|| {
            format!(
                "certificate {} of the client CA bundle {} is not a usable CA certificate",
                n + 1,
                path.display()
            )
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .with_context(|| format!("cannot use the client CA bundle {}", path.display()))
}

/// A TLS server connection whose handshake is complete. tonic serves it like a TCP stream and
/// puts its [`PeerIdentity`] into every request's extensions.
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    /// Read once at the handshake; handed to every request on the connection.
    peer: PeerIdentity,
}

impl TlsConnection {
    /// Who is at the other end.
    pub fn peer_identity(&self) -> &PeerIdentity {
        &self.peer
    }
}

impl std::fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        self.peer.clone()
    }
}

/// Who is at the other end of a TLS connection: in every request's extensions
/// (`request.extensions().get::<PeerIdentity>()`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// Subject common name of the verified client certificate, if any.
    pub subject_cn: Option<String>,
    /// DNS subject alternative names of the verified client certificate.
    pub dns_names: Vec<String>,
}

impl PeerIdentity {
    /// The names of the client certificate of a completed handshake. rustls only hands out
    /// peer certificates that its verifier accepted, and only asks for them with a client CA.
    fn of_session(remote_addr: Option<SocketAddr>, session: &rustls::ServerConnection) -> Self {
        let mut peer = PeerIdentity {
            remote_addr,
            ..PeerIdentity::default()
        };
        let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) else {
            return peer;
        };
        let cert = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
            Ok((_, cert)) => cert,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the names of a client certificate");
                return peer;
            }
        };
        peer.subject_cn = cert
            .subject()
            .iter_common_name()
            .find_map(|cn| cn.as_str().ok())
            .map(str::to_string);
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            peer.dns_names = san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                    _ => None,
                })
                .collect();
        }
        peer
    }

    /// Whether a principal's `client_cert_subject` ("CN=mta-eu.internal", or a bare DNS name
    /// "mta-eu.internal") names this peer: the CN, or any DNS SAN, compared ASCII
    /// case-insensitively. Wildcard names are compared as written, never expanded; an empty
    /// subject names nobody.
    pub fn matches(&self, subject: &str) -> bool {
        let subject = subject.trim();
        let name = match subject.get(..3) {
            Some(prefix) if prefix.eq_ignore_ascii_case("CN=") => subject[3..].trim(),
            _ => subject,
        };
        if name.is_empty() {
            return false;
        }
        self.subject_cn
            .as_deref()
            .is_some_and(|cn| cn.eq_ignore_ascii_case(name))
            || self.dns_names.iter().any(|d| d.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use tempfile::TempDir;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server};
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::health_server::{Health, HealthServer};
    use tonic_health::pb::HealthCheckResponse;
    use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

    /// A certificate authority made for one test.
    struct TestCa {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
    }

    impl TestCa {
        fn new(name: &str) -> TestCa {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let key = KeyPair::generate().unwrap();
            let pem = params.self_signed(&key).unwrap().pem();
            TestCa {
                issuer: Issuer::new(params, key),
                pem,
            }
        }

        /// A leaf certificate and its key, as PEM.
        fn leaf(&self, cn: &str, names: &[&str]) -> (String, String) {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        }

        fn server_leaf(&self) -> (String, String) {
            self.leaf("suppressd.test", &["localhost", "127.0.0.1"])
        }
    }

    /// PEM files in a temporary directory, as the server reads them.
    struct ServerFiles {
        dir: TempDir,
        files: TlsFiles,
    }

    impl ServerFiles {
        fn write(ca: &TestCa, client_ca: Option<&TestCa>) -> ServerFiles {
            let dir = tempfile::tempdir().unwrap();
            let files = TlsFiles {
                cert: dir.path().join("server.pem"),
                key: dir.path().join("server.key"),
                client_ca: client_ca.map(|_| dir.path().join("clients.pem")),
            };
            let this = ServerFiles { dir, files };
            this.rotate(ca, client_ca);
            this
        }

        /// Writes a fresh server certificate from `ca` (and the client CA) over the files.
        fn rotate(&self, ca: &TestCa, client_ca: Option<&TestCa>) {
            let (cert, key) = ca.server_leaf();
            fs::write(&self.files.cert, cert).unwrap();
            fs::write(&self.files.key, key).unwrap();
            if let (Some(path), Some(client_ca)) = (&self.files.client_ca, client_ca) {
                fs::write(path, &client_ca.pem).unwrap();
            }
        }
    }

    /// A health service that records the peer identity of the last request.
    #[derive(Default, Clone)]
    struct RecordingHealth {
        seen: Arc<std::sync::Mutex<Option<PeerIdentity>>>,
    }

    #[tonic::async_trait]
    impl Health for RecordingHealth {
        async fn check(
            &self,
            request: tonic::Request<HealthCheckRequest>,
        ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
            *self.seen.lock().unwrap() = request.extensions().get::<PeerIdentity>().cloned();
            Ok(tonic::Response::new(HealthCheckResponse {
                status: ServingStatus::Serving as i32,
            }))
        }

        type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, tonic::Status>>;

        async fn watch(
            &self,
            _request: tonic::Request<HealthCheckRequest>,
        ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this test"))
        }
    }

    /// A server on 127.0.0.1:0 serving the recording health service over `acceptor`.
    struct TestServer {
        addr: SocketAddr,
        health: RecordingHealth,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
    }

    impl TestServer {
        async fn start(acceptor: &TlsAcceptor) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let health = RecordingHealth::default();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let incoming = acceptor.incoming(listener);
            let service = HealthServer::new(health.clone());
            tokio::spawn(async move {
                Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
            TestServer {
                addr,
                health,
                stop: Some(stop),
            }
        }

        fn seen_peer(&self) -> Option<PeerIdentity> {
            self.health.seen.lock().unwrap().clone()
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    /// Calls Check over TLS trusting `ca`, with an optional client identity (cert, key PEM).
    async fn check_over_tls(
        addr: SocketAddr,
        ca: &str,
        identity: Option<&(String, String)>,
    ) -> Result<ServingStatus, String> {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let channel = Channel::from_shared(format!("https://localhost:{}", addr.port()))
            .unwrap()
            .tls_config(tls)
            .map_err(|e| format!("{e:?}"))?
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        check(channel).await
    }

    async fn check(channel: Channel) -> Result<ServingStatus, String> {
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(|r| r.into_inner().status())
            .map_err(|e| format!("call: {e:?}"))
    }

    /// The DER of the certificate the server presents to a new connection.
    async fn presented_certificate(addr: SocketAddr, ca: &str) -> CertificateDer<'static> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        stream.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    fn first_cert(pem_path: &Path) -> CertificateDer<'static> {
        CertificateDer::pem_file_iter(pem_path)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_client_that_trusts_the_ca_gets_answers() {
        let ca = TestCa::new("server ca");
        let files = ServerFiles::write(&ca, None);
        let acceptor = TlsAcceptor::load(files.files.clone()).unwrap();
        assert!(!acceptor.requires_client_certs());
        let server = TestServer::start(&acceptor).await;

        let status = check_over_tls(server.addr, &ca.pem, None).await.unwrap();

        assert_eq!(status, ServingStatus::Serving);
        let peer = server
            .seen_peer()
            .expect("the request carries a PeerIdentity");
        assert_eq!(peer.remote_addr.map(|a| a.ip()), Some(server.addr.ip()));
        assert_eq!(peer.subject_cn, None);
        assert!(peer.dns_names.is_empty());
    }

    #[tokio::test]
    async fn plaintext_to_the_tls_port_fails() {
        let ca = TestCa::new("server ca");
        let files = ServerFiles::write(&ca, None);
        let acceptor = TlsAcceptor::load(files.files.clone()).unwrap();
        let server = TestServer::start(&acceptor).await;

        let result = async {
            let channel = Channel::from_shared(format!("http://{}", server.addr))
                .unwrap()
                .timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| format!("connect: {e:?}"))?;
            check(channel).await
        }
        .await;

        assert!(result.is_err(), "plaintext got {result:?}");
    }

    #[tokio::test]
    async fn a_client_that_does_not_trust_the_server_ca_is_refused() {
        let ca = TestCa::new("server ca");
        let other = TestCa::new("other ca");
        let files = ServerFiles::write(&ca, None);
        let server = TestServer::start(&TlsAcceptor::load(files.files.clone()).unwrap()).await;

        let result = check_over_tls(server.addr, &other.pem, None).await;

        assert!(result.is_err(), "got {result:?}");
    }

    #[tokio::test]
    async fn with_a_client_ca_a_client_without_a_certificate_fails_the_handshake() {
        let ca = TestCa::new("server ca");
        let clients = TestCa::new("client ca");
        let files = ServerFiles::write(&ca, Some(&clients));
        let acceptor = TlsAcceptor::load(files.files.clone()).unwrap();
        assert!(acceptor.requires_client_certs());
        let server = TestServer::start(&acceptor).await;

        let result = check_over_tls(server.addr, &ca.pem, None).await;

        assert!(result.is_err(), "got {result:?}");
        assert_eq!(server.seen_peer(), None);
    }

    #[tokio::test]
    async fn with_a_client_ca_a_certificate_from_another_ca_fails_the_handshake() {
        let ca = TestCa::new("server ca");
        let clients = TestCa::new("client ca");
        let stranger = TestCa::new("stranger ca");
        let files = ServerFiles::write(&ca, Some(&clients));
        let server = TestServer::start(&TlsAcceptor::load(files.files.clone()).unwrap()).await;
        let identity = stranger.leaf("mta-eu.internal", &["mta-eu.internal"]);

        let result = check_over_tls(server.addr, &ca.pem, Some(&identity)).await;

        assert!(result.is_err(), "got {result:?}");
        assert_eq!(server.seen_peer(), None);
    }

    #[tokio::test]
    async fn with_a_client_ca_a_good_certificate_works_and_its_names_reach_the_request() {
        let ca = TestCa::new("server ca");
        let clients = TestCa::new("client ca");
        let files = ServerFiles::write(&ca, Some(&clients));
        let server = TestServer::start(&TlsAcceptor::load(files.files.clone()).unwrap()).await;
        let identity = clients.leaf("mta-eu.internal", &["mta-eu.internal", "mta.example.net"]);

        let status = check_over_tls(server.addr, &ca.pem, Some(&identity))
            .await
            .unwrap();

        assert_eq!(status, ServingStatus::Serving);
        let peer = server
            .seen_peer()
            .expect("the request carries a PeerIdentity");
        assert_eq!(peer.subject_cn.as_deref(), Some("mta-eu.internal"));
        assert_eq!(peer.dns_names, ["mta-eu.internal", "mta.example.net"]);
        assert!(peer.remote_addr.is_some());
        assert!(peer.matches("CN=mta-eu.internal"));
        assert!(peer.matches("MTA.example.net"));
        assert!(!peer.matches("CN=mta-us.internal"));
    }

    #[tokio::test]
    async fn after_a_reload_new_connections_get_the_new_certificate() {
        let ca = TestCa::new("server ca");
        let files = ServerFiles::write(&ca, None);
        let acceptor = TlsAcceptor::load(files.files.clone()).unwrap();
        let server = TestServer::start(&acceptor).await;
        let before = presented_certificate(server.addr, &ca.pem).await;
        assert_eq!(before, first_cert(&files.files.cert));

        let new_ca = TestCa::new("next server ca");
        files.rotate(&new_ca, None);
        acceptor.reload().unwrap();

        let after = presented_certificate(server.addr, &new_ca.pem).await;
        assert_eq!(after, first_cert(&files.files.cert));
        assert_ne!(after, before);
        assert_eq!(
            check_over_tls(server.addr, &new_ca.pem, None).await,
            Ok(ServingStatus::Serving)
        );
    }

    #[tokio::test]
    async fn a_failed_reload_keeps_the_previous_certificate() {
        let ca = TestCa::new("server ca");
        let files = ServerFiles::write(&ca, None);
        let acceptor = TlsAcceptor::load(files.files.clone()).unwrap();
        let server = TestServer::start(&acceptor).await;
        let before = presented_certificate(server.addr, &ca.pem).await;

        // A new certificate with the old key: a rotation half done.
        let (new_cert, _) = TestCa::new("next server ca").server_leaf();
        fs::write(&files.files.cert, new_cert).unwrap();
        let err = acceptor.reload().unwrap_err();

        assert!(
            format!("{err:#}").contains("does not go with the certificate"),
            "{err:#}"
        );
        assert_eq!(presented_certificate(server.addr, &ca.pem).await, before);
        assert_eq!(
            check_over_tls(server.addr, &ca.pem, None).await,
            Ok(ServingStatus::Serving)
        );
    }

    #[tokio::test]
    async fn a_silent_client_does_not_hold_up_other_handshakes() {
        let ca = TestCa::new("server ca");
        let files = ServerFiles::write(&ca, None);
        let server = TestServer::start(&TlsAcceptor::load(files.files.clone()).unwrap()).await;
        // Opens a socket and never says hello.
        let _silent = TcpStream::connect(server.addr).await.unwrap();

        let status = tokio::time::timeout(
            Duration::from_secs(5),
            check_over_tls(server.addr, &ca.pem, None),
        )
        .await
        .expect("the second client is served while the first is silent");

        assert_eq!(status, Ok(ServingStatus::Serving));
    }

    fn load_error(files: &TlsFiles) -> String {
        format!("{:#}", TlsAcceptor::load(files.clone()).unwrap_err())
    }

    #[test]
    fn load_errors_name_the_file_and_the_fault() {
        let ca = TestCa::new("server ca");
        let server = ServerFiles::write(&ca, Some(&TestCa::new("client ca")));
        let dir = server.dir.path();

        let missing = TlsFiles {
            cert: dir.join("missing.pem"),
            ..server.files.clone()
        };
        let err = load_error(&missing);
        assert!(
            err.contains("cannot read the TLS certificate") && err.contains("missing.pem"),
            "{err}"
        );

        let not_pem = dir.join("not-pem.pem");
        fs::write(&not_pem, "hello").unwrap();
        let err = load_error(&TlsFiles {
            cert: not_pem.clone(),
            ..server.files.clone()
        });
        assert!(
            err.contains("holds no certificate") && err.contains("not-pem.pem"),
            "{err}"
        );

        let err = load_error(&TlsFiles {
            key: server.files.cert.clone(),
            ..server.files.clone()
        });
        assert!(
            err.contains("holds no private key") && err.contains("server.pem"),
            "{err}"
        );

        let err = load_error(&TlsFiles {
            client_ca: Some(not_pem),
            ..server.files.clone()
        });
        assert!(
            err.contains("client CA bundle") && err.contains("not-pem.pem"),
            "{err}"
        );

        let (_, other_key) = ca.server_leaf();
        let other_key_path = dir.join("other.key");
        fs::write(&other_key_path, other_key).unwrap();
        let err = load_error(&TlsFiles {
            key: other_key_path,
            ..server.files.clone()
        });
        assert!(
            err.contains("other.key") && err.contains("does not go with the certificate"),
            "{err}"
        );
    }

    #[test]
    fn a_subject_matches_the_common_name_or_a_dns_name_in_any_case() {
        let peer = PeerIdentity {
            remote_addr: None,
            subject_cn: Some("mta-eu.internal".into()),
            dns_names: vec!["mta-eu.example.net".into(), "*.mta.example.net".into()],
        };
        assert!(peer.matches("CN=mta-eu.internal"));
        assert!(peer.matches("cn=MTA-EU.internal"));
        assert!(peer.matches("mta-eu.internal"));
        assert!(peer.matches("mta-eu.example.net"));
        assert!(peer.matches("CN=mta-eu.example.net"));
        assert!(peer.matches(" CN= mta-eu.internal "));
        assert!(!peer.matches("mta-us.internal"));
        assert!(
            !peer.matches("a.mta.example.net"),
            "wildcards are not expanded"
        );
        assert!(!peer.matches(""));
        assert!(!peer.matches("CN="));
        assert!(!PeerIdentity::default().matches("CN=mta-eu.internal"));
        assert!(!PeerIdentity::default().matches(""));
    }
}
