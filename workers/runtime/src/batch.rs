//! The runtime-agnostic batch core: both drivers hand it a batch of raw messages and
//! act on the outcomes it returns. Messages of a batch are handled concurrently.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::future::join_all;
use tracing::{error, info, warn};

use crate::{
    ErrorClass, Inbound, WorkError,
    ports::{Claim, Idempotency},
};

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
    /// Another delivery of the same input holds its claim: keep the message and offer it
    /// again when that claim's lease ends (it finds the input done, or takes it over).
    Busy { retry_in_seconds: i32 },
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
            Outcome::Busy { retry_in_seconds } => Some(*retry_in_seconds),
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

/// How long a claim holds an input without renewal (`MLSEC_CLAIM_LEASE_SECONDS`): a
/// crashed holder's input can be retried this long after its last renewal. The holder
/// renews every third of it while it works, however long the work takes.
pub const DEFAULT_LEASE_SECONDS: u64 = 120;

/// The claim lease of this process.
pub fn lease() -> Duration {
    let seconds = std::env::var("MLSEC_CLAIM_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| (3..=crate::topology::MAX_VISIBILITY_SECONDS as u64).contains(s))
        .unwrap_or(DEFAULT_LEASE_SECONDS);
    Duration::from_secs(seconds)
}

/// Handles a batch of `(message_id, body)` pairs, claiming each input for [`lease()`].
pub async fn process_batch(
    handler: &dyn Handler,
    idempotency: &Arc<dyn Idempotency>,
    messages: Vec<(String, String)>,
) -> BatchReport {
    process_batch_with(handler, idempotency, messages, lease()).await
}

/// [`process_batch`] with an explicit claim lease.
pub async fn process_batch_with(
    handler: &dyn Handler,
    idempotency: &Arc<dyn Idempotency>,
    messages: Vec<(String, String)>,
    lease: Duration,
) -> BatchReport {
    let futures = messages.into_iter().map(|(id, body)| async move {
        let outcome = process_one(handler, idempotency.as_ref(), &id, &body, lease).await;
        (id, outcome)
    });
    BatchReport { outcomes: join_all(futures).await }
}

/// What one delivery did with its input.
enum Handled {
    Done(String, String),
    Duplicate,
    Busy(i64),
}

async fn process_one(
    handler: &dyn Handler,
    idempotency: &dyn Idempotency,
    id: &str,
    body: &str,
    lease: Duration,
) -> Outcome {
    let worker = handler.name();
    let lease_ms = lease.as_millis() as i64;
    let result = async {
        let message = Inbound::parse(id, body)?;
        let input_id = message.input_id();
        let token = match idempotency.claim(worker, &input_id, lease_ms).await? {
            Claim::Done => return Ok(Handled::Duplicate),
            Claim::Held { until_ms } => return Ok(Handled::Busy(until_ms)),
            Claim::Acquired(l) => l.token,
        };
        let work = async {
            let summary = tokio::select! {
                summary = handler.handle(&message) => summary?,
                lost = keep_claim(idempotency, worker, &input_id, &token, lease) => return Err(lost),
            };
            // Only now: the effects and the next event are durable.
            idempotency.complete(worker, &input_id, &token).await?;
            Ok(summary)
        };
        match work.await {
            Ok(summary) => Ok(Handled::Done(input_id, summary)),
            Err(e) => {
                if let Err(r) = idempotency.release(worker, &input_id, &token).await {
                    // The lease runs out by itself; the retry waits for it.
                    warn!(worker, message_id = id, error = %r, "cannot release the claim");
                }
                Err(e)
            }
        }
    }
    .await;
    match result {
        Ok(Handled::Done(input_id, summary)) => {
            info!(worker, message_id = id, input_id, summary, "message handled");
            Outcome::Done
        }
        Ok(Handled::Duplicate) => {
            info!(worker, message_id = id, "duplicate input skipped");
            Outcome::Duplicate
        }
        Ok(Handled::Busy(until_ms)) => {
            let seconds = ((until_ms - crate::now_ms()).max(0) + 999) / 1000;
            info!(
                worker,
                message_id = id,
                retry_in_seconds = seconds,
                "another delivery holds this input; retry after its lease"
            );
            Outcome::Busy {
                retry_in_seconds: seconds.clamp(1, i64::from(crate::topology::MAX_VISIBILITY_SECONDS)) as i32,
            }
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

/// The in-flight window: how long a message a driver works on stays invisible without a
/// renewal (`MLSEC_VISIBILITY_WINDOW_SECONDS`, the topology's
/// `queue.visibility_timeout_seconds`). A crashed process's messages return within it.
pub const DEFAULT_WINDOW_SECONDS: i32 = 120;

/// The window of this process (the Lambda driver's; the local driver reads the topology).
pub fn window_seconds() -> i32 {
    std::env::var("MLSEC_VISIBILITY_WINDOW_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| (3..=crate::topology::MAX_VISIBILITY_SECONDS).contains(s))
        .unwrap_or(DEFAULT_WINDOW_SECONDS)
}

/// Keeps the messages in hand (`(queue, receipt handle)`) invisible for `window_seconds`
/// from each renewal, renewing every third of the window, until the caller drops it.
/// The first renewal comes after `first_after` (zero on Lambda, whose queue timeout is at
/// least the function's and so longer than the window). A failed renewal is logged; the
/// message then returns at the end of its current window, and its claim keeps a second
/// delivery from running it twice.
pub async fn heartbeat(
    visibility: &dyn crate::ports::RetryScheduler,
    worker: &str,
    in_hand: &[(String, String)],
    window_seconds: i32,
    first_after: Duration,
) -> std::convert::Infallible {
    let period = Duration::from_secs((window_seconds / 3).max(1) as u64);
    tokio::time::sleep(first_after).await;
    loop {
        for (queue, receipt) in in_hand {
            if let Err(e) = visibility.retry_after(queue, receipt, window_seconds).await {
                warn!(worker, error = %e, "cannot renew a message's visibility; it returns at the end of its window");
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Renews the claim every third of the lease while the handler works; returns only when
/// the claim was lost (its lease ran out and another delivery took the input), which
/// stops this delivery's work. A failed renewal is retried at the next period.
async fn keep_claim(
    idempotency: &dyn Idempotency,
    worker: &str,
    input_id: &str,
    token: &str,
    lease: Duration,
) -> WorkError {
    let period = (lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        match idempotency.renew(worker, input_id, token, lease.as_millis() as i64).await {
            Ok(true) => {}
            Ok(false) => {
                return WorkError::transient(
                    "idempotency:renew",
                    "the claim ran out and another delivery took the input",
                );
            }
            Err(e) => warn!(worker, input_id, error = %e, "cannot renew the claim; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{ClaimItem, MemoryIdempotency, ScriptedHandler, SlowHandler, object_created_body as body};

    fn input_id(body: &str) -> String {
        Inbound::parse("m", body).unwrap().input_id()
    }

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

    #[tokio::test]
    async fn two_concurrent_deliveries_of_one_input_run_the_handler_once() {
        let h = SlowHandler::new(200);
        let (fake, idem) = idem();
        let lease = Duration::from_secs(60);
        let both = vec![("1".into(), body("same")), ("2".into(), body("same"))];
        let report = process_batch_with(&h, &idem, both, lease).await;
        let outcomes: Vec<_> = report.outcomes.iter().map(|(_, o)| o.clone()).collect();
        assert!(outcomes.contains(&Outcome::Done), "{outcomes:?}");
        let busy = outcomes.iter().find(|o| matches!(o, Outcome::Busy { .. })).expect("one delivery waits");
        // The waiting copy comes back when the holder's lease would end, not at once.
        assert!(matches!(busy.redelivery_delay(30), Some(s) if (1..=60).contains(&s)), "{busy:?}");
        assert_eq!(h.counts(), (1, 1));
        assert_eq!(fake.item("slow", &input_id(&body("same"))), Some(ClaimItem::Done));
        // When it comes back, the input is done: deleted without a second run.
        let again = process_batch_with(&h, &idem, vec![("2".into(), body("same"))], lease).await;
        assert_eq!(again.outcomes[0].1, Outcome::Duplicate);
        assert_eq!(h.counts(), (1, 1));
    }

    #[tokio::test]
    async fn a_crashed_holders_input_is_retried_once_its_lease_runs_out() {
        let h = ScriptedHandler::default();
        let (fake, idem) = idem();
        let id = input_id(&body("ok"));
        // A delivery claimed the input and died without completing or releasing it.
        assert!(matches!(fake.claim("scripted", &id, 300).await.unwrap(), Claim::Acquired(_)));
        let held = process_batch(&h, &idem, vec![("1".into(), body("ok"))]).await;
        assert!(matches!(held.outcomes[0].1, Outcome::Busy { .. }), "{:?}", held.outcomes);
        assert!(h.calls.lock().unwrap().is_empty(), "a live lease is respected");
        tokio::time::sleep(Duration::from_millis(350)).await;
        let retried = process_batch(&h, &idem, vec![("1".into(), body("ok"))]).await;
        assert_eq!(retried.outcomes[0].1, Outcome::Done);
        assert_eq!(h.calls.lock().unwrap().len(), 1);
        assert_eq!(fake.item("scripted", &id), Some(ClaimItem::Done));
    }

    #[tokio::test]
    async fn a_failed_attempt_gives_its_claim_up_so_the_retry_need_not_wait_for_the_lease() {
        let h = ScriptedHandler::default();
        let (fake, idem) = idem();
        let report = process_batch(&h, &idem, vec![("1".into(), body("transient"))]).await;
        assert!(matches!(report.outcomes[0].1, Outcome::Failed { class: ErrorClass::Transient, .. }));
        assert_eq!(fake.item("scripted", &input_id(&body("transient"))), None, "released");
        assert_eq!(*fake.calls.lock().unwrap(), vec!["claim", "release"], "never completed");
        // A claim that cannot be written runs nothing.
        fake.fail_next_op("claim", 1);
        let report = process_batch(&h, &idem, vec![("2".into(), body("ok"))]).await;
        assert!(matches!(report.outcomes[0].1, Outcome::Failed { class: ErrorClass::Transient, .. }));
        assert_eq!(h.calls.lock().unwrap().len(), 1, "only the first attempt ran the handler");
    }

    #[tokio::test]
    async fn the_holder_renews_its_lease_while_it_works_and_stops_when_the_claim_is_lost() {
        // Work three times longer than the lease: renewals keep the claim.
        let h = SlowHandler::new(900);
        let (fake, idem) = idem();
        let lease = Duration::from_millis(300);
        let report = process_batch_with(&h, &idem, vec![("1".into(), body("long"))], lease).await;
        assert_eq!(report.outcomes[0].1, Outcome::Done);
        let renewals = fake.calls.lock().unwrap().iter().filter(|c| *c == "renew").count();
        assert!(renewals >= 2, "{renewals} renewals");
        // Another delivery takes the input over while this one works: this one stops.
        let h = SlowHandler::new(2_000);
        let id = input_id(&body("taken"));
        let thief = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fake.complete("slow", &id, "another delivery").await.unwrap();
        };
        let (report, ()) = tokio::join!(process_batch_with(&h, &idem, vec![("2".into(), body("taken"))], lease), thief);
        assert!(
            matches!(&report.outcomes[0].1, Outcome::Failed { class: ErrorClass::Transient, reason } if reason.contains("claim"))
        );
        assert_eq!(h.counts(), (1, 0), "the work was stopped");
        assert_eq!(fake.item("slow", &id), Some(ClaimItem::Done), "the other delivery's completion stands");
    }
}
