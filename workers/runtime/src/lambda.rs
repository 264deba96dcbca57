//! The Lambda driver: an `SqsEvent` in, an `SqsBatchResponse` out, with the ids of the
//! messages to retry in `batchItemFailures` (the event-source mapping must enable
//! `ReportBatchItemFailures`). A fatal failure fails the whole invocation.

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use tokio::time::Instant;
use tracing::warn;

use crate::{
    Handler, WorkError,
    batch::{Books, Delivery, heartbeat, process_batch, record_abandoned},
    ports::RetryScheduler,
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

/// How close to its deadline an invocation stops working and hands its messages back.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// The Lambda driver's timing.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Seconds before a transiently failed message is retried.
    pub retry_delay: i32,
    /// The in-flight window renewed while the batch is worked on.
    pub window: i32,
}

impl Timing {
    pub fn from_env() -> Self {
        Self { retry_delay: retry_delay_seconds(), window: crate::batch::window_seconds() }
    }
}

/// Handles one Lambda invocation. While the batch is worked on, its messages are kept
/// invisible for the in-flight window only, renewed every third of it (the queue's own
/// timeout is at least the function's, as Lambda requires): a crashed invocation's
/// messages return within the window. Failed messages are reported in
/// `batchItemFailures`; their visibility is shortened first, so SQS hands a transient
/// failure back after `retry_delay` seconds and a permanent one at once (it reaches the DLQ
/// after maxReceiveCount quick receives). If that call fails, the message still comes back
/// at the end of its window. When the invocation nears its `deadline`, the work stops and
/// every message of the batch is handed back the same way (those already done are skipped
/// as duplicates when they return) instead of waiting out a timeout.
pub async fn handle_sqs_event(
    handler: &dyn Handler,
    books: &Books,
    retry: &dyn RetryScheduler,
    timing: Timing,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> Result<SqsBatchResponse, WorkError> {
    let mut response = SqsBatchResponse::default();
    let mut messages = Vec::with_capacity(event.records.len());
    let mut handles = HashMap::new();
    for record in event.records {
        let receive_count = record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
        match (record.message_id, record.body) {
            (Some(id), Some(body)) => {
                if let (Some(arn), Some(receipt)) = (record.event_source_arn, record.receipt_handle) {
                    handles.insert(id.clone(), (arn, receipt));
                }
                messages.push(Delivery { id, body, receive_count })
            }
            (Some(id), None) => response.add_failure(id),
            // Without an id the message cannot be reported; failing the invocation
            // keeps it on the queue instead of losing it.
            (None, _) => return Err(WorkError::fatal("SQS record without messageId")),
        }
    }
    let taken = messages.clone();
    let in_hand: Vec<(String, String)> = handles.values().cloned().collect();
    let stop = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.checked_sub(DEADLINE_MARGIN).unwrap_or(d)).await,
            None => std::future::pending().await,
        }
    };
    let report = tokio::select! {
        report = process_batch(handler, books, messages) => Some(report),
        never = heartbeat(retry, handler.name(), &in_hand, timing.window, Duration::ZERO) => match never {},
        () = stop => None,
    };
    let Some(report) = report else {
        warn!(
            worker = handler.name(),
            messages = taken.len(),
            "the invocation nears its deadline: the batch is handed back"
        );
        record_abandoned(handler.name(), books, &taken, "lambda:deadline").await;
        // The stopped work still holds its claims: hand back after their lease, so that the
        // retry takes the input over instead of finding it held.
        let delay = timing.retry_delay.max(books.lease.as_secs().min(MAX_VISIBILITY_SECONDS as u64) as i32);
        for d in taken {
            hand_back(handler, retry, &handles, &d.id, delay).await;
            response.add_failure(d.id);
        }
        return Ok(response);
    };
    if let Some(reason) = report.fatal() {
        return Err(WorkError::fatal(reason));
    }
    for (id, outcome) in &report.outcomes {
        let Some(delay) = outcome.redelivery_delay(timing.retry_delay) else { continue };
        hand_back(handler, retry, &handles, id, delay).await;
        response.add_failure(id.clone());
    }
    Ok(response)
}

/// Makes a kept message visible again after `delay` seconds.
async fn hand_back(
    handler: &dyn Handler,
    retry: &dyn RetryScheduler,
    handles: &HashMap<String, (String, String)>,
    id: &str,
    delay: i32,
) {
    if let Some((arn, receipt)) = handles.get(id)
        && let Err(e) = retry.retry_after(arn, receipt, delay).await
    {
        warn!(worker = handler.name(), message_id = %id, error = %e, "cannot shorten visibility; the message returns at the end of its window");
    }
}

