//! Typed pipeline events, independent of AWS.
//!
//! Every event the pipeline emits is an Avro record whose schema lives in
//! `schemas/events/*.avsc` (the source of truth). On EventBridge the `Detail` must be
//! JSON, so an event travels as an [`Envelope`]: routing fields in clear, so rules can
//! filter without decoding, plus the payload as base64 of an Avro *single-object
//! encoding* (marker `C3 01`, CRC-64-AVRO fingerprint of the writer schema, datum).
//! A consumer checks the fingerprint against the schemas it knows before decoding;
//! an unknown fingerprint or a corrupt payload is a permanent [`EventError`].
//!
//! Events are claim checks: they carry pointers ([`ObjectRef`]) and counts, never rows.

pub mod audit;
mod codec;
mod envelope;
mod ids;
mod types;

pub use codec::{SINGLE_OBJECT_MARKER, decode_single_object, encode_single_object, fingerprint_of};
pub use envelope::{Envelope, Zone};
pub use ids::{derive_event_id, sha256_hex};
pub use types::*;

/// Why an event could not be encoded or decoded. Decoding errors are permanent:
/// retrying the same bytes gives the same answer.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("envelope is not valid JSON: {0}")]
    EnvelopeJson(#[from] serde_json::Error),
    #[error("envelope names schema {found:?}, expected {expected:?}")]
    WrongSchema { expected: String, found: String },
    #[error("payload is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("payload is not an Avro single-object encoding (missing C3 01 marker)")]
    NotSingleObject,
    #[error("unknown writer-schema fingerprint {found} for {schema} (known: {known})")]
    UnknownFingerprint { schema: String, found: String, known: String },
    #[error("payload does not decode with schema {schema}: {message}")]
    Corrupt { schema: String, message: String },
    #[error("envelope routing field {field} disagrees with the payload")]
    RoutingMismatch { field: &'static str },
    #[error("cannot encode {schema}: {message}")]
    Encode { schema: String, message: String },
}

#[cfg(test)]
mod tests;
