//! The signed model manifest: what governance (Z5) vouches for when a version goes to
//! production, and what the scorer (Z6) verifies before it scores anything.
//!
//! The manifest's bytes are deterministic (no wall clock: times come from the people's
//! decisions in the registry), so two governors that promote the same version write the
//! same manifest. Manifest and signature are stored as one envelope object; the registry
//! pins that object's version and digest, and the scorer reads exactly those bytes.

use mlsec_events::ObjectRef;
use mlsec_runtime::{
    WorkError,
    ports::{Approval, KeyService, ObjectStore},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MANIFEST_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub model_name: String,
    pub model_version: String,
    /// Always `production`: a manifest is written only by a promotion or a rollback.
    pub stage: String,
    /// The review round the approvals were given in.
    pub round: u32,
    pub algorithm: String,
    /// The artifact at its pinned version.
    pub artifact: ObjectRef,
    pub dataset: String,
    pub contract_version: String,
    pub dataset_digest: String,
    pub holdout_sha256: String,
    pub gate_report_sha256: String,
    /// Govern's holdout metrics.
    pub auc: f64,
    pub brier: f64,
    pub approvals: Vec<Approval>,
    pub signing_key_id: String,
}

impl Manifest {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serialises")
    }
}

/// Manifest and signature in one object: `manifest` holds the exact signed bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedManifest {
    pub manifest: String,
    /// Hex DER ECDSA-P256 signature of the SHA-256 of `manifest`.
    pub signature: String,
    pub signing_key_id: String,
}

impl SignedManifest {
    /// Signs `m` with KMS (the private key never leaves it).
    pub async fn sign(keys: &dyn KeyService, m: &Manifest) -> Result<Self, WorkError> {
        let bytes = m.to_bytes();
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let signature = keys.sign(&m.signing_key_id, &digest).await?;
        Ok(Self {
            manifest: String::from_utf8(bytes).expect("JSON is UTF-8"),
            signature: hex::encode(signature),
            signing_key_id: m.signing_key_id.clone(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("an envelope always serialises")
    }
}

/// Loads the envelope at exactly the pinned version, checks its digest against the pin,
/// verifies the signature with the deployment's key (never one the envelope names), then
/// loads the artifact at the version the manifest pins and checks its digest. Any mismatch
/// is a permanent `model_integrity` failure: nothing is scored.
pub async fn load_verified(
    store: &dyn ObjectStore,
    keys: &dyn KeyService,
    pinned: &ObjectRef,
    signing_key_id: &str,
) -> Result<(Manifest, bytes::Bytes), WorkError> {
    let integrity = |what: &str| WorkError::permanent("model_integrity", what.to_string());
    let Some(version) = pinned.version_id.as_deref() else {
        return Err(integrity("the registry pins no manifest version"));
    };
    let bytes = store.get(&pinned.bucket, &pinned.key, Some(version)).await?;
    if mlsec_events::sha256_hex(&bytes) != pinned.sha256 {
        return Err(integrity("manifest envelope differs from the registry's pin"));
    }
    let envelope: SignedManifest =
        serde_json::from_slice(&bytes).map_err(|_| integrity("manifest envelope does not parse"))?;
    let signature = hex::decode(&envelope.signature).map_err(|_| integrity("signature is not hex"))?;
    let digest: [u8; 32] = Sha256::digest(envelope.manifest.as_bytes()).into();
    if !keys.verify(signing_key_id, &digest, &signature).await? {
        return Err(integrity("manifest signature does not verify with the governance key"));
    }
    let m: Manifest = serde_json::from_str(&envelope.manifest).map_err(|_| integrity("manifest does not parse"))?;
    if m.signing_key_id != signing_key_id {
        return Err(integrity("manifest names another signing key"));
    }
    let a = &m.artifact;
    let Some(artifact_version) = a.version_id.as_deref() else {
        return Err(integrity("manifest pins no artifact version"));
    };
    let artifact = store.get(&a.bucket, &a.key, Some(artifact_version)).await?;
    if mlsec_events::sha256_hex(&artifact) != a.sha256 {
        return Err(integrity("artifact digest differs from the signed manifest"));
    }
    Ok((m, artifact))
}
