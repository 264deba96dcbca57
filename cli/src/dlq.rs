//! `mlsec dlq`: what is parked, why, and putting it back after a fix.
//!
//! - `list` takes every message of a worker's DLQ once, says what each is (event type,
//!   dataset, input key, the worker's failure record) and hands them all back.
//! - `show` is one message of the list, by event id, input key or message id.
//! - `replay` moves the messages that match its filters back to the worker's queue, at
//!   most `rate` per second and `max` in all: send first, delete from the DLQ only after
//!   the send succeeded. It forwards only bodies whose origin it can establish: a failure
//!   record or claim that the worker itself wrote names the body's digest (workers alone
//!   write their own keys, `OwnClaims`), so a body someone sent to the DLQ directly is
//!   refused. An input it moved that comes straight back is not moved again in the same
//!   run. After moving, it waits for the worker and reports what completed. A crash or
//!   Ctrl-C loses nothing: held messages come back after their hold, and a message sent
//!   but not yet deleted is a duplicate the worker's claim skips. Running it again resumes.
//!
//! Messages are only ever held (invisible) while a command looks at them; nothing is
//! deleted except after it was sent to the worker's queue.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use mlsec_aws::{Deployment, dynamo::DynamoIdempotency, queues};
use mlsec_events::{
    audit::{AuditAction, AuditEntry, Subject},
    sha256_hex,
};
use mlsec_runtime::{Inbound, WorkError, inbound::InboundBody, now_ms, ports::FailureRecord};
use serde::Serialize;

/// How long a command hides a message it looked at but did not move (handed back at the
/// end; after a crash it reappears by itself after this long).
const HOLD_SECONDS: i32 = 300;
/// `replay`'s default rate, messages per second.
pub const DEFAULT_RATE: u32 = 50;

/// What selects messages (all given filters must hold).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Filters {
    /// The failure record's reason code (`contract_version_mismatch`, `transient`, ...).
    pub reason: Option<String>,
    /// The message's event type: a schema name, `ObjectCreated` or `undecodable`.
    pub event_type: Option<String>,
    pub dataset: Option<String>,
    /// First failure (or, unrecorded, first send) at or after, ms since the epoch.
    pub since_ms: Option<i64>,
    /// ... and before.
    pub until_ms: Option<i64>,
    /// An event id, input key or SQS message id.
    pub id: Option<String>,
}

/// Whether a body came through the worker's own queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Origin {
    /// A record the worker wrote names this body's digest.
    Proven {
        by: String,
    },
    Unproven {
        why: String,
    },
}

/// One parked message: ids, digests and codes, never the body.
#[derive(Debug, Clone, Serialize)]
pub struct Parked {
    pub message_id: String,
    pub input_key: String,
    pub event_id: Option<String>,
    pub event_type: String,
    pub dataset: Option<String>,
    /// The landing object an S3 notification names.
    pub landing_key: Option<String>,
    pub body_sha256: String,
    pub body_bytes: usize,
    pub sent_at_ms: Option<i64>,
    pub failure: Option<FailureRecord>,
    pub origin: Origin,
}

impl Parked {
    /// The reason code operators filter on (`unrecorded` without a failure record).
    pub fn reason(&self) -> &str {
        self.failure.as_ref().map_or("unrecorded", |f| f.reason_code.as_str())
    }

    /// When it first failed (or was first sent).
    pub fn since_ms(&self) -> Option<i64> {
        self.failure.as_ref().map(|f| f.first_failure_ms).or(self.sent_at_ms)
    }

    fn matches(&self, f: &Filters) -> bool {
        let at = self.since_ms();
        f.reason.as_ref().is_none_or(|r| r == self.reason())
            && f.event_type.as_ref().is_none_or(|t| *t == self.event_type)
            && f.dataset.as_ref().is_none_or(|d| Some(d) == self.dataset.as_ref())
            && f.since_ms.is_none_or(|s| at.is_some_and(|a| a >= s))
            && f.until_ms.is_none_or(|u| at.is_some_and(|a| a < u))
            && f.id
                .as_ref()
                .is_none_or(|i| *i == self.input_key || Some(i) == self.event_id.as_ref() || *i == self.message_id)
    }
}

/// A worker's DLQ and the records that explain its messages.
struct Dlq<'a> {
    dep: &'a Deployment,
    worker: &'a str,
    url: String,
    queue_url: String,
    queue_arn: String,
    records: DynamoIdempotency,
}

impl<'a> Dlq<'a> {
    async fn open(dep: &'a Deployment, worker: &'a str) -> Result<Self, WorkError> {
        let queue_url = dep.queue_url(&dep.names.queue(worker)).await?;
        Ok(Self {
            dep,
            worker,
            url: dep.queue_url(&dep.names.dlq(worker)).await?,
            queue_arn: queues::queue_arn(&dep.sqs, &queue_url).await?,
            queue_url,
            records: DynamoIdempotency::new(dep.dynamodb.clone(), dep.names.table("idempotency")),
        })
    }

