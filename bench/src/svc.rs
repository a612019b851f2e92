//! Calls to suppressd through its generated client.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use suppressd::grpc::proto as pb;
use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use tonic::client::GrpcService;
use tonic::codegen::{Body, Bytes, StdError};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::data::ImportCounts;

pub type Client = SuppressionServiceClient<Channel>;

/// Largest message the harness sends or accepts (a 10,000-verdict response is a few MiB).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// What a generated client runs on: a [`Channel`], or a channel whose calls carry the bearer
/// token ([`Authed`]). Only bundles the bounds of the generated clients' methods.
pub trait Transport:
    GrpcService<
        tonic::body::Body,
        Error = Self::Fail,
        ResponseBody = Self::Answer,
        Future = Self::Pending,
    > + Clone
    + Send
    + Sync
    + 'static
{
    type Fail: Into<StdError>;
    type Answer: Body<Data = Bytes, Error = Self::AnswerFail> + Send + 'static;
    type AnswerFail: Into<StdError> + Send;
    type Pending: Send;
}

impl<T> Transport for T
where
    T: GrpcService<tonic::body::Body> + Clone + Send + Sync + 'static,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
    T::Future: Send,
{
    type Fail = T::Error;
    type Answer = T::ResponseBody;
    type AnswerFail = <T::ResponseBody as Body>::Error;
    type Pending = T::Future;
}

/// Adds `authorization: Bearer <token>` to every call, as a caller of a server with
/// `--auth-file` does.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    pub fn new(token: &str) -> anyhow::Result<Bearer> {
        let value = format!("Bearer {token}")
            .parse()
            .context("the token is not a valid header value")?;
        Ok(Bearer(value))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

/// A channel whose calls carry the bearer token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// A client TLS configuration that trusts the CA certificate(s) in `ca_pem` only.
pub fn tls_config(ca_pem: &[u8]) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
}

/// One HTTP/2 connection to `addr`, retried for up to 30 s while the server comes up.
pub async fn channel(addr: &str) -> anyhow::Result<Channel> {
    channel_with(addr, None).await
}

/// One HTTP/2 connection to `addr`, over TLS with `tls` (an `https://` address), retried for
/// up to 30 s while the server comes up.
pub async fn channel_with(addr: &str, tls: Option<&ClientTlsConfig>) -> anyhow::Result<Channel> {
    let mut endpoint = Endpoint::from_shared(addr.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .with_context(|| format!("TLS settings for {addr}"))?;
    }
    let start = Instant::now();
    loop {
        match endpoint.connect().await {
            Ok(ch) => return Ok(ch),
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                return Err(anyhow::Error::from(e))
                    .with_context(|| format!("cannot connect to {addr}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `k` separate connections to `addr`.
pub async fn channels(addr: &str, k: usize) -> anyhow::Result<Vec<Channel>> {
    channels_with(addr, k, None).await
}

/// `k` separate connections to `addr`, over TLS with `tls`.
pub async fn channels_with(
    addr: &str,
    k: usize,
    tls: Option<&ClientTlsConfig>,
) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(k);
    for _ in 0..k {
        out.push(channel_with(addr, tls).await?);
    }
    Ok(out)
}

/// `c` with the harness's message size limits.
fn sized<T: Transport>(c: SuppressionServiceClient<T>) -> SuppressionServiceClient<T> {
    c.max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// A client on `ch` that accepts large messages.
pub fn client(ch: &Channel) -> Client {
    sized(SuppressionServiceClient::new(ch.clone()))
}

/// A client on `ch` that accepts large messages and sends `bearer`'s token with every call.
pub fn authed_client(ch: &Channel, bearer: &Bearer) -> SuppressionServiceClient<Authed> {
    sized(SuppressionServiceClient::with_interceptor(
        ch.clone(),
        bearer.clone(),
    ))
}

/// Groups `(tenant, result)` pairs into ReportSendResults messages of `batch` results of one
/// tenant each, lazily, so that a 10M-event load never sits in memory.
pub struct Batcher<I> {
    inner: I,
    batch: usize,
    buffers: HashMap<&'static str, Vec<pb::SendResult>>,
    ready: VecDeque<pb::ReportSendResultsRequest>,
    done: bool,
}

impl<I> Batcher<I> {
    pub fn new(inner: I, batch: usize) -> Self {
        Batcher {
            inner,
            batch,
            buffers: HashMap::new(),
            ready: VecDeque::new(),
            done: false,
        }
    }
}

impl<I: Iterator<Item = (&'static str, pb::SendResult)>> Iterator for Batcher<I> {
    type Item = pb::ReportSendResultsRequest;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Some(m);
            }
            if self.done {
                return None;
            }
            match self.inner.next() {
                Some((tenant, result)) => {
                    let buf = self.buffers.entry(tenant).or_default();
                    buf.push(result);
                    if buf.len() >= self.batch {
                        return Some(pb::ReportSendResultsRequest {
                            tenant: tenant.to_string(),
                            results: std::mem::take(buf),
                        });
                    }
                }
                None => {
                    self.done = true;
                    let mut rest: Vec<_> = self.buffers.drain().collect();
                    rest.sort_by_key(|(t, _)| *t);
                    for (tenant, results) in rest {
                        if !results.is_empty() {
                            self.ready.push_back(pb::ReportSendResultsRequest {
                                tenant: tenant.to_string(),
                                results,
                            });
                        }
                    }
                }
            }
        }
    }
}

/// Sum of the ReportSendResults summaries of several streams.
#[derive(Debug, Default, Clone, Copy)]
pub struct IngestSummary {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub newly_suppressed: u64,
}

/// Runs one ReportSendResults stream per iterator, all at once, each on its own connection
/// from `channels` (round robin). Returns the summed summaries and the wall time until the last
/// summary arrived (every result durable).
pub async fn ingest<I>(
    channels: &[Channel],
    streams: Vec<I>,
) -> anyhow::Result<(IngestSummary, Duration)>
where
    I: Iterator<Item = pb::ReportSendResultsRequest> + Send + 'static,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (k, it) in streams.into_iter().enumerate() {
        let mut c = client(&channels[k % channels.len()]);
        tasks.push(tokio::spawn(async move {
            let r = c.report_send_results(tokio_stream::iter(it)).await?;
            anyhow::Ok(r.into_inner())
        }));
    }
    let mut sum = IngestSummary::default();
    for t in tasks {
        let s = t.await.context("ingest task panicked")??;
        if let Some(r) = s.rejections.first() {
            eprintln!(
                "  first rejection of {}: {} {} ({})",
                s.rejections.len(),
                r.field,
                r.error,
                r.event_id
            );
        }
        sum.accepted += s.accepted;
        sum.duplicates += s.duplicates;
        sum.rejected += s.rejections.len() as u64;
        sum.newly_suppressed += s.newly_suppressed;
    }
    Ok((sum, start.elapsed()))
}

