//! Operators' commands: drop an object, subscribe to events, status, DLQ tools.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::body::SdkBody;
use mlsec_aws::{Deployment, errors::classify, identity, provision, queues};
use mlsec_events::{
    Envelope,
    audit::{Actor, AuditAction, AuditEntry, Subject},
    derive_event_id,
};
use mlsec_ingest::{
    quarantine::{self, QuarantineEntry, QuarantineView},
    records::ReleaseRecord,
};
use mlsec_runtime::{
    WorkError, now_ms,
    ports::{AuditLog, ModelRegistry},
};
use serde::Serialize;

use crate::output::Table;

/// Uploads `file` to the landing bucket under `<source>/<dataset>/<file name>`, as a
/// producer would (the landing bucket's default encryption applies). On a terminal a file
/// of [`PROGRESS_FROM`] bytes or more shows a progress line of the bytes sent.
pub async fn drop_file(dep: &Deployment, file: &Path, source: &str, dataset: &str) -> Result<String, WorkError> {
    let name = file.file_name().and_then(|n| n.to_str()).ok_or_else(|| WorkError::fatal("file has no name"))?;
    let body = ByteStream::from_path(file).await.map_err(|e| WorkError::fatal(format!("{}: {e}", file.display())))?;
    let size = body.size_hint().1.unwrap_or(body.size_hint().0);
    let key = format!("{source}/{dataset}/{name}");
    if size < PROGRESS_FROM {
        drop_bytes(dep, &key, body).await?;
        return Ok(key);
    }
    let (body, sent) = counted(body);
    let mut progress = crate::output::Progress::new(format!("drop {name} (bytes)"), Some(size));
    let result = {
        let upload = drop_bytes(dep, &key, body);
        tokio::pin!(upload);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                r = &mut upload => break r,
                _ = tick.tick() => {
                    let now = sent.load(Ordering::Relaxed);
                    progress.inc(now.saturating_sub(progress.done()));
                }
            }
        }
    };
    progress.finish();
    result.map(|()| key)
}

/// Uploads from this size show a progress line (on a terminal).
pub const PROGRESS_FROM: u64 = 16 << 20;

/// `body`, counting into the returned counter the bytes the SDK reads from it. The body
/// stays retryable: a retried request rebuilds it and the count starts again.
pub fn counted(body: ByteStream) -> (ByteStream, Arc<AtomicU64>) {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let body = body.map(move |inner| {
        counter.store(0, Ordering::Relaxed);
        SdkBody::from_body_1_x(Counted { inner, sent: counter.clone() })
    });
    (body, sent)
}

/// An SDK body that adds the length of each data frame it yields to `sent`.
struct Counted {
    inner: SdkBody,
    sent: Arc<AtomicU64>,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.sent.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// Uploads `body` to the landing bucket under `key`, tagged with the uploader's STS user
/// id: the person who may not approve a model trained on this data. The landing bucket
/// policy refuses a put whose tag is not the caller's own `aws:userid`.
pub async fn drop_bytes(dep: &Deployment, key: &str, body: ByteStream) -> Result<(), WorkError> {
    let me = mlsec_aws::identity::whoami(&dep.sts).await?;
    dep.s3
        .put_object()
        .bucket(dep.names.bucket("landing"))
        .key(key)
        .tagging(format!("{}={}", mlsec_runtime::ports::DROPPED_BY_TAG, query_escape(&me.user_id)))
        .body(body)
        .send()
        .await
        .map_err(|e| classify("s3:PutObject", e))?;
    Ok(())
}

/// Percent-encodes everything but RFC 3986's unreserved characters (S3's tagging header
/// is a URL query string).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A consumer's queue, subscribed to some event types of the pipeline bus.
pub struct Subscription {
    pub queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

/// An event received and not yet acknowledged.
pub struct Delivery {
    pub received: Received,
    receipt: Option<String>,
}

/// What [`deliver`] did with a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Written (and accepted by the consumer command) and then deleted.
    pub acked: usize,
    /// Handed back: the consumer command failed; they come again.
    pub returned: usize,
}

/// `mlsec subscribe`: writes each event as a JSON line to `out` and flushes it; with
/// `ack_after`, also pipes the line to that shell command. An event is deleted only after
/// both succeeded (the command exited 0); otherwise it is handed back for another delivery
/// after `retry_secs`. A failed write (a closed pipe) stops delivery and hands the event and
/// the rest of the batch back.
pub async fn deliver(
    sub: &Subscription,
    deliveries: Vec<Delivery>,
    out: &mut dyn std::io::Write,
    ack_after: Option<&str>,
    retry_secs: i32,
) -> Result<Delivered, WorkError> {
    let mut done = Delivered::default();
    let mut pending = deliveries.into_iter();
    while let Some(d) = pending.next() {
        let line = serde_json::to_string(&d.received).map_err(WorkError::fatal)?;
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            // Nothing more can be delivered: hand this event and the rest back at once.
            for d in std::iter::once(d).chain(pending) {
                sub.nack(&d, retry_secs).await?;
            }
            return Err(WorkError::fatal(format!("output: {e}")));
        }
        let accepted = match ack_after {
            None => true,
            Some(cmd) => consumer_accepts(cmd, &line).await?,
        };
        if accepted {
            sub.ack(&d).await?;
            done.acked += 1;
        } else {
            tracing::warn!(event_id = %d.received.event_id, command = ack_after.unwrap_or_default(), "the consumer command failed; the event comes again");
            sub.nack(&d, retry_secs).await?;
            done.returned += 1;
        }
    }
    Ok(done)
}

