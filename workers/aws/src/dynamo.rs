//! DynamoDB adapters: the model registry, people's decisions and the idempotency table.
//!
//! Registry items: `model_name` (partition), `model_version` (sort), `stage`, `rev`, and the
//! whole [`ModelRecord`] as JSON in `record`. The production pointer of a model is the item
//! with `model_version = "@production"`. A transition is one `TransactWriteItems`: the
//! version's new state only if it is still at the stage and revision it was read at, the
//! pointer only if it still points where it was read, and the superseded version under the
//! same kind of condition. Readers never see a half-promoted model, and two governors (or a
//! replay) cannot both move one version.
//!
//! Decision items: `approver_id` (partition: the STS `UserId`, which IAM binds to the caller
//! with `dynamodb:LeadingKeys = ${aws:userid}`), `decision` (sort: model@version#action#round)
//! and the [`Decision`] as JSON.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    types::{AttributeValue, Delete, Put, TransactWriteItem},
};
use mlsec_runtime::{
    WorkError, now_ms,
    ports::{
        Claim, Decision, Decisions, Failure, FailureRecord, Idempotency, Lease, ModelRecord, ModelRegistry, Pointer,
        Result, StageChange,
    },
};

use crate::errors::{classify, code};

/// Sort key of the production pointer item.
pub const PRODUCTION_POINTER: &str = "@production";
/// How long an idempotency record is kept: longer than SQS's 14-day retention and than
/// the pipeline bus archive's 30 days (`archive_retention_days`, checked by the Terraform
/// tests), so neither a redelivery nor an archive replay redoes an effect.
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 35 * 24 * 3600;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn build<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| WorkError::fatal(format!("registry request: {e}")))
}

/// A `PutItem` only if no item has that key yet (`key_attr` is the table's partition key);
/// false when one exists (a redelivery, or the same decision twice).
async fn put_new(
    put: aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder,
    key_attr: &str,
) -> Result<bool> {
    match put.condition_expression(format!("attribute_not_exists({key_attr})")).send().await {
        Ok(_) => Ok(true),
        Err(e) if code(&e) == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(classify("dynamodb:PutItem", e)),
    }
}

pub struct DynamoRegistry {
    client: Client,
    table: String,
}

impl DynamoRegistry {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    fn item(record: &ModelRecord) -> Result<HashMap<String, AttributeValue>> {
        let json = serde_json::to_string(record).map_err(|e| WorkError::fatal(format!("registry record: {e}")))?;
        Ok(HashMap::from([
            ("model_name".to_string(), s(&record.model_name)),
            ("model_version".to_string(), s(&record.model_version)),
            ("stage".to_string(), s(record.stage.as_str())),
            ("rev".to_string(), n(record.rev)),
            ("record".to_string(), s(json)),
        ]))
    }

    /// `next`, only if the stored row is at `expected` with revision `next.rev - 1`.
    fn guarded_put(&self, next: &ModelRecord, expected: &str) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::item(next)?))
            .condition_expression("#stage = :from AND #rev = :rev")
            .expression_attribute_names("#stage", "stage")
            .expression_attribute_names("#rev", "rev")
            .expression_attribute_values(":from", s(expected))
            .expression_attribute_values(":rev", n(next.rev.saturating_sub(1)));
        Ok(TransactWriteItem::builder().put(build(put.build())?).build())
    }

    fn parse(item: &HashMap<String, AttributeValue>) -> Result<ModelRecord> {
        let json = item
            .get("record")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| WorkError::fatal("registry item without record"))?;
        serde_json::from_str(json).map_err(|e| WorkError::fatal(format!("registry record does not parse: {e}")))
    }

    fn is_pointer(item: &HashMap<String, AttributeValue>) -> bool {
        item.get("model_version").and_then(|v| v.as_s().ok()).map(String::as_str) == Some(PRODUCTION_POINTER)
    }
}

#[async_trait]
impl ModelRegistry for DynamoRegistry {
    async fn create(&self, record: &ModelRecord) -> Result<bool> {
        let put = self.client.put_item().table_name(&self.table).set_item(Some(Self::item(record)?));
        put_new(put, "model_version").await
    }

