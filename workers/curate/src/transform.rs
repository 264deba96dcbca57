//! The curation transform on Arrow batches: schema check, data-quality rules, then
//! pseudonymisation. Streams batch by batch from a Parquet source to Parquet sinks;
//! memory holds one batch, the writers' row groups and a bounded run of keys per
//! uniqueness rule ([`crate::keyset`]).

use std::{io::Write, sync::Arc};

use arrow::{
    array::{
        Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchReader, StringArray,
        StringBuilder, TimestampMillisecondArray,
    },
    compute::filter_record_batch,
    datatypes::{Field, Schema},
};
use hmac::{Hmac, KeyInit, Mac};
use mlsec_lake::columnar::{
    BATCH_ROWS, CURATED_ROW_GROUP_ROWS, CURATED_SHA256_KEY, DROPPED_BY_KEY, HOLDOUT_KEY, writer_properties,
};
use mlsec_runtime::{
    contract::{DatasetContract, Generalisation, Pseudonymisation},
    time::days_from_civil,
};
use parquet::{
    arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
    file::{metadata::KeyValue, reader::ChunkReader},
};
use sha2::Sha256;

use crate::{
    dq::{self, DqReport, Engine},
    error::{CurateError, input, output},
};

pub type HmacSha256 = Hmac<Sha256>;

/// Output of [`curate`].
pub struct Curated {
    pub rows_in: u64,
    /// Rows that passed the row rules (curated output plus holdout).
    pub rows_out: u64,
    /// Of those, rows routed to the holdout.
    pub rows_holdout: u64,
    /// SHA-256 of the curated file's bytes (what its claim check will carry).
    pub sha256: String,
    pub report: DqReport,
}

/// Hashes what passes through to `inner`.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where a training dataset's holdout goes: rows whose keyed hash of the primary key falls
/// below `fraction` (so a row lands on the same side on every run, and no one without the
/// key can choose which rows are held out). A dataset without a primary key (many public
/// ones have none) is routed by the keyed hash of the whole row as ingested, so identical
/// rows always land on the same side.
pub struct HoldoutSplit<H> {
    pub key: Vec<u8>,
    /// The primary-key column, or `None` to route by the whole row.
    pub column: Option<String>,
    pub fraction: f64,
    pub out: H,
}

/// Whether the row with primary key `value` belongs to the holdout.
pub fn in_holdout(mac: &HmacSha256, value: &str, fraction: f64) -> bool {
    let mut m = mac.clone();
    m.update(value.as_bytes());
    below(m, fraction)
}

/// Whether the MAC's first 8 bytes, as a share of 2^64, fall below `fraction`.
fn below(m: HmacSha256, fraction: f64) -> bool {
    let digest = m.finalize().into_bytes();
    let top = u64::from_be_bytes(digest[..8].try_into().expect("32-byte digest"));
    (top as f64) < fraction * 18_446_744_073_709_551_616.0
}

/// Hex HMAC-SHA-256 pseudonym of `value` under `key` (pre-keyed `mac` cloned per value).
pub fn pseudonym(mac: &HmacSha256, value: &str) -> String {
    let mut out = [0u8; 64];
    pseudonym_into(mac, value, &mut out).to_string()
}

fn pseudonym_into<'a>(mac: &HmacSha256, value: &str, out: &'a mut [u8; 64]) -> &'a str {
    let mut m = mac.clone();
    m.update(value.as_bytes());
    hex::encode_to_slice(m.finalize().into_bytes(), out).expect("64 hex digits for 32 bytes");
    std::str::from_utf8(out).expect("hex is ASCII")
}

/// `****` plus the last `keep_last` characters; short values are masked whole, so at least
/// half of a value is always hidden.
pub fn mask(value: &str, keep_last: usize) -> String {
    let chars = value.chars().count();
    if keep_last == 0 || chars <= 2 * keep_last {
        return "****".into();
    }
    let tail: String = value.chars().skip(chars - keep_last).collect();
    format!("****{tail}")
}

/// Start of the UTC hour, day or month of a millisecond timestamp.
pub fn truncate_ms(ms: i64, g: Generalisation) -> i64 {
    match g {
        Generalisation::Hour => ms - ms.rem_euclid(3_600_000),
        Generalisation::Day => ms - ms.rem_euclid(86_400_000),
        Generalisation::Month => {
            let date = mlsec_runtime::utc_date(ms);
            let (y, m) = (date[0..4].parse().unwrap_or(1970), date[5..7].parse().unwrap_or(1));
            days_from_civil(y, m, 1) * 86_400_000
        }
        Generalisation::Band(_) => ms,
    }
}

/// Lower bound of the band of `width` that holds `v` (37, 10 → 30).
pub fn band(v: f64, width: f64) -> f64 {
    (v / width).floor() * width
}

