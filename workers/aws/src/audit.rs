//! The audit chain on AWS: records in the audit bucket (versioned, SSE-KMS with the audit
//! zone key, Object Lock in Terraform), the chain head as one DynamoDB item, checkpoints
//! signed with the audit signing key.
//!
//! Appending record `n` (three calls: a read, a transaction, a put):
//! 1. read the head `(n-1, hash)` (strongly consistent);
//! 2. seal record `n` after that hash;
//! 3. one transaction: advance the head to `(n, hash_n)` *only if it still says `n-1`*,
//!    and claim the decision id (only if unclaimed) with the sealed record in the claim.
//!    Two writers can never both get `n`: the loser re-reads and retries;
//! 4. put the record under the writer's own prefix.
//!
//! A crash (or a lost reply) between 3 and 4 leaves the record in the claim; the retry of
//! the same decision finds the claim and stores the record first, so a position is never
//! lost, whichever instance of the worker retries. Every
//! `checkpoint_every` records or `checkpoint_seconds` seconds, the appender signs a
//! checkpoint of the head.
//!
//! Table items (`pk`): `head` (`seq`, `chain_hash`, `cp_seq`, `cp_ms`) and
//! `decision#<writer>#<id>` (`seq`, `record`).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    types::{AttributeValue, Put, TransactWriteItem, Update},
};
use bytes::Bytes;
use mlsec_events::audit::{Actor, AuditEntry, AuditRecord, HASH_LEN};
use mlsec_lake::audit::{Checkpoint, Head, checkpoint_key, record_key};
use mlsec_runtime::{
    WorkError, now_ms,
    ports::{AuditLog, BucketRef, KeyService, ObjectStore, Result},
};
use tracing::warn;

use crate::errors::{classify, code};

/// When to sign a checkpoint: every `every` records or `seconds` seconds, whichever first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub every: u64,
    pub seconds: u64,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self { every: 1000, seconds: 60 }
    }
}

impl CheckpointPolicy {
    /// `MLSEC_AUDIT_CHECKPOINT_EVERY` and `MLSEC_AUDIT_CHECKPOINT_SECONDS`, defaults 1000 and 60.
    pub fn from_env() -> Self {
        let var = |name: &str, default: u64| {
            std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0).unwrap_or(default)
        };
        Self { every: var("MLSEC_AUDIT_CHECKPOINT_EVERY", 1000), seconds: var("MLSEC_AUDIT_CHECKPOINT_SECONDS", 60) }
    }
}

/// The table's view of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadItem {
    pub head: Head,
    pub checkpoint_seq: u64,
    pub checkpoint_ms: i64,
}

/// One writer's handle on the chain.
pub struct AuditChain {
    dynamodb: Client,
    table: String,
    store: Arc<dyn ObjectStore>,
    keys: Arc<dyn KeyService>,
    bucket: BucketRef,
    signing_key: String,
    /// The writer's prefix under `records/`: the worker's name, or `operator`.
    writer: String,
    actor: Actor,
    policy: CheckpointPolicy,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn get_n(item: &std::collections::HashMap<String, AttributeValue>, k: &str) -> Option<u64> {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

impl AuditChain {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dynamodb: Client,
        table: String,
        store: Arc<dyn ObjectStore>,
        keys: Arc<dyn KeyService>,
        bucket: BucketRef,
        signing_key: String,
        writer: &str,
        actor: Actor,
        policy: CheckpointPolicy,
    ) -> Self {
        Self { dynamodb, table, store, keys, bucket, signing_key, writer: writer.to_string(), actor, policy }
    }

    fn fatal(e: impl std::fmt::Display) -> WorkError {
        WorkError::fatal(format!("audit: {e}"))
    }

    /// The head as the table holds it (`None` before the first record).
    pub async fn head(&self) -> Result<Option<HeadItem>> {
        read_head(&self.dynamodb, &self.table).await
    }

    /// A decision this writer claimed before: its position, after making sure its record is
    /// in the bucket (a crash, a timeout or a lost response may have come between the claim
    /// and the put; the claim item keeps the sealed record for exactly that).
    async fn claimed(&self, key: &str) -> Result<Option<u64>> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb:GetItem", e))?;
        let Some(item) = out.item() else { return Ok(None) };
        let seq = get_n(item, "seq").ok_or_else(|| WorkError::fatal(format!("audit claim {key} without seq")))?;
        let record_key = record_key(&self.writer, seq);
        if self.store.get_optional(&self.bucket.name, &record_key, None).await?.is_none() {
            let Some(AttributeValue::B(record)) = item.get("record") else {
                return Err(WorkError::fatal(format!("audit claim {key} without its record")));
            };
            warn!(writer = %self.writer, seq, "audit record claimed but not stored (a crash or a lost reply); storing it now");
            self.store
                .put(&self.bucket, &record_key, Bytes::copy_from_slice(record.as_ref()), "application/avro")
                .await?;
        }
        Ok(Some(seq))
    }