    async fn get(&self, model: &str, version: &str) -> Result<Option<ModelRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("model_name", s(model))
            .key("model_version", s(version))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb:GetItem", e))?;
        out.item().map(Self::parse).transpose()
    }

    async fn transition(&self, change: &StageChange) -> Result<bool> {
        let r = &change.record;
        let mut items = vec![self.guarded_put(r, change.expected.as_str())?];
        if let Some(d) = &change.demote {
            items.push(self.guarded_put(d, "production")?);
        }
        match &change.pointer {
            Pointer::Keep => {}
            Pointer::Promote { previous } => {
                let put = Put::builder()
                    .table_name(&self.table)
                    .item("model_name", s(&r.model_name))
                    .item("model_version", s(PRODUCTION_POINTER))
                    .item("points_to", s(&r.model_version))
                    .item("updated_at_ms", n(now_ms()));
                let put = match previous {
                    None => put.condition_expression("attribute_not_exists(points_to)"),
                    Some(p) => put.condition_expression("points_to = :prev").expression_attribute_values(":prev", s(p)),
                };
                items.push(TransactWriteItem::builder().put(build(put.build())?).build());
            }
            Pointer::Clear => {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key("model_name", s(&r.model_name))
                    .key("model_version", s(PRODUCTION_POINTER))
                    .condition_expression("points_to = :v")
                    .expression_attribute_values(":v", s(&r.model_version));
                items.push(TransactWriteItem::builder().delete(build(delete.build())?).build());
            }
        }
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some("TransactionCanceledException") => Ok(false),
            Err(e) => Err(classify("dynamodb:TransactWriteItems", e)),
        }
    }

    async fn production(&self, model: &str) -> Result<Option<ModelRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("model_name", s(model))
            .key("model_version", s(PRODUCTION_POINTER))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb:GetItem", e))?;
        let Some(version) = out.item().and_then(|i| i.get("points_to")).and_then(|v| v.as_s().ok()) else {
            return Ok(None);
        };
        self.get(model, version).await
    }

    async fn versions(&self, model: &str) -> Result<Vec<ModelRecord>> {
        let mut records = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("model_name = :m")
            .expression_attribute_values(":m", s(model))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| classify("dynamodb:Query", e))?;
            if !Self::is_pointer(&item) {
                records.push(Self::parse(&item)?);
            }
        }
        Ok(records)
    }

    async fn list(&self) -> Result<Vec<ModelRecord>> {
        let mut records = Vec::new();
        let mut pages = self.client.scan().table_name(&self.table).into_paginator().items().send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| classify("dynamodb:Scan", e))?;
            if !Self::is_pointer(&item) {
                records.push(Self::parse(&item)?);
            }
        }
        Ok(records)
    }
}

pub struct DynamoDecisions {
    client: Client,
    table: String,
}

impl DynamoDecisions {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }
}

#[async_trait]
impl Decisions for DynamoDecisions {
    async fn record(&self, d: &Decision) -> Result<bool> {
        let json = serde_json::to_string(d).map_err(|e| WorkError::fatal(format!("decision: {e}")))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("approver_id", s(&d.approver_id))
            .item("decision", s(d.key()))
            .item("subject", s(format!("{}@{}", d.model_name, d.model_version)))
            .item("body", s(json));
        put_new(put, "approver_id").await
    }

    async fn for_version(&self, model: &str, version: &str) -> Result<Vec<Decision>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("subject = :s")
            .expression_attribute_values(":s", s(format!("{model}@{version}")))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| classify("dynamodb:Scan", e))?;
            // Anyone may write a body into their own partition: one that does not parse is
            // that person's decision not counting, never a reason to block the version's
            // review (a revoke included).
            let partition = item.get("approver_id").and_then(|v| v.as_s().ok());
            let parsed = item.get("body").and_then(|v| v.as_s().ok()).map(|b| serde_json::from_str::<Decision>(b));
            let d = match parsed {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    tracing::warn!(table = %self.table, approver = ?partition, error = %e, "a decision does not parse; it does not count");
                    continue;
                }
                None => {
                    tracing::warn!(table = %self.table, approver = ?partition, "a decision item has no body; it does not count");
                    continue;
                }
            };
            // The partition is what IAM vouches for, the subject what the scan selected: a
            // body naming someone else, or another version, does not count.
            if partition == Some(&d.approver_id) && d.model_name == model && d.model_version == version {
                out.push(d);
            }
        }
        Ok(out)
    }
}

