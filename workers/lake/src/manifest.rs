//! The signed model manifest: what governance (Z5) vouches for. The scorer (Z6) verifies
//! the signature over the manifest's bytes, then the artifact's digest against it.

use mlsec_events::ObjectRef;
use mlsec_runtime::{
    WorkError,
    ports::{KeyService, ObjectStore},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub model_name: String,
    pub model_version: String,
    pub algorithm: String,
    pub artifact: ObjectRef,
    pub dataset: String,
    pub dataset_digest: String,
    pub auc: f64,
    pub accuracy: f64,
    pub gate_min_auc: f64,
    pub signing_key_id: String,
    pub signed_at_ms: i64,
}

impl Manifest {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serialises")
    }
}

/// Loads a manifest and its signature, verifies the signature with KMS, then loads the
/// artifact the manifest names (its current version, wherever it is) and checks its
/// digest. Any mismatch is a permanent `model_integrity` failure: nothing is scored.
pub async fn load_verified(
    store: &dyn ObjectStore,
    keys: &dyn KeyService,
    manifest: &ObjectRef,
    signature: &ObjectRef,
    signing_key_id: &str,
) -> Result<(Manifest, bytes::Bytes), WorkError> {
    let integrity = |what: &str| WorkError::permanent("model_integrity", what.to_string());
    let manifest_bytes = store.get(&manifest.bucket, &manifest.key, None).await?;
    let signature_bytes = store.get(&signature.bucket, &signature.key, None).await?;
    let digest: [u8; 32] = Sha256::digest(&manifest_bytes).into();
    if !keys.verify(signing_key_id, &digest, &signature_bytes).await? {
        return Err(integrity("manifest signature does not verify"));
    }
    let m: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|_| integrity("manifest does not parse"))?;
    // Read the artifact as it is now: a changed object must be noticed, not bypassed by
    // reading the old version.
    let artifact = store.get(&m.artifact.bucket, &m.artifact.key, None).await?;
    if mlsec_events::sha256_hex(&artifact) != m.artifact.sha256 {
        return Err(integrity("artifact digest differs from the signed manifest"));
    }
    Ok((m, artifact))
}