    /// [`Dlq::explain`] for a page of messages at once (their record reads overlap).
    async fn explain_all(&self, page: &[queues::Taken]) -> Result<Vec<Parked>, WorkError> {
        futures::future::join_all(page.iter().map(|m| self.explain(m))).await.into_iter().collect()
    }

    /// What a taken message is, and whether the worker's records vouch for it.
    async fn explain(&self, m: &queues::Taken) -> Result<Parked, WorkError> {
        let sha = sha256_hex(m.body.as_bytes());
        let mut landing_key = None;
        let (input_key, event_id, event_type, dataset) = match Inbound::parse(&m.message_id, &m.body) {
            Ok(inbound) => {
                let key = inbound.input_id();
                match &inbound.body {
                    InboundBody::Pipeline(env) => {
                        (key, Some(env.event_id.clone()), env.schema.clone(), env.dataset.clone())
                    }
                    InboundBody::ObjectCreated(o) => {
                        landing_key = Some(o.key.clone());
                        (key, None, "ObjectCreated".to_string(), None)
                    }
                }
            }
            Err(_) => (format!("body-{sha}"), None, "undecodable".to_string(), None),
        };
        let failure = self.records.failure(self.worker, &input_key).await?;
        let origin = match &m.dead_letter_source_arn {
            Some(arn) if *arn != self.queue_arn => {
                Origin::Unproven { why: format!("SQS moved it from {arn}, not from the worker's queue") }
            }
            _ if failure.as_ref().is_some_and(|f| f.message_sha256s.contains(&sha)) => {
                Origin::Proven { by: "failure record".into() }
            }
            _ => match self.records.input_state(self.worker, &input_key).await? {
                Some(s) if s.message_sha256.as_deref() == Some(sha.as_str()) => Origin::Proven { by: "claim".into() },
                _ => Origin::Unproven {
                    why: format!(
                        "no record of the {} worker names this body: it did not come through its queue",
                        self.worker
                    ),
                },
            },
        };
        Ok(Parked {
            message_id: m.message_id.clone(),
            input_key,
            event_id,
            event_type,
            dataset,
            landing_key,
            body_sha256: sha,
            body_bytes: m.body.len(),
            sent_at_ms: m.sent_at_ms,
            failure,
            origin,
        })
    }

    /// Hands held messages back (visible at once).
    async fn hand_back(&self, receipts: &[String]) -> Result<(), WorkError> {
        queues::set_visibility(&self.dep.sqs, &self.url, receipts, 0).await
    }
}

/// Takes every message of a DLQ once: `next` gives each new message (hidden for
/// [`HOLD_SECONDS`]) until two receives in a row bring nothing new. A message taken again
/// (its hold ran out during a long run) is held again, not given again.
struct Sweep<'a> {
    dlq: &'a Dlq<'a>,
    seen: HashSet<String>,
    held: HashMap<String, String>,
    page: std::vec::IntoIter<queues::Taken>,
    idle: u32,
    new_in_page: usize,
}

impl<'a> Sweep<'a> {
    fn new(dlq: &'a Dlq<'a>) -> Self {
        Self { dlq, seen: HashSet::new(), held: HashMap::new(), page: Vec::new().into_iter(), idle: 0, new_in_page: 1 }
    }

