//! The journal's in-memory table: writes that are journaled but not yet in the engine.
//!
//! A table is a few sorted runs, each one flat buffer of entries, plus a set of its keys'
//! hashes. A group commit's writes are sorted once into a new run; runs are then merged two by
//! two whenever the older is less than twice the size of the newer, so a table of `n` entries
//! has at most about log2(n) runs and each entry is copied that many times, sequentially.
//!
//! A merge never makes a run larger than the table's `max_run_bytes` (a quarter of the table's
//! limit in the journal): while two runs merge, both and their merge are in memory, so without
//! the cap the table's memory would briefly double when its two halves merged. Past the cap,
//! runs of half that size or more simply stay side by side (four to eight of them in a full
//! table).
//!
//! Why not an ordered map: with a million entries, an insert into a `BTreeMap` walks a dozen
//! nodes whose keys each sit in their own allocation, one trip to memory per comparison; that
//! was a third of the writer thread's time. Merging flat runs reads and writes memory in
//! order, and an entry costs its bytes plus about 40 (header, offset, hash slot), where a map
//! entry cost about 96 more.
//!
//! Reads: the hash set answers most point reads (for keys the table does not hold) with one
//! probe; the others search the runs newest first. Scans merge the runs' ranges, the newest
//! run winning on equal keys.
//!
//! Runs never change once built (they are shared with `Arc`), so the writer builds the next
//! set of runs outside the table's lock and only swaps it in under the lock.

use std::ops::Bound;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use crate::fasthash::KeySet;

/// Writes in the order they were made (the last write of a key wins): a value, or `None` for
/// a removed key.
pub(super) type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// A key and its value (`None`: removed) as a table holds them.
pub(super) type Entry<'a> = (&'a [u8], Option<&'a [u8]>);

/// The value length that marks a removal.
const REMOVED: u64 = u64::MAX;
/// Bytes of an entry's header: key length, value length.
const HEADER: usize = 16;

/// One sorted run: entries back to back, each `[u64 key length][u64 value length, or
/// REMOVED][key][value]`, keys strictly increasing.
struct Run {
    bytes: Vec<u8>,
    /// Where each entry starts in `bytes`.
    starts: Vec<usize>,
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

impl Run {
    fn with_capacity(entries: usize, bytes: usize) -> Run {
        Run {
            bytes: Vec::with_capacity(bytes),
            starts: Vec::with_capacity(entries),
        }
    }

    /// Sorts a group's writes into a run (the last write of a key wins).
    fn from_writes(mut writes: Writes) -> Run {
        // Stable: writes of one key keep their order, and the last one is kept.
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Writes = Vec::with_capacity(writes.len());
        for (k, v) in writes {
            match kept.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => kept.push((k, v)),
            }
        }
        let bytes = kept
            .iter()
            .map(|(k, v)| HEADER + k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        let mut run = Run::with_capacity(kept.len(), bytes);
        for (k, v) in &kept {
            run.push(k, v.as_deref());
        }
        run
    }

    fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.starts.push(self.bytes.len());
        self.bytes
            .extend_from_slice(&(key.len() as u64).to_le_bytes());
        let value_len = value.map_or(REMOVED, |v| v.len() as u64);
        self.bytes.extend_from_slice(&value_len.to_le_bytes());
        self.bytes.extend_from_slice(key);
        if let Some(v) = value {
            self.bytes.extend_from_slice(v);
        }
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    fn key_at(&self, at: usize) -> &[u8] {
        let key_len = read_u64(&self.bytes, at) as usize;
        &self.bytes[at + HEADER..at + HEADER + key_len]
    }

    fn key(&self, i: usize) -> &[u8] {
        self.key_at(self.starts[i])
    }

    fn entry(&self, i: usize) -> Entry<'_> {
        let at = self.starts[i];
        let key_len = read_u64(&self.bytes, at) as usize;
        let value_len = read_u64(&self.bytes, at + 8);
        let key_end = at + HEADER + key_len;
        let value =
            (value_len != REMOVED).then(|| &self.bytes[key_end..key_end + value_len as usize]);
        (&self.bytes[at + HEADER..key_end], value)
    }