/// Runs `sh -c cmd` with `line` on its standard input; whether it exited 0.
async fn consumer_accepts(cmd: &str, line: &str) -> Result<bool, WorkError> {
    let (cmd, line) = (cmd.to_string(), format!("{line}\n"));
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| WorkError::fatal(format!("--ack-after {cmd}: {e}")))?;
        // A command that does not read its input is still judged by its exit status.
        let _ = child.stdin.take().map(|mut stdin| stdin.write_all(line.as_bytes()));
        let status = child.wait().map_err(|e| WorkError::fatal(format!("--ack-after {cmd}: {e}")))?;
        Ok(status.success())
    })
    .await
    .map_err(WorkError::fatal)?
}

/// A decoded event as a subscriber sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub schema: String,
    pub event_id: String,
    pub event: serde_json::Value,
}

impl Subscription {
    /// Creates (or reuses) subscription `name` for `detail_types`.
    pub async fn create(dep: &Deployment, name: &str, detail_types: &[String]) -> Result<Self, WorkError> {
        let queue_url = provision::subscribe(dep, name, detail_types).await?;
        Ok(Self { queue_url, sqs: dep.sqs.clone() })
    }

    /// Receives and decodes up to 10 events (waits up to `wait` seconds), deleting none:
    /// each stays on the queue until [`Subscription::ack`] (at-least-once; consumers
    /// deduplicate by `event_id`). An event that does not decode is left on the queue (it
    /// reaches the subscription's DLQ) and reported in the log.
    pub async fn receive(&self, wait: i32) -> Result<Vec<Delivery>, WorkError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait)
            .send()
            .await
            .map_err(|e| classify("sqs:ReceiveMessage", e))?;
        let mut events = Vec::new();
        for m in out.messages() {
            let body = m.body().unwrap_or_default();
            let decoded = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| Some((v.get("source")?.as_str()?.to_string(), v.get("detail")?.clone())))
                .ok_or_else(|| WorkError::permanent("not_an_eventbridge_event", "subscription message"))
                .and_then(|(source, detail)| {
                    let env = Envelope::from_value(detail)?;
                    // Only the declared emitter of a schema may publish it.
                    let emitters = mlsec_runtime::topology::Topology::shared().emitters(&env.schema);
                    let from = source.rsplit_once('.').map_or("", |(_, w)| w);
                    if !emitters.contains(&from) {
                        return Err(WorkError::permanent("forged_source", format!("{} from {source}", env.schema)));
                    }
                    Ok(env)
                })
                .and_then(|env| Ok((env.decode_json()?, env)));
            let (event, env) = match decoded {
                Ok(d) => d,
                Err(e) => {
                    // Left on the queue: after maxReceiveCount it is parked in the
                    // subscription's DLQ, never silently dropped.
                    tracing::warn!(message_id = m.message_id(), error = %e, "undecodable event left for the DLQ");
                    continue;
                }
            };
            events.push(Delivery {
                received: Received { schema: env.schema.clone(), event_id: env.event_id.clone(), event },
                receipt: m.receipt_handle().map(str::to_string),
            });
        }
        Ok(events)
    }

    /// Deletes a delivered event: call it only once the event's effect is durable.
    pub async fn ack(&self, d: &Delivery) -> Result<(), WorkError> {
        let Some(receipt) = &d.receipt else { return Ok(()) };
        self.sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| classify("sqs:DeleteMessage", e))?;
        Ok(())
    }

    /// Hands an event back: it is delivered again after `delay_secs` (and after the queue's
    /// `maxReceiveCount` deliveries it is parked in the subscription's DLQ).
    pub async fn nack(&self, d: &Delivery, delay_secs: i32) -> Result<(), WorkError> {
        let Some(receipt) = &d.receipt else { return Ok(()) };
        self.sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(delay_secs)
            .send()
            .await
            .map_err(|e| classify("sqs:ChangeMessageVisibility", e))?;
        Ok(())
    }

    /// Receives and acknowledges at once: for callers whose handling cannot fail (tests,
    /// the demo's own summary).
    pub async fn poll(&self, wait: i32) -> Result<Vec<Received>, WorkError> {
        let mut out = Vec::new();
        for d in self.receive(wait).await? {
            self.ack(&d).await?;
            out.push(d.received);
        }
        Ok(out)
    }

    /// Polls until at least one event of each of `schemas` arrived or `timeout` passed;
    /// returns everything received on the way (in order).
    pub async fn wait_for(&self, schemas: &[&str], timeout: Duration) -> Result<Vec<Received>, WorkError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen: Vec<Received> = Vec::new();
        while tokio::time::Instant::now() < deadline {
            seen.extend(self.poll(1).await?);
            if schemas.iter().all(|s| seen.iter().any(|e| e.schema == *s)) {
                return Ok(seen);
            }
        }
        let got: Vec<&str> = seen.iter().map(|e| e.schema.as_str()).collect();
        Err(WorkError::transient("wait", format!("not all of {schemas:?} within {timeout:?}; received {got:?}")))
    }
}

