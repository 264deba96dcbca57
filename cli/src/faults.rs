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
//!   parked in a DLQ with a failure record);
//! - duplicate effects: more than one distinct event id for one drop's acceptance,
//!   curation or scoring, and more scored or curated objects than distinct events;
//! - deliveries versus distinct event ids, identical rewrites (extra object versions);
//! - time to drain after the last fault.

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
    pub proxy_requests: u64,
    pub faults_injected: BTreeMap<String, u64>,
    pub scored: usize,
    pub curated: usize,
    pub quarantined: usize,
    pub rejected: usize,
    pub parked: usize,
    pub lost: usize,
    pub lost_keys: Vec<String>,
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
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicate_effects == 0
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
}

impl Workers {
    fn start(&mut self) -> Result<(), WorkError> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(WorkError::fatal)?;
        let err = log.try_clone().map_err(WorkError::fatal)?;
        let exe = std::env::current_exe().map_err(WorkError::fatal)?;
        let child = Command::new(exe)
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

    /// Restarts the process if it stopped by itself (a fatal error).
    fn keep_alive(&mut self) -> Result<(), WorkError> {
        let exited = match self.child.as_mut() {
            Some(c) => c.try_wait().map_err(WorkError::fatal)?.is_some(),
            None => true,
        };
        if exited { self.start() } else { Ok(()) }
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
    fn start(upstream: &str, rate: f64, seed: u64, log: &PathBuf) -> Result<Self, WorkError> {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(WorkError::fatal)?.port();
        let python = if std::path::Path::new(".venv/bin/python").exists() { ".venv/bin/python" } else { "python3" };
        let up = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let log = std::fs::File::create(log).map_err(WorkError::fatal)?;
        let child = Command::new(python)
            .args(["scripts/faultproxy.py", "--port", &port.to_string(), "--upstream", &up])
            .args(["--rate", &rate.to_string(), "--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| WorkError::fatal(format!("starting scripts/faultproxy.py: {e}")))?;
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Self { child, url });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(WorkError::fatal("the fault proxy did not start"))
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
    report.kills = workers.lock().unwrap().kills;
    report.proxy_requests = stats["requests"].as_u64().unwrap_or(0);
    report.faults_injected = stats["injected"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default();
    report.identical_rewrites = rewrites(dep).await?;
    report.duplicate_effects += extra_objects(dep, &events).await?;
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
        let terminal = if has("ObjectQuarantined", key) > 0 {
            r.quarantined += 1;
            true
        } else if !c.is_empty() && has("DatasetRejected", &c) > 0 {
            r.rejected += 1;
            true
        } else if !c.is_empty() && *kind == Kind::Scoring && has("RecordsScored", &c) > 0 {
            r.scored += 1;
            true
        } else if !c.is_empty() && *kind == Kind::Training && has("DatasetCurated", &c) > 0 {
            r.curated += 1;
            true
        } else if parked_keys.contains(key) || (!c.is_empty() && parked_correlations.contains(&c)) {
            r.parked += 1;
            true
        } else {
            false
        };
        if !terminal {
            r.lost += 1;
            r.lost_keys.push(key.clone());
        }
    }
    r
}

/// Extra versions of the same key in the data zones (identical rewrites after a crash).
async fn rewrites(dep: &Deployment) -> Result<usize, WorkError> {
    let mut extra = 0;
    for b in ["raw", "curated", "scored"] {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = dep
                .s3
                .list_object_versions()
                .bucket(dep.names.bucket(b))
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| mlsec_aws::errors::classify("s3:ListObjectVersions", e))?;
            for v in page.versions() {
                *counts.entry(v.key().unwrap_or_default().to_string()).or_default() += 1;
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
        extra += counts.values().map(|n| n - 1).sum::<usize>();
    }
    Ok(extra)
}

/// Scored outputs beyond one per distinct `RecordsScored` (a second object for one
/// dataset would be duplicate rows downstream).
async fn extra_objects(dep: &Deployment, events: &[Received]) -> Result<usize, WorkError> {
    let scored: BTreeSet<&str> = events
        .iter()
        .filter(|e| e.schema == "RecordsScored")
        .filter_map(|e| e.event["scored"]["key"].as_str())
        .collect();
    let keys = dep.ports("operator").store.list(&dep.names.bucket("scored"), "").await?;
    let outputs = keys.iter().filter(|k| k.ends_with(".parquet")).count();
    Ok(outputs.saturating_sub(scored.len()))
}

/// For people.
pub fn render(r: &FaultReport) -> String {
    let faults: u64 = r.faults_injected.values().sum();
    format!(
        "objects dropped: {} ({} scoring, {} training, {} hostile)\n\
         faults injected: {faults} of {} proxied calls {:?}\n\
         kills (SIGKILL): {}\n\
         terminal: {} scored, {} curated, {} quarantined, {} rejected, {} parked with a failure record\n\
         lost: {}{}\n\
         duplicate effects: {}{}\n\
         deliveries: {} for {} distinct events; identical rewrites (extra versions): {}\n\
         replayed from DLQs: {}\n\
         drain after the last fault: {:.1} s; whole run {:.1} s\n\
         {}\n",
        r.objects,
        r.scoring,
        r.training,
        r.hostile,
        r.proxy_requests,
        r.faults_injected,
        r.kills,
        r.scored,
        r.curated,
        r.quarantined,
        r.rejected,
        r.parked,
        r.lost,
        if r.lost_keys.is_empty() { String::new() } else { format!(" {:?}", r.lost_keys) },
        r.duplicate_effects,
        if r.duplicates.is_empty() { String::new() } else { format!(" {:?}", r.duplicates) },
        r.deliveries,
        r.distinct_events,
        r.identical_rewrites,
        r.replayed,
        r.drain_seconds_after_last_fault,
        r.seconds,
        if r.passed() { "PASSED: 0 lost, 0 duplicate effects" } else { "FAILED" },
    )
}
