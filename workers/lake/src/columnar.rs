//! The columnar form of the data at rest: the Arrow type of each contract column, the
//! raw zone's schema and the one set of Parquet writer settings every zone uses.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use mlsec_runtime::contract::{ColumnType, DatasetContract};
use parquet::{
    basic::{Compression, ZstdLevel},
    file::{
        metadata::KeyValue,
        properties::{EnabledStatistics, WriterProperties},
    },
};

/// Content type of every Parquet object the pipeline writes.
pub const PARQUET_CONTENT_TYPE: &str = "application/vnd.apache.parquet";

/// Parquet key-value metadata: the `aws:userid` of the principal whose landing object the
/// file descends from (the landing object's policy-enforced tag) (raw, curated and holdout files carry it; govern reads it from the
/// holdout to keep that principal from approving the model trained on it).
pub const DROPPED_BY_KEY: &str = "mlsec.dropped_by";
/// Parquet key-value metadata of a holdout file: the SHA-256 of the curated file written in
/// the same pass, so govern evaluates a candidate on the holdout of the very dataset it
/// was trained on (the holdout bucket is written by curate alone).
pub const CURATED_SHA256_KEY: &str = "mlsec.curated_sha256";
/// Parquet key-value metadata of a holdout file: the primary-key column and share that routed it.
pub const HOLDOUT_KEY: &str = "mlsec.holdout";

/// Rows per Arrow record batch, written and read (and an upper bound of rows held in
/// memory by a streaming stage).
pub const BATCH_ROWS: usize = 65_536;

/// Rows per Parquet row group of the raw zone. The writer holds one row group's encoded
/// pages in memory, so this bounds its memory whatever the object's size.
pub const RAW_ROW_GROUP_ROWS: usize = 4 * BATCH_ROWS;

/// Rows per Parquet row group of curated and scored outputs: half the raw zone's, since
/// curate holds its uniqueness runs and two writers beside it.
pub const CURATED_ROW_GROUP_ROWS: usize = 2 * BATCH_ROWS;

/// The Arrow type of a contract column, as the gateway writes it and every later zone
/// expects it.
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

/// The Parquet writer settings of every output: zstd level 1 (the pseudonym columns are
/// random hex, which higher levels only spend time on), column-chunk statistics (min/max
/// per row group, what readers prune on; page statistics cost a third of the writer's
/// time on text columns for little use), row groups of `row_group_rows` and the lineage
/// as key-value metadata.
pub fn writer_properties(lineage: &[(String, String)], row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("1 is a valid zstd level")))
        .set_key_value_metadata(Some(lineage.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_settings_carry_the_lineage_and_bound_the_row_groups() {
        let p = writer_properties(&[("mlsec.contract".into(), "c@1".into())], RAW_ROW_GROUP_ROWS);
        assert_eq!(p.max_row_group_row_count(), Some(RAW_ROW_GROUP_ROWS));
        let kv = p.key_value_metadata().unwrap();
        assert_eq!((kv[0].key.as_str(), kv[0].value.as_deref()), ("mlsec.contract", Some("c@1")));
        let column = parquet::schema::types::ColumnPath::from("amount");
        assert!(matches!(p.compression(&column), Compression::ZSTD(_)));
        assert_eq!(p.statistics_enabled(&column), EnabledStatistics::Chunk);
    }
}
