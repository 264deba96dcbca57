//! The format-independent half of the gate: one row's values checked against the
//! contract (types, ranges, timestamps, lengths, formula cells, invisible characters),
//! accepted rows appended to typed Arrow builders and written as Parquet, rejected rows
//! recorded with their line and reason. `accepted + rejected = rows read`, always.

use std::{io::Write, sync::Arc};

use arrow::{
    array::{
        ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringArray, StringBuilder,
        TimestampMillisecondBuilder, UInt16Builder, UInt64Builder,
    },
    datatypes::{DataType, Field, Schema, SchemaRef},
};
use mlsec_lake::columnar::{BATCH_ROWS, RAW_ROW_GROUP_ROWS, raw_schema, writer_properties};
use mlsec_runtime::{
    contract::{ColumnType, DatasetContract, FormulaPolicy, IngestPolicy},
    time::parse_rfc3339_ms,
};
use parquet::{arrow::ArrowWriter, file::metadata::KeyValue};

use crate::{
    reason::{ReasonCode, Rejection, RowReject},
    values::{has_invisible, is_formula},
};

/// Rejected rows kept per object (16 bytes each); beyond this the object is quarantined
/// whatever the ratio, so a hostile object cannot grow the gate's memory.
pub const MAX_REJECT_RECORDS: usize = 1_000_000;

/// One checked value. Strings are ranges into the row's text, which the caller keeps.
#[derive(Debug, Clone, Copy)]
pub enum Cell {
    Null,
    Str { start: usize, end: usize, neutralise: bool },
    Int(i64),
    Float(f64),
    Bool(bool),
    Ts(i64),
}

/// Why one cell fails, and which column.
pub type Fault = (ReasonCode, u16);

enum Builder {
    /// Text is collected as bytes and checked as UTF-8 once per batch (the whole object
    /// was checked already; this keeps the builder honest at the cost of one pass).
    Str(BinaryBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMillisecondBuilder),
}

impl Builder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::String => Builder::Str(BinaryBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16)),
            ColumnType::Int64 => Builder::Int(Int64Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Float64 => Builder::Float(Float64Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(BATCH_ROWS)),
            ColumnType::Timestamp => Builder::Ts(TimestampMillisecondBuilder::with_capacity(BATCH_ROWS)),
        }
    }

    /// Finishes the batch and starts the next one with room for as much as this one held,
    /// so that the builders do not grow (and copy) again every batch.
    fn finish_sized(&mut self) -> Result<ArrayRef, Rejection> {
        let array = self.finish()?;
        match self {
            Builder::Str(b) => {
                let bytes = array.to_data().buffers().get(1).map_or(0, |v| v.len());
                *b = BinaryBuilder::with_capacity(BATCH_ROWS, bytes + bytes / 8);
            }
            Builder::Int(b) => *b = Int64Builder::with_capacity(BATCH_ROWS),
            Builder::Float(b) => *b = Float64Builder::with_capacity(BATCH_ROWS),
            Builder::Bool(b) => *b = BooleanBuilder::with_capacity(BATCH_ROWS),
            Builder::Ts(b) => *b = TimestampMillisecondBuilder::with_capacity(BATCH_ROWS),
        }
        Ok(array)
    }

    fn finish(&mut self) -> Result<ArrayRef, Rejection> {
        Ok(match self {
            Builder::Str(b) => Arc::new(StringArray::try_from_binary(b.finish()).map_err(|_| {
                Rejection::new(ReasonCode::InvalidUtf8, "a text value is not UTF-8 (the gate's own invariant failed)")
            })?),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish().with_timezone("+00:00")),
        })
    }
}

struct Rule {
    ty: ColumnType,
    minimum: f64,
    maximum: f64,
    max_len: usize,
}

/// What the gate produced for an object that parsed.
#[derive(Debug)]
pub struct Accepted<W> {
    pub parquet: W,
    /// Rows written to the Parquet.
    pub rows: u64,
    /// Rows rejected, in order (line, offset, column, reason).
    pub rejects: Vec<RowReject>,
    /// Data rows read: `rows + rejects.len()`.
    pub rows_read: u64,
    /// `csv` or `jsonl`, and whether it arrived gzip-compressed.
    pub format: &'static str,
    pub gzip: bool,
}