    /// The run's keys in order.
    fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.starts.iter().map(|&at| self.key_at(at))
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        self.starts
            .binary_search_by(|&at| self.key_at(at).cmp(key))
            .ok()
    }

    /// Index of the first entry inside `start`.
    fn lower(&self, start: Bound<&[u8]>) -> usize {
        match start {
            Bound::Unbounded => 0,
            Bound::Included(k) => self.starts.partition_point(|&at| self.key_at(at) < k),
            Bound::Excluded(k) => self.starts.partition_point(|&at| self.key_at(at) <= k),
        }
    }

    /// Index just past the last entry inside `end`.
    fn upper(&self, end: Bound<&[u8]>) -> usize {
        match end {
            Bound::Unbounded => self.len(),
            Bound::Included(k) => self.starts.partition_point(|&at| self.key_at(at) <= k),
            Bound::Excluded(k) => self.starts.partition_point(|&at| self.key_at(at) < k),
        }
    }

    /// Heap bytes the run holds.
    fn memory(&self) -> usize {
        self.bytes.capacity() + self.starts.capacity() * std::mem::size_of::<usize>()
    }

    /// `older` and `newer` in one run; on equal keys, `newer`'s entry.
    fn merge(older: &Run, newer: &Run) -> Run {
        let mut out = Run::with_capacity(
            older.len() + newer.len(),
            older.bytes.len() + newer.bytes.len(),
        );
        for (k, v) in Merged::new(vec![(older, 0, older.len()), (newer, 0, newer.len())]) {
            out.push(k, v);
        }
        // Replaced keys leave slack; give it back when it is worth a copy.
        if out.bytes.capacity() - out.bytes.len() > out.bytes.len() / 8 {
            out.bytes.shrink_to_fit();
            out.starts.shrink_to_fit();
        }
        out
    }
}

/// The entries of several runs' ranges in key order; on equal keys, the entry of the newest run
/// (the last of `cursors`) wins.
pub(super) struct Merged<'a> {
    /// Run, next index, end index; oldest run first.
    cursors: Vec<(&'a Run, usize, usize)>,
}

impl<'a> Merged<'a> {
    fn new(cursors: Vec<(&'a Run, usize, usize)>) -> Merged<'a> {
        Merged { cursors }
    }
}

impl<'a> Iterator for Merged<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        let mut best: Option<(usize, &'a [u8])> = None;
        for (i, &(run, next, end)) in self.cursors.iter().enumerate() {
            if next < end {
                let key = run.key(next);
                // `<=`: a newer run's equal key takes over.
                if best.is_none_or(|(_, b)| key <= b) {
                    best = Some((i, key));
                }
            }
        }
        let (winner, key) = best?;
        let (run, next, _) = self.cursors[winner];
        let entry = run.entry(next);
        for (run, next, end) in &mut self.cursors {
            if *next < *end && run.key(*next) == key {
                *next += 1;
            }
        }
        Some(entry)
    }
}

/// The runs after adding `run` to `runs` (oldest first): the newest two are merged while the
/// older of them is less than twice the size of the newer and their bytes stay within
/// `max_run_bytes`.
fn with_run(mut runs: Vec<Arc<Run>>, run: Run, max_run_bytes: usize) -> Vec<Arc<Run>> {
    let mut newest = run;
    while let Some(older) = runs.last() {
        if older.len() >= 2 * newest.len() || older.bytes.len() + newest.bytes.len() > max_run_bytes
        {
            break;
        }
        newest = Run::merge(older, &newest);
        runs.pop();
    }
    runs.push(Arc::new(newest));
    runs
}

/// A table's next state after a group's writes, built from a look at the table (see
/// [`Table::next`]) and taken over by [`Table::install`].
pub(super) struct Next {
    runs: Vec<Arc<Run>>,
    /// Hashes of the new run's keys.
    hashes: Vec<u64>,
}

/// Writes journaled but not yet in the engine.
pub(super) struct Table {
    /// Oldest first.
    runs: Vec<Arc<Run>>,
    /// Hashes of every key in the runs.
    hashes: KeySet<u64>,
    /// No merge makes a run larger than this.
    max_run_bytes: usize,
}

impl Table {
    /// An empty table whose merges stop at runs of `max_run_bytes`.
    pub(super) fn new(max_run_bytes: usize) -> Table {
        Table {
            runs: Vec::new(),
            hashes: KeySet::default(),
            max_run_bytes,
        }
    }

