//! What one key costs the sled engine at its best: the ceiling of the checkpoint thread that
//! moves journaled writes into sled, and so of sustained durable ingest on the default engine.
//!
//! `cargo run --release --example sled_inserts -- [keys already in the tree] [dir]`
//! (default 1,000,000 keys, a temporary directory). Loads the tree in sorted batches of 600
//! keys (what a checkpoint does), then writes 200,000 new random keys (34-byte keys, 120-byte
//! values, like records and history entries) one `insert` at a time and in batches of 100, 600
//! and 5,000 keys, sorted as
//! a checkpoint sorts them and not, and prints the time per key with one flush at the end of
//! each run (as a checkpoint flushes once). `SLED_MODE=throughput` opens sled in
//! `Mode::HighThroughput` (default `LowSpace`, as the store opens it); `SLED_FLUSH_MS=none`
//! turns sled's background flusher off (default every 500 ms).

use std::time::Instant;

/// xorshift: the same keys on every run.
struct Keys(u64);

impl Keys {
    fn next_key(&mut self) -> Vec<u8> {
        let mut k = vec![b'R', b'b', b'e', b'n', b'c', b'h', 0];
        for _ in 0..3 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            k.extend_from_slice(&self.0.to_be_bytes());
        }
        k.extend_from_slice(&[0u8; 3]);
        k
    }

    fn batch(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| self.next_key()).collect()
    }
}

/// Writes `keys` in batches of `per_batch` (one `insert` each when `per_batch` is 1), then
/// flushes; returns microseconds per key.
fn write(
    tree: &sled::Tree,
    db: &sled::Db,
    mut keys: Vec<Vec<u8>>,
    per_batch: usize,
    sorted: bool,
) -> f64 {
    if sorted {
        keys.sort();
    }
    let value = [7u8; 120];
    let started = Instant::now();
    if per_batch == 1 {
        for k in &keys {
            tree.insert(k.as_slice(), &value[..]).expect("insert");
        }
        db.flush().expect("flush");
        return started.elapsed().as_secs_f64() * 1e6 / keys.len() as f64;
    }
    for chunk in keys.chunks(per_batch) {
        let mut batch = sled::Batch::default();
        for k in chunk {
            batch.insert(k.as_slice(), &value[..]);
        }
        tree.apply_batch(batch).expect("apply_batch");
    }
    db.flush().expect("flush");
    started.elapsed().as_secs_f64() * 1e6 / keys.len() as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let preload: usize = args
        .next()
        .map(|n| n.parse().expect("a number of keys"))
        .unwrap_or(1_000_000);
    let temp = tempfile::tempdir().expect("temporary directory");
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let mode = match std::env::var("SLED_MODE").as_deref() {
        Ok("throughput") => sled::Mode::HighThroughput,
        _ => sled::Mode::LowSpace,
    };
    let flush_every_ms = match std::env::var("SLED_FLUSH_MS").as_deref() {
        Ok("none") => None,
        Ok(ms) => Some(ms.parse().expect("milliseconds")),
        Err(_) => Some(500),
    };
    println!("mode {mode:?}, flush every {flush_every_ms:?} ms");
    let db = sled::Config::new()
        .path(&dir)
        .cache_capacity(256 << 20)
        .mode(mode)
        .flush_every_ms(flush_every_ms)
        .open()
        .expect("open");
    let tree = db.open_tree("keys").expect("tree");
    let mut keys = Keys(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut left = preload;
    while left > 0 {
        let n = left.min(500_000);
        write(&tree, &db, keys.batch(n), 600, true);
        left -= n;
    }
    println!(
        "loaded {preload} keys in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for threads in [2, 4] {
        let mut batch = keys.batch(200_000);
        batch.sort();
        let value = [7u8; 120];
        let started = Instant::now();
        std::thread::scope(|scope| {
            for part in batch.chunks(batch.len().div_ceil(threads)) {
                let tree = &tree;
                scope.spawn(move || {
                    for k in part {
                        tree.insert(k.as_slice(), &value[..]).expect("insert");
                    }
                });
            }
        });
        db.flush().expect("flush");
        let us = started.elapsed().as_secs_f64() * 1e6 / batch.len() as f64;
        println!(
            "200,000 new keys, one insert each on {threads} threads, sorted: {us:.2} µs/key ({:.0} keys/s)",
            1e6 / us
        );
    }
    for per_batch in [1, 100, 600, 5_000] {
        for sorted in [false, true] {
            let us = write(&tree, &db, keys.batch(200_000), per_batch, sorted);
            println!(
                "200,000 new keys, batches of {per_batch:>5}, {:>8}: {us:.2} µs/key ({:.0} keys/s)",
                if sorted { "sorted" } else { "unsorted" },
                1e6 / us
            );
        }
    }
}
