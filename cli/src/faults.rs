//! `mlsec faults`: the whole chain under injected faults and SIGKILLs, then an account of
//! every object dropped.
//!
//! The workers run in a child process (`mlsec run --all`) whose AWS endpoint is a seeded
//! fault-injecting proxy in front of the emulator (`scripts/faultproxy.py`: 500, 503,
//! throttling, connection resets before and after the effect, latency). The harness talks
//! to the emulator directly. It puts a model in production, drops N distinct objects
//! (scoring and training datasets and hostile files) while killing the child with SIGKILL
//! at seeded random moments and restarting it, turns the faults off, lets the chain drain,
//! replays every DLQ through `mlsec dlq replay`, drains again and reports:
//! - lost: a drop with no terminal state (scored, curated, quarantined, rejected, or
//!   parked in a DLQ with a failure record), or an event naming an object that is not
//!   there;
//! - wrong outcomes: a drop whose terminal state is not the one it must reach (a scoring
//!   drop is scored, a training drop curated, a hostile file quarantined). Every input is
//!   valid and the faults are off for the replay, so a drop still parked after it counts
//!   here too;
//! - duplicate effects: more than one distinct event id for one drop's acceptance,
//!   quarantine, curation or scoring; more than one scored object for one drop; a scored
//!   object no event names; two versions of one object with different content;
//! - deliveries versus distinct event ids, identical rewrites (extra versions with the
//!   same digest: harmless, counted);
//! - time to drain after the last fault, and any exit of the workers' process the harness
//!   did not cause.
//!
//! The run passes only with 0 lost, 0 wrong, 0 duplicate effects, 0 unexpected exits, at
//! least one injected fault (when the rate is above 0) and every planned kill done.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aws_sdk_s3::primitives::ByteStream;
use mlsec_aws::{Deployment, provision};
use mlsec_runtime::{
    WorkError,
    contract::Contracts,
    ports::ReviewAction,
    sample::{SampleKind, csv_bytes},
};
use serde::Serialize;

use crate::{
    dlq,
    local::WORKERS,
    ops::{Received, Subscription, drop_bytes},
};

#[derive(Debug, Clone)]
pub struct FaultOptions {
    pub objects: usize,
    pub kills: usize,
    /// Share of the workers' AWS calls that get a fault.
    pub fault_rate: f64,
    pub seed: u64,
    /// In-flight window and claim lease of the child (short, so that kills recover fast).
    pub window_seconds: u32,
    pub timeout: Duration,
    pub work_dir: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultReport {
    pub objects: usize,
    pub scoring: usize,
    pub training: usize,
    pub hostile: usize,
    pub kills: usize,
    pub kills_planned: usize,
    pub unexpected_exits: usize,
    pub fault_rate: f64,
    pub proxy_requests: u64,
    /// Requests the emulator itself failed to answer (502 from the proxy: extra faults).
    pub upstream_errors: u64,
    pub faults_injected: BTreeMap<String, u64>,
    pub scored: usize,
    pub curated: usize,
    pub quarantined: usize,
    pub rejected: usize,
    pub parked: usize,
    pub lost: usize,
    pub lost_keys: Vec<String>,
    pub wrong_outcomes: usize,
    pub wrong: Vec<String>,
    pub duplicate_effects: usize,
    pub duplicates: Vec<String>,
    pub deliveries: usize,
    pub distinct_events: usize,
    pub identical_rewrites: usize,
    pub replayed: usize,
    pub drain_seconds_after_last_fault: f64,
    pub seconds: f64,
}

impl FaultReport {
    pub fn injected(&self) -> u64 {
        self.faults_injected.values().sum()
    }

    /// Why the run failed (empty when it passed).
    pub fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.lost > 0 {
            why.push(format!("{} lost", self.lost));
        }
        if self.wrong_outcomes > 0 {
            why.push(format!("{} wrong outcomes", self.wrong_outcomes));
        }
        if self.duplicate_effects > 0 {
            why.push(format!("{} duplicate effects", self.duplicate_effects));
        }
        if self.unexpected_exits > 0 {
            why.push(format!("the workers' process exited {} times by itself", self.unexpected_exits));
        }
        if self.fault_rate > 0.0 && self.injected() == 0 {
            why.push("no fault was injected".into());
        }
        if self.kills < self.kills_planned {
            why.push(format!("{} of {} kills done", self.kills, self.kills_planned));
        }
        why
    }

    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }
}

