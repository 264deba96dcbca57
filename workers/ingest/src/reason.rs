//! Why an object is quarantined: a stable reason code and evidence that locates the
//! problem without quoting the data (raw values never go into events or logs).

use serde::Serialize;

/// Stable, machine-readable reasons. The string forms are part of the event contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// The landing key matches no contract's `<source>/<dataset>/` prefix.
    UnknownSource,
    /// Larger than the contract's `maxObjectBytes`.
    TooLarge,
    /// The bytes are another format (archive, executable, document, ...).
    NotCsv,
    /// NUL or other control characters that CSV text never contains.
    BinaryContent,
    /// Not valid UTF-8.
    InvalidUtf8,
    /// The header does not match the contract's columns (names and order).
    WrongHeader,
    /// A row has more or fewer fields than the header.
    RaggedRow,
    /// A value does not parse as its column's type.
    UnparseableValue,
    /// No data rows.
    Empty,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::UnknownSource => "unknown_source",
            ReasonCode::TooLarge => "too_large",
            ReasonCode::NotCsv => "not_csv",
            ReasonCode::BinaryContent => "binary_content",
            ReasonCode::InvalidUtf8 => "invalid_utf8",
            ReasonCode::WrongHeader => "wrong_header",
            ReasonCode::RaggedRow => "ragged_row",
            ReasonCode::UnparseableValue => "unparseable_value",
            ReasonCode::Empty => "empty",
        }
    }
}

/// Where the problem is. Positions only, never content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte_offset: Option<u64>,
    /// 1-based line number (the header is line 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

/// A decision to quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub reason_code: ReasonCode,
    /// Human-readable explanation, free of data values.
    pub detail: String,
    pub evidence: Evidence,
}

impl Rejection {
    pub fn new(reason_code: ReasonCode, detail: impl Into<String>) -> Self {
        Self { reason_code, detail: detail.into(), evidence: Evidence::default() }
    }
    pub fn at_byte(mut self, offset: u64) -> Self {
        self.evidence.byte_offset = Some(offset);
        self
    }
    pub fn at_line(mut self, line: u64) -> Self {
        self.evidence.line = Some(line);
        self
    }
    pub fn in_column(mut self, column: impl Into<String>) -> Self {
        self.evidence.column = Some(column.into());
        self
    }
}
