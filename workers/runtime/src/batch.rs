//! The runtime-agnostic batch core: both drivers hand it a batch of raw messages and
//! act on the outcomes it returns. Messages of a batch are handled concurrently.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::future::join_all;
use mlsec_events::{Envelope, ProcessingFailed, derive_event_id, sha256_hex};
use tracing::{error, info, warn};

use crate::{
    ErrorClass, Inbound, WorkError,
    ports::{Claim, EventPublisher, Failure, Idempotency},
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

/// A message as a driver received it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub body: String,
    /// SQS's `ApproximateReceiveCount` (1 on the first delivery).
    pub receive_count: u32,
}

impl Delivery {
    /// A first delivery.
    pub fn new(id: impl Into<String>, body: impl Into<String>) -> Self {
        Self { id: id.into(), body: body.into(), receive_count: 1 }
    }
}

/// What the batch core keeps its books with: claims and failure records, the bus that
/// announces a message parked for good (`ProcessingFailed`), and the queue's
/// maxReceiveCount that says when an attempt is the last.
#[derive(Clone)]
pub struct Books {
    pub idempotency: Arc<dyn Idempotency>,
    pub bus: Arc<dyn EventPublisher>,
    pub max_receive_count: u32,
    pub lease: Duration,
}

impl Books {
    /// Books for `worker`, with its queue's maxReceiveCount from the topology and the
    /// process's [`lease()`].
    pub fn new(worker: &str, idempotency: Arc<dyn Idempotency>, bus: Arc<dyn EventPublisher>) -> Self {
        let max_receive_count = crate::topology::Topology::shared()
            .workers
            .get(worker)
            .map_or(3, |w| w.queue.max_receive_count.max(1) as u32);
        Self { idempotency, bus, max_receive_count, lease: lease() }
    }
}

/// Handles a batch of deliveries, claiming each input for the books' lease.
pub async fn process_batch(handler: &dyn Handler, books: &Books, messages: Vec<Delivery>) -> BatchReport {
    let futures = messages.into_iter().map(|d| async move {
        let outcome = process_one(handler, books, &d).await;
        (d.id, outcome)
    });
    BatchReport { outcomes: join_all(futures).await }
}

/// What one delivery did with its input.
enum Handled {
    Done(String, String),
    Duplicate,
    Busy(i64),
}

