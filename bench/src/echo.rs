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
use proto::{EchoRequest, EchoResponse};

struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(EchoResponse {
            tenant: r.tenant,
            address: r.address,
        }))
    }
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