    /// The new messages of the next receive that brings any (empty: the sweep is over).
    async fn next_page(&mut self) -> Result<Vec<queues::Taken>, WorkError> {
        let mut out = Vec::new();
        loop {
            match self.next().await {
                Ok(Some(m)) => {
                    out.push(m);
                    if self.page.len() == 0 {
                        break;
                    }
                }
                Ok(None) => break,
                // What this page took so far is held, so `finish` hands it back.
                Err(e) => {
                    out.iter().for_each(|m| self.hold(m));
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    async fn next(&mut self) -> Result<Option<queues::Taken>, WorkError> {
        loop {
            for m in self.page.by_ref() {
                if self.seen.insert(m.message_id.clone()) {
                    self.new_in_page += 1;
                    return Ok(Some(m));
                }
                self.held.insert(m.message_id.clone(), m.receipt.clone());
            }
            self.idle = if self.new_in_page == 0 { self.idle + 1 } else { 0 };
            if self.idle >= 2 {
                return Ok(None);
            }
            self.new_in_page = 0;
            self.page = queues::take(&self.dlq.dep.sqs, &self.dlq.url, HOLD_SECONDS, 1).await?.into_iter();
        }
    }

    /// Keeps `m` hidden until the sweep ends (then it is handed back).
    fn hold(&mut self, m: &queues::Taken) {
        self.held.insert(m.message_id.clone(), m.receipt.clone());
    }

    /// `m` is someone else's to move or hand back now.
    fn release(&mut self, m: &queues::Taken) {
        self.held.remove(&m.message_id);
    }

    /// Hands every held message back.
    async fn finish(self) -> Result<(), WorkError> {
        let receipts: Vec<String> = self.held.into_values().collect();
        self.dlq.hand_back(&receipts).await
    }
}

/// Every message of `worker`'s DLQ that matches `filters`, explained; all are handed back.
pub async fn list(dep: &Deployment, worker: &str, filters: &Filters) -> Result<Vec<Parked>, WorkError> {
    let dlq = Dlq::open(dep, worker).await?;
    let mut sweep = Sweep::new(&dlq);
    let mut out = Vec::new();
    let result = async {
        loop {
            let page = sweep.next_page().await?;
            if page.is_empty() {
                break;
            }
            page.iter().for_each(|m| sweep.hold(m));
            out.extend(dlq.explain_all(&page).await?.into_iter().filter(|p| p.matches(filters)));
        }
        Ok::<_, WorkError>(())
    }
    .await;
    // Hand back whatever was taken, even after an error.
    sweep.finish().await?;
    result?;
    out.sort_by(|a, b| a.since_ms().cmp(&b.since_ms()).then(a.message_id.cmp(&b.message_id)));
    Ok(out)
}

/// One row of `dlq list`'s summary: parked messages of one reason and event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub reason: String,
    pub event_type: String,
    pub count: usize,
    /// Messages whose origin no record of the worker proves (replay refuses them).
    pub unproven: usize,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
}

/// Groups parked messages by reason code and event type, largest group first.
pub fn group(parked: &[Parked]) -> Vec<Group> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for p in parked {
        let g = groups.entry((p.reason().to_string(), p.event_type.clone())).or_insert_with(|| Group {
            reason: p.reason().to_string(),
            event_type: p.event_type.clone(),
            count: 0,
            unproven: 0,
            oldest_ms: None,
            newest_ms: None,
        });
        g.count += 1;
        g.unproven += usize::from(matches!(p.origin, Origin::Unproven { .. }));
        if let Some(t) = p.since_ms() {
            g.oldest_ms = Some(g.oldest_ms.map_or(t, |o| o.min(t)));
            g.newest_ms = Some(g.newest_ms.map_or(t, |n| n.max(t)));
        }
    }
    let mut out: Vec<Group> = groups.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    out
}

/// How a replay runs.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayOptions {
    pub filters: Filters,
    /// Messages per second.
    pub rate: u32,
    /// Messages to move at most.
    pub max: usize,
    pub dry_run: bool,
    /// How long to wait for the worker to finish what was moved.
    pub wait_seconds: u64,
}

/// A moved message.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub input_key: String,
    pub event_id: Option<String>,
    pub event_type: String,
    /// `completed`, `failed_again` or `pending` (not finished within the wait).
    pub outcome: String,
}

/// What a replay did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub dry_run: bool,
    /// Messages that matched the filters and would be (dry run) or were moved.
    pub matched: usize,
    pub moved: usize,
    /// Moved messages whose input the worker then completed.
    pub completed: usize,
    /// Moved messages that failed again (they are parked again, with a failure record).
    pub failed_again: usize,
    /// Moved messages still in progress when the wait ended.
    pub pending: usize,
    /// Matching messages whose origin no record of the worker proves: left in the DLQ.
    pub refused: usize,
    /// Matching messages of an input this run already moved (it came straight back): left.
    pub came_back: usize,
    /// Messages that did not match the filters: left.
    pub skipped: usize,
    pub seconds: f64,
    /// Messages moved per second while moving.
    pub moved_per_second: f64,
    /// What matched: in a dry run, exactly what a real run would move.
    pub messages: Vec<Moved>,
    pub refused_messages: Vec<Parked>,
}

/// Paces sends to `rate` per second.
struct Pace {
    rate: f64,
    start: Instant,
    sent: usize,
}

impl Pace {
    async fn before(&mut self, n: usize) {
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        self.sent += n;
    }
}

