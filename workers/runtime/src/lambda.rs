//! The Lambda driver: an `SqsEvent` in, an `SqsBatchResponse` out, with the ids of the
//! messages to retry in `batchItemFailures` (the event-source mapping must enable
//! `ReportBatchItemFailures`). A fatal failure fails the whole invocation.

use std::{collections::HashMap, sync::Arc};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use tracing::warn;

use crate::{
    Handler, WorkError,
    batch::process_batch,
    ports::{Idempotency, RetryScheduler},
    topology::MAX_VISIBILITY_SECONDS,
};

/// Seconds before a transiently failed message is retried (`MLSEC_RETRY_DELAY_SECONDS`).
pub const DEFAULT_RETRY_DELAY_SECONDS: i32 = 30;

fn retry_delay_seconds() -> i32 {
    std::env::var("MLSEC_RETRY_DELAY_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| (0..=MAX_VISIBILITY_SECONDS).contains(s))
        .unwrap_or(DEFAULT_RETRY_DELAY_SECONDS)
}

/// Handles one Lambda invocation. Failed messages are reported in `batchItemFailures`;
/// their visibility is shortened first, so SQS hands a transient failure back after
/// `retry_delay` seconds and a permanent one at once (it reaches the DLQ after
/// maxReceiveCount quick receives instead of hours of visibility timeouts). If that call
/// fails, the message still comes back when the queue's visibility timeout ends.
pub async fn handle_sqs_event(
    handler: &dyn Handler,
    idempotency: &Arc<dyn Idempotency>,
    retry: &dyn RetryScheduler,
    retry_delay: i32,
    event: SqsEvent,
) -> Result<SqsBatchResponse, WorkError> {
    let mut response = SqsBatchResponse::default();
    let mut messages = Vec::with_capacity(event.records.len());
    let mut handles = HashMap::new();
    for record in event.records {
        match (record.message_id, record.body) {
            (Some(id), Some(body)) => {
                if let (Some(arn), Some(receipt)) = (record.event_source_arn, record.receipt_handle) {
                    handles.insert(id.clone(), (arn, receipt));
                }
                messages.push((id, body))
            }
            (Some(id), None) => response.add_failure(id),
            // Without an id the message cannot be reported; failing the invocation
            // keeps it on the queue instead of losing it.
            (None, _) => return Err(WorkError::fatal("SQS record without messageId")),
        }
    }
    let report = process_batch(handler, idempotency, messages).await;
    if let Some(reason) = report.fatal() {
        return Err(WorkError::fatal(reason));
    }
    for (id, outcome) in &report.outcomes {
        let Some(delay) = outcome.redelivery_delay(retry_delay) else { continue };
        if let Some((arn, receipt)) = handles.get(id)
            && let Err(e) = retry.retry_after(arn, receipt, delay).await
        {
            warn!(worker = handler.name(), message_id = %id, error = %e, "cannot shorten visibility; the message returns after the queue's timeout");
        }
        response.add_failure(id.clone());
    }
    Ok(response)
}

/// Runs `handler` as a Lambda function until the runtime stops it. First removes the
/// spill files a timed-out predecessor left in `/tmp`.
pub async fn run(
    handler: Arc<dyn Handler>,
    idempotency: Arc<dyn Idempotency>,
    retry: Arc<dyn RetryScheduler>,
) -> Result<(), lambda_runtime::Error> {
    // Before any work: this process is alone with /tmp, whatever pid its predecessor had.
    crate::spill::sweep_stale(&crate::spill::spill_dir(), crate::spill::Sweep::All);
    let retry_delay = retry_delay_seconds();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        let idempotency = idempotency.clone();
        let retry = retry.clone();
        async move {
            handle_sqs_event(handler.as_ref(), &idempotency, retry.as_ref(), retry_delay, event.payload).await.map_err(
                |e| lambda_runtime::Diagnostic { error_type: "WorkerFatal".into(), error_message: e.to_string() },
            )
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_lambda_events::event::sqs::SqsEvent;

    use super::*;
    use crate::{
        ErrorClass,
        fakes::{MemoryIdempotency, MemoryRetry, ScriptedHandler, object_created_body as body},
    };

    fn idem() -> Arc<dyn Idempotency> {
        Arc::new(MemoryIdempotency::default())
    }

    fn sqs_event(records: &[(&str, String)]) -> SqsEvent {
        let records: Vec<_> = records
            .iter()
            .map(|(id, b)| {
                serde_json::json!({"messageId": id, "body": b, "eventSource": "aws:sqs",
                    "receiptHandle": format!("rh-{id}"), "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:q"})
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    #[tokio::test]
    async fn the_lambda_driver_reports_failed_ids_and_fails_the_invocation_on_fatal() {
        let h = ScriptedHandler::default();
        let idem = idem();
        let retry = MemoryRetry::default();
        let event = sqs_event(&[("a", body("ok")), ("b", body("transient")), ("c", "garbage".into())]);
        let r = handle_sqs_event(&h, &idem, &retry, 30, event).await.unwrap();
        let ids: Vec<_> = r.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        assert_eq!(ids, vec!["b", "c"]);
        let err = handle_sqs_event(&h, &idem, &retry, 30, sqs_event(&[("d", body("fatal"))])).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Fatal);
    }

    #[tokio::test]
    async fn the_lambda_driver_brings_failed_messages_back_soon_instead_of_after_the_visibility_timeout() {
        let h = ScriptedHandler::default();
        let idem = idem();
        let retry = MemoryRetry::default();
        let event = sqs_event(&[("a", body("ok")), ("b", body("transient")), ("c", "garbage".into())]);
        handle_sqs_event(&h, &idem, &retry, 30, event).await.unwrap();
        let arn = "arn:aws:sqs:eu-west-1:123456789012:q".to_string();
        // Transient: back after the retry delay. Permanent: back at once, so it reaches
        // the DLQ after maxReceiveCount quick receives. Done: left alone (Lambda deletes it).
        assert_eq!(
            *retry.calls.lock().unwrap(),
            vec![(arn.clone(), "rh-b".to_string(), 30), (arn, "rh-c".to_string(), 0)]
        );
        // If SQS refuses the change, the message is still reported as failed.
        retry.fail_next(1);
        let r = handle_sqs_event(&h, &idem, &retry, 30, sqs_event(&[("e", body("transient"))])).await.unwrap();
        assert_eq!(r.batch_item_failures.len(), 1);
    }
}
