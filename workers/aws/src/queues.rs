//! Operators' queue primitives: depths, and taking, forwarding, deleting and handing back
//! messages (the DLQ tools in `mlsec dlq` are built on them; see `cli/src/dlq.rs`).
//!
//! moto has no `StartMessageMoveTask`, and `StartMessageMoveTask` has no filter, so replay
//! is our own loop: take from the DLQ → send to the source queue → delete from the DLQ
//! only after the send succeeded. A crash between send and delete leaves a copy in both
//! queues; the workers' claims make the second delivery a no-op.

use aws_sdk_sqs::{Client, types::QueueAttributeName};
use mlsec_runtime::WorkError;
use serde::Serialize;

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

/// A message taken from a queue by an operator's tool, with what SQS says about it. The
/// body is kept in memory only to forward it; tools print ids, digests and codes.
#[derive(Debug, Clone)]
pub struct Taken {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// `SentTimestamp`: when the message was first sent (kept by a redrive move).
    pub sent_at_ms: Option<i64>,
    pub receive_count: Option<u32>,
    /// `DeadLetterQueueSourceArn`: the queue SQS moved it from (AWS sets it; moto does not).
    pub dead_letter_source_arn: Option<String>,
}

/// Receives up to 10 messages and hides them for `hold_seconds` (the caller forwards,
/// deletes or hands them back).
pub async fn take(
    sqs: &Client,
    queue_url: &str,
    hold_seconds: i32,
    wait_seconds: i32,
) -> Result<Vec<Taken>, WorkError> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(hold_seconds)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(A::All)
        .send()
        .await
        .map_err(|e| classify("sqs:ReceiveMessage", e))?;
    Ok(out
        .messages()
        .iter()
        .filter_map(|m| {
            let attr = |a: A| m.attributes().and_then(|attrs| attrs.get(&a)).cloned();
            Some(Taken {
                message_id: m.message_id()?.to_string(),
                receipt: m.receipt_handle()?.to_string(),
                body: m.body().unwrap_or_default().to_string(),
                sent_at_ms: attr(A::SentTimestamp).and_then(|v| v.parse().ok()),
                receive_count: attr(A::ApproximateReceiveCount).and_then(|v| v.parse().ok()),
                dead_letter_source_arn: attr(A::DeadLetterQueueSourceArn),
            })
        })
        .collect())
}

/// SQS batch entry ids allow only alphanumerics, `-` and `_`, at most 80 characters.
fn entry_id(i: usize) -> String {
    format!("m{i}")
}

/// Sets the visibility of taken messages (0: visible again at once), 10 per call.
pub async fn set_visibility(sqs: &Client, queue_url: &str, receipts: &[String], seconds: i32) -> Result<(), WorkError> {
    use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as E;
    for chunk in receipts.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| E::builder().id(entry_id(i)).receipt_handle(r).visibility_timeout(seconds).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(WorkError::fatal)?;
        sqs.change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| classify("sqs:ChangeMessageVisibilityBatch", e))?;
    }
    Ok(())
}

/// Sends `bodies` (at most 10) in one call; returns the indexes that were sent.
pub async fn send_batch(sqs: &Client, queue_url: &str, bodies: &[&str]) -> Result<Vec<usize>, WorkError> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry as E;
    let entries = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| E::builder().id(entry_id(i)).message_body(*b).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(WorkError::fatal)?;
    let out = sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| classify("sqs:SendMessageBatch", e))?;
    Ok(out.successful().iter().filter_map(|s| s.id().strip_prefix('m')?.parse().ok()).collect())
}

/// Deletes taken messages (at most 10) in one call; returns the indexes that were deleted.
pub async fn delete_batch(sqs: &Client, queue_url: &str, receipts: &[&str]) -> Result<Vec<usize>, WorkError> {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry as E;
    let entries = receipts
        .iter()
        .enumerate()
        .map(|(i, r)| E::builder().id(entry_id(i)).receipt_handle(*r).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(WorkError::fatal)?;
    let out = sqs
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| classify("sqs:DeleteMessageBatch", e))?;
    Ok(out.successful().iter().filter_map(|s| s.id().strip_prefix('m')?.parse().ok()).collect())
}

/// A queue's ARN.
pub async fn queue_arn(sqs: &Client, queue_url: &str) -> Result<String, WorkError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| classify("sqs:GetQueueAttributes", e))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| WorkError::transient("sqs:GetQueueAttributes", "no QueueArn"))
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
