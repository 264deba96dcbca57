//! The Lambda driver: an `SqsEvent` in, an `SqsBatchResponse` out, with the ids of the
//! messages to retry in `batchItemFailures` (the event-source mapping must enable
//! `ReportBatchItemFailures`). A fatal failure fails the whole invocation.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};

use crate::{Handler, WorkError, batch::process_batch, ports::Idempotency};

/// Handles one Lambda invocation.
pub async fn handle_sqs_event(
    handler: &dyn Handler,
    idempotency: &Arc<dyn Idempotency>,
    event: SqsEvent,
) -> Result<SqsBatchResponse, WorkError> {
    let mut response = SqsBatchResponse::default();
    let mut messages = Vec::with_capacity(event.records.len());
    for record in event.records {
        match (record.message_id, record.body) {
            (Some(id), Some(body)) => messages.push((id, body)),
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
    for id in report.failed_ids() {
        response.add_failure(id.to_string());
    }
    Ok(response)
}

/// Runs `handler` as a Lambda function until the runtime stops it. First removes the
/// spill files a timed-out predecessor left in `/tmp`.
pub async fn run<H: Handler + 'static>(
    handler: Arc<H>,
    idempotency: Arc<dyn Idempotency>,
) -> Result<(), lambda_runtime::Error> {
    crate::spill::sweep_stale(&crate::spill::spill_dir());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        let idempotency = idempotency.clone();
        async move {
            handle_sqs_event(handler.as_ref(), &idempotency, event.payload).await.map_err(|e| {
                lambda_runtime::Diagnostic { error_type: "WorkerFatal".into(), error_message: e.to_string() }
            })
        }
    }))
    .await
}
