//! Counting duplicate keys in memory that does not grow with the data.
//!
//! A uniqueness rule's keys (128-bit keyed hashes, see [`crate::dq`]) gather in a buffer
//! of at most `run_keys` keys. A full buffer is sorted, its duplicates counted and
//! removed, and written as a sorted run to a spill file (16 bytes per distinct key). At
//! the end the runs are merged and every key equal to its predecessor counts as one more
//! duplicate. Memory: the buffer plus one 64 KiB read block per run. A dataset that fits
//! in one buffer never touches the disk.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    fs::File,
    io::{self, BufWriter, Write},
    os::unix::fs::FileExt,
};

use mlsec_runtime::spill::SpillFile;

/// Keys per in-memory run: 16 MiB per uniqueness rule (and as much again, briefly, while
/// a run is sorted).
pub const RUN_KEYS: usize = 1 << 20;
/// Keys read at a time from each run during the merge (64 KiB).
const BLOCK_KEYS: usize = 4096;
const KEY_BYTES: usize = 16;

pub struct KeySet {
    buf: Vec<u128>,
    run_keys: usize,
    duplicates: u64,
    spill: Option<Spill>,
}

struct Spill {
    file: SpillFile,
    writer: BufWriter<File>,
    /// (first key's index in the file, number of keys) of each sorted run.
    runs: Vec<(u64, u64)>,
    keys_written: u64,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl KeySet {
    pub fn new(run_keys: usize) -> Self {
        Self { buf: Vec::new(), run_keys: run_keys.max(1), duplicates: 0, spill: None }
    }

    pub fn insert(&mut self, key: u128) -> io::Result<()> {
        self.buf.push(key);
        if self.buf.len() >= self.run_keys { self.write_run() } else { Ok(()) }
    }

    /// Sorts the buffer and removes its duplicates, counting them.
    fn sort_dedup(&mut self) {
        sort_keys(&mut self.buf);
        let before = self.buf.len();
        self.buf.dedup();
        self.duplicates += (before - self.buf.len()) as u64;
    }

    fn write_run(&mut self) -> io::Result<()> {
        self.sort_dedup();
        if self.spill.is_none() {
            let (file, writer) = SpillFile::create("curate", "uniqueness", ".keys").map_err(io_err)?;
            self.spill = Some(Spill { file, writer, runs: Vec::new(), keys_written: 0 });
        }
        let spill = self.spill.as_mut().expect("created above");
        for k in &self.buf {
            spill.writer.write_all(&k.to_le_bytes())?;
        }
        spill.runs.push((spill.keys_written, self.buf.len() as u64));
        spill.keys_written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Keys inserted that equal an earlier key.
    pub fn finish(mut self) -> io::Result<u64> {
        if self.spill.is_none() {
            self.sort_dedup();
            return Ok(self.duplicates);
        }
        if !self.buf.is_empty() {
            self.write_run()?;
        }
        let mut spill = self.spill.take().expect("checked above");
        spill.writer.flush()?;
        drop(spill.writer);
        let file = spill.file.open().map_err(io_err)?;
        let mut runs: Vec<Run> = spill
            .runs
            .iter()
            .map(|&(start, len)| Run { next: start, end: start + len, block: vec![], pos: 0 })
            .collect();
        let mut heap = BinaryHeap::with_capacity(runs.len());
        for (i, run) in runs.iter_mut().enumerate() {
            if let Some(k) = run.pop(&file)? {
                heap.push(Reverse((k, i)));
            }
        }
        let mut last = None;
        while let Some(Reverse((k, i))) = heap.pop() {
            if last == Some(k) {
                self.duplicates += 1;
            }
            last = Some(k);
            if let Some(next) = runs[i].pop(&file)? {
                heap.push(Reverse((next, i)));
            }
        }
        Ok(self.duplicates)
    }
}

/// Sorts uniformly distributed keys (keyed hashes): one counting pass spreads them over
/// 2^16 buckets by their top 16 bits, then each small bucket is sorted. About ten times
/// fewer instructions than a comparison sort of the whole buffer.
fn sort_keys(keys: &mut Vec<u128>) {
    const BITS: u32 = 16;
    if keys.len() < 1 << BITS {
        keys.sort_unstable();
        return;
    }
    let bucket = |k: &u128| (k >> (128 - BITS)) as usize;
    let mut starts = vec![0usize; (1 << BITS) + 1];
    for k in keys.iter() {
        starts[bucket(k) + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut next = starts.clone();
    let mut sorted = vec![0u128; keys.len()];
    for k in keys.iter() {
        let b = bucket(k);
        sorted[next[b]] = *k;
        next[b] += 1;
    }
    for w in starts.windows(2) {
        sorted[w[0]..w[1]].sort_unstable();
    }
    *keys = sorted;
}

/// A sorted run being merged: keys `next..end` of the spill file, read a block at a time.
struct Run {
    next: u64,
    end: u64,
    block: Vec<u128>,
    pos: usize,
}

impl Run {
    fn pop(&mut self, file: &File) -> io::Result<Option<u128>> {
        if self.pos == self.block.len() {
            if self.next == self.end {
                return Ok(None);
            }
            let n = (self.end - self.next).min(BLOCK_KEYS as u64) as usize;
            let mut bytes = vec![0u8; n * KEY_BYTES];
            file.read_exact_at(&mut bytes, self.next * KEY_BYTES as u64)?;
            self.block.clear();
            self.block.extend(
                bytes.chunks_exact(KEY_BYTES).map(|c| u128::from_le_bytes(c.try_into().expect("16-byte chunk"))),
            );
            self.next += n as u64;
            self.pos = 0;
        }
        self.pos += 1;
        Ok(Some(self.block[self.pos - 1]))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn expected(keys: &[u128]) -> u64 {
        let mut seen = HashSet::new();
        keys.iter().filter(|k| !seen.insert(**k)).count() as u64
    }

    /// Keys with duplicates inside a run, across runs and many times over.
    fn keys(n: u64) -> Vec<u128> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                u128::from(x % (n / 3 + 1)) << 64 | u128::from(x % 7)
            })
            .collect()
    }

    fn count(keys: &[u128], run_keys: usize) -> u64 {
        let mut set = KeySet::new(run_keys);
        keys.iter().for_each(|k| set.insert(*k).unwrap());
        set.finish().unwrap()
    }

    #[test]
    fn in_memory_and_spilled_counts_equal_a_hash_set_count() {
        let keys = keys(50_000);
        let want = expected(&keys);
        assert!(want > 10_000, "the sample must have many duplicates: {want}");
        assert_eq!(count(&keys, RUN_KEYS), want, "one in-memory run");
        for run_keys in [1, 7, 4096, 4097, 20_000] {
            assert_eq!(count(&keys, run_keys), want, "runs of {run_keys} keys");
        }
    }

    #[test]
    fn the_bucket_sort_sorts_like_a_comparison_sort() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut keys: Vec<u128> = (0..200_000u32)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Random keys, some repeated, and a cluster that lands in one bucket.
                if i % 10 == 0 { u128::from(i % 97) } else { u128::from(x) << 64 | u128::from(x.rotate_left(7)) }
            })
            .collect();
        let mut want = keys.clone();
        want.sort_unstable();
        sort_keys(&mut keys);
        assert_eq!(keys, want);
    }

    #[test]
    fn a_key_repeated_in_every_run_counts_once_per_repeat() {
        let keys = vec![5u128; 10];
        assert_eq!(count(&keys, 3), 9);
        assert_eq!(count(&[], 3), 0);
        assert_eq!(count(&[1, 2, 3, 4], 1), 0);
    }

    #[test]
    fn spilled_runs_live_in_a_file_that_is_removed() {
        let mut set = KeySet::new(2);
        for k in 0..10u128 {
            set.insert(k % 4).unwrap();
        }
        let path = set.spill.as_ref().map(|s| s.file.path.clone()).expect("runs were spilled");
        assert!(path.exists());
        assert_eq!(set.finish().unwrap(), 6);
        assert!(!path.exists(), "the spill file outlives the set");
    }
}