/// Applies the contract to a raw Parquet file: the curated rows go to `out`, the rows
/// dropped by error rules (row number, rule id) to `rejects`. When the schema drifted,
/// nothing is written and the report names the differences.
pub fn curate<R: ChunkReader + 'static, W: Write + Send, X: Write + Send>(
    raw: R,
    contract: &DatasetContract,
    subkey: &[u8],
    lineage: &[(String, String)],
    now_ms: i64,
    out: W,
    rejects: X,
) -> Result<Curated, CurateError> {
    curate_split(raw, contract, subkey, lineage, now_ms, out, rejects, None::<HoldoutSplit<std::io::Sink>>)
}

/// [`curate`], routing a keyed-hash share of the rows to `holdout` instead of `out`. The
/// raw file's `mlsec.dropped_by` metadata is carried into both outputs.
#[allow(clippy::too_many_arguments)]
pub fn curate_split<R: ChunkReader + 'static, W: Write + Send, X: Write + Send, H: Write + Send>(
    raw: R,
    contract: &DatasetContract,
    subkey: &[u8],
    lineage: &[(String, String)],
    now_ms: i64,
    out: W,
    rejects: X,
    holdout: Option<HoldoutSplit<H>>,
) -> Result<Curated, CurateError> {
    let mac = HmacSha256::new_from_slice(subkey).map_err(input)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(raw).map_err(input)?;
    let dropped_by = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == DROPPED_BY_KEY))
        .and_then(|e| e.value.clone());
    let mut lineage = lineage.to_vec();
    if let Some(d) = dropped_by {
        lineage.push((DROPPED_BY_KEY.to_string(), d));
    }
    let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(input)?;
    let input_schema = reader.schema();
    let drift = dq::schema_drift(contract, &input_schema);
    if !drift.is_empty() {
        return Ok(Curated {
            rows_in: 0,
            rows_out: 0,
            rows_holdout: 0,
            sha256: String::new(),
            report: DqReport::drifted(&drift),
        });
    }
    let mut engine = Engine::new(contract, &input_schema, now_ms)?;
    let kept: Vec<_> = contract.columns.iter().filter(|c| c.pseudonymisation != Pseudonymisation::Drop).collect();
    let out_schema = Arc::new(Schema::new(
        kept.iter()
            .map(|c| {
                let f = input_schema.field_with_name(&c.name).expect("checked by schema_drift");
                let ty = match c.pseudonymisation {
                    Pseudonymisation::Hmac | Pseudonymisation::Mask { .. } => arrow::datatypes::DataType::Utf8,
                    _ => f.data_type().clone(),
                };
                Field::new(&c.name, ty, !c.required)
            })
            .collect::<Vec<_>>(),
    ));
    let props = writer_properties(&lineage, CURATED_ROW_GROUP_ROWS);
    let out = Hashing { inner: out, hasher: Sha256::default() };
    let mut writer = ArrowWriter::try_new(out, out_schema.clone(), Some(props.clone())).map_err(output)?;
    let mut reject_writer = ArrowWriter::try_new(rejects, dq::rejects_schema(), Some(props)).map_err(output)?;
    let mut split = match holdout {
        None => None,
        Some(h) => {
            let mac = HmacSha256::new_from_slice(&h.key).map_err(input)?;
            let by = h.column.as_deref().unwrap_or(ROW_ROUTING);
            let meta = [lineage.clone(), vec![(HOLDOUT_KEY.to_string(), format!("{by}:{}", h.fraction))]].concat();
            let props = writer_properties(&meta, CURATED_ROW_GROUP_ROWS);
            let w = ArrowWriter::try_new(h.out, out_schema.clone(), Some(props)).map_err(output)?;
            Some((mac, h.column, h.fraction, w))
        }
    };
    let (mut rows_in, mut rows_out, mut rows_holdout) = (0u64, 0u64, 0u64);
    for batch in reader {
        let batch = batch.map_err(input)?;
        rows_in += batch.num_rows() as u64;
        let (keep, rejected) = engine.observe(&batch)?;
        if !rejected.is_empty() {
            reject_writer.write(&dq::rejects_batch(&rejected)).map_err(output)?;
        }
        let batch = filter_record_batch(&batch, &keep).map_err(input)?;
        rows_out += batch.num_rows() as u64;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(kept.len());
        for c in &kept {
            let col = batch.column_by_name(&c.name).expect("checked by schema_drift");
            columns
                .push(transform_column(col, c.pseudonymisation, &mac).map_err(|e| input(format!("{}: {e}", c.name)))?);
        }
        let out = RecordBatch::try_new(out_schema.clone(), columns).map_err(input)?;
        match &mut split {
            None => writer.write(&out).map_err(output)?,
            Some((mac, column, fraction, holdout_writer)) => {
                let held = match column {
                    Some(column) => {
                        let key =
                            batch.column_by_name(column).ok_or_else(|| input(format!("no primary key {column}")))?;
                        let key = arrow::compute::cast(key, &arrow::datatypes::DataType::Utf8).map_err(input)?;
                        let key = strings(&key)?;
                        key.iter().map(|v| Some(v.is_some_and(|v| in_holdout(mac, v, *fraction)))).collect()
                    }
                    None => rows_in_holdout(mac, &batch, *fraction)?,
                };
                let kept = arrow::compute::not(&held).map_err(input)?;
                let to_holdout = filter_record_batch(&out, &held).map_err(input)?;
                rows_holdout += to_holdout.num_rows() as u64;
                holdout_writer.write(&to_holdout).map_err(output)?;
                writer.write(&filter_record_batch(&out, &kept).map_err(input)?).map_err(output)?;
            }
        }
    }
    let mut out = writer.into_inner().map_err(output)?;
    out.flush().map_err(output)?;
    let sha256 = hex::encode(sha2::Digest::finalize(out.hasher));
    reject_writer.close().map_err(output)?;
    if let Some((.., mut w)) = split {
        w.append_key_value_metadata(KeyValue::new(CURATED_SHA256_KEY.to_string(), sha256.clone()));
        w.close().map_err(output)?;
    }
    Ok(Curated { rows_in, rows_out, rows_holdout, sha256, report: engine.finish()? })
}