impl Accepted<Vec<u8>> {
    /// The Parquet bytes (in-memory sink).
    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from(self.parquet)
    }
}

impl<W> Accepted<W> {
    /// The object-level decision the contract's threshold makes about the rejects.
    pub fn over_threshold(&self, policy: &IngestPolicy, columns: &[String]) -> Option<Rejection> {
        let rejected = self.rejects.len() as f64;
        if rejected > policy.max_rejected_ratio * self.rows_read as f64 {
            let first = self.rejects[0];
            let mut r = Rejection::new(
                ReasonCode::RejectThreshold,
                format!(
                    "{} of {} rows rejected (first: {} at line {}), above the contract's ratio",
                    self.rejects.len(),
                    self.rows_read,
                    first.reason.as_str(),
                    first.line
                ),
            )
            .at_line(first.line)
            .at_byte(first.byte_offset)
            .rule(format!("maxRejectedRowRatio={}", policy.max_rejected_ratio));
            r.evidence.column = first.column.and_then(|c| columns.get(c as usize)).cloned();
            return Some(r);
        }
        None
    }
}

/// Checks rows and writes the accepted ones.
pub struct RowSink<W: Write + Send> {
    rules: Vec<Rule>,
    formula: FormulaPolicy,
    min_ts: i64,
    max_ts: i64,
    max_rows: u64,
    schema: SchemaRef,
    builders: Vec<Builder>,
    pending: usize,
    writer: ArrowWriter<W>,
    pub rows: u64,
    pub rejects: Vec<RowReject>,
}

impl<W: Write + Send> RowSink<W> {
    pub fn new(
        contract: &DatasetContract,
        now_ms: i64,
        lineage: Vec<(String, String)>,
        sink: W,
    ) -> Result<Self, Rejection> {
        let policy = &contract.ingest;
        let schema = raw_schema(contract);
        let writer = ArrowWriter::try_new(sink, schema.clone(), Some(writer_properties(&lineage, RAW_ROW_GROUP_ROWS)))
            .map_err(|e| Rejection::new(ReasonCode::UnparseableValue, format!("cannot start Parquet writer: {e}")))?;
        Ok(Self {
            rules: contract
                .columns
                .iter()
                .map(|c| Rule {
                    ty: c.ty,
                    minimum: c.minimum.unwrap_or(f64::NEG_INFINITY),
                    maximum: c.maximum.unwrap_or(f64::INFINITY),
                    max_len: c.max_length.unwrap_or(usize::MAX).min(policy.max_field_bytes),
                })
                .collect(),
            formula: policy.formula_cells,
            min_ts: policy.min_timestamp_ms,
            max_ts: now_ms.saturating_add(policy.max_future_ms),
            max_rows: policy.max_rows,
            builders: contract.columns.iter().map(|c| Builder::new(c.ty)).collect(),
            schema,
            pending: 0,
            writer,
            rows: 0,
            rejects: Vec::new(),
        })
    }

    pub fn columns(&self) -> usize {
        self.rules.len()
    }

    pub fn column_type(&self, col: usize) -> ColumnType {
        self.rules[col].ty
    }

    /// Checks a text value of column `col`; `text[start..end]` is the value within the
    /// row's text `text`.
    pub fn text_cell(&self, col: usize, text: &[u8], start: usize, end: usize) -> Result<Cell, Fault> {
        let value = &text[start..end];
        let rule = &self.rules[col];
        let fault = |code| (code, col as u16);
        if value.is_empty() {
            return Ok(Cell::Null);
        }
        if value.len() > rule.max_len {
            return Err(fault(ReasonCode::FieldTooLong));
        }
        let as_str = || std::str::from_utf8(value).map_err(|_| fault(ReasonCode::UnparseableValue));
        match rule.ty {
            ColumnType::String => self.string_cell(col, value, start, end),
            ColumnType::Int64 => {
                self.int_cell(col, as_str()?.parse().map_err(|_| fault(ReasonCode::UnparseableValue))?)
            }
            ColumnType::Float64 => {
                self.float_cell(col, as_str()?.parse().map_err(|_| fault(ReasonCode::UnparseableValue))?)
            }
            ColumnType::Boolean => match value {
                b"true" | b"TRUE" | b"True" => Ok(Cell::Bool(true)),
                b"false" | b"FALSE" | b"False" => Ok(Cell::Bool(false)),
                _ => Err(fault(ReasonCode::UnparseableValue)),
            },
            ColumnType::Timestamp => {
                self.ts_cell(col, parse_rfc3339_ms(value).ok_or(fault(ReasonCode::UnparseableValue))?)
            }
        }
    }