/// Replays `worker`'s DLQ (see the module doc). A real run is recorded in the audit chain
/// with the caller's STS identity, its filters, its counts and the moved inputs.
pub async fn replay(dep: &Deployment, worker: &str, opts: &ReplayOptions) -> Result<ReplayReport, WorkError> {
    let audit = if opts.dry_run { None } else { Some(crate::ops::operator(dep).await?) };
    let dlq = Dlq::open(dep, worker).await?;
    let started = Instant::now();
    let mut report = ReplayReport { dry_run: opts.dry_run, ..Default::default() };
    let mut moved_inputs: HashSet<String> = HashSet::new();
    let mut attempts_before: HashMap<String, u32> = HashMap::new();
    let mut pace = Pace { rate: f64::from(opts.rate.max(1)), start: Instant::now(), sent: 0 };
    // The bar's total: what the DLQ holds now, at most --max (a dry run moves nothing;
    // without sqs:GetQueueAttributes the bar just counts).
    let total = match queues::depth(&dep.sqs, &dlq.url).await {
        Ok(d) => Some(u64::try_from(d.visible + d.in_flight).unwrap_or(0).min(opts.max as u64)),
        Err(_) => None,
    };
    let mut progress = (!opts.dry_run).then(|| crate::output::Progress::new(format!("replay {worker}"), total));
    let mut first_move: Option<Instant> = None;
    let mut sweep = Sweep::new(&dlq);
    // Moves go in batches of up to 10 (one send, one delete).
    let mut batch: Vec<(queues::Taken, Parked)> = Vec::new();
    let result = async {
        'sweep: while report.matched < opts.max {
            let page = sweep.next_page().await?;
            if page.is_empty() {
                break;
            }
            // Held from the start: whatever fails below, it is handed back.
            page.iter().for_each(|m| sweep.hold(m));
            let explained = dlq.explain_all(&page).await?;
            for (m, p) in page.into_iter().zip(explained) {
                if report.matched >= opts.max {
                    break 'sweep;
                }
                if !p.matches(&opts.filters) {
                    report.skipped += 1;
                    continue;
                }
                if let Origin::Unproven { .. } = p.origin {
                    report.refused += 1;
                    report.refused_messages.push(p);
                    continue;
                }
                if !moved_inputs.insert(p.input_key.clone()) {
                    // Moved earlier in this run and parked again: not moved twice.
                    report.came_back += 1;
                    continue;
                }
                report.matched += 1;
                attempts_before.insert(p.input_key.clone(), p.failure.as_ref().map_or(0, |f| f.attempts));
                if opts.dry_run {
                    report.messages.push(moved(&p));
                    continue;
                }
                // The batch moves it, or hands it back.
                sweep.release(&m);
                batch.push((m, p));
                if batch.len() == 10 {
                    first_move.get_or_insert_with(Instant::now);
                    pace.before(batch.len()).await;
                    let before = report.moved;
                    move_batch(&dlq, std::mem::take(&mut batch), &mut report).await?;
                    if let Some(p) = progress.as_mut() {
                        p.inc((report.moved - before) as u64);
                    }
                }
            }
        }
        if !batch.is_empty() {
            first_move.get_or_insert_with(Instant::now);
            pace.before(batch.len()).await;
            let before = report.moved;
            move_batch(&dlq, std::mem::take(&mut batch), &mut report).await?;
            if let Some(p) = progress.as_mut() {
                p.inc((report.moved - before) as u64);
            }
        }
        Ok::<_, WorkError>(())
    }
    .await;
    if let Some(p) = progress.as_mut() {
        p.finish();
    }
    if let Some(t) = first_move {
        let s = t.elapsed().as_secs_f64();
        report.moved_per_second = if s > 0.0 { report.moved as f64 / s } else { report.moved as f64 };
    }
    // The moves are on the audit chain before anything else can fail, even when the run
    // stopped on an error after some of them.
    if let Some((actor, log)) = audit {
        let ids: Vec<&str> = report.messages.iter().map(|m| m.input_key.as_str()).collect();
        let reason = match &result {
            Ok(()) => "operator replay".to_string(),
            Err(e) => format!("operator replay, stopped: {e}"),
        };
        let entry = AuditEntry::new(
            AuditAction::DlqReplayed,
            Subject::new("queue", worker),
            crate::ops::command_id(&actor, &format!("dlq-replay:{worker}")),
        )
        .reason(reason)
        .attribute("filters", serde_json::to_string(&opts.filters).map_err(WorkError::fatal)?)
        .attribute("rate", opts.rate)
        .attribute("max", opts.max)
        .attribute("matched", report.matched)
        .attribute("moved", report.moved)
        .attribute("refused", report.refused)
        .attribute("skipped", report.skipped)
        .attribute("came_back", report.came_back)
        .attribute("input_keys", serde_json::to_string(&ids).map_err(WorkError::fatal)?);
        log.append(entry).await?;
    }
    // Whatever was taken and not moved goes back, even after an error (after the audit
    // entry: a hand-back that fails must not keep the moves off the chain).
    let unmoved: Vec<String> = batch.iter().map(|(m, _)| m.receipt.clone()).collect();
    dlq.hand_back(&unmoved).await?;
    sweep.finish().await?;
    result?;
    if !opts.dry_run {
        follow(&dlq, &mut report, &attempts_before, Duration::from_secs(opts.wait_seconds)).await?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// A parked message kept in the incident bucket (`dlq/<worker>/<message id>.json`, under
/// the pipeline key) instead of being deleted: `mlsec dlq archive` writes it, `restore`
/// reads it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Archived {
    pub worker: String,
    pub message_id: String,
    pub input_key: String,
    pub event_type: String,
    pub body_sha256: String,
    pub reason_code: String,
    /// Why it was archived (the operator's words) and by whom, as STS says.
    pub reason: String,
    pub archived_by: String,
    pub archived_at_ms: i64,
    /// The message body, to restore it byte for byte.
    pub body: String,
}

