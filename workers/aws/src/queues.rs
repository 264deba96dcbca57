//! Operators' queue tools: depths, DLQ listing and DLQ replay.
//!
//! moto has no `StartMessageMoveTask`, and operators want dry runs and an audit line per
//! message anyway, so replay is our own loop: receive from the DLQ → send to
//! the source queue → delete from the DLQ only after the send succeeded. A crash between
//! send and delete leaves a copy in both queues; the workers' idempotency table makes
//! the second delivery a no-op, so nothing is lost and nothing is done twice.

use aws_sdk_sqs::{Client, types::QueueAttributeName};
use mlsec_runtime::WorkError;
use serde::Serialize;
use tracing::info;

use crate::errors::classify;

/// Approximate visible / in-flight counts of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Depth {
    pub visible: i64,
    pub in_flight: i64,
}

pub async fn depth(sqs: &Client, queue_url: &str) -> Result<Depth, WorkError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| classify("sqs:GetQueueAttributes", e))?;
    let get = |name: QueueAttributeName| {
        out.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0)
    };
    Ok(Depth {
        visible: get(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    })
}

/// A message seen in a DLQ (ids and sizes only, never the body).
#[derive(Debug, Clone, Serialize)]
pub struct DlqMessage {
    pub message_id: String,
    pub receive_count: Option<u32>,
    pub body_bytes: usize,
    pub detail_type: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    pub replayed: u64,
    pub dry_run: bool,
}

fn detail_type(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("detail-type").and_then(|d| d.as_str()).map(str::to_string))
}

/// Lists up to `max` messages of a DLQ without removing them: each is received with a
/// 0-second visibility, so it is immediately visible again. (Receiving raises a
/// message's receive count; a DLQ has no redrive policy, so that moves nothing.)
pub async fn list(sqs: &Client, dlq_url: &str, max: usize) -> Result<Vec<DlqMessage>, WorkError> {
    let mut seen = std::collections::BTreeMap::new();
    // Receives are sampled; a few rounds find most messages of a small DLQ.
    for _ in 0..5 {
        if seen.len() >= max {
            break;
        }
        let out = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| classify("sqs:ReceiveMessage", e))?;
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let Some(id) = m.message_id() else { continue };
            let body = m.body().unwrap_or_default();
            seen.entry(id.to_string()).or_insert_with(|| DlqMessage {
                message_id: id.to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok()),
                body_bytes: body.len(),
                detail_type: detail_type(body),
            });
        }
    }
    Ok(seen.into_values().take(max).collect())
}

/// Moves up to `max` messages from `dlq_url` back to `target_url`, one at a time:
/// send, then delete. With `dry_run` nothing is sent or deleted.
pub async fn replay(
    sqs: &Client,
    dlq_url: &str,
    target_url: &str,
    max: u64,
    dry_run: bool,
) -> Result<ReplayReport, WorkError> {
    let mut report = ReplayReport { replayed: 0, dry_run };
    if dry_run {
        report.replayed = list(sqs, dlq_url, max as usize).await?.len() as u64;
        return Ok(report);
    }
    let mut empty_receives = 0;
    while report.replayed < max && empty_receives < 2 {
        let out = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10.min((max - report.replayed) as i32))
            .visibility_timeout(60)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| classify("sqs:ReceiveMessage", e))?;
        if out.messages().is_empty() {
            empty_receives += 1;
            continue;
        }
        empty_receives = 0;
        for m in out.messages() {
            let (Some(id), Some(body), Some(receipt)) = (m.message_id(), m.body(), m.receipt_handle()) else {
                continue;
            };
            sqs.send_message()
                .queue_url(target_url)
                .message_body(body)
                .send()
                .await
                .map_err(|e| classify("sqs:SendMessage", e))?;
            // Only now is it safe to delete: the message exists in the target queue.
            sqs.delete_message()
                .queue_url(dlq_url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| classify("sqs:DeleteMessage", e))?;
            report.replayed += 1;
            info!(message_id = id, dlq = dlq_url, target = target_url, "replayed from DLQ");
        }
    }
    Ok(report)
}

/// [`mlsec_runtime::ports::RetryScheduler`] over SQS: the Lambda driver shortens a failed
/// message's visibility. Queue URLs are resolved from the record's ARN once each.
pub struct SqsRetry {
    sqs: Client,
    urls: tokio::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl SqsRetry {
    pub fn new(sqs: Client) -> Self {
        Self { sqs, urls: Default::default() }
    }

    /// `arn:aws:sqs:<region>:<account>:<name>` → the queue's URL.
    async fn url(&self, queue_arn: &str) -> Result<String, WorkError> {
        if let Some(url) = self.urls.lock().await.get(queue_arn) {
            return Ok(url.clone());
        }
        let parts: Vec<&str> = queue_arn.split(':').collect();
        let [_, _, "sqs", _, account, name] = parts.as_slice() else {
            return Err(WorkError::permanent("bad_queue_arn", queue_arn.to_string()));
        };
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(|e| classify("sqs:GetQueueUrl", e))?;
        let url = out.queue_url().ok_or_else(|| WorkError::transient("sqs:GetQueueUrl", "no URL"))?.to_string();
        self.urls.lock().await.insert(queue_arn.to_string(), url.clone());
        Ok(url)
    }
}

#[async_trait::async_trait]
impl mlsec_runtime::ports::RetryScheduler for SqsRetry {
    async fn retry_after(&self, queue_arn: &str, receipt_handle: &str, delay_seconds: i32) -> Result<(), WorkError> {
        let url = self.url(queue_arn).await?;
        self.sqs
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay_seconds)
            .send()
            .await
            .map_err(|e| classify("sqs:ChangeMessageVisibility", e))?;
        Ok(())
    }
}
