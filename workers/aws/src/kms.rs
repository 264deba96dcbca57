//! KMS adapter: HMAC (pseudonymisation subkeys) and ECDSA P-256 signatures (model
//! manifests). Key material never leaves KMS.

use async_trait::async_trait;
use aws_sdk_kms::{
    Client,
    primitives::Blob,
    types::{MacAlgorithmSpec, MessageType, SigningAlgorithmSpec},
};
use mlsec_runtime::{
    WorkError,
    ports::{KeyService, Result},
};

use crate::errors::{classify, code};

pub struct KmsKeys {
    client: Client,
}

impl KmsKeys {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl KeyService for KmsKeys {
    async fn mac(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>> {
        let out = self
            .client
            .generate_mac()
            .key_id(key_id)
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .message(Blob::new(message))
            .send()
            .await
            .map_err(|e| classify("kms:GenerateMac", e))?;
        out.mac().map(|b| b.as_ref().to_vec()).ok_or_else(|| WorkError::transient("kms:GenerateMac", "no MAC returned"))
    }

    async fn sign(&self, key_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>> {
        let out = self
            .client
            .sign()
            .key_id(key_id)
            .message(Blob::new(digest.as_slice()))
            .message_type(MessageType::Digest)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| classify("kms:Sign", e))?;
        out.signature().map(|b| b.as_ref().to_vec()).ok_or_else(|| WorkError::transient("kms:Sign", "no signature"))
    }

    async fn verify(&self, key_id: &str, digest: &[u8; 32], signature: &[u8]) -> Result<bool> {
        let result = self
            .client
            .verify()
            .key_id(key_id)
            .message(Blob::new(digest.as_slice()))
            .message_type(MessageType::Digest)
            .signature(Blob::new(signature))
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.signature_valid()),
            Err(e) if code(&e) == Some("KMSInvalidSignatureException") => Ok(false),
            Err(e) => Err(classify("kms:Verify", e)),
        }
    }

    async fn sign_message(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>> {
        let out = self
            .client
            .sign()
            .key_id(key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| classify("kms:Sign", e))?;
        out.signature().map(|b| b.as_ref().to_vec()).ok_or_else(|| WorkError::transient("kms:Sign", "no signature"))
    }

    async fn public_key(&self, key_id: &str) -> Result<Vec<u8>> {
        let out =
            self.client.get_public_key().key_id(key_id).send().await.map_err(|e| classify("kms:GetPublicKey", e))?;
        out.public_key()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| WorkError::transient("kms:GetPublicKey", "no public key returned"))
    }
}
