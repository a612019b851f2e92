//! A corpus-seeded mutation run over the bounce-message parser: every message of
//! tests/data/dsn*/emails (the corpus and its tuning sets) is a seed; each input is a seed with random byte edits, insertions,
//! deletions, splices of another seed and MIME-significant fragments. Each input is read as
//! `parse-bounce` reads a file (an mbox file message by message). Fails on a panic, and prints
//! inputs per second and the slowest input.
//!
//! `cargo run --release --example fuzz_bounce -- [INPUTS] [SEED] [SLOWEST_FILE]` (default
//! 1,000,000 inputs). The slowest input is timed again afterwards (best of 20: a time taken on a
//! busy machine is not the parser's), and written to SLOWEST_FILE when given.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use suppressd::bounce::{mailbox, BounceParser};
use suppressd::classify::Classifier;

const FRAGMENTS: &[&[u8]] = &[
    b"\n--",
    b"\r\n\r\n",
    b"\nContent-Type: multipart/mixed; boundary=\"x\"\n\n--x\n",
    b"\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"y\"\n\n--y\n",
    b"\nContent-Type: message/rfc822\n\n",
    b"\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b.example\nAction: failed\n",
    b"\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n",
    b"\nContent-Transfer-Encoding: base64\n\n",
    b"\nContent-Transfer-Encoding: quoted-printable\n\n=",
    b"=?utf-8?B?",
    b"=?iso-2022-jp?Q?",
    b"\n  continued",
    b"<x@y.example>: ",
    b"{\"notificationType\":\"Bounce\",\"bounce\":{\"bouncedRecipients\":[",
    b"\nContent-Type: message/disposition-notification\n\nFinal-Recipient: rfc822; a@b.example\nDisposition: automatic-action/MDN-sent-automatically; deleted\n",
    b"\nList-Post: <mailto:list@b.example>\n",
    b"\n\nFrom MAILER-DAEMON Tue Mar 02 09:44:33 1999\nReturn-path: <>\n",
    b"\n  an undisclosed address\n    (generated from a@b.example)\n",
    b"\n________________________________\n",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let inputs: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let slowest_file = args.next();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&data)
        .expect("tests/data")
        .map(|e| e.expect("entry").path())
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dsn"))
                && d.join("emails").is_dir()
        })
        .flat_map(|set| std::fs::read_dir(set.join("emails")).expect("corpus directory"))
        .map(|e| std::fs::read(e.expect("entry").path()).expect("read"))
        .collect();
    corpus.sort();
    let parser = BounceParser::new();
    let classifier = Classifier::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut slowest, mut slowest_input) = (Duration::ZERO, Vec::new());
    let (mut bytes, mut bounces) = (0u64, 0u64);
    let started = Instant::now();
    for n in 0..inputs {
        let mut raw = corpus[rng.random_range(0..corpus.len())].clone();
        for _ in 0..rng.random_range(1..16) {
            let at = if raw.is_empty() {
                0
            } else {
                rng.random_range(0..raw.len())
            };
            match rng.random_range(0..6) {
                0 if !raw.is_empty() => raw[at] = rng.random(),
                1 => raw.insert(at, rng.random()),
                2 if !raw.is_empty() => {
                    let end = (at + rng.random_range(1..64)).min(raw.len());
                    raw.drain(at..end);
                }
                3 => {
                    let f = FRAGMENTS[rng.random_range(0..FRAGMENTS.len())];
                    raw.splice(at..at, f.iter().copied());
                }
                4 => {
                    // a piece of another message
                    let other = &corpus[rng.random_range(0..corpus.len())];
                    let from = rng.random_range(0..other.len());
                    let to = (from + rng.random_range(1..2048)).min(other.len());
                    raw.splice(at..at, other[from..to].iter().copied());
                }
                _ => {
                    // repeat a stretch (deep nesting, long lines)
                    let end = (at + rng.random_range(1..32)).min(raw.len());
                    let piece = raw[at..end].to_vec();
                    for _ in 0..rng.random_range(1..64) {
                        raw.splice(at..at, piece.iter().copied());
                    }
                }
            }
        }
        let t = Instant::now();
        let read = read_file(&parser, &raw, &classifier);
        let took = t.elapsed();
        bytes += raw.len() as u64;
        bounces += read as u64;
        if took > slowest {
            slowest = took;
            slowest_input = raw;
        }
        if n > 0 && n % 100_000 == 0 {
            eprintln!(
                "{n} inputs, {:.0}/s",
                n as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let again = (0..20)
        .map(|_| {
            let t = Instant::now();
            read_file(&parser, &slowest_input, &classifier);
            t.elapsed()
        })
        .min()
        .unwrap_or_default();
    if let Some(path) = slowest_file {
        std::fs::write(&path, &slowest_input).expect("write the slowest input");
    }
    let slowest_len = slowest_input.len();
    println!(
        "{inputs} inputs ({} seeds, rng seed {seed}) in {secs:.1} s: {:.0} inputs/s, {:.1} MB/s; \
slowest input {:.2} ms ({slowest_len} bytes; {:.2} ms when timed again); \
{bounces} recipients read; no panic",
        corpus.len(),
        inputs as f64 / secs,
        bytes as f64 / secs / 1e6,
        slowest.as_secs_f64() * 1e3,
        again.as_secs_f64() * 1e3,
    );
}

/// Reads an input as `parse-bounce` reads a file; the number of recipients read.
fn read_file(parser: &BounceParser, raw: &[u8], classifier: &Classifier) -> usize {
    match mailbox::messages(raw) {
        Some(messages) => messages
            .iter()
            .map(|m| parser.parse(m, "", classifier).bounces.len())
            .sum(),
        None => parser.parse(raw, "", classifier).bounces.len(),
    }
}
