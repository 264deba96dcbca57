//! What lives at rest, shared by the zones that write it and the zones that read it.
//!
//! - [`columnar`]: the Arrow type of each contract column, the raw zone's schema, one set
//!   of Parquet writer settings and the Parquet content type.
//! - [`layout`]: every object key the pipeline writes, per bucket.
//! - [`model`] (feature `model`): the model artifact and the feature pipeline, so that
//!   training (Z4) and scoring (Z6) compute features the same way.
//! - [`manifest`]: the signed model manifest governance (Z5) writes and scoring verifies.
//! - [`audit`]: the audit chain's layout, checkpoints and verification (Z9).
//!
//! No zone crate depends on another zone crate: what two zones must agree on lives here.

pub mod audit;
pub mod columnar;
pub mod layout;
pub mod manifest;
#[cfg(feature = "model")]
pub mod model;
