//! Error classes. The class, not the message, decides a message's fate:
//!
//! | class | meaning | Lambda | local driver |
//! |---|---|---|---|
//! | `Permanent` | the message cannot succeed as it stands: not an event, unknown schema fingerprint, corrupt payload, a digest or signature that does not verify | reported in `batchItemFailures`, parked in the DLQ after maxReceiveCount for an operator, replayable after a fix (e.g. deploying the newer schema) | same, retried after a short delay |
//! | `Transient` | a dependency failed (throttling, network, a 5xx) | reported in `batchItemFailures`, retried, then DLQ | same |
//! | `Fatal` | the worker is misconfigured (missing bucket, key, contract dir) | the invocation fails | the loop stops with the error |
//!
//! Bad *data* (a hostile or malformed object) is not an error: the zone quarantines it
//! with a reason code and the message completes. See `docs/adr/0004-error-classes-and-dlq.md`.

/// Reason code of a permanent failure to read an object (or version) that does not exist.
/// Code that expects absence asks [`crate::ports::ObjectStore::get_optional`] instead of
/// matching this string.
pub const OBJECT_MISSING: &str = "object_missing";

/// The class of a [`WorkError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Permanent,
    Transient,
    Fatal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::Transient => "transient",
            ErrorClass::Fatal => "fatal",
        }
    }
}

/// A failure while handling one message.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("permanent failure ({reason}): {detail}")]
    Permanent { reason: &'static str, detail: String },
    #[error("transient failure in {operation}: {detail}")]
    Transient { operation: String, detail: String },
    #[error("fatal: {0}")]
    Fatal(String),
}

impl WorkError {
    pub fn class(&self) -> ErrorClass {
        match self {
            WorkError::Permanent { .. } => ErrorClass::Permanent,
            WorkError::Transient { .. } => ErrorClass::Transient,
            WorkError::Fatal(_) => ErrorClass::Fatal,
        }
    }

    /// The code operators filter on: a permanent failure's reason, else `transient` or
    /// `fatal` (failure records, `ProcessingFailed`, `mlsec dlq`).
    pub fn reason_code(&self) -> &str {
        match self {
            WorkError::Permanent { reason, .. } => reason,
            WorkError::Transient { .. } => "transient",
            WorkError::Fatal(_) => "fatal",
        }
    }

    /// The dependency call a transient failure names (`s3:GetObject`, ...).
    pub fn operation(&self) -> Option<&str> {
        match self {
            WorkError::Transient { operation, .. } => Some(operation),
            _ => None,
        }
    }

    pub fn permanent(reason: &'static str, detail: impl std::fmt::Display) -> Self {
        WorkError::Permanent { reason, detail: detail.to_string() }
    }

    pub fn transient(operation: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        WorkError::Transient { operation: operation.into(), detail: detail.to_string() }
    }

    pub fn fatal(detail: impl std::fmt::Display) -> Self {
        WorkError::Fatal(detail.to_string())
    }
}

impl From<mlsec_events::EventError> for WorkError {
    fn from(e: mlsec_events::EventError) -> Self {
        use mlsec_events::EventError as E;
        let reason = match &e {
            E::UnknownFingerprint { .. } => "unknown_fingerprint",
            E::Encode { .. } => return WorkError::fatal(e),
            E::WrongSchema { .. } => "unexpected_schema",
            _ => "corrupt_event",
        };
        WorkError::permanent(reason, e)
    }
}