/// Runs `handler` as a Lambda function until the runtime stops it. First removes the
/// spill files a timed-out predecessor left in `/tmp`.
pub async fn run(
    handler: Arc<dyn Handler>,
    books: Books,
    retry: Arc<dyn RetryScheduler>,
) -> Result<(), lambda_runtime::Error> {
    // Before any work: this process is alone with /tmp, whatever pid its predecessor had.
    crate::spill::sweep_stale(&crate::spill::spill_dir(), crate::spill::Sweep::All);
    let timing = Timing::from_env();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        let books = books.clone();
        let retry = retry.clone();
        // The context's deadline is in ms since the epoch.
        let left = Duration::from_millis((event.context.deadline as i64 - crate::now_ms()).max(0) as u64);
        let deadline = Instant::now() + left;
        async move {
            handle_sqs_event(handler.as_ref(), &books, retry.as_ref(), timing, event.payload, Some(deadline))
                .await
                .map_err(|e| lambda_runtime::Diagnostic {
                    error_type: "WorkerFatal".into(),
                    error_message: e.to_string(),
                })
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
        ErrorClass, Inbound,
        fakes::{MemoryBus, MemoryIdempotency, MemoryRetry, ScriptedHandler, SlowHandler, object_created_body as body},
    };

    fn idem() -> Books {
        Books {
            idempotency: Arc::new(MemoryIdempotency::default()),
            bus: Arc::new(MemoryBus::default()),
            max_receive_count: 3,
            lease: crate::batch::lease(),
        }
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

    const WINDOW: i32 = 120;

    fn timing(retry_delay: i32) -> Timing {
        Timing { retry_delay, window: WINDOW }
    }

    /// The hand-backs (calls other than the heartbeat's window renewals).
    fn hand_backs(retry: &MemoryRetry) -> Vec<(String, String, i32)> {
        retry.calls.lock().unwrap().iter().filter(|c| c.2 != WINDOW).cloned().collect()
    }

    #[tokio::test]
    async fn the_lambda_driver_reports_failed_ids_and_fails_the_invocation_on_fatal() {
        let h = ScriptedHandler::default();
        let idem = idem();
        let retry = MemoryRetry::default();
        let event = sqs_event(&[("a", body("ok")), ("b", body("transient")), ("c", "garbage".into())]);
        let r = handle_sqs_event(&h, &idem, &retry, timing(30), event, None).await.unwrap();
        let ids: Vec<_> = r.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        assert_eq!(ids, vec!["b", "c"]);
        let err = handle_sqs_event(&h, &idem, &retry, timing(30), sqs_event(&[("d", body("fatal"))]), None)
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Fatal);
    }

    #[tokio::test]
    async fn the_lambda_driver_brings_failed_messages_back_soon_instead_of_after_the_visibility_timeout() {
        let h = ScriptedHandler::default();
        let idem = idem();
        let retry = MemoryRetry::default();
        let event = sqs_event(&[("a", body("ok")), ("b", body("transient")), ("c", "garbage".into())]);
        handle_sqs_event(&h, &idem, &retry, timing(30), event, None).await.unwrap();
        let arn = "arn:aws:sqs:eu-west-1:123456789012:q".to_string();
        // Transient: back after the retry delay. Permanent: back at once, so it reaches
        // the DLQ after maxReceiveCount quick receives. Done: left alone (Lambda deletes it).
        assert_eq!(hand_backs(&retry), vec![(arn.clone(), "rh-b".to_string(), 30), (arn, "rh-c".to_string(), 0)]);
        // If SQS refuses the change, the message is still reported as failed.
        retry.fail_next(1);
        let r = handle_sqs_event(&h, &idem, &retry, timing(30), sqs_event(&[("e", body("transient"))]), None)
            .await
            .unwrap();
        assert_eq!(r.batch_item_failures.len(), 1);
    }

    #[tokio::test]
    async fn the_lambda_driver_keeps_a_batch_invisible_for_the_window_only_renewing_it_while_it_works() {
        let h = SlowHandler::new(2_500);
        let idem = idem();
        let retry = MemoryRetry::default();
        let timing = Timing { retry_delay: 30, window: 3 };
        let r = handle_sqs_event(&h, &idem, &retry, timing, sqs_event(&[("a", body("long"))]), None).await.unwrap();
        assert!(r.batch_item_failures.is_empty());
        let calls = retry.calls.lock().unwrap().clone();
        // At once (the queue's own timeout is the function's, longer than the window), then
        // every second while the work lasts: a crash leaves the message hidden 3 s at most.
        assert!(calls.len() >= 3, "{calls:?}");
        assert!(calls.iter().all(|c| c.1 == "rh-a" && c.2 == 3), "{calls:?}");
    }

    #[tokio::test]
    async fn near_its_deadline_the_lambda_driver_stops_records_and_hands_the_batch_back() {
        let h = SlowHandler::new(60_000);
        let fake = Arc::new(MemoryIdempotency::default());
        let idem = Books { idempotency: fake.clone(), ..idem() };
        let retry = MemoryRetry::default();
        let deadline = Instant::now() + DEADLINE_MARGIN + Duration::from_millis(200);
        let event = sqs_event(&[("a", body("huge")), ("b", body("other"))]);
        // A window unlike the lease, to tell renewals from hand-backs.
        let timing = Timing { retry_delay: 7, window: 90 };
        let r = handle_sqs_event(&h, &idem, &retry, timing, event, Some(deadline)).await.unwrap();
        let mut ids: Vec<_> = r.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        ids.sort();
        assert_eq!(ids, vec!["a", "b"], "reported, not lost to a timeout");
        assert_eq!(h.counts(), (2, 0), "the work was stopped");
        // Back when the stopped work's claims have lapsed (the lease), not at once.
        let lease = idem.lease.as_secs() as i32;
        let back: Vec<_> =
            retry.calls.lock().unwrap().iter().filter(|c| c.2 != 90).map(|c| (c.1.clone(), c.2)).collect();
        assert!(back.contains(&("rh-a".into(), lease)) && back.contains(&("rh-b".into(), lease)), "{back:?}");
        // And each stopped attempt is on record, so that a message that always times out is
        // parked explained.
        let key = Inbound::parse("a", &body("huge")).unwrap().input_id();
        let record = fake.failure("slow", &key).expect("a failure record");
        assert_eq!(record.operation.as_deref(), Some("lambda:deadline"));
    }
}
