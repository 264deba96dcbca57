//! The local driver: long-polls a worker's SQS queue and feeds the batch core, exactly
//! as Lambda's event-source mapping would. A message is deleted only after the handler
//! returned `Ok` (effects durable, next event published); a failed one is made visible
//! again after `retry_delay` (a permanent failure at once, as on Lambda) and, after
//! maxReceiveCount receives, SQS moves it to the DLQ. A fatal failure stops the loop with
//! the error. The queue's visibility timeout is the in-flight window (the topology's
//! `queue.visibility_timeout_seconds`, 120 s): while a batch is in hand its messages are
//! renewed every third of it (training can outlast it), so another consumer never sees a
//! message that is still being worked on, and a crashed process's messages return within
//! the window.

use std::{future::Future, sync::Arc, time::Duration};

use aws_sdk_sqs::{
    Client,
    types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName},
};
use mlsec_runtime::{
    Handler, WorkError,
    batch::{Books, Delivery, heartbeat, process_batch},
    ports::RetryScheduler,
    topology::MAX_VISIBILITY_SECONDS,
};
use tracing::{error, info, warn};

use crate::errors::classify;

/// SQS returns at most 10 messages per receive.
pub const MAX_RECEIVE_BATCH: i32 = 10;
/// SQS's longest long-poll.
pub const MAX_WAIT_SECONDS: i32 = 20;

/// Counters of one driver run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DriverStats {
    pub received: u64,
    pub deleted: u64,
    pub failed: u64,
}

pub struct LocalDriver {
    pub sqs: Client,
    pub queue_url: String,
    pub handler: Arc<dyn Handler>,
    pub books: Books,
    /// Long-poll wait per receive (1..=20 s).
    pub wait_seconds: i32,
    /// Delay before a failed message becomes visible again.
    pub retry_delay: Duration,
    /// The queue's visibility timeout, the in-flight window: messages in hand are renewed
    /// for this long every third of it.
    pub visibility_timeout: Duration,
}

/// SQS batch entry ids allow only alphanumerics, `-` and `_`.
fn entry_id(message_id: &str) -> String {
    message_id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_")
}

impl LocalDriver {
    /// Polls until `shutdown` resolves (then finishes the batch in hand) or a fatal error.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<DriverStats, WorkError> {
        let mut stats = DriverStats::default();
        tokio::pin!(shutdown);
        let worker = self.handler.name();
        info!(worker, queue = %self.queue_url, "local driver started");
        loop {
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(MAX_RECEIVE_BATCH)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .wait_time_seconds(self.wait_seconds.clamp(0, MAX_WAIT_SECONDS))
                .send();
            let out = tokio::select! {
                // A receive cancelled mid-flight loses nothing: any message it took
                // becomes visible again after the visibility timeout.
                _ = &mut shutdown => break,
                out = receive => out,
            };
            let out = match out {
                Ok(out) => out,
                Err(e) => {
                    let e = classify("sqs:ReceiveMessage", e);
                    if e.class() == mlsec_runtime::ErrorClass::Fatal {
                        return Err(e);
                    }
                    warn!(worker, error = %e, "receive failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let messages = out.messages();
            if messages.is_empty() {
                continue;
            }
            stats.received += messages.len() as u64;
            let mut receipts = std::collections::HashMap::new();
            let mut batch = Vec::with_capacity(messages.len());
            for m in messages {
                if let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) {
                    receipts.insert(id.to_string(), receipt.to_string());
                    let receive_count = m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1);
                    batch.push(Delivery {
                        id: id.to_string(),
                        body: m.body().unwrap_or_default().to_string(),
                        receive_count,
                    });
                }
            }
            // The receive made them invisible for the queue's timeout, the in-flight window:
            // renew it every third of the window while the batch is worked on.
            let in_hand: Vec<(String, String)> =
                receipts.values().map(|r| (self.queue_url.clone(), r.clone())).collect();
            let window = self.visibility_timeout.as_secs().clamp(3, MAX_VISIBILITY_SECONDS as u64) as i32;
            let visibility = QueueVisibility(&self.sqs);
            let first = Duration::from_secs(window as u64 / 3);
            let report = tokio::select! {
                report = process_batch(self.handler.as_ref(), &self.books, batch) => report,
                never = heartbeat(&visibility, worker, &in_hand, window, first) => match never {},
            };
            let mut deletes = Vec::new();
            for (id, outcome) in &report.outcomes {
                let receipt = &receipts[id];
                if let Some(delay) =
                    outcome.redelivery_delay(self.retry_delay.as_secs().min(MAX_VISIBILITY_SECONDS as u64) as i32)
                {
                    stats.failed += 1;
                    if let Err(e) = self
                        .sqs
                        .change_message_visibility()
                        .queue_url(&self.queue_url)
                        .receipt_handle(receipt)
                        .visibility_timeout(delay)
                        .send()
                        .await
                    {
                        // Not fatal: the message simply becomes visible after the queue's timeout.
                        warn!(worker, message_id = %id, error = %classify("sqs:ChangeMessageVisibility", e), "cannot shorten visibility");
                    }
                } else {
                    deletes.push(
                        DeleteMessageBatchRequestEntry::builder()
                            .id(entry_id(id))
                            .receipt_handle(receipt)
                            .build()
                            .map_err(WorkError::fatal)?,
                    );
                }
            }
            if !deletes.is_empty() {
                let n = deletes.len() as u64;
                match self.sqs.delete_message_batch().queue_url(&self.queue_url).set_entries(Some(deletes)).send().await
                {
                    Ok(out) => {
                        let failed = out.failed().len() as u64;
                        stats.deleted += n - failed;
                        for f in out.failed() {
                            // Redelivery is harmless: the idempotency table skips it.
                            warn!(
                                worker,
                                entry = f.id(),
                                code = f.code(),
                                "delete failed; message will be redelivered"
                            );
                        }
                    }
                    Err(e) => {
                        warn!(worker, error = %classify("sqs:DeleteMessageBatch", e), "delete failed; messages will be redelivered")
                    }
                }
            }
            if let Some(reason) = report.fatal() {
                error!(worker, reason, "stopping on fatal error");
                return Err(WorkError::fatal(reason));
            }
        }
        info!(worker, ?stats, "local driver stopped");
        Ok(stats)
    }
}

/// The local driver's [`RetryScheduler`]: visibility changes on its one queue (the
/// `queue` argument is that queue's URL).
struct QueueVisibility<'a>(&'a Client);

#[async_trait::async_trait]
impl RetryScheduler for QueueVisibility<'_> {
    async fn retry_after(&self, queue: &str, receipt_handle: &str, delay_seconds: i32) -> Result<(), WorkError> {
        self.0
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay_seconds)
            .send()
            .await
            .map_err(|e| classify("sqs:ChangeMessageVisibility", e))?;
        Ok(())
    }
}