/// Queue depths of one worker.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub worker: String,
    pub queue: queues::Depth,
    pub dlq: queues::Depth,
    /// Age of the oldest parked message SQS showed (`SentTimestamp`, the time it was first
    /// sent to the worker), from a peek of up to 10 messages that leaves them visible: on
    /// a DLQ of more than 10 an older one may exist (`mlsec dlq list` sees them all).
    pub dlq_oldest_age_ms: Option<i64>,
    /// Why the peek failed (e.g. a caller without `sqs:ReceiveMessage` on the DLQ); the
    /// depths are still reported.
    pub dlq_oldest_error: Option<String>,
}

/// One registry row, as `status` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub model: String,
    pub version: String,
    pub stage: String,
    /// Govern's holdout AUC (absent before evaluation).
    pub auc: Option<f64>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub workers: Vec<WorkerStatus>,
    pub models: Vec<ModelStatus>,
}

pub async fn status(dep: &Deployment) -> Result<Status, WorkError> {
    let mut workers = Vec::new();
    for name in dep.topology.workers.keys() {
        let q = dep.queue_url(&dep.names.queue(name)).await?;
        let d = dep.queue_url(&dep.names.dlq(name)).await?;
        let dlq = queues::depth(&dep.sqs, &d).await?;
        let (mut dlq_oldest_age_ms, mut dlq_oldest_error) = (None, None);
        if dlq.visible + dlq.in_flight > 0 {
            // Visibility 0: a peek, nothing is held from a replay running beside it.
            match queues::take(&dep.sqs, &d, 0, 0).await {
                Ok(peeked) => {
                    dlq_oldest_age_ms = peeked.iter().filter_map(|m| m.sent_at_ms).min().map(|t| (now_ms() - t).max(0));
                }
                Err(e) => dlq_oldest_error = Some(e.to_string()),
            }
        }
        let queue = queues::depth(&dep.sqs, &q).await?;
        workers.push(WorkerStatus { worker: name.clone(), queue, dlq, dlq_oldest_age_ms, dlq_oldest_error });
    }
    let registry = mlsec_aws::dynamo::DynamoRegistry::new(dep.dynamodb.clone(), dep.names.table("registry"));
    let models = registry
        .list()
        .await?
        .into_iter()
        .map(|r| ModelStatus {
            model: r.model_name,
            version: r.model_version,
            stage: r.stage.as_str().into(),
            auc: r.evaluation.as_ref().map(|e| e.auc),
            reason: r.stage_reason,
        })
        .collect();
    Ok(Status { workers, models })
}

