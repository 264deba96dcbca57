//! Deterministic identifiers: an emitted event's id derives from its input, so a
//! redelivered input re-emits the same id and consumers can de-duplicate.

use sha2::{Digest, Sha256};

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The id of the event that `emitter` emits in response to the input identified by
/// `input_id`. The same pair always gives the same id; different emitters never collide.
pub fn derive_event_id(input_id: &str, emitter: &str) -> String {
    let mut h = Sha256::new();
    h.update(emitter.as_bytes());
    h.update([0u8]);
    h.update(input_id.as_bytes());
    let digest = h.finalize();
    // 128 bits are plenty for uniqueness and keep ids readable in logs.
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_input_same_id_and_emitters_do_not_collide() {
        let a = derive_event_id("s3:landing/k@v1", "ingest");
        assert_eq!(a, derive_event_id("s3:landing/k@v1", "ingest"));
        assert_ne!(a, derive_event_id("s3:landing/k@v1", "curate"));
        assert_ne!(a, derive_event_id("s3:landing/k@v2", "ingest"));
        assert_eq!(a.len(), 32);
    }
}