    /// The table's value of `key`: `Some(None)` if it was removed, `None` if the table does not
    /// know it.
    pub(super) fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        if !self.hashes.contains(xxh3_64(key)) {
            return None;
        }
        self.runs
            .iter()
            .rev()
            .find_map(|run| run.find(key).map(|i| run.entry(i).1))
    }

    /// The table with a group's writes added, built without changing it: runs never change
    /// once built, so the table can be read meanwhile and the result installed afterwards (as
    /// long as nothing else installs in between).
    pub(super) fn next(&self, writes: Writes) -> Next {
        let run = Run::from_writes(writes);
        let hashes = run.keys().map(xxh3_64).collect();
        Next {
            runs: with_run(self.runs.clone(), run, self.max_run_bytes),
            hashes,
        }
    }

    /// Takes the state [`Table::next`] built from this table.
    pub(super) fn install(&mut self, next: Next) {
        self.runs = next.runs;
        for h in next.hashes {
            self.hashes.insert(h);
        }
    }

    /// Adds a group's writes.
    pub(super) fn add(&mut self, writes: Writes) {
        let next = self.next(writes);
        self.install(next);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// A copy of the table as it is, for scans only (`iter`, `range`): it shares the runs,
    /// which never change, and not the key hashes, so its point reads (`get`) find nothing.
    pub(super) fn scan_copy(&self) -> Table {
        Table {
            runs: self.runs.clone(),
            hashes: KeySet::default(),
            max_run_bytes: self.max_run_bytes,
        }
    }

    /// Keys held (up to the rare hash collision).
    pub(super) fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Heap bytes the table holds.
    pub(super) fn memory(&self) -> usize {
        self.runs.iter().map(|r| r.memory()).sum::<usize>() + self.hashes.heap_bytes()
    }

    /// Every entry in key order.
    pub(super) fn iter(&self) -> Merged<'_> {
        self.range((Bound::Unbounded, Bound::Unbounded))
    }

    /// The entries within `bounds` in key order.
    pub(super) fn range(&self, bounds: (Bound<&[u8]>, Bound<&[u8]>)) -> Merged<'_> {
        range_over(&[self], bounds)
    }
}

/// The entries of several tables within `bounds` in key order; on equal keys, the entry of the
/// later table in `tables` (the newer) wins.
pub(super) fn range_over<'a>(
    tables: &[&'a Table],
    bounds: (Bound<&[u8]>, Bound<&[u8]>),
) -> Merged<'a> {
    Merged::new(
        tables
            .iter()
            .flat_map(|table| table.runs.iter())
            .map(|run| (&**run, run.lower(bounds.0), run.upper(bounds.1)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn key() -> impl Strategy<Value = Vec<u8>> {
        // Few distinct keys, so that groups overwrite and remove each other's.
        prop::collection::vec(0u8..4, 0..4)
    }

    fn write() -> impl Strategy<Value = (Vec<u8>, Option<Vec<u8>>)> {
        (
            key(),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..6)),
        )
    }

    fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
        prop_oneof![
            Just(Bound::Unbounded),
            key().prop_map(Bound::Included),
            key().prop_map(Bound::Excluded),
        ]
    }

    fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        }
    }

    fn owned(entries: Merged<'_>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        entries
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect()
    }

    proptest! {
        /// After any sequence of groups, every read of the table agrees with an ordered map
        /// that took the same writes one by one, whether or not merges stop at a run size.
        #[test]
        fn reads_agree_with_an_ordered_map(
            groups in prop::collection::vec(prop::collection::vec(write(), 0..12), 0..24),
            probes in prop::collection::vec(key(), 8),
            ranges in prop::collection::vec((bound(), bound()), 4),
            max_run_bytes in prop_oneof![Just(usize::MAX), 1usize..200],
        ) {
            let mut table = Table::new(max_run_bytes);
            let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            let mut largest_group = 0;
            for group in groups {
                for (k, v) in &group {
                    model.insert(k.clone(), v.clone());
                }
                let group_bytes: usize = group
                    .iter()
                    .map(|(k, v)| HEADER + k.len() + v.as_ref().map_or(0, Vec::len))
                    .sum();
                largest_group = largest_group.max(group_bytes);
                if !group.is_empty() {
                    table.add(group);
                }
                prop_assert_eq!(table.len(), model.len());
                if max_run_bytes == usize::MAX {
                    prop_assert!(table.runs.len() <= 1 + model.len().max(1).ilog2() as usize);
                }
                // Only a group's own run may be larger than the cap.
                for run in &table.runs {
                    prop_assert!(run.bytes.len() <= max_run_bytes.max(largest_group));
                }
                for k in &probes {
                    prop_assert_eq!(
                        table.get(k).map(|v| v.map(<[u8]>::to_vec)),
                        model.get(k).cloned()
                    );
                }
                prop_assert_eq!(owned(table.iter()), model.clone().into_iter().collect::<Vec<_>>());
                for (start, end) in &ranges {
                    if crate::store::kv::empty_range(as_ref(start), as_ref(end)) {
                        continue;
                    }
                    let expected: Vec<_> = model
                        .range::<[u8], _>((as_ref(start), as_ref(end)))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    prop_assert_eq!(owned(table.range((as_ref(start), as_ref(end)))), expected);
                }
            }
        }
    }

    #[test]
    fn a_run_keeps_the_last_write_of_a_key() {
        let run = Run::from_writes(vec![
            (b"b".to_vec(), Some(b"1".to_vec())),
            (b"a".to_vec(), None),
            (b"b".to_vec(), None),
            (b"a".to_vec(), Some(b"2".to_vec())),
        ]);
        let entries: Vec<_> = (0..run.len()).map(|i| run.entry(i)).collect();
        assert_eq!(
            entries,
            vec![(&b"a"[..], Some(&b"2"[..])), (&b"b"[..], None)]
        );
    }
}