/// A tiny seeded generator (xorshift), so that a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The workers' process, restarted after every kill.
struct Workers {
    child: Option<Child>,
    proxy_url: String,
    window: u32,
    log: PathBuf,
    kills: usize,
    unexpected_exits: usize,
}

/// The child dies with the harness (SIGKILL when the thread that started it ends), so an
/// interrupted or killed run leaves no workers or proxy behind.
fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

impl Workers {
    fn start(&mut self) -> Result<(), WorkError> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(WorkError::fatal)?;
        let err = log.try_clone().map_err(WorkError::fatal)?;
        let exe = std::env::current_exe().map_err(WorkError::fatal)?;
        let child = die_with_parent(&mut Command::new(exe))
            .args(["run", "--all"])
            .env("AWS_ENDPOINT_URL", &self.proxy_url)
            .env("MLSEC_VISIBILITY_WINDOW_SECONDS", self.window.to_string())
            .env("MLSEC_CLAIM_LEASE_SECONDS", self.window.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(WorkError::fatal)?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL (`Child::kill` on Unix), then a new process.
    fn kill_and_restart(&mut self) -> Result<(), WorkError> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.kills += 1;
        }
        self.start()
    }

    /// Restarts the process if it stopped by itself (a fatal error), and counts that: the
    /// workers must ride out the faults, not exit on them.
    fn keep_alive(&mut self) -> Result<(), WorkError> {
        let exited = match self.child.as_mut() {
            Some(c) => c.try_wait().map_err(WorkError::fatal)?,
            None => return self.start(),
        };
        match exited {
            Some(status) => {
                self.unexpected_exits += 1;
                tracing::warn!(%status, "the workers' process exited by itself; restarting it (see workers.log)");
                self.start()
            }
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The proxy process.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    /// Starts the proxy on a port it picks itself (port 0) and reads that port from its
    /// first line of output, so no other process can take the port in between.
    fn start(upstream: &str, rate: f64, seed: u64, log: &PathBuf) -> Result<Self, WorkError> {
        use std::io::BufRead;
        let python = if std::path::Path::new(".venv/bin/python").exists() { ".venv/bin/python" } else { "python3" };
        let up = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let log = std::fs::File::create(log).map_err(WorkError::fatal)?;
        let mut child = die_with_parent(&mut Command::new(python))
            .args(["scripts/faultproxy.py", "--port", "0", "--upstream", &up])
            .args(["--rate", &rate.to_string(), "--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| WorkError::fatal(format!("starting scripts/faultproxy.py: {e}")))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or_else(|| WorkError::fatal("no proxy stdout"))?;
        std::io::BufReader::new(stdout).read_line(&mut line).map_err(WorkError::fatal)?;
        let port: u16 = match line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok()) {
            Some(p) => p,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(WorkError::fatal(format!(
                    "the fault proxy did not start (said {line:?}; see faultproxy.log)"
                )));
            }
        };
        Ok(Self { child, url: format!("http://127.0.0.1:{port}") })
    }

    async fn control(&self, what: &str) -> Result<serde_json::Value, WorkError> {
        // A plain HTTP/1.0 request: no client library needed.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.url.trim_start_matches("http://").to_string();
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(WorkError::fatal)?;
        let req = format!("POST /__faultproxy__/{what} HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(WorkError::fatal)?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.map_err(WorkError::fatal)?;
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("{}");
        serde_json::from_str(body).map_err(WorkError::fatal)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one drop was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scoring,
    Training,
    Hostile,
}

pub async fn run(dep: &Deployment, contracts: Arc<Contracts>, opts: &FaultOptions) -> Result<FaultReport, WorkError> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.work_dir).map_err(WorkError::fatal)?;
    provision::provision(dep).await?;
    // A short in-flight window, so that a killed process's messages return in seconds.
    for w in WORKERS {
        let url = dep.queue_url(&dep.names.queue(w)).await?;
        dep.sqs
            .set_queue_attributes()
            .queue_url(url)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, opts.window_seconds.to_string())
            .send()
            .await
            .map_err(|e| mlsec_aws::errors::classify("sqs:SetQueueAttributes", e))?;
    }
    let types: Vec<String> = [
        "RawAccepted",
        "ObjectQuarantined",
        "DatasetCurated",
        "DatasetRejected",
        "ModelStaged",
        "ModelPromoted",
        "RecordsScored",
        "ProcessingFailed",
    ]
    .map(String::from)
    .to_vec();
    let sub = Subscription::create(dep, "faults", &types).await?;
    let upstream =
        std::env::var("AWS_ENDPOINT_URL").map_err(|_| WorkError::fatal("AWS_ENDPOINT_URL must name the emulator"))?;
    let proxy = Proxy::start(&upstream, opts.fault_rate, opts.seed, &opts.work_dir.join("faultproxy.log"))?;
    let workers = Arc::new(Mutex::new(Workers {
        child: None,
        proxy_url: proxy.url.clone(),
        window: opts.window_seconds,
        log: opts.work_dir.join("workers.log"),
        kills: 0,
        unexpected_exits: 0,
    }));
    workers.lock().unwrap().start()?;
    let mut events: Vec<Received> = Vec::new();

    // A model in production first (faults on, no kills), so that scoring can complete.
    let me = mlsec_aws::identity::whoami(&dep.sts).await?;
    let role = |name: &str| format!("arn:aws:iam::{}:role/{}", me.account, dep.names.role(name));
    let producer = dep.assume_role(&role("producer"), "data-engineer").await?;
    let reviewer = dep.assume_role(&role("model-risk"), "risk-officer").await?;
    drop_bytes(
        &producer,
        "bank-core/transactions_training/setup.csv",
        ByteStream::from(csv_bytes(SampleKind::Training, 3000, 1)),
    )
    .await?;
    events.extend(wait_for(&sub, &workers, &["ModelStaged"], opts.timeout).await?);
    let staged = events.iter().rev().find(|e| e.schema == "ModelStaged").map(|e| e.event.clone()).unwrap_or_default();
    let (model, version) =
        (staged["model_name"].as_str().unwrap_or("?"), staged["model_version"].as_str().unwrap_or("?"));
    crate::models::decide(&reviewer, &contracts, model, version, ReviewAction::Approve, "fault suite", opts.timeout)
        .await?;
    events.extend(wait_for(&sub, &workers, &["ModelPromoted"], opts.timeout).await?);

    // The drops, with kills at seeded random moments among them.
    let mut rng = Rng(opts.seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // Half the kills among the drops, the rest while the chain works through them.
    let mut kill_at: BTreeSet<usize> = BTreeSet::new();
    while kill_at.len() < (opts.kills / 2).min(opts.objects.max(1)) {
        kill_at.insert(rng.below(opts.objects.max(1) as u64) as usize);
    }
    let mut drops: BTreeMap<String, Kind> = BTreeMap::new();
    for i in 0..opts.objects {
        let kind = match i % 10 {
            0 => Kind::Hostile,
            5 => Kind::Training,
            _ => Kind::Scoring,
        };
        let (key, body) = match kind {
            Kind::Scoring => (
                format!("bank-core/transactions_scoring/f-{i}.csv"),
                csv_bytes(SampleKind::Scoring, 200, 1000 + i as u64),
            ),
            Kind::Training => (
                format!("bank-core/transactions_training/f-{i}.csv"),
                csv_bytes(SampleKind::Training, 400, 1000 + i as u64),
            ),
            Kind::Hostile => {
                let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
                zip.extend_from_slice(format!("hostile {i}").as_bytes());
                (format!("bank-core/transactions_scoring/h-{i}.csv"), zip)
            }
        };
        drop_bytes(&producer, &key, ByteStream::from(body)).await?;
        drops.insert(key, kind);
        if kill_at.contains(&i) {
            tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
            workers.lock().unwrap().kill_and_restart()?;
        }
        events.extend(sub.poll(0).await?);
    }
    // The chain works through the drops with the faults on, and the remaining kills land
    // at random moments (about one every 4 s) until most drops reached a terminal state.
    let none = (BTreeSet::new(), BTreeSet::new());
    let processing = Instant::now() + opts.timeout / 2;
    let mut kills_left = opts.kills - kill_at.len();
    while Instant::now() < processing {
        workers.lock().unwrap().keep_alive()?;
        events.extend(sub.poll(1).await?);
        if kills_left > 0 && rng.below(4) == 0 {
            workers.lock().unwrap().kill_and_restart()?;
            kills_left -= 1;
        }
        let open = account(&drops, &events, &none).lost;
        if kills_left == 0 && open * 10 <= drops.len() {
            break;
        }
    }

    // Faults off; the chain drains.
    let stats = proxy.control("off").await?;
    let last_fault = Instant::now();
    drain(dep, &sub, &workers, &mut events, opts.timeout).await?;
    let drain_seconds = last_fault.elapsed().as_secs_f64();

    // Replay every DLQ, then drain again.
    let mut replayed = 0;
    for w in WORKERS {
        let r = dlq::replay(
            dep,
            w,
            &dlq::ReplayOptions {
                filters: Default::default(),
                rate: 200,
                max: 100_000,
                dry_run: false,
                wait_seconds: 0,
            },
        )
        .await?;
        replayed += r.moved;
    }
    drain(dep, &sub, &workers, &mut events, opts.timeout).await?;
    let parked = parked_inputs(dep).await?;
    workers.lock().unwrap().stop();

    let mut report = account(&drops, &events, &parked);
    {
        let w = workers.lock().unwrap();
        (report.kills, report.unexpected_exits) = (w.kills, w.unexpected_exits);
    }
    report.kills_planned = opts.kills;
    report.fault_rate = opts.fault_rate;
    report.proxy_requests = stats["requests"].as_u64().unwrap_or(0);
    report.upstream_errors = stats["upstream_errors"].as_u64().unwrap_or(0);
    report.faults_injected = stats["injected"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default();
    check_objects(dep, &events, &mut report).await?;
    report.replayed = replayed;
    report.drain_seconds_after_last_fault = drain_seconds;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Polls the subscription until one of `schemas` arrives, keeping the workers alive.
async fn wait_for(
    sub: &Subscription,
    workers: &Mutex<Workers>,
    schemas: &[&str],
    timeout: Duration,
) -> Result<Vec<Received>, WorkError> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        workers.lock().unwrap().keep_alive()?;
        let got = sub.poll(2).await?;
        let found = got.iter().any(|e| schemas.contains(&e.schema.as_str()));
        seen.extend(got);
        if found {
            return Ok(seen);
        }
    }
    Err(WorkError::fatal(format!("timed out waiting for {schemas:?}")))
}

/// Waits until every worker queue is empty (nothing visible or in flight) twice in a row,
/// collecting events.
async fn drain(
    dep: &Deployment,
    sub: &Subscription,
    workers: &Mutex<Workers>,
    events: &mut Vec<Received>,
    timeout: Duration,
) -> Result<(), WorkError> {
    let deadline = Instant::now() + timeout;
    let mut quiet = 0;
    while quiet < 2 {
        if Instant::now() > deadline {
            return Err(WorkError::fatal("the chain did not drain in time"));
        }
        workers.lock().unwrap().keep_alive()?;
        events.extend(sub.poll(1).await?);
        let mut busy = 0;
        for w in WORKERS {
            let url = dep.queue_url(&dep.names.queue(w)).await?;
            let d = mlsec_aws::queues::depth(&dep.sqs, &url).await?;
            busy += d.visible + d.in_flight;
        }
        quiet = if busy == 0 { quiet + 1 } else { 0 };
    }
    // Events still on their way to the subscription.
    for _ in 0..3 {
        events.extend(sub.poll(1).await?);
    }
    Ok(())
}

/// What is parked in the DLQs after the replay: correlation ids and landing keys of
/// messages that carry a failure record.
async fn parked_inputs(dep: &Deployment) -> Result<(BTreeSet<String>, BTreeSet<String>), WorkError> {
    let (mut correlations, mut keys) = (BTreeSet::new(), BTreeSet::new());
    for w in WORKERS {
        for p in dlq::list(dep, w, &Default::default()).await? {
            let Some(f) = &p.failure else { continue };
            if let Some(c) = &f.correlation_id {
                correlations.insert(c.clone());
            }
            if let Some(k) = &p.landing_key {
                keys.insert(k.clone());
            }
        }
    }
    Ok((correlations, keys))
}

fn account(
    drops: &BTreeMap<String, Kind>,
    events: &[Received],
    (parked_correlations, parked_keys): &(BTreeSet<String>, BTreeSet<String>),
) -> FaultReport {
    let mut r = FaultReport { objects: drops.len(), ..Default::default() };
    r.deliveries = events.len();
    r.distinct_events = events.iter().map(|e| (&e.schema, &e.event_id)).collect::<BTreeSet<_>>().len();
    // Distinct event ids per schema and key (landing key or correlation id).
    let mut ids: HashMap<(&str, String), BTreeSet<&str>> = HashMap::new();
    let mut correlation_of: HashMap<String, String> = HashMap::new();
    for e in events {
        let s = e.schema.as_str();
        let key = match s {
            "RawAccepted" => {
                let k = e.event["source"]["key"].as_str().unwrap_or_default().to_string();
                correlation_of.insert(k.clone(), e.event["correlation_id"].as_str().unwrap_or_default().to_string());
                k
            }
            "ObjectQuarantined" => e.event["source_key"].as_str().unwrap_or_default().to_string(),
            _ => e.event["correlation_id"].as_str().unwrap_or_default().to_string(),
        };
        ids.entry((s, key)).or_default().insert(e.event_id.as_str());
    }
    for (key, kind) in drops {
        match kind {
            Kind::Scoring => r.scoring += 1,
            Kind::Training => r.training += 1,
            Kind::Hostile => r.hostile += 1,
        }
        let has = |s: &str, k: &str| ids.get(&(s, k.to_string())).map_or(0, |v| v.len());
        let mut dup = |what: &str, n: usize| {
            if n > 1 {
                r.duplicate_effects += n - 1;
                r.duplicates.push(format!("{key}: {n} distinct {what} events"));
            }
        };
        dup("RawAccepted", has("RawAccepted", key));
        dup("ObjectQuarantined", has("ObjectQuarantined", key));
        let c = correlation_of.get(key).cloned().unwrap_or_default();
        if !c.is_empty() {
            dup("DatasetCurated", has("DatasetCurated", &c));
            dup("RecordsScored", has("RecordsScored", &c));
        }
        let state = if has("ObjectQuarantined", key) > 0 {
            Some("quarantined")
        } else if !c.is_empty() && has("DatasetRejected", &c) > 0 {
            Some("rejected")
        } else if !c.is_empty() && has("RecordsScored", &c) > 0 {
            Some("scored")
        } else if !c.is_empty() && *kind == Kind::Training && has("DatasetCurated", &c) > 0 {
            Some("curated")
        } else if parked_keys.contains(key) || (!c.is_empty() && parked_correlations.contains(&c)) {
            Some("parked")
        } else {
            None
        };
        match state {
            Some("quarantined") => r.quarantined += 1,
            Some("rejected") => r.rejected += 1,
            Some("scored") => r.scored += 1,
            Some("curated") => r.curated += 1,
            Some(_) => r.parked += 1,
            None => {
                r.lost += 1;
                r.lost_keys.push(key.clone());
            }
        }
        let expected = match kind {
            Kind::Scoring => "scored",
            Kind::Training => "curated",
            Kind::Hostile => "quarantined",
        };
        if let Some(s) = state.filter(|s| *s != expected) {
            r.wrong_outcomes += 1;
            r.wrong.push(format!("{key}: {s}, expected {expected}"));
        } else if has("ObjectQuarantined", key) > 0 && has("RawAccepted", key) > 0 {
            // Both verdicts for one drop: one of them is wrong, whichever came first.
            r.wrong_outcomes += 1;
            r.wrong.push(format!("{key}: both accepted and quarantined"));
        }
    }
    r
}

/// Every version in bucket `b`: key → version ids.
async fn versions(dep: &Deployment, bucket: &str) -> Result<BTreeMap<String, Vec<String>>, WorkError> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = dep
            .s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .map_err(|e| mlsec_aws::errors::classify("s3:ListObjectVersions", e))?;
        for v in page.versions() {
            out.entry(v.key().unwrap_or_default().to_string())
                .or_default()
                .push(v.version_id().unwrap_or("null").to_string());
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    Ok(out)
}

/// What the data buckets hold: bucket → key → versions, each with the pipeline's SHA-256
/// from its metadata (read only for keys with more than one version).
type Listing = BTreeMap<String, BTreeMap<String, Vec<(String, Option<String>)>>>;

async fn list_data_zones(dep: &Deployment) -> Result<(Listing, String), WorkError> {
    let mut all = Listing::new();
    for zone in ["raw", "curated", "scored"] {
        let bucket = dep.names.bucket(zone);
        let mut keys = BTreeMap::new();
        for (key, vs) in versions(dep, &bucket).await? {
            let mut with_digest = Vec::new();
            for v in vs.iter() {
                let digest = if vs.len() < 2 {
                    None
                } else {
                    let head = dep
                        .s3
                        .head_object()
                        .bucket(&bucket)
                        .key(&key)
                        .version_id(v)
                        .send()
                        .await
                        .map_err(|e| mlsec_aws::errors::classify("s3:HeadObject", e))?;
                    let sha = head.metadata().and_then(|m| m.get(mlsec_aws::s3::SHA256_METADATA)).cloned();
                    Some(sha.unwrap_or_else(|| format!("no digest ({v})")))
                };
                with_digest.push((v.clone(), digest));
            }
            keys.insert(key, with_digest);
        }
        all.insert(bucket, keys);
    }
    Ok((all, dep.names.bucket("scored")))
}

async fn check_objects(dep: &Deployment, events: &[Received], r: &mut FaultReport) -> Result<(), WorkError> {
    let (listing, scored_bucket) = list_data_zones(dep).await?;
    judge_objects(events, &listing, &scored_bucket, r);
    Ok(())
}

/// The objects behind the events:
/// - every object an event names (raw Parquet, curated dataset, scored output) exists in
///   the version it names, else the drop's data is lost;
/// - one scored object per drop, and no scored object that no event names (a second
///   output for one dataset would be duplicate rows downstream);
/// - a key written more than once holds the same content (the pipeline's SHA-256 in the
///   object metadata) in every version: identical rewrites are counted, different
///   contents are duplicate effects.
fn judge_objects(events: &[Received], listing: &Listing, scored_bucket: &str, r: &mut FaultReport) {
    let mut named: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut scored_per_drop: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in events {
        let field = match e.schema.as_str() {
            "RawAccepted" => "parquet",
            "DatasetCurated" => "curated",
            "RecordsScored" => "scored",
            _ => continue,
        };
        let o = &e.event[field];
        let (Some(bucket), Some(key)) = (o["bucket"].as_str(), o["key"].as_str()) else { continue };
        let version = o["version_id"].as_str().unwrap_or("null");
        named.insert((bucket.to_string(), key.to_string(), version.to_string()));
        if e.schema == "RecordsScored" {
            scored_per_drop.entry(e.event["correlation_id"].as_str().unwrap_or_default()).or_default().insert(key);
        }
    }
    for (c, keys) in &scored_per_drop {
        if keys.len() > 1 {
            r.duplicate_effects += keys.len() - 1;
            r.duplicates.push(format!("drop {c}: {} scored objects", keys.len()));
        }
    }
    for (bucket, keys) in listing {
        for (key, vs) in keys {
            let digests: BTreeSet<&Option<String>> = vs.iter().map(|(_, d)| d).collect();
            if vs.len() < 2 {
                continue;
            }
            if digests.len() > 1 {
                r.duplicate_effects += 1;
                r.duplicates.push(format!(
                    "s3://{bucket}/{key}: {} versions with {} contents",
                    vs.len(),
                    digests.len()
                ));
            } else {
                r.identical_rewrites += vs.len() - 1;
            }
        }
    }
    let scored_named: BTreeSet<&str> = named.iter().filter(|n| n.0 == scored_bucket).map(|n| n.1.as_str()).collect();
    for key in listing.get(scored_bucket).into_iter().flat_map(|k| k.keys()) {
        if key.ends_with(".parquet") && !scored_named.contains(key.as_str()) {
            r.duplicate_effects += 1;
            r.duplicates.push(format!("s3://{scored_bucket}/{key}: a scored object no event names"));
        }
    }
    for (bucket, key, version) in &named {
        let there = listing.get(bucket).and_then(|b| b.get(key)).is_some_and(|vs| vs.iter().any(|(v, _)| v == version));
        if !there {
            r.lost += 1;
            r.lost_keys.push(format!("s3://{bucket}/{key}?versionId={version}: named by an event, not there"));
        }
    }
}

/// For people.
pub fn render(r: &FaultReport) -> String {
    let list = |v: &[String]| if v.is_empty() { String::new() } else { format!(" {v:?}") };
    let failures = r.failures();
    format!(
        "objects dropped: {} ({} scoring, {} training, {} hostile)\n\
         faults injected: {} of {} proxied calls {:?}; emulator errors (502): {}\n\
         kills (SIGKILL): {} of {} planned; the workers' process exited by itself {} times\n\
         terminal: {} scored, {} curated, {} quarantined, {} rejected, {} parked with a failure record\n\
         lost: {}{}\n\
         wrong outcomes: {}{}\n\
         duplicate effects: {}{}\n\
         deliveries: {} for {} distinct events; identical rewrites (extra versions, same digest): {}\n\
         replayed from DLQs: {}\n\
         drain after the last fault: {:.1} s; whole run {:.1} s\n\
         {}\n",
        r.objects,
        r.scoring,
        r.training,
        r.hostile,
        r.injected(),
        r.proxy_requests,
        r.faults_injected,
        r.upstream_errors,
        r.kills,
        r.kills_planned,
        r.unexpected_exits,
        r.scored,
        r.curated,
        r.quarantined,
        r.rejected,
        r.parked,
        r.lost,
        list(&r.lost_keys),
        r.wrong_outcomes,
        list(&r.wrong),
        r.duplicate_effects,
        list(&r.duplicates),
        r.deliveries,
        r.distinct_events,
        r.identical_rewrites,
        r.replayed,
        r.drain_seconds_after_last_fault,
        r.seconds,
        if failures.is_empty() {
            "PASSED: 0 lost, 0 wrong outcomes, 0 duplicate effects, every kill done".to_string()
        } else {
            format!("FAILED: {}", failures.join(", "))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(schema: &str, id: &str, event: serde_json::Value) -> Received {
        Received { schema: schema.into(), event_id: id.into(), event }
    }

    fn accepted(key: &str, c: &str) -> Received {
        ev("RawAccepted", &format!("a-{c}"), json!({"source": {"key": key}, "correlation_id": c}))
    }

    fn scored(id: &str, c: &str, key: &str, version: &str) -> Received {
        ev(
            "RecordsScored",
            id,
            json!({"correlation_id": c, "scored": {"bucket": "scored", "key": key, "version_id": version}}),
        )
    }

    fn drops(v: &[(&str, Kind)]) -> BTreeMap<String, Kind> {
        v.iter().map(|(k, kind)| (k.to_string(), *kind)).collect()
    }

    fn none() -> (BTreeSet<String>, BTreeSet<String>) {
        (BTreeSet::new(), BTreeSet::new())
    }

    #[test]
    fn each_kind_must_reach_its_own_outcome() {
        let d = drops(&[("s", Kind::Scoring), ("t", Kind::Training), ("h", Kind::Hostile)]);
        // The scoring drop was quarantined, the hostile one accepted and curated.
        let events = vec![
            ev("ObjectQuarantined", "q", json!({"source_key": "s"})),
            accepted("t", "ct"),
            ev("DatasetCurated", "c1", json!({"correlation_id": "ct"})),
            accepted("h", "ch"),
            ev("RecordsScored", "r1", json!({"correlation_id": "ch"})),
        ];
        let r = account(&d, &events, &none());
        assert_eq!((r.lost, r.wrong_outcomes), (0, 2), "{:?}", r.wrong);
        // A hostile file quarantined and also accepted is not a pass.
        let hostile = drops(&[("h", Kind::Hostile)]);
        let both = vec![ev("ObjectQuarantined", "q", json!({"source_key": "h"})), accepted("h", "ch")];
        assert_eq!(account(&hostile, &both, &none()).wrong, vec!["h: both accepted and quarantined".to_string()]);
        assert!(r.wrong.iter().any(|w| w.starts_with("s: quarantined")));
        assert!(r.wrong.iter().any(|w| w.starts_with("h: scored")));
        assert!(!r.passed());
    }

    #[test]
    fn a_scoring_drop_curated_but_never_scored_is_lost_and_parked_is_wrong() {
        let d = drops(&[("s1", Kind::Scoring), ("s2", Kind::Scoring)]);
        let events = vec![
            accepted("s1", "c1"),
            ev("DatasetCurated", "d1", json!({"correlation_id": "c1"})),
            accepted("s2", "c2"),
        ];
        let parked = (BTreeSet::from(["c2".to_string()]), BTreeSet::new());
        let r = account(&d, &events, &parked);
        assert_eq!(r.lost_keys, vec!["s1".to_string()]);
        assert_eq!((r.parked, r.wrong_outcomes), (1, 1));
    }

    #[test]
    fn two_distinct_scoring_events_for_one_drop_are_a_duplicate_and_redeliveries_are_not() {
        let d = drops(&[("s", Kind::Scoring)]);
        let once = vec![accepted("s", "c"), scored("r1", "c", "k", "v1"), scored("r1", "c", "k", "v1")];
        let r = account(&d, &once, &none());
        assert_eq!((r.duplicate_effects, r.scored, r.deliveries, r.distinct_events), (0, 1, 3, 2));
        let twice = vec![accepted("s", "c"), scored("r1", "c", "k", "v1"), scored("r2", "c", "k", "v1")];
        assert_eq!(account(&d, &twice, &none()).duplicate_effects, 1);
    }

    /// (bucket, key, [(version, digest)])
    type Rows<'a> = [(&'a str, &'a str, &'a [(&'a str, Option<&'a str>)])];

    fn listing(v: &Rows) -> Listing {
        let mut l = Listing::new();
        for (bucket, key, versions) in v {
            l.entry(bucket.to_string()).or_default().insert(
                key.to_string(),
                versions.iter().map(|(v, d)| (v.to_string(), d.map(str::to_string))).collect(),
            );
        }
        l
    }

    #[test]
    fn objects_judge_rewrites_orphans_second_outputs_and_missing_versions() {
        let events = vec![scored("r1", "c", "a.parquet", "v1")];
        // The named version is there, rewritten once with the same content: fine, counted.
        let mut r = FaultReport::default();
        judge_objects(
            &events,
            &listing(&[("scored", "a.parquet", &[("v1", Some("x")), ("v2", Some("x"))])]),
            "scored",
            &mut r,
        );
        assert_eq!((r.duplicate_effects, r.lost, r.identical_rewrites), (0, 0, 1));
        // Rewritten with other content.
        let mut r = FaultReport::default();
        judge_objects(
            &events,
            &listing(&[("scored", "a.parquet", &[("v1", Some("x")), ("v2", Some("y"))])]),
            "scored",
            &mut r,
        );
        assert_eq!(r.duplicate_effects, 1);
        // A second scored object nobody names.
        let mut r = FaultReport::default();
        let two = listing(&[("scored", "a.parquet", &[("v1", None)]), ("scored", "b.parquet", &[("v9", None)])]);
        judge_objects(&events, &two, "scored", &mut r);
        assert_eq!((r.duplicate_effects, r.lost), (1, 0), "{:?}", r.duplicates);
        // Two scored objects for one drop, both named.
        let mut r = FaultReport::default();
        let both = vec![scored("r1", "c", "a.parquet", "v1"), scored("r2", "c", "b.parquet", "v9")];
        judge_objects(&both, &two, "scored", &mut r);
        assert_eq!(r.duplicate_effects, 1, "{:?}", r.duplicates);
        // The named version is gone.
        let mut r = FaultReport::default();
        judge_objects(&events, &listing(&[("scored", "a.parquet", &[("v2", None)])]), "scored", &mut r);
        assert_eq!(r.lost, 1);
    }

    #[test]
    fn a_run_without_faults_or_with_kills_missing_or_exits_does_not_pass() {
        let ok = FaultReport {
            fault_rate: 0.05,
            faults_injected: BTreeMap::from([("500".to_string(), 3)]),
            kills: 5,
            kills_planned: 5,
            ..Default::default()
        };
        assert!(ok.passed(), "{:?}", ok.failures());
        assert!(!FaultReport { faults_injected: BTreeMap::new(), ..ok.clone() }.passed());
        assert!(!FaultReport { kills: 4, ..ok.clone() }.passed());
        assert!(!FaultReport { unexpected_exits: 1, ..ok.clone() }.passed());
        assert!(!FaultReport { duplicate_effects: 1, ..ok.clone() }.passed());
        assert!(FaultReport { fault_rate: 0.0, faults_injected: BTreeMap::new(), ..ok }.passed());
    }
}