/// What an archive or restore did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveReport {
    pub dry_run: bool,
    /// Archived (archive) or sent back to the worker's queue (restore).
    pub done: usize,
    /// Not matching the filters.
    pub skipped: usize,
    /// Restore only: bodies no record of the worker names (not sent), or already restored.
    pub refused: usize,
    pub already_restored: usize,
    pub keys: Vec<String>,
}

fn archive_key(worker: &str, message_id: &str) -> String {
    format!("dlq/{worker}/{message_id}.json")
}

fn restored_key(key: &str) -> String {
    format!("{}.restored", key.trim_end_matches(".json"))
}

/// Moves the parked messages of `worker` that match `filters` into the incident bucket:
/// written (encrypted) first, deleted from the DLQ only after the write succeeded. Nothing
/// is checked for origin: an injected body is archived like any other, and restore checks
/// it. Audited with the reason, the filters, the count and the input keys.
pub async fn archive(
    dep: &Deployment,
    worker: &str,
    filters: &Filters,
    reason: &str,
    dry_run: bool,
) -> Result<ArchiveReport, WorkError> {
    let (actor, log) = crate::ops::operator(dep).await?;
    let dlq = Dlq::open(dep, worker).await?;
    let store = dep.ports("operator").store;
    let bucket = dep.bucket_ref("incidents").await?;
    let mut sweep = Sweep::new(&dlq);
    let mut report = ArchiveReport { dry_run, ..Default::default() };
    let mut inputs = Vec::new();
    let result = async {
        while let Some(m) = sweep.next().await? {
            sweep.hold(&m);
            let p = dlq.explain(&m).await?;
            if !p.matches(filters) {
                report.skipped += 1;
                continue;
            }
            let key = archive_key(worker, &m.message_id);
            if !dry_run {
                let doc = Archived {
                    worker: worker.to_string(),
                    message_id: m.message_id.clone(),
                    input_key: p.input_key.clone(),
                    event_type: p.event_type.clone(),
                    body_sha256: p.body_sha256.clone(),
                    reason_code: p.reason().to_string(),
                    reason: reason.to_string(),
                    archived_by: actor.id.clone(),
                    archived_at_ms: now_ms(),
                    body: m.body.clone(),
                };
                let bytes = serde_json::to_vec(&doc).map_err(WorkError::fatal)?;
                store.put(&bucket, &key, bytes.into(), "application/json").await?;
                // Only now: the message is kept where an operator can restore it. A delete
                // that did not go through leaves it held (handed back, counted as not done):
                // it must not be both archived and parked, or replay and restore send it twice.
                if queues::delete_batch(&dep.sqs, &dlq.url, &[m.receipt.as_str()]).await?.is_empty() {
                    return Err(WorkError::transient("sqs:DeleteMessageBatch", "an archived message was not deleted"));
                }
                sweep.release(&m);
            }
            report.done += 1;
            report.keys.push(key);
            inputs.push(p.input_key);
        }
        Ok::<_, WorkError>(())
    }
    .await;
    // The archived messages are on the audit chain before the hand-back can fail.
    if !dry_run {
        let reason = match &result {
            Ok(()) => reason.to_string(),
            Err(e) => format!("{reason} (stopped: {e})"),
        };
        let entry = AuditEntry::new(
            AuditAction::DlqArchived,
            Subject::new("queue", worker),
            crate::ops::command_id(&actor, &format!("dlq-archive:{worker}")),
        )
        .reason(reason)
        .attribute("filters", serde_json::to_string(filters).map_err(WorkError::fatal)?)
        .attribute("archived", report.done)
        .attribute("input_keys", serde_json::to_string(&inputs).map_err(WorkError::fatal)?)
        .attribute("objects", serde_json::to_string(&report.keys).map_err(WorkError::fatal)?);
        log.append(entry).await?;
    }
    sweep.finish().await?;
    result?;
    Ok(report)
}

