//! Why curation could not run, by what the worker should do about it.

/// A curation failure: the input's fault (permanent) or the disk's (transient).
#[derive(Debug, thiserror::Error)]
pub enum CurateError {
    /// The input is not readable Parquet, or its values break an assumption: permanent.
    #[error("{0}")]
    Input(String),
    /// Writing the output failed (disk): transient.
    #[error("{0}")]
    Output(String),
}

pub(crate) fn input(e: impl std::fmt::Display) -> CurateError {
    CurateError::Input(e.to_string())
}

pub(crate) fn output(e: impl std::fmt::Display) -> CurateError {
    CurateError::Output(e.to_string())
}
