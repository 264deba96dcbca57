//! In-process tests across zones, with the in-memory ports (no emulator): each zone fed
//! what the zone before it really writes. They live here, where every crate is visible,
//! so that no zone crate names another (`docs/architecture.md`).

mod curate;
mod model_chain;
mod onboarding;
mod public_data;
mod train;

use std::path::Path;

use bytes::Bytes;
use mlsec_runtime::contract::Contracts;

/// The repository's contracts.
pub fn contracts() -> Contracts {
    Contracts::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts")).unwrap()
}

/// The raw Parquet the gateway writes for `csv` under `dataset`'s contract (every row
/// must pass the gate).
pub fn raw_parquet(contracts: &Contracts, dataset: &str, csv: &[u8]) -> Bytes {
    mlsec_ingest::validate::to_parquet(contracts.dataset(dataset).unwrap(), csv).unwrap()
}

/// A message as EventBridge delivers it from `source`.
pub fn message_from<E: mlsec_events::PipelineEvent>(source: &str, event: &E) -> mlsec_runtime::Inbound {
    let detail = serde_json::to_value(mlsec_events::Envelope::wrap(event).unwrap()).unwrap();
    mlsec_runtime::Inbound::parse("m", &mlsec_runtime::inbound::eventbridge_body(source, E::NAME, detail)).unwrap()
}

/// A message from the event's declared emitter.
pub fn message<E: mlsec_events::PipelineEvent>(event: &E) -> mlsec_runtime::Inbound {
    let emitter = mlsec_runtime::topology::Topology::shared().emitters(E::NAME)[0];
    message_from(&format!("mlsec.{emitter}"), event)
}