    pub fn string_cell(&self, col: usize, value: &[u8], start: usize, end: usize) -> Result<Cell, Fault> {
        if value.len() > self.rules[col].max_len {
            return Err((ReasonCode::FieldTooLong, col as u16));
        }
        if has_invisible(value) {
            return Err((ReasonCode::InvisibleCharacter, col as u16));
        }
        let formula = is_formula(value);
        let neutralise = formula && self.formula == FormulaPolicy::Neutralise;
        if formula && self.formula == FormulaPolicy::Reject {
            return Err((ReasonCode::FormulaInjection, col as u16));
        }
        Ok(Cell::Str { start, end, neutralise })
    }

    pub fn int_cell(&self, col: usize, v: i64) -> Result<Cell, Fault> {
        let rule = &self.rules[col];
        if !mlsec_runtime::contract::int_within(v, Some(rule.minimum), Some(rule.maximum)) {
            return Err((ReasonCode::OutOfRange, col as u16));
        }
        Ok(Cell::Int(v))
    }

    pub fn float_cell(&self, col: usize, v: f64) -> Result<Cell, Fault> {
        let rule = &self.rules[col];
        if !v.is_finite() {
            return Err((ReasonCode::NonFinite, col as u16));
        }
        if v < rule.minimum || v > rule.maximum {
            return Err((ReasonCode::OutOfRange, col as u16));
        }
        Ok(Cell::Float(v))
    }

    pub fn ts_cell(&self, col: usize, ms: i64) -> Result<Cell, Fault> {
        if ms < self.min_ts || ms > self.max_ts {
            return Err((ReasonCode::TimestampOutOfRange, col as u16));
        }
        Ok(Cell::Ts(ms))
    }

    fn count_row(&self) -> Result<(), Rejection> {
        if self.rows + self.rejects.len() as u64 >= self.max_rows {
            return Err(Rejection::new(ReasonCode::TooManyRows, "more data rows than the contract allows")
                .rule(format!("maxRows={}", self.max_rows)));
        }
        Ok(())
    }

    /// Records a rejected row.
    pub fn reject(&mut self, line: u64, byte_offset: u64, fault: (ReasonCode, Option<u16>)) -> Result<(), Rejection> {
        self.count_row().map_err(|r| r.at_line(line))?;
        if self.rejects.len() >= MAX_REJECT_RECORDS {
            return Err(Rejection::new(ReasonCode::TooManyRejects, "more rejected rows than the gate records")
                .at_line(line)
                .rule(format!("{MAX_REJECT_RECORDS} rejected rows per object")));
        }
        self.rejects.push(RowReject { line, byte_offset, column: fault.1, reason: fault.0 });
        Ok(())
    }