    /// Signs and stores a checkpoint of `head`; records it in the head item if newer.
    pub async fn checkpoint(&self, head: Head) -> Result<Checkpoint> {
        let time_ms = now_ms();
        let head_hash = hex::encode(head.hash);
        let message = Checkpoint::message_of(head.seq, &head_hash, time_ms);
        let signature = self.keys.sign_message(&self.signing_key, &message).await?;
        let cp = Checkpoint {
            seq: head.seq,
            head_hash,
            time_ms,
            key_id: self.signing_key.clone(),
            signature: hex::encode(signature),
        };
        let body = serde_json::to_vec_pretty(&cp).map_err(Self::fatal)?;
        self.store.put(&self.bucket, &checkpoint_key(head.seq), Bytes::from(body), "application/json").await?;
        let updated = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("pk", s("head"))
            .update_expression("SET cp_seq = :s, cp_ms = :t")
            .condition_expression("attribute_not_exists(cp_seq) OR cp_seq < :s")
            .expression_attribute_values(":s", n(head.seq))
            .expression_attribute_values(":t", n(time_ms))
            .send()
            .await;
        match updated {
            Ok(_) => {}
            Err(e) if code(&e) == Some("ConditionalCheckFailedException") => {}
            Err(e) => return Err(classify("dynamodb:UpdateItem", e)),
        }
        Ok(cp)
    }
}

/// Reads the head item.
pub async fn read_head(dynamodb: &Client, table: &str) -> Result<Option<HeadItem>> {
    let out = dynamodb
        .get_item()
        .table_name(table)
        .key("pk", s("head"))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| classify("dynamodb:GetItem", e))?;
    let Some(item) = out.item() else { return Ok(None) };
    let seq = get_n(item, "seq").ok_or_else(|| WorkError::fatal("audit head without seq"))?;
    let mut hash = [0u8; HASH_LEN];
    let text = item
        .get("chain_hash")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| WorkError::fatal("audit head without hash"))?;
    hex::decode_to_slice(text, &mut hash).map_err(|e| WorkError::fatal(format!("audit head hash: {e}")))?;
    Ok(Some(HeadItem {
        head: Head { seq, hash },
        checkpoint_seq: get_n(item, "cp_seq").unwrap_or(0),
        checkpoint_ms: get_n(item, "cp_ms").map_or(0, |v| v as i64),
    }))
}

/// Attempts before an append gives up (each a lost race for the head).
const MAX_ATTEMPTS: u32 = 200;

#[async_trait]
impl AuditLog for AuditChain {
    async fn append(&self, mut entry: AuditEntry) -> Result<u64> {
        entry.actor = self.actor.clone();
        let decision = format!("decision#{}#{}", self.writer, entry.decision_id);
        if let Some(seq) = self.claimed(&decision).await? {
            return Ok(seq);
        }
        for attempt in 0..MAX_ATTEMPTS {
            let head = self.head().await?;
            let (prev_seq, prev_hash) = head.map_or((0, [0u8; HASH_LEN]), |h| (h.head.seq, h.head.hash));
            let seq = prev_seq + 1;
            let (record, bytes) = AuditRecord::seal(seq, prev_hash, now_ms(), entry.clone()).map_err(Self::fatal)?;
            let advance = Update::builder()
                .table_name(&self.table)
                .key("pk", s("head"))
                // The checkpoint clock starts with the chain.
                .update_expression("SET seq = :n, chain_hash = :h, cp_ms = if_not_exists(cp_ms, :t)")
                .expression_attribute_values(":t", n(now_ms()))
                .condition_expression(if prev_seq == 0 { "attribute_not_exists(seq)" } else { "seq = :p" })
                .expression_attribute_values(":n", n(seq))
                .expression_attribute_values(":h", s(hex::encode(record.hash)));
            let advance = if prev_seq == 0 { advance } else { advance.expression_attribute_values(":p", n(prev_seq)) };
            // The claim keeps the sealed record until it is in the bucket (see `claimed`).
            let claim = Put::builder()
                .table_name(&self.table)
                .item("pk", s(&decision))
                .item("seq", n(seq))
                .item("record", AttributeValue::B(bytes.clone().into()))
                .condition_expression("attribute_not_exists(pk)");
            let result = self
                .dynamodb
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(advance.build().map_err(Self::fatal)?).build())
                .transact_items(TransactWriteItem::builder().put(claim.build().map_err(Self::fatal)?).build())
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(e) if code(&e) == Some("TransactionCanceledException") => {
                    // Lost the race for the head, or the decision was recorded meanwhile.
                    if let Some(seq) = self.claimed(&decision).await? {
                        return Ok(seq);
                    }
                    let jitter = (now_ms() as u64 ^ u64::from(attempt).wrapping_mul(0x9E37)) % 20;
                    tokio::time::sleep(Duration::from_millis(jitter + u64::from(attempt.min(10)))).await;
                    continue;
                }
                Err(e) => return Err(classify("dynamodb:TransactWriteItems", e)),
            }
            // Until this put succeeds the record lives only in the claim: a retry (which finds
            // the decision claimed) stores it first.
            self.store
                .put(&self.bucket, &record_key(&self.writer, seq), Bytes::from(bytes), "application/avro")
                .await?;
            let (cp_seq, cp_ms) = head.map_or((0, now_ms()), |h| (h.checkpoint_seq, h.checkpoint_ms));
            if seq - cp_seq >= self.policy.every || now_ms() - cp_ms >= self.policy.seconds as i64 * 1000 {
                self.checkpoint(Head { seq, hash: record.hash }).await?;
            }
            return Ok(seq);
        }
        Err(WorkError::transient("audit append", format!("lost the race for the head {MAX_ATTEMPTS} times")))
    }
}
