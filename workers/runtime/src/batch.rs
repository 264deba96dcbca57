//! The runtime-agnostic batch core: both drivers hand it a batch of raw messages and
//! act on the outcomes it returns. Messages of a batch are handled concurrently.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use tracing::{error, info, warn};

use crate::{ErrorClass, Inbound, WorkError, ports::Idempotency};

/// A zone's logic for one message. It must make its effects durable (objects written,
/// next event published) before returning `Ok`: the drivers delete the message then.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Worker name, e.g. `ingest` (logs, idempotency keys, event sources).
    fn name(&self) -> &'static str;
    /// Handles one message; returns a short summary for the log (ids and counts only).
    async fn handle(&self, message: &Inbound) -> Result<String, WorkError>;
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Effects durable; delete the message.
    Done,
    /// Already handled before (redelivery); delete the message.
    Duplicate,
    /// Keep the message (redelivery, then DLQ). `Fatal` also stops the worker.
    Failed { class: ErrorClass, reason: String },
}

impl Outcome {
    pub fn deletable(&self) -> bool {
        matches!(self, Outcome::Done | Outcome::Duplicate)
    }

    /// Seconds until a kept message should be visible again, for both drivers: a transient
    /// failure after `transient_seconds`, a permanent one at once (it reaches the DLQ after
    /// maxReceiveCount quick receives). `None` for a message to delete.
    pub fn redelivery_delay(&self, transient_seconds: i32) -> Option<i32> {
        match self {
            Outcome::Done | Outcome::Duplicate => None,
            Outcome::Failed { class: ErrorClass::Permanent, .. } => Some(0),
            Outcome::Failed { .. } => Some(transient_seconds.clamp(0, crate::topology::MAX_VISIBILITY_SECONDS)),
        }
    }
}

/// Outcomes of a batch, in input order.
#[derive(Debug, Default)]
pub struct BatchReport {
    pub outcomes: Vec<(String, Outcome)>,
}

impl BatchReport {
    /// Message ids to report as failed (`batchItemFailures`) / not to delete.
    pub fn failed_ids(&self) -> Vec<&str> {
        self.outcomes.iter().filter(|(_, o)| !o.deletable()).map(|(id, _)| id.as_str()).collect()
    }
    /// The first fatal failure, if any.
    pub fn fatal(&self) -> Option<&str> {
        self.outcomes.iter().find_map(|(_, o)| match o {
            Outcome::Failed { class: ErrorClass::Fatal, reason } => Some(reason.as_str()),
            _ => None,
        })
    }
}

/// Handles a batch of `(message_id, body)` pairs.
pub async fn process_batch(
    handler: &dyn Handler,
    idempotency: &Arc<dyn Idempotency>,
    messages: Vec<(String, String)>,
) -> BatchReport {
    let futures = messages.into_iter().map(|(id, body)| async move {
        let outcome = process_one(handler, idempotency.as_ref(), &id, &body).await;
        (id, outcome)
    });
    BatchReport { outcomes: join_all(futures).await }
}

async fn process_one(handler: &dyn Handler, idempotency: &dyn Idempotency, id: &str, body: &str) -> Outcome {
    let worker = handler.name();
    let result = async {
        let message = Inbound::parse(id, body)?;
        let input_id = message.input_id();
        if idempotency.is_done(worker, &input_id).await? {
            return Ok(None);
        }
        let summary = handler.handle(&message).await?;
        idempotency.mark_done(worker, &input_id).await?;
        Ok::<_, WorkError>(Some((input_id, summary)))
    }
    .await;
    match result {
        Ok(Some((input_id, summary))) => {
            info!(worker, message_id = id, input_id, summary, "message handled");
            Outcome::Done
        }
        Ok(None) => {
            info!(worker, message_id = id, "duplicate input skipped");
            Outcome::Duplicate
        }
        Err(e) => {
            let class = e.class();
            match class {
                ErrorClass::Permanent => {
                    warn!(worker, message_id = id, error = %e, "permanent failure; parked in the DLQ after maxReceiveCount")
                }
                ErrorClass::Transient => warn!(worker, message_id = id, error = %e, "transient failure; will retry"),
                ErrorClass::Fatal => error!(worker, message_id = id, error = %e, "fatal failure"),
            }
            Outcome::Failed { class, reason: e.to_string() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{MemoryIdempotency, ScriptedHandler, object_created_body as body};

    fn idem() -> (Arc<MemoryIdempotency>, Arc<dyn Idempotency>) {
        let m = Arc::new(MemoryIdempotency::default());
        (m.clone(), m)
    }

    #[tokio::test]
    async fn outcomes_follow_the_error_class_and_only_failures_are_kept() {
        let h = ScriptedHandler::default();
        let (_, idem) = idem();
        let report = process_batch(
            &h,
            &idem,
            vec![("1".into(), body("ok")), ("2".into(), body("transient")), ("3".into(), "garbage".into())],
        )
        .await;
        assert_eq!(report.outcomes[0].1, Outcome::Done);
        assert!(matches!(report.outcomes[1].1, Outcome::Failed { class: ErrorClass::Transient, .. }));
        assert!(matches!(report.outcomes[2].1, Outcome::Failed { class: ErrorClass::Permanent, .. }));
        assert_eq!(report.failed_ids(), vec!["2", "3"]);
        assert!(report.fatal().is_none());
    }

    #[test]
    fn both_drivers_bring_a_permanent_failure_back_at_once_and_a_transient_one_after_the_delay() {
        let failed = |class| Outcome::Failed { class, reason: String::new() };
        assert_eq!(failed(ErrorClass::Permanent).redelivery_delay(30), Some(0));
        assert_eq!(failed(ErrorClass::Transient).redelivery_delay(30), Some(30));
        assert_eq!(
            failed(ErrorClass::Transient).redelivery_delay(100_000),
            Some(crate::topology::MAX_VISIBILITY_SECONDS),
            "SQS's maximum"
        );
        assert_eq!(Outcome::Done.redelivery_delay(30), None);
        assert_eq!(Outcome::Duplicate.redelivery_delay(30), None);
    }

    #[tokio::test]
    async fn a_redelivered_input_is_skipped_without_calling_the_handler() {
        let h = ScriptedHandler::default();
        let (_, idem) = idem();
        process_batch(&h, &idem, vec![("1".into(), body("ok"))]).await;
        let again = process_batch(&h, &idem, vec![("9".into(), body("ok"))]).await;
        assert_eq!(again.outcomes[0].1, Outcome::Duplicate);
        assert_eq!(h.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn if_completion_cannot_be_recorded_the_message_is_kept() {
        let h = ScriptedHandler::default();
        let (fake, idem) = idem();
        fake.fail_next(1);
        let report = process_batch(&h, &idem, vec![("1".into(), body("ok"))]).await;
        assert_eq!(report.failed_ids(), vec!["1"]);
    }
}
