//! The topology declaration (`terraform/topology.json`): keys, buckets, tables, the
//! pipeline bus and the workers with their queues, triggers and access. Declared once:
//! the local provisioner (`mlsec provision`) reads this file through [`Topology`], the
//! Terraform modules read the same file with `jsondecode`, and the Terraform tests
//! (`tests/terraform/`) check that both agree. Also the SQS limits every driver obeys.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The declaration as shipped with this build.
pub const TOPOLOGY_JSON: &str = include_str!("../../../terraform/topology.json");

/// SQS's largest message size; moto defaults to 1 MiB, AWS to 256 KiB.
pub const SQS_MAX_MESSAGE_BYTES: i32 = 262_144;
/// SQS's longest visibility timeout (12 hours), for a queue and for
/// `ChangeMessageVisibility` alike.
pub const MAX_VISIBILITY_SECONDS: i32 = 43_200;

/// Why a topology declaration is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TopologyError {
    #[error("topology: {0}")]
    Json(String),
    /// A reference to something undeclared, or a limit out of range.
    #[error("topology: {0}")]
    Invalid(String),
}
/// DLQ retention: the longest SQS allows (14 days), time to investigate an incident.
pub const DLQ_RETENTION_SECONDS: i32 = 1_209_600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub description: String,
    pub pipeline_bus: String,
    pub keys: BTreeMap<String, KeyDecl>,
    pub buckets: BTreeMap<String, BucketDecl>,
    pub tables: BTreeMap<String, TableDecl>,
    pub workers: BTreeMap<String, WorkerDecl>,
    /// Events people publish through the CLI (source `<prefix>.operator`).
    pub operator_emits: Vec<String>,
    /// Requests operators send straight to one worker's queue (never on a bus): event type →
    /// the worker that accepts it. Their source is `<prefix>.operator` like decisions.
    #[serde(default)]
    pub operator_sends: std::collections::BTreeMap<String, String>,
    /// The roles people take (`<prefix>-<name>`), with what each is for. Their trust
    /// policies pin the session name to the person (ADR 0012), so a session stands for one
    /// person and separation of duties can compare people.
    pub people: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDecl {
    pub spec: String,
    pub usage: String,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketDecl {
    pub key: String,
    pub eventbridge: bool,
    /// S3 Object Lock (WORM): created with it, so no version can be deleted or overwritten
    /// within the retention (Terraform sets the mode and retention).
    #[serde(default)]
    pub object_lock: bool,
    /// Every put must carry the `mlsec-dropped-by` tag set to the caller's own
    /// `aws:userid`, and no tag may change afterwards (the bucket policy enforces it).
    #[serde(default)]
    pub dropper_tag: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDecl {
    pub partition_key: String,
    pub sort_key: Option<String>,
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerDecl {
    pub zone: String,
    pub trigger: Trigger,
    pub reads: Vec<String>,
    /// Objects the worker may read in buckets it does not consume, by key pattern: its
    /// own records (the gateway's content ledger and release records).
    #[serde(default)]
    pub reads_records: std::collections::BTreeMap<String, Vec<String>>,
    pub writes: Vec<String>,
    /// Keys the worker may use; `<key>:sign` or `<key>:verify` narrows a signing key.
    pub keys: Vec<String>,
    pub tables: Vec<String>,
    pub emits: Vec<String>,
    /// Resolves vouched user ids to principals (IAM `ListRoles`/`ListUsers`): govern, for
    /// separation of duties.
    #[serde(default)]
    pub resolves_people: bool,
    pub queue: QueueDecl,
    /// Lambda sizing where the deployment default does not fit (Terraform only).
    #[serde(default)]
    pub lambda: Option<LambdaDecl>,
}

/// Per-worker Lambda sizing: ingest and curate stream objects up to the contracts' size
/// limits and spill them to `/tmp`, one object per invocation (`batch_size` 1: the
/// messages of a batch are handled concurrently and would share `/tmp` and the timeout).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaDecl {
    /// The function's timeout (Terraform; the queue's visibility is raised to at least it).
    pub timeout_seconds: Option<u32>,
    pub memory_mb: Option<u32>,
    pub ephemeral_storage_mb: Option<u32>,
    pub batch_size: Option<u32>,
}

/// What puts messages on a worker's queue: an EventBridge rule on the default bus (S3
/// notifications) or on the pipeline bus (pipeline events, optionally by role).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub bus: String,
    pub s3_bucket: Option<String>,
    /// Event types delivered to the worker (the S3 `Object Created`, or pipeline events);
    /// each only from its one declared emitter.
    pub detail_types: Vec<String>,
    pub role: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDecl {
    pub visibility_timeout_seconds: i32,
    pub max_receive_count: i32,
}

/// Resource names for one deployment prefix (`mlsec` by default; tests use unique ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub prefix: String,
    pub bucket_suffix: Option<String>,
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), bucket_suffix: None }
    }
    /// From `MLSEC_PREFIX` (default `mlsec`) and `MLSEC_BUCKET_SUFFIX` (on AWS, what
    /// makes bucket names globally unique, e.g. the account id; unset locally).
    pub fn from_env() -> Self {
        let mut names = Self::new(std::env::var("MLSEC_PREFIX").unwrap_or_else(|_| "mlsec".into()));
        names.bucket_suffix = std::env::var("MLSEC_BUCKET_SUFFIX").ok().filter(|s| !s.is_empty());
        names
    }
    /// `<prefix>-<bucket>[-<suffix>]`, as Terraform names them.
    pub fn bucket(&self, b: &str) -> String {
        match &self.bucket_suffix {
            Some(suffix) => format!("{}-{b}-{suffix}", self.prefix),
            None => format!("{}-{b}", self.prefix),
        }
    }
    pub fn queue(&self, worker: &str) -> String {
        format!("{}-{worker}", self.prefix)
    }
    pub fn dlq(&self, worker: &str) -> String {
        format!("{}-{worker}-dlq", self.prefix)
    }
    pub fn rule(&self, worker: &str) -> String {
        format!("{}-{worker}", self.prefix)
    }
    pub fn bus(&self, topology: &Topology) -> String {
        format!("{}-{}", self.prefix, topology.pipeline_bus)
    }
    pub fn table(&self, t: &str) -> String {
        format!("{}-{t}", self.prefix)
    }
    /// The execution role of a worker (as Terraform names it): its identity in the audit chain.
    pub fn role(&self, worker: &str) -> String {
        format!("{}-{worker}", self.prefix)
    }
    pub fn key_alias(&self, k: &str) -> String {
        format!("alias/{}-{k}", self.prefix)
    }
    /// Source of the events a worker publishes.
    pub fn event_source(&self, worker: &str) -> String {
        format!("{}.{worker}", self.prefix)
    }
}

