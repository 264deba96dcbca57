//! The topology declaration (`terraform/topology.json`): keys, buckets, tables, the
//! pipeline bus and the workers with their queues and triggers. The local provisioner
//! reads this one file; the Terraform modules (issue 3) are to read the same file, with
//! a test keeping them in step.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The declaration as shipped with this build.
pub const TOPOLOGY_JSON: &str = include_str!("../../../terraform/topology.json");

/// SQS's largest message size; moto defaults to 1 MiB, AWS to 256 KiB.
pub const SQS_MAX_MESSAGE_BYTES: i32 = 262_144;
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
    pub writes: Vec<String>,
    pub keys: Vec<String>,
    pub tables: Vec<String>,
    pub emits: Vec<String>,
    pub queue: QueueDecl,
}

/// What puts messages on a worker's queue: an EventBridge rule on the default bus (S3
/// notifications) or on the pipeline bus (pipeline events, optionally by role).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub bus: String,
    pub s3_bucket: Option<String>,
    pub detail_type: String,
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
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }
    /// From `MLSEC_PREFIX`, default `mlsec`.
    pub fn from_env() -> Self {
        Self::new(std::env::var("MLSEC_PREFIX").unwrap_or_else(|_| "mlsec".into()))
    }
    pub fn bucket(&self, b: &str) -> String {
        format!("{}-{b}", self.prefix)
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
    pub fn parse(json: &str) -> Result<Self, String> {
        let t: Topology = serde_json::from_str(json).map_err(|e| format!("topology: {e}"))?;
        for (name, b) in &t.buckets {
            if !t.keys.contains_key(&b.key) {
                return Err(format!("bucket {name} uses undeclared key {}", b.key));
            }
        }
        for (name, w) in &t.workers {
            for b in w.reads.iter().chain(&w.writes) {
                if !t.buckets.contains_key(b) {
                    return Err(format!("worker {name} uses undeclared bucket {b}"));
                }
            }
            for k in &w.keys {
                if !t.keys.contains_key(k) {
                    return Err(format!("worker {name} uses undeclared key {k}"));
                }
            }
            for tb in &w.tables {
                if !t.tables.contains_key(tb) {
                    return Err(format!("worker {name} uses undeclared table {tb}"));
                }
            }
            if let Some(b) = &w.trigger.s3_bucket
                && !t.buckets.get(b).is_some_and(|d| d.eventbridge)
            {
                return Err(format!("worker {name} is triggered by bucket {b}, which sends no events"));
            }
            if w.trigger.bus != "default" && w.trigger.bus != t.pipeline_bus {
                return Err(format!("worker {name} listens on unknown bus {}", w.trigger.bus));
            }
            if !(1..=43_200).contains(&w.queue.visibility_timeout_seconds) || w.queue.max_receive_count < 1 {
                return Err(format!("worker {name} has an invalid queue declaration"));
            }
        }
        Ok(t)
    }

    /// The declaration built into this binary.
    pub fn builtin() -> Self {
        Self::parse(TOPOLOGY_JSON).expect("terraform/topology.json is valid (checked by tests)")
    }

    /// The EventBridge pattern of a worker's rule.
    pub fn event_pattern(&self, names: &Names, worker: &WorkerDecl) -> serde_json::Value {
        let t = &worker.trigger;
        match &t.s3_bucket {
            Some(b) => serde_json::json!({
                "source": ["aws.s3"],
                "detail-type": [t.detail_type],
                "detail": { "bucket": { "name": [names.bucket(b)] } }
            }),
            None => {
                let mut p = serde_json::json!({
                    "source": [{ "prefix": format!("{}.", names.prefix) }],
                    "detail-type": [t.detail_type],
                });
                if let Some(role) = &t.role {
                    p["detail"] = serde_json::json!({ "role": [role] });
                }
                p
            }
        }
    }
}

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
    fn dangling_references_are_rejected() {
        let bad = TOPOLOGY_JSON.replace("\"reads\": [\"raw\"]", "\"reads\": [\"nowhere\"]");
        assert!(Topology::parse(&bad).unwrap_err().contains("nowhere"));
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