/// Sends archived messages of `worker` that match `filters` back to the worker's queue,
/// if a record of the worker still names the body (the same origin check as replay: an
/// object someone put in the incident bucket proves nothing). Each restored object gets a
/// `.restored` marker beside it and is kept; a restored one is not restored again.
///
/// The marker is written after the send, never before: a marker whose send then failed
/// would hide a message that never went back. A crash (or a second responder) between the
/// send and the marker sends the body twice; the worker's claim on the input's event id
/// makes that one effect (at-least-once send, exactly-once effect, as everywhere else).
pub async fn restore(
    dep: &Deployment,
    worker: &str,
    filters: &Filters,
    dry_run: bool,
) -> Result<ArchiveReport, WorkError> {
    let (actor, log) = crate::ops::operator(dep).await?;
    let dlq = Dlq::open(dep, worker).await?;
    let store = dep.ports("operator").store;
    let bucket = dep.bucket_ref("incidents").await?;
    let keys = store.list(&bucket.name, &format!("dlq/{worker}/")).await?;
    let mut report = ArchiveReport { dry_run, ..Default::default() };
    let mut inputs = Vec::new();
    let result = async {
        for key in keys.iter().filter(|k| k.ends_with(".json")) {
            if keys.contains(&restored_key(key)) {
                report.already_restored += 1;
                continue;
            }
            let bytes = store.get(&bucket.name, key, None).await?;
            let Ok(doc) = serde_json::from_slice::<Archived>(&bytes) else {
                report.refused += 1;
                continue;
            };
            let taken = queues::Taken {
                message_id: doc.message_id.clone(),
                receipt: String::new(),
                body: doc.body.clone(),
                sent_at_ms: None,
                receive_count: None,
                dead_letter_source_arn: None,
            };
            let p = dlq.explain(&taken).await?;
            if !p.matches(filters) {
                report.skipped += 1;
                continue;
            }
            if let Origin::Unproven { .. } = p.origin {
                report.refused += 1;
                continue;
            }
            if !dry_run {
                queues::send_batch(&dep.sqs, &dlq.queue_url, &[doc.body.as_str()])
                    .await?
                    .first()
                    .ok_or_else(|| WorkError::transient("sqs:SendMessageBatch", "the message was not sent"))?;
                // Sent: counted (and audited) even if the marker below fails.
                report.done += 1;
                report.keys.push(key.clone());
                inputs.push(p.input_key.clone());
                let marker = serde_json::json!({ "restored_by": actor.id, "restored_at_ms": now_ms() }).to_string();
                store.put(&bucket, &restored_key(key), marker.into_bytes().into(), "application/json").await?;
                continue;
            }
            report.done += 1;
            report.keys.push(key.clone());
            inputs.push(p.input_key);
        }
        Ok::<_, WorkError>(())
    }
    .await;
    // Audited on every exit: what was sent before an error is on the chain too.
    if !dry_run {
        let reason = match &result {
            Ok(()) => "operator restore from the incident bucket".to_string(),
            Err(e) => format!("operator restore from the incident bucket, stopped: {e}"),
        };
        let entry = AuditEntry::new(
            AuditAction::DlqReplayed,
            Subject::new("queue", worker),
            crate::ops::command_id(&actor, &format!("dlq-restore:{worker}")),
        )
        .reason(reason)
        .attribute("from", "archive")
        .attribute("filters", serde_json::to_string(filters).map_err(WorkError::fatal)?)
        .attribute("moved", report.done)
        .attribute("refused", report.refused)
        .attribute("input_keys", serde_json::to_string(&inputs).map_err(WorkError::fatal)?);
        log.append(entry).await?;
    }
    result?;
    Ok(report)
}

fn moved(p: &Parked) -> Moved {
    Moved {
        input_key: p.input_key.clone(),
        event_id: p.event_id.clone(),
        event_type: p.event_type.clone(),
        outcome: "pending".into(),
    }
}

/// Sends a batch to the worker's queue and deletes from the DLQ what was sent; what could
/// not be sent is handed back.
async fn move_batch(
    dlq: &Dlq<'_>,
    batch: Vec<(queues::Taken, Parked)>,
    report: &mut ReplayReport,
) -> Result<(), WorkError> {
    let bodies: Vec<&str> = batch.iter().map(|(m, _)| m.body.as_str()).collect();
    let sent = match queues::send_batch(&dlq.dep.sqs, &dlq.queue_url, &bodies).await {
        Ok(sent) => sent,
        Err(e) => {
            let all: Vec<String> = batch.iter().map(|(m, _)| m.receipt.clone()).collect();
            report.matched -= batch.len();
            let _ = dlq.hand_back(&all).await;
            return Err(e);
        }
    };
    for &i in &sent {
        report.moved += 1;
        report.messages.push(moved(&batch[i].1));
    }
    // Only now is it safe to delete: the messages exist in the worker's queue. If the
    // delete fails, they reappear in the DLQ after their hold: duplicates the claims skip.
    let receipts: Vec<&str> = sent.iter().map(|&i| batch[i].0.receipt.as_str()).collect();
    let deleted = queues::delete_batch(&dlq.dep.sqs, &dlq.url, &receipts).await?;
    if deleted.len() < sent.len() {
        // Sent but still in the DLQ: the next run sees a duplicate the worker's claim skips.
        tracing::warn!(
            worker = dlq.worker,
            undeleted = sent.len() - deleted.len(),
            "sent messages not deleted from the DLQ"
        );
    }
    let unsent: Vec<String> =
        (0..batch.len()).filter(|i| !sent.contains(i)).map(|i| batch[i].0.receipt.clone()).collect();
    report.matched -= unsent.len();
    // Not sent: back in the DLQ at once, untouched.
    dlq.hand_back(&unsent).await
}