impl Topology {
    /// Parses and checks the declaration: every reference names a declared thing.
    pub fn parse(json: &str) -> Result<Self, TopologyError> {
        let t: Topology = serde_json::from_str(json).map_err(|e| TopologyError::Json(e.to_string()))?;
        for (name, b) in &t.buckets {
            if !t.keys.contains_key(&b.key) {
                return Err(TopologyError::Invalid(format!("bucket {name} uses undeclared key {}", b.key)));
            }
        }
        for (name, w) in &t.workers {
            for b in w.reads.iter().chain(&w.writes) {
                if !t.buckets.contains_key(b) {
                    return Err(TopologyError::Invalid(format!("worker {name} uses undeclared bucket {b}")));
                }
            }
            for k in &w.keys {
                // Full use, `:read` (decrypt only), or for a signing key exactly one of
                // `:sign` / `:verify`: Terraform builds the key policies from these.
                let (key, access) = k.split_once(':').unwrap_or((k, ""));
                let Some(decl) = t.keys.get(key) else {
                    return Err(TopologyError::Invalid(format!("worker {name} uses undeclared key {key}")));
                };
                let fits = match decl.usage.as_str() {
                    "SIGN_VERIFY" => ["sign", "verify"].contains(&access),
                    _ => ["", "read"].contains(&access),
                };
                if !fits {
                    return Err(TopologyError::Invalid(format!(
                        "worker {name}: key access {k} does not fit a {} key",
                        decl.usage
                    )));
                }
            }
            for tb in &w.tables {
                let (table, access) = tb.split_once(':').unwrap_or((tb, ""));
                if !t.tables.contains_key(table) || !["", "read"].contains(&access) {
                    return Err(TopologyError::Invalid(format!("worker {name}: unknown table or access {tb}")));
                }
            }
            if let Some(b) = &w.trigger.s3_bucket
                && !t.buckets.get(b).is_some_and(|d| d.eventbridge)
            {
                return Err(TopologyError::Invalid(format!(
                    "worker {name} is triggered by bucket {b}, which sends no events"
                )));
            }
            if w.trigger.detail_types.is_empty() {
                return Err(TopologyError::Invalid(format!("worker {name} is triggered by no event type")));
            }
            if w.trigger.s3_bucket.is_none()
                && let Some(d) = w.trigger.detail_types.iter().find(|d| t.emitters(d).is_empty())
            {
                return Err(TopologyError::Invalid(format!("worker {name} listens for {d}, which nobody emits")));
            }
            if w.trigger.bus != "default" && w.trigger.bus != t.pipeline_bus {
                return Err(TopologyError::Invalid(format!("worker {name} listens on unknown bus {}", w.trigger.bus)));
            }
            if !(1..=MAX_VISIBILITY_SECONDS).contains(&w.queue.visibility_timeout_seconds)
                || w.queue.max_receive_count < 1
            {
                return Err(TopologyError::Invalid(format!("worker {name} has an invalid queue declaration")));
            }
        }
        Ok(t)
    }

