//! DynamoDB adapters: the model registry and the idempotency table.
//!
//! Registry items: `model_name` (partition), `model_version` (sort), `stage`, and the
//! whole [`ModelRecord`] as JSON in `record`. The production pointer of a model is the
//! item with `model_version = "@production"`; promotion writes the version and the
//! pointer in one transaction, so readers never see a half-promoted model.

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    types::{AttributeValue, Put, TransactWriteItem},
};
use mlsec_runtime::{
    WorkError, now_ms,
    ports::{Idempotency, ModelRecord, ModelRegistry, Result, Stage},
};

use crate::errors::{classify, code};

/// Sort key of the production pointer item.
pub const PRODUCTION_POINTER: &str = "@production";
/// How long an idempotency record is kept (longer than SQS's 14-day retention).
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 15 * 24 * 3600;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub struct DynamoRegistry {
    client: Client,
    table: String,
}

impl DynamoRegistry {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    fn record_put(&self, record: &ModelRecord) -> Result<Put> {
        let json = serde_json::to_string(record).map_err(|e| WorkError::fatal(format!("registry record: {e}")))?;
        Put::builder()
            .table_name(&self.table)
            .item("model_name", s(&record.model_name))
            .item("model_version", s(&record.model_version))
            .item("stage", s(record.stage.as_str()))
            .item("record", s(json))
            .condition_expression("attribute_exists(model_version)")
            .build()
            .map_err(|e| WorkError::fatal(format!("registry put: {e}")))
    }

    fn parse(item: &std::collections::HashMap<String, AttributeValue>) -> Result<ModelRecord> {
        let json = item
            .get("record")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| WorkError::fatal("registry item without record"))?;
        serde_json::from_str(json).map_err(|e| WorkError::fatal(format!("registry record does not parse: {e}")))
    }
}

#[async_trait]
impl ModelRegistry for DynamoRegistry {
    async fn put_candidate(&self, record: &ModelRecord) -> Result<bool> {
        let json = serde_json::to_string(record).map_err(|e| WorkError::fatal(format!("registry record: {e}")))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("model_name", s(&record.model_name))
            .item("model_version", s(&record.model_version))
            .item("stage", s(record.stage.as_str()))
            .item("record", s(json))
            .condition_expression("attribute_not_exists(model_version)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(classify("dynamodb:PutItem", e)),
        }
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

    async fn set_stage(&self, record: &ModelRecord) -> Result<()> {
        let mut items = vec![TransactWriteItem::builder().put(self.record_put(record)?).build()];
        if record.stage == Stage::Production {
            let pointer = Put::builder()
                .table_name(&self.table)
                .item("model_name", s(&record.model_name))
                .item("model_version", s(PRODUCTION_POINTER))
                .item("points_to", s(&record.model_version))
                .item("updated_at_ms", AttributeValue::N(now_ms().to_string()))
                .build()
                .map_err(|e| WorkError::fatal(format!("registry pointer: {e}")))?;
            items.push(TransactWriteItem::builder().put(pointer).build());
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| classify("dynamodb:TransactWriteItems", e))?;
        Ok(())
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

    async fn list(&self) -> Result<Vec<ModelRecord>> {
        let mut records = Vec::new();
        let mut pages = self.client.scan().table_name(&self.table).into_paginator().items().send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| classify("dynamodb:Scan", e))?;
            if item.get("model_version").and_then(|v| v.as_s().ok()).map(String::as_str) != Some(PRODUCTION_POINTER) {
                records.push(Self::parse(&item)?);
            }
        }
        Ok(records)
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

#[async_trait]
impl Idempotency for DynamoIdempotency {
    async fn is_done(&self, worker: &str, input_id: &str) -> Result<bool> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("{worker}#{input_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("dynamodb:GetItem", e))?;
        Ok(out.item().is_some())
    }

    async fn mark_done(&self, worker: &str, input_id: &str) -> Result<()> {
        let expires = now_ms() / 1000 + IDEMPOTENCY_TTL_SECONDS;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{worker}#{input_id}")))
            .item("done_at_ms", AttributeValue::N(now_ms().to_string()))
            .item("expires_at", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(|e| classify("dynamodb:PutItem", e))?;
        Ok(())
    }
}