    /// Appends a row whose cells all passed; strings are ranges into `text`.
    pub fn accept(&mut self, line: u64, text: &[u8], cells: &[Cell]) -> Result<(), Rejection> {
        self.count_row().map_err(|r| r.at_line(line))?;
        for (builder, cell) in self.builders.iter_mut().zip(cells) {
            match (builder, *cell) {
                (Builder::Str(b), Cell::Str { start, end, neutralise }) => {
                    if neutralise {
                        b.append_value([b"'", &text[start..end]].concat());
                    } else {
                        b.append_value(&text[start..end]);
                    }
                }
                (Builder::Int(b), Cell::Int(v)) => b.append_value(v),
                (Builder::Float(b), Cell::Float(v)) => b.append_value(v),
                (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
                (Builder::Ts(b), Cell::Ts(v)) => b.append_value(v),
                (Builder::Str(b), _) => b.append_null(),
                (Builder::Int(b), _) => b.append_null(),
                (Builder::Float(b), _) => b.append_null(),
                (Builder::Bool(b), _) => b.append_null(),
                (Builder::Ts(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
        self.pending += 1;
        if self.pending == BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Rejection> {
        if self.pending == 0 {
            return Ok(());
        }
        self.pending = 0;
        let arrays = self.builders.iter_mut().map(Builder::finish_sized).collect::<Result<_, _>>()?;
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(internal)?;
        self.writer.write(&batch).map_err(internal)
    }

    /// Flushes and closes the Parquet.
    pub fn finish(mut self, format: &'static str, gzip: bool) -> Result<Accepted<W>, Rejection> {
        self.flush()?;
        let rows_read = self.rows + self.rejects.len() as u64;
        if rows_read == 0 {
            return Err(Rejection::new(ReasonCode::Empty, "no data rows"));
        }
        for (k, v) in [
            ("mlsec.format", format.to_string()),
            ("mlsec.gzip", gzip.to_string()),
            ("mlsec.rows_read", rows_read.to_string()),
            ("mlsec.rows_rejected", self.rejects.len().to_string()),
        ] {
            self.writer.append_key_value_metadata(KeyValue::new(k.to_string(), v));
        }
        let parquet = self.writer.into_inner().map_err(internal)?;
        Ok(Accepted { parquet, rows: self.rows, rejects: self.rejects, rows_read, format, gzip })
    }
}

fn internal(e: impl std::fmt::Display) -> Rejection {
    // Only reachable on an I/O failure of the spill file; the worker retries.
    Rejection::new(ReasonCode::UnparseableValue, format!("cannot write Parquet: {e}"))
}

/// The rejects file: one row per rejected row, positions and reason only (no values).
pub fn rejects_parquet(rejects: &[RowReject], columns: &[String], lineage: Vec<(String, String)>) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("line", DataType::UInt64, false),
        Field::new("byte_offset", DataType::UInt64, false),
        Field::new("column", DataType::Utf8, true),
        Field::new("column_index", DataType::UInt16, true),
        Field::new("reason_code", DataType::Utf8, false),
    ]));
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema.clone(), Some(writer_properties(&lineage, RAW_ROW_GROUP_ROWS)))
            .expect("the rejects schema is valid");
    for chunk in rejects.chunks(BATCH_ROWS) {
        let mut line = UInt64Builder::with_capacity(chunk.len());
        let mut offset = UInt64Builder::with_capacity(chunk.len());
        let mut column = StringBuilder::new();
        let mut index = UInt16Builder::with_capacity(chunk.len());
        let mut reason = StringBuilder::new();
        for r in chunk {
            line.append_value(r.line);
            offset.append_value(r.byte_offset);
            column.append_option(r.column.and_then(|c| columns.get(c as usize)));
            index.append_option(r.column);
            reason.append_value(r.reason.as_str());
        }
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(line.finish()),
            Arc::new(offset.finish()),
            Arc::new(column.finish()),
            Arc::new(index.finish()),
            Arc::new(reason.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), arrays).expect("columns match the schema");
        writer.write(&batch).expect("writing to memory cannot fail");
    }
    writer.close().expect("writing to memory cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_reject_list_is_bounded_and_its_limit_is_not_releasable() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
        let contract =
            mlsec_runtime::contract::DatasetContract::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut sink = RowSink::new(&contract, 0, vec![], std::io::sink()).unwrap();
        for line in 0..MAX_REJECT_RECORDS as u64 {
            sink.reject(line + 2, 0, (ReasonCode::RaggedRow, None)).unwrap();
        }
        let r = sink.reject(MAX_REJECT_RECORDS as u64 + 2, 0, (ReasonCode::RaggedRow, None)).unwrap_err();
        assert_eq!(r.reason_code, ReasonCode::TooManyRejects);
        assert!(!r.reason_code.releasable(), "a release could never make this object pass");
        assert_eq!(sink.rejects.len(), MAX_REJECT_RECORDS);
    }
}