/// The CheckImport request messages for `contacts`, `batch` contacts each; `compact` asks for
/// ALLOW verdicts that carry only the decision.
pub fn import_requests(
    contacts: &[pb::ImportContact],
    batch: usize,
    format: Verdicts,
) -> Vec<pb::CheckImportRequest> {
    contacts
        .chunks(batch)
        .map(|c| match format {
            Verdicts::Full | Verdicts::Compact => pb::CheckImportRequest {
                tenant: crate::data::TENANT.to_string(),
                contacts: c.to_vec(),
                compact_allow: format == Verdicts::Compact,
                ..Default::default()
            },
            Verdicts::Packed => {
                let mut lines = String::with_capacity(c.iter().map(|c| c.address.len() + 1).sum());
                for contact in c {
                    lines.push_str(&contact.address);
                    lines.push('\n');
                }
                pb::CheckImportRequest {
                    tenant: crate::data::TENANT.to_string(),
                    address_lines: lines,
                    packed_decisions: true,
                    ..Default::default()
                }
            }
        })
        .collect()
}

/// How a CheckImport stream asks for its verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verdicts {
    /// Envelope contacts, a complete verdict each.
    Full,
    /// Envelope contacts, `compact_allow`.
    Compact,
    /// Bare `address_lines`, `packed_decisions`.
    Packed,
}

impl Verdicts {
    /// The metric key infix of this format.
    pub fn key(self) -> &'static str {
        match self {
            Verdicts::Full => "",
            Verdicts::Compact => "compact.",
            Verdicts::Packed => "packed.",
        }
    }
}

/// Streams `requests` through CheckImport as fast as flow control allows, reading verdicts as
/// they come; returns their counts and the time from the call to the last verdict.
pub async fn check_import(
    ch: &Channel,
    requests: Vec<pb::CheckImportRequest>,
) -> anyhow::Result<(ImportCounts, Duration)> {
    check_import_with(client(ch), requests).await
}

/// [`check_import`] through the client `c`.
pub async fn check_import_with<T: Transport>(
    mut c: SuppressionServiceClient<T>,
    requests: Vec<pb::CheckImportRequest>,
) -> anyhow::Result<(ImportCounts, Duration)> {
    let expected_messages = requests.len() as u64;
    let start = Instant::now();
    let mut responses = c
        .check_import(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut counts = ImportCounts::default();
    let mut messages = 0u64;
    while let Some(m) = responses.message().await? {
        if m.batch_index != messages {
            bail!(
                "CheckImport answered batch {} where {messages} was due",
                m.batch_index
            );
        }
        messages += 1;
        let decisions: Box<dyn Iterator<Item = i32>> = if m.decisions.is_empty() {
            Box::new(m.verdicts.iter().map(|v| v.decision))
        } else {
            Box::new(m.decisions.iter().map(|&d| i32::from(d)))
        };
        for decision in decisions {
            match pb::ImportDecision::try_from(decision) {
                Ok(pb::ImportDecision::Allow) => counts.allow += 1,
                Ok(pb::ImportDecision::BlockSuppressed) => counts.suppressed += 1,
                Ok(pb::ImportDecision::BlockInvalid) => counts.invalid += 1,
                Ok(pb::ImportDecision::Duplicate) => counts.duplicate += 1,
                _ => bail!("CheckImport answered decision {decision}"),
            }
        }
    }
    let elapsed = start.elapsed();
    if messages != expected_messages {
        bail!("CheckImport answered {messages} of {expected_messages} messages");
    }
    Ok((counts, elapsed))
}

/// Pages through every bounce of `source` in `tenant`; returns (events, pages, elapsed).
pub async fn list_bounces(
    ch: &Channel,
    tenant: &str,
    source: &str,
    page_size: u32,
) -> anyhow::Result<(u64, u64, Duration)> {
    let mut c = client(ch);
    let start = Instant::now();
    let (mut events, mut pages) = (0u64, 0u64);
    let mut token = String::new();
    loop {
        let page = c
            .list_bounces(pb::ListBouncesRequest {
                tenant: tenant.to_string(),
                source: source.to_string(),
                page_size,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        events += page.bounces.len() as u64;
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    Ok((events, pages, start.elapsed()))
}