/// Waits up to `wait` for the worker to finish the moved inputs, and counts the outcomes.
async fn follow(
    dlq: &Dlq<'_>,
    report: &mut ReplayReport,
    attempts_before: &HashMap<String, u32>,
    wait: Duration,
) -> Result<(), WorkError> {
    let deadline = Instant::now() + wait;
    loop {
        for m in report.messages.iter_mut().filter(|m| m.outcome == "pending") {
            let state = dlq.records.input_state(dlq.worker, &m.input_key).await?;
            if state.is_some_and(|s| s.state == "done") {
                m.outcome = "completed".into();
                continue;
            }
            let attempts = dlq.records.failure(dlq.worker, &m.input_key).await?.map_or(0, |f| f.attempts);
            if attempts > attempts_before.get(&m.input_key).copied().unwrap_or(0) {
                m.outcome = "failed_again".into();
            }
        }
        let open = report.messages.iter().filter(|m| m.outcome == "pending").count();
        if open == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    report.completed = report.messages.iter().filter(|m| m.outcome == "completed").count();
    report.failed_again = report.messages.iter().filter(|m| m.outcome == "failed_again").count();
    report.pending = report.messages.iter().filter(|m| m.outcome == "pending").count();
    Ok(())
}

/// `dlq list` for people: one line per reason code and event type.
pub fn render_groups(worker: &str, groups: &[Group], now_ms: i64) -> String {
    if groups.is_empty() {
        return format!("the {worker} DLQ is empty\n");
    }
    let mut t = crate::output::Table::new(["reason", "event type", "count", "unproven", "oldest", "newest"]);
    let ago = |t: Option<i64>| t.map_or("-".to_string(), |t| crate::output::age(now_ms - t));
    for g in groups {
        t.row([
            g.reason.clone(),
            g.event_type.clone(),
            g.count.to_string(),
            g.unproven.to_string(),
            ago(g.oldest_ms),
            ago(g.newest_ms),
        ]);
    }
    let total: usize = groups.iter().map(|g| g.count).sum();
    t.render()
        + &format!(
            "{total} parked in the {worker} DLQ; mlsec dlq replay {worker} --reason <code> --dry-run lists what a replay moves\n"
        )
}

/// `dlq replay` for people.
pub fn render_replay(r: &ReplayReport) -> String {
    use crate::output::clean;
    let mut out = String::new();
    if r.dry_run {
        out += &format!("dry run: a replay would move {} message(s)\n", r.matched);
        for m in &r.messages {
            out += &format!("  {} {}\n", clean(&m.event_type), clean(&m.input_key));
        }
    } else {
        out += &format!(
            "moved {} ({:.0}/s): {} completed, {} failed again, {} still pending\n",
            r.moved, r.moved_per_second, r.completed, r.failed_again, r.pending
        );
    }
    out += &format!(
        "left in the DLQ: {} not matching, {} came back in this run, {} refused\n",
        r.skipped, r.came_back, r.refused
    );
    for p in &r.refused_messages {
        if let Origin::Unproven { why } = &p.origin {
            out += &format!("  refused {} ({}): {}\n", clean(&p.message_id), clean(&p.event_type), clean(why));
        }
    }
    out
}

/// `--since` / `--until`: RFC 3339, or a duration back from now (`30m`, `2h`, `7d`).
pub fn parse_when(s: &str) -> Result<i64, String> {
    if let Some(ms) = mlsec_runtime::time::parse_rfc3339_ms(s.as_bytes()) {
        return Ok(ms);
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| format!("{s}: expected RFC 3339 or a duration like 30m, 2h, 7d"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s}: the unit is s, m, h or d")),
    };
    Ok(now_ms() - n * ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(reason: Option<&str>, event_type: &str, since: i64, proven: bool) -> Parked {
        Parked {
            message_id: format!("m-{since}"),
            input_key: format!("k-{since}"),
            event_id: Some(format!("e-{since}")),
            event_type: event_type.into(),
            dataset: Some("d".into()),
            landing_key: None,
            body_sha256: "s".into(),
            body_bytes: 1,
            sent_at_ms: Some(since),
            failure: reason.map(|r| FailureRecord {
                worker: "curate".into(),
                input_key: format!("k-{since}"),
                event_type: Some(event_type.into()),
                dataset: Some("d".into()),
                correlation_id: None,
                error_class: "permanent".into(),
                reason_code: r.into(),
                operation: None,
                attempts: 3,
                first_failure_ms: since,
                last_failure_ms: since,
                message_sha256s: vec!["s".into()],
            }),
            origin: if proven {
                Origin::Proven { by: "failure record".into() }
            } else {
                Origin::Unproven { why: "x".into() }
            },
        }
    }

    #[test]
    fn filters_select_by_reason_type_dataset_time_and_id() {
        let p = parked(Some("contract_version_mismatch"), "RawAccepted", 1_000, true);
        assert!(p.matches(&Filters::default()));
        let f = |f: Filters| p.matches(&f);
        assert!(f(Filters { reason: Some("contract_version_mismatch".into()), ..Default::default() }));
        assert!(!f(Filters { reason: Some("transient".into()), ..Default::default() }));
        assert!(!f(Filters { event_type: Some("ModelTrained".into()), ..Default::default() }));
        assert!(!f(Filters { dataset: Some("other".into()), ..Default::default() }));
        assert!(f(Filters { since_ms: Some(1_000), until_ms: Some(1_001), ..Default::default() }));
        assert!(!f(Filters { since_ms: Some(1_001), ..Default::default() }));
        assert!(!f(Filters { until_ms: Some(1_000), ..Default::default() }));
        for id in ["k-1000", "e-1000", "m-1000"] {
            assert!(f(Filters { id: Some(id.into()), ..Default::default() }), "{id}");
        }
        assert!(!f(Filters { id: Some("k-2".into()), ..Default::default() }));
        // Without a failure record there is no reason to match but `unrecorded`.
        let bare = parked(None, "RawAccepted", 5, false);
        assert_eq!(bare.reason(), "unrecorded");
        assert!(!bare.matches(&Filters { reason: Some("transient".into()), ..Default::default() }));
    }

    #[test]
    fn the_summary_groups_by_reason_and_event_type_with_ages_and_unproven_counts() {
        let all = vec![
            parked(Some("transient"), "DatasetCurated", 30, true),
            parked(Some("transient"), "DatasetCurated", 10, true),
            parked(Some("transient"), "DatasetCurated", 20, false),
            parked(None, "undecodable", 5, false),
        ];
        let g = group(&all);
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].reason.as_str(), g[0].event_type.as_str(), g[0].count, g[0].unproven),
            ("transient", "DatasetCurated", 3, 1)
        );
        assert_eq!((g[0].oldest_ms, g[0].newest_ms), (Some(10), Some(30)));
        assert_eq!((g[1].reason.as_str(), g[1].count), ("unrecorded", 1));
    }

    #[test]
    fn since_and_until_take_rfc3339_or_a_duration_back_from_now() {
        assert_eq!(parse_when("2026-01-01T00:00:00Z").unwrap(), 1_767_225_600_000);
        let two_hours = now_ms() - parse_when("2h").unwrap();
        assert!((7_199_000..=7_201_000).contains(&two_hours), "{two_hours}");
        assert!(parse_when("2w").is_err() && parse_when("soon").is_err());
    }
}

