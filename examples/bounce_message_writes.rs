//! Times `ReportBounceMessage` on a running server for reports of many recipients: each message
//! is a DSN of RECIPIENTS failed recipients (user unknown), with its own Message-ID so that
//! every one is recorded anew. Prints the median and the 90th percentile of the call's time,
//! and the recipients recorded per second (figures in bench/README.md).
//!
//! `cargo run --example bounce_message_writes -- [ADDR] [MESSAGES] [RECIPIENTS]` (defaults
//! `http://127.0.0.1:50051`, 50, 100). It writes to tenant `bench-bounces`, new addresses at
//! each run.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use suppressd::grpc::proto as pb;
use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_string());
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let recipients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    tokio::runtime::Runtime::new()?.block_on(run(addr, messages, recipients))
}

/// A DSN of `recipients` unknown users, the `n`-th of run `run`.
fn dsn(run: u128, n: usize, recipients: usize) -> Vec<u8> {
    let mut m = format!(
        "From: MAILER-DAEMON@mx.example.net\nTo: news@sender.example\n\
         Subject: Undelivered Mail Returned to Sender\nMessage-ID: <bench-{run}-{n}@mx.example.net>\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n\
         --B\nContent-Type: text/plain\n\nSome recipients are unknown.\n\n\
         --B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n"
    );
    for r in 0..recipients {
        let a = format!("m{run}-{n}-r{r}@example.com");
        let _ = write!(
            m,
            "\nFinal-Recipient: rfc822; {a}\nAction: failed\nStatus: 5.1.1\n\
             Diagnostic-Code: smtp; 550 5.1.1 <{a}>: Recipient address rejected: User unknown\n"
        );
    }
    m.push_str("\n--B--\n");
    m.into_bytes()
}

async fn run(addr: String, messages: usize, recipients: usize) -> anyhow::Result<()> {
    let mut client = SuppressionServiceClient::connect(addr).await?;
    // every run's messages and addresses are new, so that each recipient is recorded anew
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let bodies: Vec<Vec<u8>> = (0..messages).map(|n| dsn(run, n, recipients)).collect();
    let mut times: Vec<Duration> = Vec::with_capacity(messages);
    let started = Instant::now();
    for raw in bodies {
        let t = Instant::now();
        let r = client
            .report_bounce_message(pb::ReportBounceMessageRequest {
                tenant: "bench-bounces".into(),
                raw_message: raw,
                ..Default::default()
            })
            .await?
            .into_inner();
        times.push(t.elapsed());
        let recorded = r
            .results
            .iter()
            .filter(|x| x.recorded && !x.duplicate)
            .count();
        anyhow::ensure!(
            recorded == recipients,
            "{recorded} of {recipients} recorded"
        );
    }
    let total = started.elapsed();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{messages} messages of {recipients} recipients: median {:.1} ms, p90 {:.1} ms, {:.0} recipients/s",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        (messages * recipients) as f64 / total.as_secs_f64()
    );
    Ok(())
}