    /// The declaration built into this binary.
    pub fn builtin() -> Self {
        Self::parse(TOPOLOGY_JSON).expect("terraform/topology.json is valid (checked by tests)")
    }

    /// The built-in declaration, parsed once.
    pub fn shared() -> &'static Self {
        static T: std::sync::OnceLock<Topology> = std::sync::OnceLock::new();
        T.get_or_init(Self::builtin)
    }

    /// Who may emit events of `detail_type`: worker names and/or `operator` (empty: nobody).
    pub fn emitters(&self, detail_type: &str) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .workers
            .iter()
            .filter(|(_, w)| w.emits.iter().any(|e| e == detail_type))
            .map(|(n, _)| n.as_str())
            .collect();
        if self.operator_emits.iter().any(|e| e == detail_type) || self.operator_sends.contains_key(detail_type) {
            out.push(OPERATOR);
        }
        out
    }

    /// The EventBridge pattern of a worker's rule: exact sources (each event type's one
    /// emitter) and exact detail types.
    pub fn event_pattern(&self, names: &Names, worker: &WorkerDecl) -> serde_json::Value {
        let t = &worker.trigger;
        match &t.s3_bucket {
            Some(b) => serde_json::json!({
                "source": ["aws.s3"],
                "detail-type": t.detail_types,
                "detail": { "bucket": { "name": [names.bucket(b)] } }
            }),
            None => {
                let mut sources: Vec<String> =
                    t.detail_types.iter().flat_map(|d| self.emitters(d)).map(|w| names.event_source(w)).collect();
                sources.sort();
                sources.dedup();
                let mut p = serde_json::json!({ "source": sources, "detail-type": t.detail_types });
                if let Some(role) = &t.role {
                    p["detail"] = serde_json::json!({ "role": [role] });
                }
                p
            }
        }
    }
}

