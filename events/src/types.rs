//! The Rust side of the event catalogue. Each type mirrors one `.avsc` file in
//! `schemas/events/`; a test checks that the derived schema equals the file's
//! canonical form, so the two cannot drift apart silently.

use std::sync::OnceLock;

use apache_avro::{AvroSchema, Schema};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::Zone;

/// Implemented by every event type of the catalogue.
pub trait PipelineEvent: Serialize + DeserializeOwned + AvroSchema + Clone + std::fmt::Debug {
    /// Schema name; also the EventBridge `detail-type`.
    const NAME: &'static str;
    /// The `.avsc` text, embedded at build time.
    const AVSC: &'static str;
    /// The zone whose data the event announces.
    const ZONE: Zone;
    /// The parsed `.avsc` schema (parsed once).
    fn schema() -> &'static Schema;
    /// Earlier released versions (`schemas/events/released/<Name>/`) this build can still
    /// read: payloads written with them are resolved to [`PipelineEvent::schema`].
    fn released() -> &'static [Schema];
    fn event_id(&self) -> &str;
    fn correlation_id(&self) -> &str;
    /// Dataset the event is about, if any (routing field in the envelope).
    fn dataset(&self) -> Option<&str>;
    /// Role of the dataset, for events that route by it (training vs scoring).
    fn role(&self) -> Option<DatasetRole> {
        None
    }
}

/// A claim check: where an object lives and how to verify it; never the object's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub sha256: String,
    pub size: i64,
}

