//! The curation transform on Arrow batches: not-null filtering and pseudonymisation.
//! Streams batch by batch; memory holds one batch plus the compressed output.

use std::sync::Arc;

use arrow::{
    array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchReader, StringArray, StringBuilder},
    compute::{and, filter_record_batch, is_not_null},
    datatypes::{Field, Schema},
};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use mlsec_runtime::contract::{DatasetContract, Pseudonymisation};
use parquet::{
    arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
    basic::{Compression, ZstdLevel},
    file::{metadata::KeyValue, properties::WriterProperties},
};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Output of [`curate`].
pub struct Curated {
    pub parquet: Vec<u8>,
    pub rows_in: u64,
    pub rows_out: u64,
}

/// Hex HMAC-SHA-256 pseudonym of `value` under `key` (pre-keyed `mac` cloned per value).
pub fn pseudonym(mac: &HmacSha256, value: &str) -> String {
    let mut m = mac.clone();
    m.update(value.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Applies the contract to a raw Parquet file.
pub fn curate(
    raw: Bytes,
    contract: &DatasetContract,
    subkey: &[u8],
    lineage: Vec<(String, String)>,
) -> Result<Curated, String> {
    let mac = HmacSha256::new_from_slice(subkey).map_err(|e| format!("subkey: {e}"))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(raw)
        .and_then(|b| b.with_batch_size(65_536).build())
        .map_err(|e| e.to_string())?;
    let input_schema = reader.schema();
    for c in &contract.columns {
        if input_schema.field_with_name(&c.name).is_err() {
            return Err(format!("raw data lacks column {}", c.name));
        }
    }
    let kept: Vec<_> = contract.columns.iter().filter(|c| c.pseudonymisation != Pseudonymisation::Drop).collect();
    let out_schema = Arc::new(Schema::new(
        kept.iter()
            .map(|c| {
                let f = input_schema.field_with_name(&c.name).expect("checked above");
                Field::new(&c.name, f.data_type().clone(), !c.required)
            })
            .collect::<Vec<_>>(),
    ));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_key_value_metadata(Some(lineage.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect()))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), out_schema.clone(), Some(props)).map_err(|e| e.to_string())?;
    let (mut rows_in, mut rows_out) = (0u64, 0u64);
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        rows_in += batch.num_rows() as u64;
        // Not-null rules: a row missing any required value is rejected.
        let mut mask = BooleanArray::from(vec![true; batch.num_rows()]);
        for c in contract.columns.iter().filter(|c| c.required) {
            let col = batch.column_by_name(&c.name).expect("checked above");
            mask = and(&mask, &is_not_null(col).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
        let batch = filter_record_batch(&batch, &mask).map_err(|e| e.to_string())?;
        rows_out += batch.num_rows() as u64;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(kept.len());
        for c in &kept {
            let col = batch.column_by_name(&c.name).expect("checked above");
            columns.push(match c.pseudonymisation {
                Pseudonymisation::Hmac => {
                    let strings = col
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| format!("column {} is not a string column", c.name))?;
                    let mut b = StringBuilder::with_capacity(strings.len(), strings.len() * 64);
                    for v in strings.iter() {
                        b.append_option(v.map(|v| pseudonym(&mac, v)));
                    }
                    Arc::new(b.finish())
                }
                _ => col.clone(),
            });
        }
        let out = RecordBatch::try_new(out_schema.clone(), columns).map_err(|e| e.to_string())?;
        writer.write(&out).map_err(|e| e.to_string())?;
    }
    let parquet = writer.into_inner().map_err(|e| e.to_string())?;
    Ok(Curated { parquet, rows_in, rows_out })
}
