//! Calls to suppressd through its generated client.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use suppressd::grpc::proto as pb;
use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::data::ImportCounts;

pub type Client = SuppressionServiceClient<Channel>;

/// Largest message the harness sends or accepts (a 10,000-verdict response is a few MiB).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// One HTTP/2 connection to `addr`, retried for up to 30 s while the server comes up.
pub async fn channel(addr: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(addr.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2));
    let start = Instant::now();
    loop {
        match endpoint.connect().await {
            Ok(ch) => return Ok(ch),
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                return Err(e).with_context(|| format!("cannot connect to {addr}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `k` separate connections to `addr`.
pub async fn channels(addr: &str, k: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(k);
    for _ in 0..k {
        out.push(channel(addr).await?);
    }
    Ok(out)
}

/// A client on `ch` that accepts large messages.
pub fn client(ch: &Channel) -> Client {
    SuppressionServiceClient::new(ch.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
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
    let mut c = client(ch);
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
