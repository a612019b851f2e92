//! The bare tonic baseline: a unary echo served with the same tonic version and the same
//! server settings as suppressd (`src/startup.rs`: HTTP/2 windows of 4 MiB per connection and
//! 2 MiB per stream, TCP_NODELAY, tokio's multi-threaded runtime with one worker per core),
//! but with no handler work, no tracing spans and no other services.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

/// Code generated from `proto/bench/echo/v1/echo.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("bench.echo.v1");
}

use proto::echo_client::EchoClient;
use proto::echo_server::{Echo, EchoServer};
use proto::{
    EchoContactsRequest, EchoContactsResponse, EchoLinesRequest, EchoLinesResponse, EchoRequest,
    EchoResponse, EchoVerdict,
};

struct EchoService;

type LinesStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<EchoLinesResponse, Status>> + Send>>;
type ContactsStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<EchoContactsResponse, Status>> + Send>,
>;

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
    type EchoLinesStream = LinesStream;
    type EchoContactsStream = ContactsStream;

    async fn echo_contacts(
        &self,
        request: Request<tonic::Streaming<EchoContactsRequest>>,
    ) -> Result<Response<Self::EchoContactsStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut batch_index = 0u64;
            loop {
                let answer = match inbound.message().await {
                    Ok(Some(message)) => Ok(allow_all(message, batch_index)),
                    Ok(None) => break,
                    Err(status) => Err(status),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    break;
                }
                batch_index += 1;
            }
        });
        let outbound: ContactsStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        Ok(Response::new(outbound))
    }

    async fn echo_lines(
        &self,
        request: Request<tonic::Streaming<EchoLinesRequest>>,
    ) -> Result<Response<Self::EchoLinesStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut batch_index = 0u64;
            loop {
                let answer = match inbound.message().await {
                    Ok(Some(message)) => Ok(EchoLinesResponse {
                        batch_index,
                        decisions: vec![0; message.address_lines.lines().count()],
                    }),
                    Ok(None) => break,
                    Err(status) => Err(status),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    break;
                }
                batch_index += 1;
            }
        });
        let outbound: LinesStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        Ok(Response::new(outbound))
    }

    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(EchoResponse {
            tenant: r.tenant,
            address: r.address,
        }))
    }
}

/// Streams envelope messages through the echo; returns the verdicts answered and the time.
pub async fn echo_contacts(
    ch: &Channel,
    requests: Vec<EchoContactsRequest>,
) -> anyhow::Result<(u64, std::time::Duration)> {
    let mut c = client(ch)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let start = std::time::Instant::now();
    let mut responses = c
        .echo_contacts(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut verdicts = 0u64;
    while let Some(m) = responses.message().await? {
        verdicts += m.verdicts.len() as u64;
    }
    Ok((verdicts, start.elapsed()))
}

/// Serves the echo on `listen` until the process is killed.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("echo listening on {}", listener.local_addr()?);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
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

/// Streams `requests` through the lines echo on `ch` and waits for every answer: the lines
/// answered and the time taken.
pub async fn echo_lines(
    ch: &Channel,
    requests: Vec<EchoLinesRequest>,
) -> anyhow::Result<(u64, std::time::Duration)> {
    let mut c = client(ch)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let start = std::time::Instant::now();
    let mut responses = c
        .echo_lines(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut lines = 0u64;
    while let Some(m) = responses.message().await? {
        lines += m.decisions.len() as u64;
    }
    Ok((lines, start.elapsed()))
}