/// Role of a curated dataset: what the next zone does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub enum DatasetRole {
    #[serde(rename = "training")]
    #[avro(rename = "training")]
    Training,
    #[serde(rename = "scoring")]
    #[avro(rename = "scoring")]
    Scoring,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct RawAccepted {
    pub event_id: String,
    pub correlation_id: String,
    pub dataset: String,
    pub contract_version: String,
    pub source: ObjectRef,
    pub original: ObjectRef,
    pub parquet: ObjectRef,
    pub rows: i64,
    pub occurred_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct ObjectQuarantined {
    pub event_id: String,
    pub correlation_id: String,
    pub dataset: Option<String>,
    pub source_bucket: String,
    pub source_key: String,
    pub reason_code: String,
    pub quarantined: ObjectRef,
    pub reason_document: ObjectRef,
    pub occurred_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct DatasetCurated {
    pub event_id: String,
    pub correlation_id: String,
    pub dataset: String,
    pub contract_version: String,
    pub role: DatasetRole,
    pub curated: ObjectRef,
    pub rows_in: i64,
    pub rows_out: i64,
    pub rows_rejected: i64,
    pub dataset_digest: String,
    pub pseudonym_key_id: String,
    pub occurred_at_ms: i64,
    pub pseudonym_key_version: Option<String>,
    pub dq: Option<DqSummary>,
    pub holdout: Option<ObjectRef>,
    pub holdout_rows: Option<i64>,
}

/// Data-quality summary of one dataset (`DatasetCurated`, `DatasetRejected`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct DqSummary {
    pub rules: i32,
    pub passed: i32,
    pub warnings: Vec<String>,
    pub rejecting: Vec<String>,
    pub rows_read: i64,
    pub rows_dropped: i64,
    pub report: ObjectRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct DatasetRejected {
    pub event_id: String,
    pub correlation_id: String,
    pub dataset: String,
    pub contract_version: String,
    pub raw: ObjectRef,
    pub dq: DqSummary,
    pub occurred_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct ModelTrained {
    pub event_id: String,
    pub correlation_id: String,
    pub model_name: String,
    pub model_version: String,
    pub dataset: String,
    pub dataset_digest: String,
    pub algorithm: String,
    pub artifact: ObjectRef,
    pub auc: f64,
    pub accuracy: f64,
    pub train_rows: i64,
    pub test_rows: i64,
    pub occurred_at_ms: i64,
    pub holdout: Option<ObjectRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct ModelPromoted {
    pub event_id: String,
    pub correlation_id: String,
    pub model_name: String,
    pub model_version: String,
    pub stage: String,
    pub artifact_sha256: String,
    pub manifest: ObjectRef,
    pub signing_key_id: String,
    pub auc: f64,
    pub occurred_at_ms: i64,
    pub previous_version: Option<String>,
    pub approvers: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct ModelStaged {
    pub event_id: String,
    pub correlation_id: String,
    pub model_name: String,
    pub model_version: String,
    pub auc: f64,
    pub brier: f64,
    pub champion_version: Option<String>,
    pub gate_report: ObjectRef,
    pub required_approvals: i32,
    pub round: i32,
    pub occurred_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct ModelRejected {
    pub event_id: String,
    pub correlation_id: String,
    pub model_name: String,
    pub model_version: Option<String>,
    pub dataset: String,
    pub stage: String,
    pub reason_code: String,
    pub reason: String,
    pub gate_report: Option<ObjectRef>,
    pub occurred_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct ModelReviewed {
    pub event_id: String,
    pub correlation_id: String,
    pub model_name: String,
    pub model_version: String,
    pub action: String,
    pub round: i32,
    pub occurred_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct RecordsScored {
    pub event_id: String,
    pub correlation_id: String,
    pub dataset: String,
    pub model_name: String,
    pub model_version: String,
    pub scored: ObjectRef,
    pub rows: i64,
    pub flagged: i64,
    pub occurred_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct ProcessingFailed {
    pub event_id: String,
    pub correlation_id: String,
    pub worker: String,
    pub input_key: String,
    pub event_type: Option<String>,
    pub dataset: Option<String>,
    pub error_class: String,
    pub reason_code: String,
    pub operation: Option<String>,
    pub attempts: i32,
    pub message_sha256: String,
    pub first_failure_ms: i64,
    pub occurred_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "mlsec.events")]
pub struct ReingestRequested {
    pub event_id: String,
    pub correlation_id: String,
    pub dataset: String,
    pub sha256: String,
    pub requested_by: String,
    pub reason: String,
    pub occurred_at_ms: i64,
}

/// Implements [`PipelineEvent`]. Every released version of the schema must be listed
/// (`released: ["v1", ...]`); a test checks the list against `schemas/events/released/`.
macro_rules! pipeline_event {
    ($ty:ident, $zone:expr, $dataset:expr, released: [$($v:literal),*] $(, $($extra:tt)*)?) => {
        impl PipelineEvent for $ty {
            const NAME: &'static str = stringify!($ty);
            const AVSC: &'static str =
                include_str!(concat!("../../schemas/events/", stringify!($ty), ".avsc"));
            const ZONE: Zone = $zone;
            fn schema() -> &'static Schema {
                static SCHEMA: OnceLock<Schema> = OnceLock::new();
                SCHEMA.get_or_init(|| {
                    Schema::parse_str(Self::AVSC)
                        .expect(concat!("schemas/events/", stringify!($ty), ".avsc is valid Avro (checked by tests)"))
                })
            }
            fn released() -> &'static [Schema] {
                static RELEASED: OnceLock<Vec<Schema>> = OnceLock::new();
                RELEASED.get_or_init(|| {
                    [$(include_str!(concat!("../../schemas/events/released/", stringify!($ty), "/", $v, ".avsc"))),*]
                        .iter()
                        .map(|text| Schema::parse_str(text).expect("released schemas are valid Avro (checked by tests)"))
                        .collect()
                })
            }
            fn event_id(&self) -> &str {
                &self.event_id
            }
            fn correlation_id(&self) -> &str {
                &self.correlation_id
            }
            fn dataset(&self) -> Option<&str> {
                let f: fn(&Self) -> Option<&str> = $dataset;
                f(self)
            }
            $($($extra)*)?
        }
    };
}

pipeline_event!(RawAccepted, Zone::Raw, |e| Some(&e.dataset), released: ["v1"]);
pipeline_event!(ObjectQuarantined, Zone::Quarantine, |e| e.dataset.as_deref(), released: ["v1"]);
pipeline_event!(
    DatasetCurated,
    Zone::Curated,
    |e| Some(&e.dataset),
    released: ["v1", "v2", "v3"],
    fn role(&self) -> Option<DatasetRole> {
        Some(self.role)
    }
);
pipeline_event!(DatasetRejected, Zone::Curated, |e| Some(&e.dataset), released: ["v1"]);
pipeline_event!(ModelTrained, Zone::ModelFactory, |e| Some(&e.dataset), released: ["v1", "v2"]);
pipeline_event!(ModelStaged, Zone::Registry, |_| None, released: ["v1"]);
pipeline_event!(ModelRejected, Zone::Registry, |e| Some(&e.dataset), released: ["v1"]);
pipeline_event!(ModelReviewed, Zone::Registry, |_| None, released: ["v1"]);
pipeline_event!(ModelPromoted, Zone::Registry, |_| None, released: ["v1", "v2"]);
pipeline_event!(RecordsScored, Zone::Serving, |e| Some(&e.dataset), released: ["v1"]);
pipeline_event!(ProcessingFailed, Zone::Operations, |e| e.dataset.as_deref(), released: ["v1"]);
pipeline_event!(ReingestRequested, Zone::Operations, |e| Some(&e.dataset), released: ["v1"]);

/// Names of every event in the catalogue, in flow order.
pub const CATALOGUE: [&str; 12] = [
    RawAccepted::NAME,
    ObjectQuarantined::NAME,
    DatasetCurated::NAME,
    DatasetRejected::NAME,
    ModelTrained::NAME,
    ModelStaged::NAME,
    ModelRejected::NAME,
    ModelReviewed::NAME,
    ModelPromoted::NAME,
    RecordsScored::NAME,
    ProcessingFailed::NAME,
    ReingestRequested::NAME,
];

impl DatasetRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetRole::Training => "training",
            DatasetRole::Scoring => "scoring",
        }
    }
}
