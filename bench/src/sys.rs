//! What the harness reads from the system: a process's memory, a directory's size, the load.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`), or 0 if unreadable.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS")
}

/// Peak resident set size of `pid` over its life, in KiB.
pub fn hwm_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM")
}

/// Bytes that the files under `dir` take on disk (like `du -s`: allocated blocks).
pub fn du_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Samples a process's RSS every 20 ms until stopped; keeps the largest value.
pub struct RssSampler {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling `pid` (no-op for pid 0).
    pub fn start(pid: u32) -> RssSampler {
        let max = Arc::new(AtomicU64::new(rss_kib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        let task = tokio::spawn(async move {
            if pid == 0 {
                return;
            }
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        RssSampler { max, stop, task }
    }

    /// Stops and returns the peak RSS seen, in KiB.
    pub async fn stop(self, pid: u32) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.max.fetch_max(rss_kib(pid), Ordering::Relaxed);
        self.max.load(Ordering::Relaxed)
    }
}

/// Waits until the journal of suppressd's data directory `dir` (redb) holds nothing that is
/// not in the database: one segment, with no record in it (8 bytes, its magic). Returns the
/// time waited; gives up after `limit`. Without a journal directory (sled), returns at once.
pub async fn settle_journal(
    dir: &std::path::Path,
    limit: std::time::Duration,
) -> std::time::Duration {
    let journal = dir.join("journal");
    let started = std::time::Instant::now();
    while journal.is_dir() && started.elapsed() < limit {
        let sizes: Vec<u64> = std::fs::read_dir(&journal)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".journal"))
                    .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                    .collect()
            })
            .unwrap_or_default();
        if sizes.len() == 1 && sizes[0] <= 8 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    started.elapsed()
}
