//! What one key written at a random place costs the redb engine, on its own: the ceiling of
//! durable ingest, which writes about a dozen keys per event, several of them at random places
//! (record, event id, history).
//!
//! `cargo run --release --example redb_inserts -- [keys already in the table] [dir]`
//! (default 1,000,000 keys, a temporary directory). Loads the table in sorted batches of 500,000
//! keys, then writes batches of new random keys (18-byte keys, 90-byte values, like records)
//! in one write transaction each and prints the time per key: unsorted and sorted, durable
//! (`Durability::Immediate`, one fsync per batch) and not.

use std::time::Instant;

use redb::{Database, Durability, TableDefinition};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");

/// xorshift: the same keys on every run.
struct Keys(u64);

impl Keys {
    fn next_key(&mut self) -> Vec<u8> {
        let mut k = vec![b'A', 0];
        for _ in 0..2 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            k.extend_from_slice(&self.0.to_be_bytes());
        }
        k
    }

    fn batch(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| self.next_key()).collect()
    }
}

/// Writes `keys` in one transaction; returns microseconds per key.
fn write(db: &Database, mut keys: Vec<Vec<u8>>, sorted: bool, durable: bool) -> f64 {
    if sorted {
        keys.sort();
    }
    let value = [7u8; 90];
    let started = Instant::now();
    let mut tx = db.begin_write().expect("write transaction");
    tx.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    });
    {
        let mut table = tx.open_table(TABLE).expect("table");
        for k in &keys {
            table.insert(k.as_slice(), &value[..]).expect("insert");
        }
    }
    tx.commit().expect("commit");
    started.elapsed().as_secs_f64() * 1e6 / keys.len() as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let preload: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = args
        .get(2)
        .map_or_else(|| tmp.path().to_path_buf(), std::path::PathBuf::from);
    let db = Database::builder()
        .set_cache_size(1 << 30)
        .create(dir.join("inserts.redb"))
        .expect("database");
    let mut keys = Keys(0x9e37_79b9_7f4a_7c15);

    let started = Instant::now();
    let mut loaded = 0;
    while loaded < preload {
        let n = 500_000.min(preload - loaded);
        write(&db, keys.batch(n), true, true);
        loaded += n;
    }
    println!(
        "{} keys loaded in {:.1} s ({:.2} us/key)",
        loaded,
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * 1e6 / loaded.max(1) as f64
    );
    println!("batch of new random keys, one transaction each | us/key | keys/s");
    for (n, sorted, durable) in [
        (13_000, false, true),
        (13_000, true, true),
        (130_000, true, true),
        (650_000, true, true),
        (13_000, true, false),
        (650_000, true, false),
    ] {
        let us = write(&db, keys.batch(n), sorted, durable);
        println!(
            "{n:>9} keys, {}, {} | {us:6.2} | {:>9.0}",
            if sorted { "sorted  " } else { "unsorted" },
            if durable {
                "durable    "
            } else {
                "not durable"
            },
            1e6 / us
        );
    }
}
