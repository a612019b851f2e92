//! Data for measuring `suppressd check`: writes a CSV of N contacts (`id,name,email`) and
//! reports a hard bounce for every tenth of them to a running server, so that a tenth screen as
//! suppressed.
//!
//! `cargo run --example cli_screen_data -- 127.0.0.1:50051 1000000 /tmp/contacts.csv`

use std::io::Write;

use suppressd::grpc::proto::suppression_service_client::SuppressionServiceClient;
use suppressd::grpc::proto::{self as pb, Outcome};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, n, path] = args.as_slice() else {
        anyhow::bail!("usage: cli_screen_data HOST:PORT N CSV_PATH");
    };
    let n: usize = n.parse()?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(file, "id,name,email")?;
    for i in 0..n {
        writeln!(file, "{i},\"Contact, {i}\",contact{i}@example.com")?;
    }
    file.flush()?;

    let mut client = SuppressionServiceClient::connect(format!("http://{addr}")).await?;
    let messages: Vec<pb::ReportSendResultsRequest> = (0..n)
        .step_by(10)
        .collect::<Vec<_>>()
        .chunks(1_000)
        .map(|chunk| pb::ReportSendResultsRequest {
            tenant: String::new(),
            results: chunk
                .iter()
                .map(|i| pb::SendResult {
                    event_id: format!("load-{i}"),
                    address: format!("contact{i}@example.com"),
                    outcome: Outcome::HardBounce as i32,
                    smtp_response: "550 5.1.1 user unknown".into(),
                    ..Default::default()
                })
                .collect(),
        })
        .collect();
    let summary = client
        .report_send_results(tokio_stream::iter(messages))
        .await?
        .into_inner();
    println!(
        "{n} contacts in {path}; {} suppressed",
        summary.newly_suppressed
    );
    Ok(())
}
