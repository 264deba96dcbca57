//! The streaming CSV gate: bytes in (any chunking), typed Parquet out, or a
//! [`Rejection`]. Memory is bounded by one record batch plus the compressed Parquet
//! written so far, whatever the object's size.
//!
//! Stages, in the order each byte meets them:
//! 1. sniff the first bytes for a foreign format (archive, executable, document);
//! 2. strict UTF-8 (sequences may straddle chunks) and no control characters but
//!    tab, CR and LF; a UTF-8 BOM is allowed and dropped;
//! 3. the header must equal the contract's column names, in order;
//! 4. arrow-csv decodes rows into the contract's types; a ragged row or a value that
//!    does not parse rejects the object (row-level rejects come with issue 4).

use std::{io::Write, sync::Arc};

use arrow::{
    array::RecordBatch,
    csv::reader::{Decoder, ReaderBuilder},
    datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
    error::ArrowError,
};
use bytes::Bytes;
use mlsec_runtime::contract::{ColumnType, DatasetContract};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::{metadata::KeyValue, properties::WriterProperties},
};

use crate::{
    reason::{ReasonCode, Rejection},
    sniff::{SNIFF_LEN, foreign_format},
};

/// Rows per Arrow record batch (and upper bound of rows held in memory).
pub const BATCH_ROWS: usize = 65_536;
/// A header longer than this is not a header.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// The Arrow type of a contract column.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::String => DataType::Utf8,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
    }
}

/// The raw zone's Arrow schema for a contract: every column typed, all nullable (the
/// not-null rules are the curate zone's).
pub fn raw_schema(contract: &DatasetContract) -> SchemaRef {
    Arc::new(Schema::new(
        contract.columns.iter().map(|c| Field::new(&c.name, arrow_type(c.ty), true)).collect::<Vec<_>>(),
    ))
}

/// Rows per Parquet row group. The writer holds one row group's encoded pages in memory,
/// so this bounds its memory whatever the object's size.
pub const ROW_GROUP_ROWS: usize = 262_144;

/// Zstd-compressed Parquet properties with lineage metadata.
pub fn parquet_properties(metadata: Vec<(String, String)>) -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level")))
        .set_key_value_metadata(Some(metadata.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect()))
        .build()
}

enum Stage {
    Sniffing(Vec<u8>),
    Header(Vec<u8>),
    Rows,
}

/// Result of a successful validation: the Parquet sink, closed, and the row count.
#[derive(Debug)]
pub struct Accepted<W = Vec<u8>> {
    pub parquet: W,
    pub rows: u64,
}

impl Accepted<Vec<u8>> {
    /// The Parquet bytes (in-memory sink).
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.parquet)
    }
}

/// The streaming validator. `W` is where the Parquet goes: a `Vec<u8>` in tests and
/// benchmarks, a spill file in the worker (so memory does not grow with the object).
pub struct CsvGate<W: Write + Send = Vec<u8>> {
    contract: DatasetContract,
    stage: Stage,
    utf8_carry: Vec<u8>,
    /// Bytes of the object consumed so far (for evidence offsets).
    offset: u64,
    decoder: Decoder,
    writer: ArrowWriter<W>,
    rows: u64,
}

impl CsvGate<Vec<u8>> {
    /// A gate writing its Parquet to memory.
    pub fn new(contract: &DatasetContract, lineage: Vec<(String, String)>) -> Result<Self, Rejection> {
        Self::with_sink(contract, lineage, Vec::new())
    }
}

impl<W: Write + Send> CsvGate<W> {
    /// A gate writing its Parquet to `sink`.
    pub fn with_sink(contract: &DatasetContract, lineage: Vec<(String, String)>, sink: W) -> Result<Self, Rejection> {
        let schema = raw_schema(contract);
        let decoder = ReaderBuilder::new(schema.clone()).with_header(true).with_batch_size(BATCH_ROWS).build_decoder();
        let writer = ArrowWriter::try_new(sink, schema, Some(parquet_properties(lineage)))
            .map_err(|e| Rejection::new(ReasonCode::UnparseableValue, format!("cannot start Parquet writer: {e}")))?;
        Ok(Self {
            contract: contract.clone(),
            stage: Stage::Sniffing(Vec::with_capacity(SNIFF_LEN)),
            utf8_carry: Vec::new(),
            offset: 0,
            decoder,
            writer,
            rows: 0,
        })
    }