async fn process_one(handler: &dyn Handler, books: &Books, delivery: &Delivery) -> Outcome {
    let (id, body, lease) = (delivery.id.as_str(), delivery.body.as_str(), books.lease);
    let idempotency = books.idempotency.as_ref();
    let worker = handler.name();
    let lease_ms = lease.as_millis() as i64;
    let message_sha256 = sha256_hex(body.as_bytes());
    let parsed = Inbound::parse(id, body);
    let result = async {
        let message = parsed.as_ref().map_err(clone_error)?;
        let input_id = message.input_id();
        if input_id.contains('#') {
            // Keys are `<worker>#<input>` and `<worker>#failure#<key>`: an id with `#` could
            // name another record (pipeline event ids are hex).
            return Err(WorkError::permanent("bad_event_id", "an event id may not contain '#'"));
        }
        let token = match idempotency.claim(worker, &input_id, &message_sha256, lease_ms).await? {
            Claim::Done => return Ok(Handled::Duplicate),
            Claim::Held { until_ms } => return Ok(Handled::Busy(until_ms)),
            Claim::Acquired(l) => l.token,
        };
        let work = async {
            let summary = tokio::select! {
                summary = crate::ports::attempt::scope(delivery.receive_count > 1, handler.handle(message)) => summary?,
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
            if delivery.receive_count >= books.max_receive_count {
                // SQS parks this copy next: say why, so that it is explained (and its origin
                // proven) in the DLQ. Its input is done or being done by the holder.
                let held = WorkError::transient("idempotency:claim", "another delivery held the input");
                record_failure(worker, books, failure_of(&parsed, &message_sha256, &held), true).await;
            }
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
            let last = delivery.receive_count >= books.max_receive_count;
            match class {
                ErrorClass::Permanent if last => {
                    warn!(worker, message_id = id, error = %e, "permanent failure; parked in the DLQ")
                }
                ErrorClass::Permanent => {
                    warn!(worker, message_id = id, error = %e, "permanent failure; parked in the DLQ after maxReceiveCount")
                }
                ErrorClass::Transient => warn!(worker, message_id = id, error = %e, "transient failure; will retry"),
                ErrorClass::Fatal => error!(worker, message_id = id, error = %e, "fatal failure"),
            }
            record_failure(worker, books, failure_of(&parsed, &message_sha256, &e), last).await;
            Outcome::Failed { class, reason: e.to_string() }
        }
    }
}

/// What a failed attempt of `delivery` is recorded as.
fn failure_of(parsed: &Result<Inbound, WorkError>, message_sha256: &str, e: &WorkError) -> Failure {
    Failure {
        input_key: parsed.as_ref().map_or_else(|_| format!("body-{message_sha256}"), |m| m.input_id()),
        message_sha256: message_sha256.to_string(),
        event_type: parsed.as_ref().ok().and_then(|m| m.schema().map(str::to_string)),
        dataset: parsed.as_ref().ok().and_then(inbound_dataset),
        correlation_id: parsed.as_ref().ok().and_then(inbound_correlation),
        error_class: e.class().as_str().to_string(),
        reason_code: e.reason_code().to_string(),
        operation: e.operation().map(str::to_string),
        at_ms: crate::now_ms(),
    }
}

/// Records the attempts of deliveries a driver gave up on without an outcome (the Lambda
/// driver near its deadline): a transient failure of `operation`, announced on the last
/// attempt the queue allows.
pub async fn record_abandoned(worker: &str, books: &Books, deliveries: &[Delivery], operation: &str) {
    for d in deliveries {
        let sha = sha256_hex(d.body.as_bytes());
        let parsed = Inbound::parse(&d.id, &d.body);
        let e = WorkError::transient(operation, "the work was stopped before it finished");
        let last = d.receive_count >= books.max_receive_count;
        record_failure(worker, books, failure_of(&parsed, &sha, &e), last).await;
    }
}

/// A parse error again (the parse result is kept for the failure record).
fn clone_error(e: &WorkError) -> WorkError {
    match e {
        WorkError::Permanent { reason, detail } => WorkError::Permanent { reason, detail: detail.clone() },
        WorkError::Transient { operation, detail } => {
            WorkError::Transient { operation: operation.clone(), detail: detail.clone() }
        }
        WorkError::Fatal(d) => WorkError::Fatal(d.clone()),
    }
}

fn inbound_dataset(m: &Inbound) -> Option<String> {
    match &m.body {
        crate::inbound::InboundBody::Pipeline(env) => env.dataset.clone(),
        crate::inbound::InboundBody::ObjectCreated(_) => None,
    }
}

fn inbound_correlation(m: &Inbound) -> Option<String> {
    match &m.body {
        crate::inbound::InboundBody::Pipeline(env) => Some(env.correlation_id.clone()),
        crate::inbound::InboundBody::ObjectCreated(_) => None,
    }
}

/// Records a failed attempt and, on the last one the queue allows, announces that the
/// message is parked (`ProcessingFailed`). Both are best effort: the message is kept
/// whatever happens here, and an unrecorded one is still in the DLQ (where `dlq list`
/// shows it without a record, and `dlq replay` refuses it: its origin is not proven).
async fn record_failure(worker: &str, books: &Books, failure: Failure, last: bool) {
    let record = match books.idempotency.record_failure(worker, &failure).await {
        Ok(r) => r,
        Err(e) => {
            warn!(worker, input_key = %failure.input_key, error = %e, "cannot record the failure");
            return;
        }
    };
    if !last {
        return;
    }
    let event = ProcessingFailed {
        event_id: derive_event_id(
            &format!("failed:{}:{}:{}", record.input_key, failure.message_sha256, record.attempts),
            worker,
        ),
        correlation_id: record.correlation_id.clone().unwrap_or_else(|| record.input_key.clone()),
        worker: worker.to_string(),
        input_key: record.input_key.clone(),
        event_type: record.event_type.clone(),
        dataset: record.dataset.clone(),
        error_class: record.error_class.clone(),
        reason_code: record.reason_code.clone(),
        operation: record.operation.clone(),
        attempts: record.attempts.min(i32::MAX as u32) as i32,
        message_sha256: failure.message_sha256.clone(),
        first_failure_ms: record.first_failure_ms,
        occurred_at_ms: record.last_failure_ms,
    };
    let published = match Envelope::wrap(&event) {
        Ok(env) => books.bus.publish(&[env]).await,
        Err(e) => Err(e.into()),
    };
    match published {
        Ok(()) => {
            info!(worker, input_key = %record.input_key, reason = %record.reason_code, "parked: ProcessingFailed announced")
        }
        Err(e) => warn!(worker, input_key = %record.input_key, error = %e, "cannot announce ProcessingFailed"),
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
/// the claim was lost (another delivery took the input, or completed it), which stops this
/// delivery's work. A failed renewal is retried at the next period, but once the lease
/// may have run out unrenewed the work stops too: another delivery could take it over.
async fn keep_claim(
    idempotency: &dyn Idempotency,
    worker: &str,
    input_id: &str,
    token: &str,
    lease: Duration,
) -> WorkError {
    let period = (lease / 3).max(Duration::from_millis(100));
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(period).await;
        match idempotency.renew(worker, input_id, token, lease.as_millis() as i64).await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => {
                return WorkError::transient(
                    "idempotency:renew",
                    "the claim was taken over or completed by another delivery",
                );
            }
            Err(e) if renewed.elapsed() + period >= lease => {
                return WorkError::transient(
                    "idempotency:renew",
                    format!("the claim could not be renewed within its lease: {e}"),
                );
            }
            Err(e) => warn!(worker, input_id, error = %e, "cannot renew the claim; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{
        ClaimItem, MemoryBus, MemoryIdempotency, ScriptedHandler, SlowHandler, object_created_body as body,
    };

    fn input_id(body: &str) -> String {
        Inbound::parse("m", body).unwrap().input_id()
    }

    fn idem() -> (Arc<MemoryIdempotency>, Books) {
        let (fake, books, _) = books_and_bus();
        (fake, books)
    }

    fn books_and_bus() -> (Arc<MemoryIdempotency>, Books, Arc<MemoryBus>) {
        let m = Arc::new(MemoryIdempotency::default());
        let bus = Arc::new(MemoryBus::default());
        let books = Books { idempotency: m.clone(), bus: bus.clone(), max_receive_count: 3, lease: lease() };
        (m, books, bus)
    }

    fn with_lease(books: &Books, lease: Duration) -> Books {
        Books { lease, ..books.clone() }
    }

    #[tokio::test]
    async fn outcomes_follow_the_error_class_and_only_failures_are_kept() {
        let h = ScriptedHandler::default();
        let (_, idem) = idem();
        let report = process_batch(
            &h,
            &idem,
            vec![Delivery::new("1", body("ok")), Delivery::new("2", body("transient")), Delivery::new("3", "garbage")],
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
        process_batch(&h, &idem, vec![Delivery::new("1", body("ok"))]).await;
        let again = process_batch(&h, &idem, vec![Delivery::new("9", body("ok"))]).await;
        assert_eq!(again.outcomes[0].1, Outcome::Duplicate);
        assert_eq!(h.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn if_completion_cannot_be_recorded_the_message_is_kept() {
        let h = ScriptedHandler::default();
        let (fake, idem) = idem();
        fake.fail_next(1);
        let report = process_batch(&h, &idem, vec![Delivery::new("1", body("ok"))]).await;
        assert_eq!(report.failed_ids(), vec!["1"]);
    }

    #[tokio::test]
    async fn two_concurrent_deliveries_of_one_input_run_the_handler_once() {
        let h = SlowHandler::new(200);
        let (fake, idem) = idem();
        let lease = Duration::from_secs(60);
        let both = vec![Delivery::new("1", body("same")), Delivery::new("2", body("same"))];
        let report = process_batch(&h, &with_lease(&idem, lease), both).await;
        let outcomes: Vec<_> = report.outcomes.iter().map(|(_, o)| o.clone()).collect();
        assert!(outcomes.contains(&Outcome::Done), "{outcomes:?}");
        let busy = outcomes.iter().find(|o| matches!(o, Outcome::Busy { .. })).expect("one delivery waits");
        // The waiting copy comes back when the holder's lease would end, not at once.
        assert!(matches!(busy.redelivery_delay(30), Some(s) if (1..=60).contains(&s)), "{busy:?}");
        assert_eq!(h.counts(), (1, 1));
        assert_eq!(fake.item("slow", &input_id(&body("same"))), Some(ClaimItem::Done));
        // When it comes back, the input is done: deleted without a second run.
        let again = process_batch(&h, &with_lease(&idem, lease), vec![Delivery::new("2", body("same"))]).await;
        assert_eq!(again.outcomes[0].1, Outcome::Duplicate);
        assert_eq!(h.counts(), (1, 1));
    }

    #[tokio::test]
    async fn a_crashed_holders_input_is_retried_once_its_lease_runs_out() {
        let h = ScriptedHandler::default();
        let (fake, idem) = idem();
        let id = input_id(&body("ok"));
        // A delivery claimed the input and died without completing or releasing it.
        assert!(matches!(fake.claim("scripted", &id, "sha", 300).await.unwrap(), Claim::Acquired(_)));
        let held = process_batch(&h, &idem, vec![Delivery::new("1", body("ok"))]).await;
        assert!(matches!(held.outcomes[0].1, Outcome::Busy { .. }), "{:?}", held.outcomes);
        assert!(h.calls.lock().unwrap().is_empty(), "a live lease is respected");
        tokio::time::sleep(Duration::from_millis(350)).await;
        let retried = process_batch(&h, &idem, vec![Delivery::new("1", body("ok"))]).await;
        assert_eq!(retried.outcomes[0].1, Outcome::Done);
        assert_eq!(h.calls.lock().unwrap().len(), 1);
        assert_eq!(fake.item("scripted", &id), Some(ClaimItem::Done));
    }

    #[tokio::test]
    async fn a_failed_attempt_gives_its_claim_up_so_the_retry_need_not_wait_for_the_lease() {
        let h = ScriptedHandler::default();
        let (fake, idem) = idem();
        let report = process_batch(&h, &idem, vec![Delivery::new("1", body("transient"))]).await;
        assert!(matches!(report.outcomes[0].1, Outcome::Failed { class: ErrorClass::Transient, .. }));
        assert_eq!(fake.item("scripted", &input_id(&body("transient"))), None, "released");
        assert_eq!(*fake.calls.lock().unwrap(), vec!["claim", "release", "record_failure"], "never completed");
        // A claim that cannot be written runs nothing.
        fake.fail_next_op("claim", 1);
        let report = process_batch(&h, &idem, vec![Delivery::new("2", body("ok"))]).await;
        assert!(matches!(report.outcomes[0].1, Outcome::Failed { class: ErrorClass::Transient, .. }));
        assert_eq!(h.calls.lock().unwrap().len(), 1, "only the first attempt ran the handler");
    }

    #[tokio::test]
    async fn the_holder_renews_its_lease_while_it_works_and_stops_when_the_claim_is_lost_or_cannot_be_renewed() {
        // Work three times longer than the lease: renewals keep the claim.
        let h = SlowHandler::new(900);
        let (fake, idem) = idem();
        let lease = Duration::from_millis(300);
        let report = process_batch(&h, &with_lease(&idem, lease), vec![Delivery::new("1", body("long"))]).await;
        assert_eq!(report.outcomes[0].1, Outcome::Done);
        let renewals = fake.calls.lock().unwrap().iter().filter(|c| *c == "renew").count();
        assert!(renewals >= 2, "{renewals} renewals");
        // Another delivery takes the input over while this one works: this one stops.
        let h = SlowHandler::new(2_000);
        let leased = with_lease(&idem, lease);
        let id = input_id(&body("taken"));
        let thief = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fake.complete("slow", &id, "another delivery").await.unwrap();
        };
        let (report, ()) = tokio::join!(process_batch(&h, &leased, vec![Delivery::new("2", body("taken"))]), thief);
        assert!(
            matches!(&report.outcomes[0].1, Outcome::Failed { class: ErrorClass::Transient, reason } if reason.contains("claim"))
        );
        assert_eq!(h.counts(), (1, 0), "the work was stopped");
        assert_eq!(fake.item("slow", &id), Some(ClaimItem::Done), "the other delivery's completion stands");
        // Renewals fail (the table is throttled): before the lease could run out, the holder
        // stops and gives the claim up, so that no second delivery ever works beside it.
        let h = SlowHandler::new(5_000);
        fake.fail_next_op("renew", 1_000);
        let started = std::time::Instant::now();
        let report = process_batch(&h, &leased, vec![Delivery::new("3", body("throttled"))]).await;
        assert!(
            matches!(&report.outcomes[0].1, Outcome::Failed { class: ErrorClass::Transient, reason } if reason.contains("could not be renewed")),
            "{:?}",
            report.outcomes
        );
        assert!(
            started.elapsed() <= lease + Duration::from_millis(150),
            "stopped within its lease: {:?}",
            started.elapsed()
        );
        assert_eq!(h.counts(), (1, 0));
        assert_eq!(fake.item("slow", &input_id(&body("throttled"))), None, "released");
    }

    #[tokio::test]
    async fn an_event_id_that_could_name_another_record_is_refused() {
        let h = ScriptedHandler::default();
        let (fake, books) = idem();
        let env = mlsec_events::Envelope {
            schema: "RawAccepted".into(),
            fingerprint: "00".into(),
            event_id: "failure#x".into(),
            correlation_id: "c".into(),
            dataset: None,
            zone: mlsec_events::Zone::Raw,
            role: None,
            payload: String::new(),
        };
        let body = crate::inbound::eventbridge_body("mlsec.ingest", "RawAccepted", serde_json::to_value(&env).unwrap());
        let report = process_batch(&h, &books, vec![Delivery::new("1", body)]).await;
        assert!(
            matches!(&report.outcomes[0].1, Outcome::Failed { class: ErrorClass::Permanent, reason } if reason.contains("bad_event_id"))
        );
        assert!(!fake.calls.lock().unwrap().contains(&"claim".to_string()), "no claim under a foreign key");
    }

    #[tokio::test]
    async fn every_failed_attempt_is_recorded_without_the_body_and_the_last_one_announces_that_it_is_parked() {
        let h = ScriptedHandler::default();
        let (fake, books, bus) = books_and_bus();
        let garbage = "not an event: SECRET-4242".to_string();
        let key = format!("body-{}", sha256_hex(garbage.as_bytes()));
        for receive_count in 1..=3 {
            let d = Delivery { id: format!("m{receive_count}"), body: garbage.clone(), receive_count };
            process_batch(&h, &books, vec![d]).await;
            let record = fake.failure("scripted", &key).expect("recorded");
            assert_eq!(record.attempts, receive_count);
            // Only the last attempt the queue allows announces the parking.
            assert_eq!(bus.events().len(), usize::from(receive_count == 3), "after attempt {receive_count}");
        }
        let record = fake.failure("scripted", &key).unwrap();
        assert_eq!(
            (record.error_class.as_str(), record.reason_code.as_str()),
            ("permanent", "not_an_eventbridge_event")
        );
        assert_eq!(record.message_sha256s, vec![sha256_hex(garbage.as_bytes())]);
        assert!(record.first_failure_ms <= record.last_failure_ms);
        let announced = &bus.events()[0];
        assert_eq!(announced.schema, "ProcessingFailed");
        let e: ProcessingFailed = announced.open().unwrap();
        assert_eq!((e.worker.as_str(), e.input_key.as_str(), e.attempts), ("scripted", key.as_str(), 3));
        assert!(!announced.to_json().contains("SECRET") && !format!("{record:?}").contains("SECRET"), "never the body");

        // A transient failure names the dependency; the input key is the input's identity.
        let d = Delivery { id: "t".into(), body: body("transient"), receive_count: 1 };
        process_batch(&h, &books, vec![d]).await;
        let record = fake.failure("scripted", &input_id(&body("transient"))).unwrap();
        assert_eq!((record.reason_code.as_str(), record.operation.as_deref()), ("transient", Some("test")));
        // A failure record that cannot be written does not change the message's fate.
        fake.fail_next_op("record_failure", 1);
        let d = Delivery { id: "t2".into(), body: body("transient"), receive_count: 3 };
        let report = process_batch(&h, &books, vec![d]).await;
        assert!(matches!(report.outcomes[0].1, Outcome::Failed { class: ErrorClass::Transient, .. }));
    }

    /// Records whether each handled message ran as a retry.
    struct SeesAttempt(std::sync::Mutex<Vec<bool>>);

    #[async_trait]
    impl Handler for SeesAttempt {
        fn name(&self) -> &'static str {
            "sees"
        }
        async fn handle(&self, _: &Inbound) -> Result<String, WorkError> {
            self.0.lock().unwrap().push(crate::ports::attempt::is_retry());
            Ok("ok".into())
        }
    }

    #[tokio::test]
    async fn a_message_received_before_runs_as_a_retry_and_a_first_delivery_does_not() {
        let (_, books) = idem();
        let h = SeesAttempt(Default::default());
        let first = Delivery { id: "1".into(), body: body("first"), receive_count: 1 };
        let again = Delivery { id: "2".into(), body: body("again"), receive_count: 2 };
        process_batch(&h, &books, vec![first, again]).await;
        assert_eq!(*h.0.lock().unwrap(), vec![false, true]);
        assert!(!crate::ports::attempt::is_retry(), "outside a handler");
    }
}
