//! Spill files: large inputs and outputs go through a local file rather than memory, so
//! a worker's memory stays flat in the data's size (Lambda: `/tmp`, ephemeral storage).

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use futures::StreamExt;
use mlsec_events::ObjectRef;
use sha2::{Digest, Sha256};

use crate::{WorkError, ports::ObjectStore};

/// A local file removed when this is dropped.
pub struct SpillFile {
    pub path: PathBuf,
}

/// `MLSEC_SPILL_DIR`, else the system temp dir (Lambda: `/tmp`).
pub fn spill_dir() -> PathBuf {
    std::env::var_os("MLSEC_SPILL_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
}

/// Which spill files [`sweep_stale`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Every spill file: for a process that is alone with its spill directory and has not
    /// started work (a Lambda execution environment runs one process at a time, and a
    /// new runtime process may get the pid of the one that timed out).
    All,
    /// Files of processes that no longer run (Linux: liveness from `/proc`), for a spill
    /// directory that other live workers may share (`mlsec run`). A pid another process
    /// has reused since keeps its stale files until that process ends.
    DeadProcesses,
}

/// Removes spill files left by a worker killed mid-message (a Lambda timeout, a crash):
/// it cannot remove its own, and on Lambda `/tmp` outlives the process. Only regular
/// files named by [`SpillFile`] are touched. Returns the number of files removed.
pub fn sweep_stale(dir: &Path, scope: Sweep) -> usize {
    let proc = Path::new("/proc");
    if scope == Sweep::DeadProcesses && !proc.join("self").exists() {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let me = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("mlsec-")) else { continue };
        // mlsec-<worker>-<pid>-<seq>-<input id><suffix>
        let mut parts = rest.splitn(4, '-');
        let (Some(_worker), Some(pid), Some(seq), Some(_)) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(pid), true) = (pid.parse::<u32>(), !seq.is_empty() && seq.chars().all(|c| c.is_ascii_digit())) else {
            continue;
        };
        // `file_type` does not follow links: a symlink or directory is never removed.
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        let stale = match scope {
            Sweep::All => true,
            Sweep::DeadProcesses => pid != me && !proc.join(pid.to_string()).exists(),
        };
        if stale && is_file && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, dir = %dir.display(), "removed spill files of processes that no longer run");
    }
    removed
}

impl SpillFile {
    /// A fresh file in [`spill_dir`], named after the worker, the input and `suffix`.
    /// Unique per process and call: the same input may be handled twice concurrently.
    pub fn create(worker: &str, input_id: &str, suffix: &str) -> Result<(Self, BufWriter<File>), WorkError> {
        let dir = spill_dir();
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id: String = input_id.chars().filter(char::is_ascii_alphanumeric).take(16).collect();
        let path = dir.join(format!("mlsec-{worker}-{}-{seq}-{id}{suffix}", std::process::id()));
        // New file only (never follow a planted file or symlink), readable by this user only:
        // an input spill holds raw personal data.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .map_err(|e| WorkError::transient("create spill file", format!("{}: {e}", path.display())))?;
        Ok((Self { path }, BufWriter::with_capacity(1 << 20, file)))
    }

    pub fn open(&self) -> Result<File, WorkError> {
        File::open(&self.path)
            .map_err(|e| WorkError::transient("open spill file", format!("{}: {e}", self.path.display())))
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Streams the object a claim check points to (its pinned version) into a spill file,
/// hashing as it goes; a digest other than `expected_sha256` is a permanent
/// `digest_mismatch` (the object changed after the claim was made).
pub async fn download_verified(
    store: &dyn ObjectStore,
    object: &ObjectRef,
    expected_sha256: &str,
    worker: &str,
    input_id: &str,
) -> Result<SpillFile, WorkError> {
    let (spill, mut out) = SpillFile::create(worker, input_id, ".in")?;
    let mut chunks = store.get_stream(&object.bucket, &object.key, object.version_id.as_deref()).await?;
    let mut hasher = Sha256::new();
    let write_err = |e: std::io::Error| WorkError::transient("write spill file", e.to_string());
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        out.write_all(&chunk).map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    if hex::encode(hasher.finalize()) != expected_sha256 {
        return Err(WorkError::permanent(
            "digest_mismatch",
            format!("s3://{}/{} does not match its claim check", object.bucket, object.key),
        ));
    }
    Ok(spill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_spill_files_of_dead_processes_are_swept_and_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("mlsec-sweep-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A process that has exited: its pid names no live process (unless reused at once).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        let files = [
            (format!("mlsec-curate-{dead}-0-abc.in"), false),
            (format!("mlsec-ingest-{dead}-12-x.parquet"), false),
            (format!("mlsec-curate-{me}-3-abc.in"), true),
            ("mlsec-curate-1-0-init.in".to_string(), true),
            ("notes.txt".to_string(), true),
            (format!("mlsec-curate-{dead}"), true),
            (format!("mlsec-curate-{dead}--x.in"), true),
        ];
        for (name, _) in &files {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        // A directory and a symlink with spill-file names are never removed.
        std::fs::create_dir(dir.join(format!("mlsec-curate-{dead}-1-dir.in"))).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.join("notes.txt"), dir.join(format!("mlsec-curate-{dead}-2-link.in"))).unwrap();
        assert_eq!(sweep_stale(&dir, Sweep::DeadProcesses), 2);
        for (name, kept) in &files {
            assert_eq!(dir.join(name).exists(), *kept, "{name}");
        }
        // Alone with the directory (Lambda start): every spill file goes, this pid's too.
        assert_eq!(sweep_stale(&dir, Sweep::All), 2);
        assert!(!dir.join(format!("mlsec-curate-{me}-3-abc.in")).exists());
        assert!(dir.join("notes.txt").exists() && dir.join(format!("mlsec-curate-{dead}-1-dir.in")).is_dir());
        #[cfg(unix)]
        assert!(dir.join(format!("mlsec-curate-{dead}-2-link.in")).symlink_metadata().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
