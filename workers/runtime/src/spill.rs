//! Spill files: large inputs and outputs go through a local file rather than memory, so
//! a worker's memory stays flat in the data's size (Lambda: `/tmp`, ephemeral storage).

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
};

use futures::StreamExt;
use mlsec_events::ObjectRef;
use sha2::{Digest, Sha256};

use crate::{WorkError, ports::ObjectStore};

/// A local file removed when this is dropped.
pub struct SpillFile {
    pub path: PathBuf,
}

impl SpillFile {
    /// A fresh file in `MLSEC_SPILL_DIR`, else the system temp dir, named after the worker,
    /// the input and `suffix`. Unique per process and call: the same input may be handled
    /// twice concurrently.
    pub fn create(worker: &str, input_id: &str, suffix: &str) -> Result<(Self, BufWriter<File>), WorkError> {
        let dir = std::env::var_os("MLSEC_SPILL_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
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
