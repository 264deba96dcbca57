//! Maps SDK errors to the runtime's error classes, keeping the full error context
//! (`DisplayErrorContext`: plain `Display` says only "dispatch failure").

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use mlsec_runtime::{WorkError, error::OBJECT_MISSING};

/// Error codes that mean "this deployment is misconfigured": retrying cannot help and
/// the worker must fail loudly.
const FATAL_CODES: &[&str] = &[
    "NoSuchBucket",
    "AccessDenied",
    "AccessDeniedException",
    "ResourceNotFoundException",
    "NotFoundException",
    "KMSInvalidStateException",
    "DisabledException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
];

/// Error codes that mean "this input refers to something that is not there".
const MISSING_CODES: &[&str] = &["NoSuchKey", "NotFound", "NoSuchVersion"];

/// Classifies an SDK error from `operation`.
pub fn classify<E, R>(operation: &str, err: SdkError<E, R>) -> WorkError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().map(str::to_string);
    let detail = format!("{}", DisplayErrorContext(&err));
    match code.as_deref() {
        Some(c) if MISSING_CODES.contains(&c) => WorkError::permanent(OBJECT_MISSING, format!("{operation}: {detail}")),
        Some(c) if FATAL_CODES.contains(&c) => WorkError::fatal(format!("{operation}: {detail}")),
        _ => WorkError::transient(operation, detail),
    }
}

/// Whether the error says the object (or version) does not exist.
pub fn is_missing<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code().is_some_and(|c| MISSING_CODES.contains(&c))
}

/// The error code of an SDK error, if the service sent one.
pub fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    err.code()
}
