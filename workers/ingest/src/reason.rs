//! Why an object is quarantined or a row rejected: a stable reason code and evidence that
//! locates the problem without quoting the data (raw values never go into events or logs).

use serde::{Deserialize, Serialize};

macro_rules! reason_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal,)*) => {
        /// Stable, machine-readable reasons. The string forms are part of the event
        /// contract and of `docs/zones/z1-ingestion.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ReasonCode {
            $($(#[doc = $doc])* #[serde(rename = $code)] $variant,)*
        }

        impl ReasonCode {
            /// Every code, for documentation checks.
            pub const ALL: &[ReasonCode] = &[$(ReasonCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ReasonCode::$variant => $code,)*
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($code => Some(ReasonCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reason_codes! {
    // ---- provenance and limits (object level) ----
    /// The landing key matches no contract's `<source>/<dataset>/` prefix.
    UnknownSource = "unknown_source",
    /// The S3 requester is not among the contract's `allowedWriters`.
    UntrustedSource = "untrusted_source",
    /// Larger than the contract's `maxObjectBytes`.
    TooLarge = "too_large",
    /// More data rows than the contract's `maxRows`.
    TooManyRows = "too_many_rows",
    /// A line (record) longer than `maxLineBytes`, or no line end in sight.
    LineTooLong = "line_too_long",
    // ---- format (object level) ----
    /// An executable (ELF, PE, Mach-O, script with a shebang). Malware class.
    Executable = "executable",
    /// An archive or nested compression (ZIP, 7z, RAR, tar, gzip in gzip). Malware class.
    Archive = "archive",
    /// A document (PDF, office) or image.
    Document = "document",
    /// Text whose body carries another format's signature. Malware class.
    Polyglot = "polyglot",
    /// gzip beyond `maxDecompressedBytes` or `maxCompressionRatio`. Malware class.
    DecompressionBomb = "decompression_bomb",
    /// A corrupt gzip stream.
    CorruptCompression = "corrupt_compression",
    /// A format the contract does not allow (gzip, JSON Lines, Parquet, Avro, ...).
    UnsupportedFormat = "unsupported_format",
    // ---- encoding (object level) ----
    /// NUL or other control characters that text never contains.
    BinaryContent = "binary_content",
    /// Not valid UTF-8.
    InvalidUtf8 = "invalid_utf8",
    /// A header name that looks like the contract's but uses look-alike, invisible or
    /// bidirectional characters.
    ConfusableHeader = "confusable_header",
    /// The header does not match the contract's columns (names and order).
    WrongHeader = "wrong_header",
    /// No data rows.
    Empty = "empty",
    /// More rejected rows than the contract's `maxRejectedRowRatio` allows.
    RejectThreshold = "reject_threshold",
    /// More rejected rows than the gate can list (a memory bound). Not releasable: a
    /// release could not make the object pass.
    TooManyRejects = "too_many_rejects",
    // ---- row level ----
    /// A row has more or fewer fields than the header.
    RaggedRow = "ragged_row",
    /// A quote inside an unquoted field, text after a closing quote, or an unclosed quote.
    BadQuoting = "bad_quoting",
    /// A JSON Lines row that is not one flat JSON object.
    InvalidJson = "invalid_json",
    /// A JSON Lines key that is not a contract column, or a key given twice.
    UnexpectedField = "unexpected_field",
    /// A value does not parse as its column's type.
    UnparseableValue = "unparseable_value",
    /// NaN or infinity in a numeric column.
    NonFinite = "non_finite",
    /// A number outside the column's `minimum`..`maximum`.
    OutOfRange = "out_of_range",
    /// A timestamp in the future (beyond `maxFutureSeconds`) or before `minTimestamp`.
    TimestampOutOfRange = "timestamp_out_of_range",
    /// A field longer than the column's `maxLength` or `maxFieldBytes`.
    FieldTooLong = "field_too_long",
    /// A text cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR).
    FormulaInjection = "formula_injection",
    /// Zero-width or bidirectional-override characters in a text cell.
    InvisibleCharacter = "invisible_character",
}

impl ReasonCode {
    /// Objects quarantined for these reasons can never be released: they are what an
    /// attacker would send, not what a data producer gets wrong.
    pub fn malware_class(self) -> bool {
        matches!(
            self,
            ReasonCode::Executable | ReasonCode::Archive | ReasonCode::Polyglot | ReasonCode::DecompressionBomb
        )
    }

    /// An approver can release an object quarantined for these reasons: the content
    /// parses under the contract and only a policy decision stopped it.
    pub fn releasable(self) -> bool {
        matches!(self, ReasonCode::RejectThreshold | ReasonCode::UntrustedSource)
    }
}

/// Where the problem is. Positions only, never content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Evidence {
    /// Offset in the (decompressed) text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte_offset: Option<u64>,
    /// 1-based line number (the header is line 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The contract rule or limit that decided, e.g. `maxLineBytes=4096`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
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
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.evidence.rule = Some(rule.into());
        self
    }
}

/// One rejected row, as written to the rejects file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowReject {
    /// 1-based line where the row starts.
    pub line: u64,
    /// Offset of the row's first byte in the (decompressed) text.
    pub byte_offset: u64,
    /// Index of the offending column, when one is to blame.
    pub column: Option<u16>,
    pub reason: ReasonCode,
}