/// `HOLDOUT_KEY`'s routing name for a dataset without a primary key.
pub const ROW_ROUTING: &str = "row";

/// Holdout membership of each row of `batch` (the rows as ingested, before any
/// pseudonymisation) by the keyed hash of all its values: each value as text prefixed by
/// its length (so no two rows' values can run into each other), a null as a length no
/// text has. The text is arrow's rendering of the typed value, so a change of that
/// rendering (an arrow upgrade) can move rows between the sides: the holdout's metadata
/// names the routing, and a contract version change is the time to expect it.
fn rows_in_holdout(mac: &HmacSha256, batch: &RecordBatch, fraction: f64) -> Result<BooleanArray, CurateError> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).map_err(input))
        .collect::<Result<_, _>>()?;
    let columns: Vec<&StringArray> = columns.iter().map(strings).collect::<Result<_, _>>()?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let mut m = mac.clone();
            for c in &columns {
                match c.is_null(i) {
                    true => m.update(&u64::MAX.to_be_bytes()),
                    false => {
                        let v = c.value(i).as_bytes();
                        m.update(&(v.len() as u64).to_be_bytes());
                        m.update(v);
                    }
                }
            }
            Some(below(m, fraction))
        })
        .collect())
}

fn strings(col: &ArrayRef) -> Result<&StringArray, CurateError> {
    col.as_any().downcast_ref::<StringArray>().ok_or_else(|| input("not a string column"))
}

/// One column's treatment; an error names what the column's type does not allow.
fn transform_column(col: &ArrayRef, p: Pseudonymisation, mac: &HmacSha256) -> Result<ArrayRef, CurateError> {
    Ok(match p {
        Pseudonymisation::None | Pseudonymisation::Drop => col.clone(),
        Pseudonymisation::Hmac => {
            let s = strings(col)?;
            let mut b = StringBuilder::with_capacity(s.len(), s.len() * 64);
            let mut buf = [0u8; 64];
            for v in s.iter() {
                match v {
                    Some(v) => b.append_value(pseudonym_into(mac, v, &mut buf)),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Pseudonymisation::Mask { keep_last } => {
            let s = strings(col)?;
            Arc::new(s.iter().map(|v| v.map(|v| mask(v, keep_last))).collect::<StringArray>())
        }
        Pseudonymisation::Generalise(Generalisation::Band(width)) => {
            if let Some(f) = col.as_any().downcast_ref::<Float64Array>() {
                Arc::new(f.unary::<_, arrow::datatypes::Float64Type>(|v| band(v, width)))
            } else if let Some(i) = col.as_any().downcast_ref::<Int64Array>() {
                let w = (width.round() as i64).max(1);
                Arc::new(
                    i.try_unary::<_, arrow::datatypes::Int64Type, _>(|v| {
                        v.div_euclid(w)
                            .checked_mul(w)
                            .ok_or_else(|| arrow::error::ArrowError::ComputeError("band lower bound overflows".into()))
                    })
                    .map_err(input)?,
                )
            } else {
                return Err(input("band applies to numeric columns"));
            }
        }
        Pseudonymisation::Generalise(g) => {
            let t = col
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .ok_or_else(|| input("not a timestamp column"))?;
            let tz = t.timezone().map(str::to_string);
            let out = t.unary::<_, arrow::datatypes::TimestampMillisecondType>(|v| truncate_ms(v, g));
            Arc::new(match tz {
                Some(tz) => out.with_timezone(tz),
                None => out,
            })
        }
    })
}