/// What `mlsec reingest` sent.
#[derive(Debug, Clone, Serialize)]
pub struct Reingest {
    pub dataset: String,
    pub sha256: String,
    /// The request's event id (the gateway's claim key for it).
    pub request: String,
    pub requested_by: String,
}

/// `mlsec reingest DATASET SHA256`: asks the gateway to announce an accepted content's
/// recorded `RawAccepted` again, unchanged (same event id): zones that never completed it
/// (its message archived, or gone past the DLQ's retention) handle it; zones that did skip
/// it by their claims. The request goes to the gateway's queue (the responder's replay
/// permission), not on a bus; the gateway checks its own ledger, so a request proves
/// nothing and needs to. Audited with the caller's STS identity before it is sent.
pub async fn reingest(dep: &Deployment, dataset: &str, sha256: &str, why: &str) -> Result<Reingest, WorkError> {
    use mlsec_events::{Envelope, PipelineEvent, ReingestRequested};
    let (actor, log) = crate::ops::operator(dep).await?;
    let sha256 = sha256.to_ascii_lowercase();
    let sha256 = sha256.as_str();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WorkError::permanent("bad_reingest_request", format!("{sha256:?} is not a hex SHA-256")));
    }
    let at_ms = now_ms();
    let request = mlsec_ingest::reingest_request_id(dataset, sha256, &actor.id, at_ms);
    let event = ReingestRequested {
        event_id: request.clone(),
        correlation_id: request.clone(),
        dataset: dataset.to_string(),
        sha256: sha256.to_string(),
        requested_by: actor.id.clone(),
        reason: why.to_string(),
        occurred_at_ms: at_ms,
    };
    let envelope = Envelope::wrap(&event).map_err(WorkError::fatal)?;
    let detail = serde_json::to_value(&envelope).map_err(WorkError::fatal)?;
    let body =
        mlsec_runtime::inbound::eventbridge_body(&dep.names.event_source("operator"), ReingestRequested::NAME, detail);
    // On the chain first: a request that then fails to send is still a recorded intent,
    // never an unrecorded effect.
    let entry = AuditEntry::new(
        AuditAction::DlqReplayed,
        Subject::new("dataset", dataset),
        crate::ops::command_id(&actor, &format!("reingest:{dataset}:{sha256}")),
    )
    .reason(why)
    .attribute("from", "ledger")
    .attribute("sha256", sha256)
    .attribute("request", request.as_str());
    log.append(entry).await?;
    let queue = dep.queue_url(&dep.names.queue("ingest")).await?;
    queues::send_batch(&dep.sqs, &queue, &[body.as_str()])
        .await?
        .first()
        .ok_or_else(|| WorkError::transient("sqs:SendMessageBatch", "the reingest request was not sent"))?;
    Ok(Reingest { dataset: dataset.into(), sha256: sha256.into(), request, requested_by: actor.id })
}