    /// Feeds the next chunk of the object.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        match &mut self.stage {
            Stage::Sniffing(head) => {
                let take = (SNIFF_LEN - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                if head.len() < SNIFF_LEN {
                    return Ok(());
                }
                let head = std::mem::take(head);
                self.end_sniffing(head)?;
                self.push(&chunk[take..])
            }
            _ => self.text(chunk),
        }
    }

    fn end_sniffing(&mut self, head: Vec<u8>) -> Result<(), Rejection> {
        if let Some(format) = foreign_format(&head) {
            return Err(Rejection::new(ReasonCode::NotCsv, format!("content is {format}, not CSV text")).at_byte(0));
        }
        self.stage = Stage::Header(Vec::new());
        let body = head.strip_prefix(UTF8_BOM).unwrap_or(&head);
        self.offset += (head.len() - body.len()) as u64;
        self.text(body)
    }

    /// Stage 2 for every byte, then header or rows.
    fn text(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(i) = chunk.iter().position(|&b| b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r' || b == 0x7f) {
            return Err(Rejection::new(ReasonCode::BinaryContent, format!("control character 0x{:02x}", chunk[i]))
                .at_byte(self.offset + i as u64));
        }
        self.check_utf8(chunk)?;
        let start = self.offset;
        self.offset += chunk.len() as u64;
        match &mut self.stage {
            Stage::Header(buf) => {
                let Some(nl) = chunk.iter().position(|&b| b == b'\n') else {
                    buf.extend_from_slice(chunk);
                    if buf.len() > MAX_HEADER_BYTES {
                        return Err(Rejection::new(ReasonCode::WrongHeader, "no header line within 64 KiB").at_line(1));
                    }
                    return Ok(());
                };
                buf.extend_from_slice(&chunk[..=nl]);
                let header = std::mem::take(buf);
                self.check_header(&header)?;
                self.stage = Stage::Rows;
                self.decode(&header)?;
                self.decode(&chunk[nl + 1..])
            }
            Stage::Rows => self.decode(chunk),
            Stage::Sniffing(_) => unreachable!("sniffing ends before text"),
        }
        .map_err(|r| if r.evidence.byte_offset.is_none() && r.evidence.line.is_none() { r.at_byte(start) } else { r })
    }

    fn check_utf8(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        let joined;
        let data: &[u8] = if self.utf8_carry.is_empty() {
            chunk
        } else {
            joined = [self.utf8_carry.as_slice(), chunk].concat();
            &joined
        };
        let carried = self.utf8_carry.len() as u64;
        match std::str::from_utf8(data) {
            Ok(_) => self.utf8_carry.clear(),
            Err(e) if e.error_len().is_none() => self.utf8_carry = data[e.valid_up_to()..].to_vec(),
            Err(e) => {
                return Err(Rejection::new(ReasonCode::InvalidUtf8, "byte sequence is not UTF-8")
                    .at_byte(self.offset - carried + e.valid_up_to() as u64));
            }
        }
        Ok(())
    }

    fn check_header(&self, line: &[u8]) -> Result<(), Rejection> {
        let text = std::str::from_utf8(line).unwrap_or_default().trim_end_matches(['\n', '\r']);
        let found: Vec<&str> = text.split(',').map(|h| h.trim_matches('"')).collect();
        let expected: Vec<&str> = self.contract.columns.iter().map(|c| c.name.as_str()).collect();
        if found != expected {
            let detail = match found.iter().zip(&expected).position(|(f, e)| f != e) {
                Some(i) => format!("header column {} differs from the contract's {}", i + 1, expected[i]),
                None => format!("header has {} columns, the contract {}", found.len(), expected.len()),
            };
            return Err(Rejection::new(ReasonCode::WrongHeader, detail).at_line(1));
        }
        Ok(())
    }

    fn decode(&mut self, mut buf: &[u8]) -> Result<(), Rejection> {
        while !buf.is_empty() {
            let n = self.decoder.decode(buf).map_err(|e| self.arrow_rejection(e))?;
            buf = &buf[n..];
            if self.decoder.capacity() == 0 {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Rejection> {
        if let Some(batch) = self.decoder.flush().map_err(|e| self.arrow_rejection(e))? {
            self.write(&batch)?;
        }
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), Rejection> {
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .map_err(|e| Rejection::new(ReasonCode::UnparseableValue, format!("cannot write Parquet: {e}")))
    }

    /// Turns an arrow-csv error into a rejection without quoting the data: arrow's
    /// messages embed the value and the whole row, so only positions are kept.
    fn arrow_rejection(&self, e: ArrowError) -> Rejection {
        let msg = e.to_string();
        let number_after = |tag: &str| -> Option<u64> {
            let i = msg.find(tag)? + tag.len();
            msg[i..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
        };
        let batch_base = self.rows;
        if msg.contains("incorrect number of fields") {
            let mut r = Rejection::new(ReasonCode::RaggedRow, "a row has a different number of fields than the header");
            if let Some(line) = number_after("for line ") {
                r = r.at_line(batch_base + line);
            }
            return r;
        }
        let mut r = Rejection::new(ReasonCode::UnparseableValue, "a value does not parse as its column's type");
        if let Some(c) = number_after("for column ").and_then(|col| self.contract.columns.get(col as usize)) {
            r.detail = format!("a value of column {} does not parse as {:?}", c.name, c.ty);
            r = r.in_column(&c.name);
        }
        if let Some(line) = number_after("at line ") {
            // arrow counts the header as line 0 within the batch; we count it as line 1.
            r = r.at_line(batch_base + line + 1);
        }
        r
    }

    /// Ends the object: flushes the last rows and closes the Parquet file.
    pub fn finish(mut self) -> Result<Accepted<W>, Rejection> {
        match std::mem::replace(&mut self.stage, Stage::Rows) {
            Stage::Sniffing(head) => {
                self.end_sniffing(head)?;
                return self.finish();
            }
            Stage::Header(buf) => {
                if buf.is_empty() {
                    return Err(Rejection::new(ReasonCode::Empty, "the object is empty"));
                }
                self.check_header(&buf)?;
                self.decode(&buf)?;
            }
            Stage::Rows => {}
        }
        if !self.utf8_carry.is_empty() {
            return Err(Rejection::new(ReasonCode::InvalidUtf8, "truncated UTF-8 sequence at end of object")
                .at_byte(self.offset - self.utf8_carry.len() as u64));
        }
        // An unterminated last line is still a row.
        self.decoder.decode(&[]).map_err(|e| self.arrow_rejection(e))?;
        self.flush()?;
        if self.rows == 0 {
            return Err(Rejection::new(ReasonCode::Empty, "no data rows after the header"));
        }
        let parquet = self
            .writer
            .into_inner()
            .map_err(|e| Rejection::new(ReasonCode::UnparseableValue, format!("cannot close Parquet: {e}")))?;
        Ok(Accepted { parquet, rows: self.rows })
    }
}