/// `status` for people: one table of queues, one of models.
pub fn render_status(s: &Status) -> String {
    let mut t = Table::new(["worker", "queue", "in flight", "dlq", "dlq in flight", "oldest parked"]);
    for w in &s.workers {
        t.row([
            w.worker.clone(),
            w.queue.visible.to_string(),
            w.queue.in_flight.to_string(),
            w.dlq.visible.to_string(),
            w.dlq.in_flight.to_string(),
            match (&w.dlq_oldest_age_ms, &w.dlq_oldest_error) {
                (Some(ms), _) => crate::output::age(*ms),
                (None, Some(_)) => "? (see below)".to_string(),
                // Every parked message is held (a replay or list is looking at it).
                (None, None) if w.dlq.in_flight > 0 => "(held)".to_string(),
                (None, None) => "-".to_string(),
            },
        ]);
    }
    let mut out = t.render();
    for w in &s.workers {
        if let Some(e) = &w.dlq_oldest_error {
            out.push_str(&format!("{}: the DLQ could not be peeked for its oldest message: {e}\n", w.worker));
        }
    }
    let mut m = Table::new(["model", "version", "stage", "auc", "reason"]);
    for r in &s.models {
        m.row([
            r.model.clone(),
            r.version.clone(),
            r.stage.clone(),
            r.auc.map_or("-".to_string(), |a| format!("{a:.4}")),
            r.reason.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push('\n');
    if m.is_empty() {
        out.push_str("no model registered\n");
    } else {
        out.push_str(&m.render());
    }
    out
}

/// `quarantine list` for people.
pub fn render_quarantine_list(entries: &[QuarantineEntry]) -> String {
    let mut t = Table::new(["quarantined", "dataset", "reason", "releasable", "released by", "sha256", "source key"]);
    for e in entries {
        t.row([
            mlsec_runtime::time::format_rfc3339_ms(e.quarantined_at_ms),
            e.dataset.clone(),
            e.reason_code.as_str().to_string(),
            if e.releasable { "yes" } else { "no" }.to_string(),
            e.released_by.clone().unwrap_or_else(|| "-".into()),
            e.sha256.clone(),
            e.source_key.clone(),
        ]);
    }
    if t.is_empty() { "nothing in quarantine\n".into() } else { t.render() }
}

/// The operator running this command, as STS says, and the audit chain in their name.
pub async fn operator(dep: &Deployment) -> Result<(Actor, Arc<dyn AuditLog>), WorkError> {
    let actor = identity::caller(&dep.sts).await?;
    let log = dep.audit_log("operator", actor.clone());
    Ok((actor, log))
}

/// A decision id for one operator command: who, what, when.
pub(crate) fn command_id(actor: &Actor, what: &str) -> String {
    derive_event_id(&format!("{}|{what}|{}|{}", actor.id, now_ms(), std::process::id()), "operator")
}

/// Lists quarantined contents (optionally of one dataset), oldest first.
pub async fn quarantine_list(dep: &Deployment, dataset: Option<&str>) -> Result<Vec<QuarantineEntry>, WorkError> {
    let store = dep.ports("operator").store;
    quarantine::list(store.as_ref(), &dep.names.bucket("quarantine"), dataset).await
}

/// The reason document of one quarantined content, with its release record if any.
pub async fn quarantine_show(dep: &Deployment, dataset: &str, sha256: &str) -> Result<QuarantineView, WorkError> {
    let store = dep.ports("operator").store;
    quarantine::show(store.as_ref(), &dep.names.bucket("quarantine"), dataset, sha256).await
}

/// Releases one quarantined content (see `mlsec_ingest::quarantine`). The approver is the
/// caller as STS identifies them, never a typed name; the release is recorded in the
/// audit chain.
pub async fn quarantine_release(
    dep: &Deployment,
    dataset: &str,
    sha256: &str,
    reason: &str,
) -> anyhow::Result<ReleaseRecord> {
    let (actor, log) = operator(dep).await?;
    let store = dep.ports("operator").store;
    let quarantine = dep.bucket_ref("quarantine").await?;
    let landing = dep.bucket_ref("landing").await?;
    let record = quarantine::release(store.as_ref(), &quarantine, &landing, dataset, sha256, &actor.id, reason).await?;
    let entry = AuditEntry::new(
        AuditAction::QuarantineReleased,
        Subject::new("object", format!("{dataset}/{sha256}")),
        command_id(&actor, &format!("release:{dataset}:{sha256}")),
    )
    .reason(reason)
    .attribute("reason_code", record.reason_code.as_str())
    .attribute("landing_key", &record.landing_key);
    log.append(entry).await?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_counted_body_yields_the_same_bytes_counts_them_and_stays_retryable() {
        let path = std::env::temp_dir().join(format!("mlsec-counted-{}", std::process::id()));
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let (body, sent) = counted(ByteStream::from_path(&path).await.unwrap());
        assert_eq!(body.size_hint(), (300_000, Some(300_000)), "the length is still known");
        let inner = body.into_inner();
        let first = inner.try_clone().expect("the body is retryable");
        let read = ByteStream::new(first).collect().await.unwrap().into_bytes();
        assert_eq!(read.as_ref(), bytes.as_slice());
        assert_eq!(sent.load(Ordering::Relaxed), 300_000);
        // A rebuilt body (what a retry sends) counts from zero again.
        let again = inner.try_clone().expect("a retry can rebuild the body");
        let read = ByteStream::new(again).collect().await.unwrap().into_bytes();
        assert_eq!((read.len(), sent.load(Ordering::Relaxed)), (300_000, 300_000));
        std::fs::remove_file(path).ok();
    }
}
