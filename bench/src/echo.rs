//! The bare tonic baseline: a unary echo served with the same tonic version and the same
//! server settings as suppressd (`src/startup.rs`: HTTP/2 windows of 4 MiB per connection and
//! 2 MiB per stream, TCP_NODELAY, tokio's multi-threaded runtime with one worker per core),
//! but with no handler work, no tracing spans and no other services. With `--tls-cert` and
//! `--tls-key` it serves over TLS (tonic's rustls), and still checks no token: the TLS phase's
//! baseline.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// Code generated from `proto/bench/echo/v1/echo.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("bench.echo.v1");
}

use crate::svc::{Authed, Bearer, Transport};
use proto::echo_client::EchoClient;
use proto::echo_server::{Echo, EchoServer};
use proto::{
    EchoContactsRequest, EchoContactsResponse, EchoLinesRequest, EchoLinesResponse, EchoRequest,
    EchoResponse, EchoResultsRequest, EchoResultsResponse, EchoVerdict,
};

struct EchoService;

/// A response stream of the echo.
type Answers<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// Answers each message of `inbound` with `answer(message, its index)`, in order, as a
/// CheckImport stream does.
fn answer_each<Req, Resp>(
    mut inbound: tonic::Streaming<Req>,
    answer: impl Fn(Req, u64) -> Resp + Send + 'static,
) -> Answers<Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    tonic::Streaming<Req>: Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut batch_index = 0u64;
        loop {
            let answered = match inbound.message().await {
                Ok(Some(message)) => Ok(answer(message, batch_index)),
                Ok(None) => break,
                Err(status) => Err(status),
            };
            let failed = answered.is_err();
            if tx.send(answered).await.is_err() || failed {
                break;
            }
            batch_index += 1;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// The ALLOW verdicts of one envelope message, as the echo answers them.
fn allow_all(message: EchoContactsRequest, batch_index: u64) -> EchoContactsResponse {
    let compact = message.compact_allow;
    let verdicts = message
        .contacts
        .into_iter()
        .enumerate()
        .map(|(position, c)| {
            let mut v = EchoVerdict {
                decision: 1,
                position: position as u32,
                ..EchoVerdict::default()
            };
            if !compact {
                v.normalized_address = c.address.clone();
                v.address = c.address;
                v.external_id = c.external_id;
            }
            v
        })
        .collect();
    EchoContactsResponse {
        verdicts,
        batch_index,
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    type EchoLinesStream = Answers<EchoLinesResponse>;
    type EchoContactsStream = Answers<EchoContactsResponse>;

    async fn echo_contacts(
        &self,
        request: Request<tonic::Streaming<EchoContactsRequest>>,
    ) -> Result<Response<Self::EchoContactsStream>, Status> {
        Ok(Response::new(answer_each(request.into_inner(), allow_all)))
    }

    async fn echo_lines(
        &self,
        request: Request<tonic::Streaming<EchoLinesRequest>>,
    ) -> Result<Response<Self::EchoLinesStream>, Status> {
        Ok(Response::new(answer_each(
            request.into_inner(),
            |message: EchoLinesRequest, batch_index| EchoLinesResponse {
                batch_index,
                decisions: vec![0; message.address_lines.lines().count()],
            },
        )))
    }

    async fn echo_results(
        &self,
        request: Request<tonic::Streaming<EchoResultsRequest>>,
    ) -> Result<Response<EchoResultsResponse>, Status> {
        let mut inbound = request.into_inner();
        let mut accepted = 0u64;
        while let Some(message) = inbound.message().await? {
            accepted += message.results.len() as u64;
        }
        Ok(Response::new(EchoResultsResponse { accepted }))
    }

    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(EchoResponse {
            tenant: r.tenant,
            address: r.address,
        }))
    }
}

/// Serves the echo on `listen` until the process is killed; over TLS with the certificate
/// chain and key of `tls` (PEM files) if given.
pub async fn serve(listen: SocketAddr, tls: Option<(&Path, &Path)>) -> anyhow::Result<()> {
    let mut builder = Server::builder();
    if let Some((cert, key)) = tls {
        let read =
            |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .context("TLS settings of the echo")?;
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!(
        "echo listening on {}{}",
        listener.local_addr()?,
        if tls.is_some() { " (TLS)" } else { "" }
    );
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    builder
        .initial_connection_window_size(4 * 1024 * 1024)
        .initial_stream_window_size(2 * 1024 * 1024)
        .add_service(EchoServer::new(EchoService))
        .serve_with_incoming(incoming)
        .await
        .context("echo server failed")
}

/// A client of the echo on `ch`.
pub fn client(ch: &Channel) -> EchoClient<Channel> {
    EchoClient::new(ch.clone())
}

/// A client of the echo on `ch` that sends `bearer`'s token with every call (the echo ignores
/// it: the caller's side costs the same as suppressd's, the server's check is left out).
pub fn authed_client(ch: &Channel, bearer: &Bearer) -> EchoClient<Authed> {
    EchoClient::with_interceptor(ch.clone(), bearer.clone())
}

/// `c`, taking messages as large as suppressd's.
pub fn sized<T: Transport>(c: EchoClient<T>) -> EchoClient<T> {
    c.max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}

/// A client of the echo on `ch` that takes messages as large as suppressd's.
fn stream_client(ch: &Channel) -> EchoClient<Channel> {
    sized(client(ch))
}

/// Reads every answer of a stream; returns the contacts answered, counted by `answered`.
async fn count_answers<T>(
    mut responses: tonic::Streaming<T>,
    answered: impl Fn(&T) -> usize,
) -> anyhow::Result<u64> {
    let mut n = 0u64;
    while let Some(m) = responses.message().await? {
        n += answered(&m) as u64;
    }
    Ok(n)
}

/// Streams `requests` through the lines echo on `ch` and waits for every answer: the lines
/// answered and the time taken.
pub async fn echo_lines(
    ch: &Channel,
    requests: Vec<EchoLinesRequest>,
) -> anyhow::Result<(u64, std::time::Duration)> {
    echo_lines_with(stream_client(ch), requests).await
}

/// [`echo_lines`] through the client `c`.
pub async fn echo_lines_with<T: Transport>(
    mut c: EchoClient<T>,
    requests: Vec<EchoLinesRequest>,
) -> anyhow::Result<(u64, std::time::Duration)> {
    let start = std::time::Instant::now();
    let responses = c
        .echo_lines(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let lines = count_answers(responses, |m| m.decisions.len()).await?;
    Ok((lines, start.elapsed()))
}

/// Streams envelope messages through the echo on `ch` and waits for every answer: the
/// verdicts answered and the time taken.
pub async fn echo_contacts(
    ch: &Channel,
    requests: Vec<EchoContactsRequest>,
) -> anyhow::Result<(u64, std::time::Duration)> {
    let start = std::time::Instant::now();
    let responses = stream_client(ch)
        .echo_contacts(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let verdicts = count_answers(responses, |m| m.verdicts.len()).await?;
    Ok((verdicts, start.elapsed()))
}

/// Streams send-result messages through the echo on `ch` (one client stream, as
/// ReportSendResults): the results it counted and the time until its answer.
pub async fn echo_results(
    ch: &Channel,
    requests: Vec<proto::EchoResultsRequest>,
) -> anyhow::Result<(u64, std::time::Duration)> {
    let start = std::time::Instant::now();
    let answer = stream_client(ch)
        .echo_results(tokio_stream::iter(requests))
        .await?
        .into_inner();
    Ok((answer.accepted, start.elapsed()))
}