pub struct DynamoIdempotency {
    client: Client,
    table: String,
}

impl DynamoIdempotency {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }
}

/// Claim item states (`state` attribute). Items written before claims existed have no
/// `state` and count as done.
const IN_PROGRESS: &str = "in_progress";
const DONE: &str = "done";

/// A token no other delivery holds: this process, this instant, a counter.
fn claim_token() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    mlsec_events::sha256_hex(format!("{}:{nanos}:{n}", std::process::id()).as_bytes())[..32].to_string()
}

/// Key of a worker's failure record of an input (within the worker's own key space).
pub fn failure_key(worker: &str, input_key: &str) -> String {
    format!("{worker}#failure#{input_key}")
}

fn parse_failure(item: &HashMap<String, AttributeValue>) -> FailureRecord {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let mut shas = item.get("message_sha256s").and_then(|v| v.as_ss().ok()).cloned().unwrap_or_default();
    shas.sort();
    FailureRecord {
        worker: text("worker").unwrap_or_default(),
        input_key: text("input_key").unwrap_or_default(),
        event_type: text("event_type"),
        dataset: text("dataset"),
        correlation_id: text("correlation_id"),
        error_class: text("error_class").unwrap_or_default(),
        reason_code: text("reason_code").unwrap_or_default(),
        operation: text("operation"),
        attempts: num("attempts").max(0) as u32,
        first_failure_ms: num("first_failure_ms"),
        last_failure_ms: num("last_failure_ms"),
        message_sha256s: shas,
    }
}

/// What the table says about one input of a worker (operators' view for `mlsec dlq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputState {
    /// `in_progress`, `done`, or `done` for records from before claims.
    pub state: String,
    /// The digest of the message that claimed it (absent on done records).
    pub message_sha256: Option<String>,
}

impl DynamoIdempotency {
    async fn get(&self, pk: String) -> Result<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb:GetItem", e))?;
        Ok(out.item().cloned())
    }

    /// `worker`'s failure record of `input_key`, if it recorded one.
    pub async fn failure(&self, worker: &str, input_key: &str) -> Result<Option<FailureRecord>> {
        Ok(self.get(failure_key(worker, input_key)).await?.as_ref().map(parse_failure))
    }

    /// `worker`'s claim on `input_id`, if any.
    pub async fn input_state(&self, worker: &str, input_id: &str) -> Result<Option<InputState>> {
        Ok(self.get(format!("{worker}#{input_id}")).await?.map(|item| InputState {
            state: item.get("state").and_then(|v| v.as_s().ok()).cloned().unwrap_or_else(|| DONE.to_string()),
            message_sha256: item.get("message_sha256").and_then(|v| v.as_s().ok()).cloned(),
        }))
    }

    fn key(worker: &str, input_id: &str) -> AttributeValue {
        s(format!("{worker}#{input_id}"))
    }

    fn expires_at() -> AttributeValue {
        n(now_ms() / 1000 + IDEMPOTENCY_TTL_SECONDS)
    }
}

#[async_trait]
impl Idempotency for DynamoIdempotency {
    async fn claim(&self, worker: &str, input_id: &str, message_sha256: &str, lease_ms: i64) -> Result<Claim> {
        let now = now_ms();
        let lease = Lease { token: claim_token(), until_ms: now + lease_ms };
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", Self::key(worker, input_id))
            .item("state", s(IN_PROGRESS))
            .item("token", s(&lease.token))
            .item("lease_until_ms", n(lease.until_ms))
            .item("message_sha256", s(message_sha256))
            .item("expires_at", Self::expires_at())
            // New, or an in-progress claim whose holder stopped renewing.
            .condition_expression("attribute_not_exists(pk) OR (#state = :in_progress AND lease_until_ms < :now)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":now", n(now));
        match put.send().await {
            Ok(_) => return Ok(Claim::Acquired(lease)),
            Err(e) if code(&e) == Some("ConditionalCheckFailedException") => {}
            Err(e) => return Err(classify("dynamodb:PutItem", e)),
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", Self::key(worker, input_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb:GetItem", e))?;
        let Some(item) = out.item() else {
            // Released between the two calls: the redelivery claims it.
            return Ok(Claim::Held { until_ms: now });
        };
        match item.get("state").and_then(|v| v.as_s().ok()).map(String::as_str) {
            // Our own put went through and only its answer was lost (the SDK retried it, and
            // the retry found the item): the claim is ours.
            Some(IN_PROGRESS) if item.get("token").and_then(|v| v.as_s().ok()) == Some(&lease.token) => {
                Ok(Claim::Acquired(lease))
            }
            Some(IN_PROGRESS) => {
                let until_ms =
                    item.get("lease_until_ms").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(now);
                Ok(Claim::Held { until_ms })
            }
            _ => Ok(Claim::Done),
        }
    }

