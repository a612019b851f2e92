//! Fixed workload for instruction counting: `valgrind --tool=callgrind
//! target/release/examples/classify_count <ascii|nonascii|all> <passes>` classifies every
//! corpus row of the chosen kind `passes` times. Per-classification cost is the difference
//! between two pass counts divided by the extra classifications. `dump` prints every
//! verdict (corpus rows under each label, plus variants) for comparing builds.

use std::hint::black_box;

use suppressd::classify::Classifier;
use suppressd::domain::{EmailAddress, ReportedOutcome, SmtpEvidence};

#[path = "../benches/workload/mod.rs"]
mod workload;

use workload::{address_mix, classify_row, corpus_rows};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("all", |s| s.as_str());
    let passes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let rows: Vec<(&str, Option<&str>)> = corpus_rows()
        .into_iter()
        .filter(|(t, _)| match mode {
            "ascii" => t.is_ascii(),
            "nonascii" => !t.is_ascii(),
            _ => true,
        })
        .collect();
    if let Some(kind) = mode.strip_prefix("addr-") {
        // the address mix of benches/normalize.rs, or only its plain ASCII part
        let all: Vec<String> = address_mix(600)
            .into_iter()
            .filter(|a| kind != "ascii" || (a.is_ascii() && !a.contains("xn--")))
            .collect();
        for _ in 0..passes {
            for a in &all {
                let _ = black_box(EmailAddress::parse(black_box(a)));
            }
        }
        eprintln!(
            "{} addresses, {} normalizations",
            all.len(),
            all.len() * passes
        );
        return;
    }
    let classifier = Classifier::new();
    if mode == "dump" {
        dump(&classifier, &rows);
        return;
    }
    if let Some(kind) = mode.strip_prefix("time-") {
        let rows: Vec<_> = rows
            .iter()
            .filter(|(t, _)| match kind {
                "ascii" => t.is_ascii(),
                "nonascii" => !t.is_ascii(),
                _ => true,
            })
            .copied()
            .collect();
        let mut best = f64::MAX;
        for _ in 0..passes {
            let t = std::time::Instant::now();
            for _ in 0..20 {
                for &row in &rows {
                    classify_row(&classifier, row);
                }
            }
            best = best.min(t.elapsed().as_secs_f64() / (20 * rows.len()) as f64);
        }
        println!("{kind}: best {:.0} ns per classification", best * 1e9);
        return;
    }
    let mut n = 0usize;
    for _ in 0..passes {
        for &row in &rows {
            classify_row(&classifier, row);
            n += 1;
        }
    }
    eprintln!("{} rows, {n} classifications", rows.len());
}

fn dump(c: &Classifier, rows: &[(&str, Option<&str>)]) {
    let labels = [
        ReportedOutcome::Bounce,
        ReportedOutcome::HardBounce,
        ReportedOutcome::SoftBounce,
        ReportedOutcome::Block,
        ReportedOutcome::Delivered,
        ReportedOutcome::Complaint,
    ];
    for &(text, status) in rows {
        let upper = text.to_uppercase();
        let spaced = text.replace(' ', "  \r\n ");
        let head: String = text.chars().take(40).collect();
        let tail: String = text.chars().skip(25).collect();
        let prefixed = format!("smtp; {text}");
        let variants = [text, &upper, &spaced, &head, &tail, &prefixed];
        for v in variants {
            for st in [status, None, Some("4.1.1")] {
                for prov in ["", "gmail", "Outlook"] {
                    for l in labels {
                        let r = c.classify(&SmtpEvidence {
                            reported: l,
                            smtp_response: v,
                            enhanced_status: st,
                            provider: prov,
                        });
                        println!("{v:?}\t{st:?}\t{prov}\t{l:?}\t{r:?}");
                    }
                }
            }
        }
    }
}
