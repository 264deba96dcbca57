//! Data contracts (ODCS v3 YAML, `contracts/*.yaml`) and model specs
//! (`contracts/models/*.yaml`). One parser serves every worker: the gateway's limits, the
//! schema, the PII treatment of each column and the dataset's role all come from here,
//! so a new dataset needs a contract and no code.
//!
//! - [`types`]: the validated contract every zone reads;
//! - [`odcs`]: the ODCS v3 document and its validation (schema, treatments, gateway policy);
//! - [`quality`]: ODCS quality entries → executable rules, one function per metric;
//! - [`model_spec`]: model specs;
//! - [`loader`]: a directory of contracts and specs, cross-checked.

pub mod loader;
pub mod model_spec;
pub mod odcs;
pub mod quality;
pub mod types;

pub use loader::Contracts;
pub use model_spec::{ApprovalPolicy, FairnessGate, FeatureSpec, Gates, ModelSpec};
pub use types::*;

#[cfg(test)]
mod tests;