/// The event source (`<prefix>.operator`) and audit writer of people using the CLI.
pub const OPERATOR: &str = "operator";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_topology_is_consistent() {
        let t = Topology::builtin();
        assert_eq!(t.workers.len(), 5);
        for w in t.workers.values() {
            for e in &w.emits {
                assert!(mlsec_events::CATALOGUE.contains(&e.as_str()), "unknown event {e}");
            }
        }
    }

    #[test]
    fn bucket_names_carry_the_deployment_suffix_when_set() {
        let mut n = Names::new("mlsec");
        assert_eq!(n.bucket("raw"), "mlsec-raw");
        n.bucket_suffix = Some("123456789012".into());
        assert_eq!(n.bucket("raw"), "mlsec-raw-123456789012");
        assert_eq!(n.queue("ingest"), "mlsec-ingest");
    }

    #[test]
    fn key_and_table_access_suffixes_are_checked() {
        // A signing key is used for exactly one of sign or verify, never both.
        let both = TOPOLOGY_JSON.replace("\"signing:verify\"", "\"signing\"");
        assert!(Topology::parse(&both).unwrap_err().to_string().contains("does not fit a SIGN_VERIFY key"));
        let bad = TOPOLOGY_JSON.replace("\"signing:verify\"", "\"signing:everything\"");
        assert!(Topology::parse(&bad).unwrap_err().to_string().contains("does not fit"));
        let bad = TOPOLOGY_JSON.replace("\"curated:read\"", "\"curated:sign\"");
        assert!(Topology::parse(&bad).unwrap_err().to_string().contains("does not fit a ENCRYPT_DECRYPT key"));
        let bad = TOPOLOGY_JSON.replace("\"signing:verify\"", "\"nosuchkey:verify\"");
        assert!(Topology::parse(&bad).unwrap_err().to_string().contains("undeclared key nosuchkey"));
        let bad = TOPOLOGY_JSON.replace("\"registry:read\"", "\"registry:own\"");
        assert!(Topology::parse(&bad).unwrap_err().to_string().contains("registry:own"));
    }

    #[test]
    fn rules_accept_each_event_type_only_from_its_emitters() {
        let t = Topology::builtin();
        let n = Names::new("x");
        let p = t.event_pattern(&n, &t.workers["govern"]);
        assert_eq!(p["source"], serde_json::json!(["x.operator", "x.train"]));
        assert_eq!(p["detail-type"], serde_json::json!(["ModelTrained", "ModelReviewed"]));
        let p = t.event_pattern(&n, &t.workers["curate"]);
        assert_eq!(p["source"], serde_json::json!(["x.ingest"]));
        assert_eq!(t.emitters("ModelRejected"), ["govern", "train"]);
        assert!(t.emitters("NoSuchEvent").is_empty());
        let mut bad: serde_json::Value = serde_json::from_str(TOPOLOGY_JSON).unwrap();
        bad["workers"]["score"]["trigger"]["detail_types"] = serde_json::json!(["Nobody"]);
        assert!(Topology::parse(&bad.to_string()).unwrap_err().to_string().contains("nobody emits"));
    }

    #[test]
    fn dangling_references_are_rejected() {
        let mut t: serde_json::Value = serde_json::from_str(TOPOLOGY_JSON).unwrap();
        t["workers"]["curate"]["reads"] = serde_json::json!(["nowhere"]);
        assert!(Topology::parse(&t.to_string()).unwrap_err().to_string().contains("nowhere"));
    }

    #[test]
    fn training_and_scoring_rules_route_by_role() {
        let t = Topology::builtin();
        let n = Names::new("x");
        let p = t.event_pattern(&n, &t.workers["train"]);
        assert_eq!(p["detail"]["role"][0], "training");
        let p = t.event_pattern(&n, &t.workers["ingest"]);
        assert_eq!(p["detail"]["bucket"]["name"][0], "x-landing");
    }
}