    async fn renew(&self, worker: &str, input_id: &str, token: &str, lease_ms: i64) -> Result<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", Self::key(worker, input_id))
            .update_expression("SET lease_until_ms = :until")
            .condition_expression("#state = :in_progress AND #token = :token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":until", n(now_ms() + lease_ms));
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(classify("dynamodb:UpdateItem", e)),
        }
    }

    async fn complete(&self, worker: &str, input_id: &str, token: &str) -> Result<()> {
        // Unconditional: the effects are durable whoever else may hold the input now, and
        // a second holder's effects are the same (deterministic keys and event ids). An
        // update, not a put: the claiming body's digest stays (what proves a parked
        // duplicate's origin to `mlsec dlq replay`).
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", Self::key(worker, input_id))
            .update_expression(
                "SET #state = :done, #token = :token, done_at_ms = :now, expires_at = :exp REMOVE lease_until_ms",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":done", s(DONE))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":now", n(now_ms()))
            .expression_attribute_values(":exp", Self::expires_at())
            .send()
            .await
            .map_err(|e| classify("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    async fn record_failure(&self, worker: &str, f: &Failure) -> Result<FailureRecord> {
        let opt = |v: &Option<String>| v.as_ref().map_or(AttributeValue::Null(true), s);
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(failure_key(worker, &f.input_key)))
            // Every attribute by name: several (worker, dataset, operation) are reserved words.
            .update_expression(
                "SET #w = :w, #k = :k, #et = :et, #ds = :ds, #cid = :cid, #c = :c, #r = :r, #op = :op, \
                 #last = :now, #first = if_not_exists(#first, :now), #exp = :exp ADD #n :one, #shas :sha",
            )
            .set_expression_attribute_names(Some(HashMap::from(
                [
                    ("#w", "worker"),
                    ("#k", "input_key"),
                    ("#et", "event_type"),
                    ("#ds", "dataset"),
                    ("#cid", "correlation_id"),
                    ("#c", "error_class"),
                    ("#r", "reason_code"),
                    ("#op", "operation"),
                    ("#last", "last_failure_ms"),
                    ("#first", "first_failure_ms"),
                    ("#exp", "expires_at"),
                    ("#n", "attempts"),
                    ("#shas", "message_sha256s"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string())),
            )))
            .expression_attribute_values(":w", s(worker))
            .expression_attribute_values(":k", s(&f.input_key))
            .expression_attribute_values(":et", opt(&f.event_type))
            .expression_attribute_values(":ds", opt(&f.dataset))
            .expression_attribute_values(":cid", opt(&f.correlation_id))
            .expression_attribute_values(":c", s(&f.error_class))
            .expression_attribute_values(":r", s(&f.reason_code))
            .expression_attribute_values(":op", opt(&f.operation))
            .expression_attribute_values(":now", n(f.at_ms))
            .expression_attribute_values(":exp", Self::expires_at())
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":sha", AttributeValue::Ss(vec![f.message_sha256.clone()]))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| classify("dynamodb:UpdateItem", e))?;
        out.attributes()
            .map(parse_failure)
            .ok_or_else(|| WorkError::transient("dynamodb:UpdateItem", "no attributes returned"))
    }

    async fn release(&self, worker: &str, input_id: &str, token: &str) -> Result<()> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", Self::key(worker, input_id))
            .condition_expression("#state = :in_progress AND #token = :token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":token", s(token));
        match delete.send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(classify("dynamodb:DeleteItem", e)),
        }
    }
}
