//! `mlsec audit`: verify the chain (online, or a downloaded copy offline with only the
//! public key), show records by subject, action, actor and time, export them as Parquet,
//! download a copy for an auditor, and sign a checkpoint on demand.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use arrow::{
    array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array},
    datatypes::{DataType, Field, Schema, TimeUnit},
};
use mlsec_aws::{Deployment, audit::read_head, kms::KmsKeys, s3::S3Store};
use mlsec_events::audit::{AuditRecord, links};
use mlsec_lake::{
    audit::{CHECKPOINTS, Checkpoint, Head, RECORDS, Report, StoredRecord, parse_record_key, verify},
    columnar::{CURATED_ROW_GROUP_ROWS, writer_properties},
};
use mlsec_runtime::ports::{KeyService, ObjectStore};

/// Everything verification needs, as found.
pub struct Chain {
    pub records: Vec<StoredRecord>,
    pub checkpoints: Vec<Checkpoint>,
    pub head: Option<Head>,
    pub public_key: Vec<u8>,
}

/// Reads the whole chain from the deployment (the auditor's read access).
pub async fn load(dep: &Deployment) -> Result<Chain> {
    // The head first: records appended while the bucket is listed are then past it, not
    // missing from it.
    let head = read_head(&dep.dynamodb, &dep.names.table("audit")).await?.map(|h| h.head);
    let store = S3Store::new(dep.s3.clone());
    let bucket = dep.names.bucket("audit");
    let mut records = Vec::new();
    for key in store.list(&bucket, RECORDS).await? {
        let bytes = store.get(&bucket, &key, None).await?;
        records.push(StoredRecord { key, bytes: bytes.to_vec() });
    }
    let mut checkpoints = Vec::new();
    for key in store.list(&bucket, CHECKPOINTS).await? {
        let body = store.get(&bucket, &key, None).await?;
        checkpoints.push(parse_checkpoint(&key, &body));
    }
    let public_key = KmsKeys::new(dep.kms.clone()).public_key(&dep.key_arn("audit_signing").await?).await?;
    Ok(Chain { records, checkpoints, head, public_key })
}

/// A checkpoint file; one that does not parse becomes a checkpoint whose signature cannot
/// verify, so verification reports it instead of stopping.
fn parse_checkpoint(key: &str, body: &[u8]) -> Checkpoint {
    serde_json::from_slice(body).unwrap_or_else(|e| Checkpoint {
        seq: key.rsplit('/').next().and_then(|f| f.trim_end_matches(".json").parse().ok()).unwrap_or(0),
        head_hash: String::new(),
        time_ms: 0,
        key_id: format!("unparseable: {e}"),
        signature: String::new(),
    })
}

/// Writes a copy an auditor can verify offline: `records/`, `checkpoints/`, the head at
/// the time of the copy and the audit key's public key (`public-key.der`).
pub fn save(chain: &Chain, dir: &Path) -> Result<usize> {
    for r in &chain.records {
        // Paths are rebuilt from the parsed key: a key is never trusted as a path.
        let Some((writer, seq)) = parse_record_key(&r.key) else {
            eprintln!("warning: {} is not a record key; not copied (verify reports it)", r.key);
            continue;
        };
        let path = dir.join(mlsec_lake::audit::record_key(writer, seq));
        std::fs::create_dir_all(path.parent().expect("a record key has a directory"))?;
        std::fs::write(&path, &r.bytes)?;
    }
    std::fs::create_dir_all(dir.join(CHECKPOINTS))?;
    for c in &chain.checkpoints {
        std::fs::write(dir.join(mlsec_lake::audit::checkpoint_key(c.seq)), serde_json::to_vec_pretty(c)?)?;
    }
    if let Some(h) = chain.head {
        let head = serde_json::json!({ "seq": h.seq, "hash": hex::encode(h.hash) });
        std::fs::write(dir.join("head.json"), serde_json::to_vec_pretty(&head)?)?;
    }
    std::fs::write(dir.join("public-key.der"), &chain.public_key)?;
    Ok(chain.records.len())
}

/// Reads a copy written by [`save`]; `public_key` overrides the copy's own key file (an
/// auditor should use the key from a trusted source).
pub fn load_offline(dir: &Path, public_key: Option<&Path>) -> Result<Chain> {
    let mut records = Vec::new();
    let records_dir = dir.join(RECORDS);
    if records_dir.is_dir() {
        for writer in std::fs::read_dir(&records_dir)? {
            let writer = writer?;
            for file in std::fs::read_dir(writer.path())? {
                let file = file?;
                let key =
                    format!("{RECORDS}{}/{}", writer.file_name().to_string_lossy(), file.file_name().to_string_lossy());
                records.push(StoredRecord { key, bytes: std::fs::read(file.path())? });
            }
        }
    }
    let mut checkpoints = Vec::new();
    let cp_dir = dir.join(CHECKPOINTS);
    if cp_dir.is_dir() {
        for file in std::fs::read_dir(&cp_dir)? {
            let path = file?.path();
            let body = std::fs::read(&path)?;
            checkpoints.push(parse_checkpoint(&path.to_string_lossy(), &body));
        }
    }
    let head = match std::fs::read(dir.join("head.json")) {
        Ok(body) => {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            let mut hash = [0u8; 32];
            hex::decode_to_slice(v["hash"].as_str().unwrap_or_default(), &mut hash).context("head.json hash")?;
            Some(Head { seq: v["seq"].as_u64().context("head.json seq")?, hash })
        }
        Err(_) => None,
    };
    let key_path: PathBuf = public_key.map_or_else(|| dir.join("public-key.der"), Path::to_path_buf);
    let public_key = std::fs::read(&key_path).with_context(|| format!("public key {}", key_path.display()))?;
    Ok(Chain { records, checkpoints, head, public_key })
}

impl Chain {
    pub fn verify(&self, from: u64) -> Report {
        verify(&self.records, &self.checkpoints, self.head, &self.public_key, from)
    }

    /// The decoded records in chain order (verification decides which are the chain's;
    /// this shows what is stored). A stored record that does not decode is named on stderr.
    pub fn decoded(&self) -> Vec<AuditRecord> {
        let mut out = Vec::with_capacity(self.records.len());
        for r in self.records.iter().filter(|r| parse_record_key(&r.key).is_some()) {
            match links(&r.bytes).and_then(|_| AuditRecord::decode(&r.bytes)) {
                Ok(record) => out.push(record),
                Err(e) => eprintln!("warning: {} does not decode: {e}", r.key),
            }
        }
        out.sort_by_key(|r| r.seq);
        out
    }
}

/// Filters of `mlsec audit show`.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub subject: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl Filter {
    pub fn matches(&self, r: &AuditRecord) -> bool {
        let e = &r.entry;
        self.subject.as_ref().is_none_or(|s| e.subject.id.contains(s.as_str()))
            && self.action.as_ref().is_none_or(|a| e.action.as_str() == a)
            && self.actor.as_ref().is_none_or(|a| e.actor.id.contains(a.as_str()))
            && self.since_ms.is_none_or(|t| r.time_ms >= t)
            && self.until_ms.is_none_or(|t| r.time_ms < t)
    }
}

/// `audit show` for people: one line per record.
pub fn render_records<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> String {
    let mut t = crate::output::Table::new(["seq", "time", "action", "subject", "actor", "reason"]);
    for r in records {
        t.row([
            r.seq.to_string(),
            mlsec_runtime::time::format_rfc3339_ms(r.time_ms),
            r.entry.action.as_str().to_string(),
            r.entry.subject.id.clone(),
            r.entry.actor.id.clone(),
            r.entry.reason.clone(),
        ]);
    }
    t.render()
}

/// The records as Parquet (one row per record; inputs, outputs and attributes as JSON text),
/// for DuckDB or Athena.
pub fn to_parquet(records: &[AuditRecord]) -> Result<Vec<u8>> {
    let text = |f: &dyn Fn(&AuditRecord) -> String| -> ArrayRef {
        Arc::new(records.iter().map(|r| Some(f(r))).collect::<StringArray>())
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("time", DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())), false),
        Field::new("actor_kind", DataType::Utf8, false),
        Field::new("actor", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("subject_kind", DataType::Utf8, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("decision_id", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("inputs", DataType::Utf8, false),
        Field::new("outputs", DataType::Utf8, false),
        Field::new("attributes", DataType::Utf8, false),
        Field::new("prev_hash", DataType::Utf8, false),
        Field::new("hash", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(records.iter().map(|r| r.seq).collect::<UInt64Array>()),
        Arc::new(
            TimestampMillisecondArray::from(records.iter().map(|r| r.time_ms).collect::<Vec<_>>())
                .with_timezone("+00:00"),
        ),
        text(&|r| format!("{:?}", r.entry.actor.kind).to_lowercase()),
        text(&|r| r.entry.actor.id.clone()),
        text(&|r| r.entry.action.as_str().to_string()),
        text(&|r| r.entry.subject.kind.clone()),
        text(&|r| r.entry.subject.id.clone()),
        text(&|r| r.entry.decision_id.clone()),
        text(&|r| r.entry.reason.clone()),
        text(&|r| json(&r.entry.inputs)),
        text(&|r| json(&r.entry.outputs)),
        text(&|r| json(&r.entry.attributes)),
        text(&|r| hex::encode(r.prev_hash)),
        text(&|r| hex::encode(r.hash)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let mut out = Vec::new();
    let props = writer_properties(&[("mlsec.kind".into(), "audit-export".into())], CURATED_ROW_GROUP_ROWS);
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(out)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use mlsec_events::audit::{Actor, AuditAction, AuditEntry, Subject};

    use super::*;

    fn records() -> Vec<AuditRecord> {
        let mut prev = [0u8; 32];
        let mut out = Vec::new();
        for (i, (action, actor)) in [
            (AuditAction::ObjectQuarantined, Actor::worker("mlsec-ingest")),
            (AuditAction::QuarantineReleased, Actor::person("arn:aws:iam::1:user/ana", "1")),
            (AuditAction::DlqReplayed, Actor::person("arn:aws:iam::1:user/bruno", "1")),
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = AuditEntry::new(action, Subject::new("object", "transactions/ab"), format!("d{i}"));
            e.actor = actor;
            let (r, _) = AuditRecord::seal(i as u64 + 1, prev, 1_000 * (i as i64 + 1), e).unwrap();
            prev = r.hash;
            out.push(r);
        }
        out
    }

    #[test]
    fn show_filters_by_action_actor_and_time() {
        let r = records();
        let by = |f: Filter| r.iter().filter(|x| f.matches(x)).map(|x| x.seq).collect::<Vec<_>>();
        assert_eq!(by(Filter { action: Some("quarantine_released".into()), ..Filter::default() }), [2]);
        assert_eq!(by(Filter { actor: Some("user/bruno".into()), ..Filter::default() }), [3]);
        assert_eq!(by(Filter { since_ms: Some(2_000), until_ms: Some(3_000), ..Filter::default() }), [2]);
        assert_eq!(by(Filter { subject: Some("transactions/".into()), ..Filter::default() }), [1, 2, 3]);
    }

    #[test]
    fn export_writes_one_parquet_row_per_record_with_the_actor_and_hashes() {
        let r = records();
        let bytes = to_parquet(&r).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        let actors = batches[0].column_by_name("actor").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(actors.value(1), "arn:aws:iam::1:user/ana");
        let hashes = batches[0].column_by_name("hash").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(hashes.value(2), hex::encode(r[2].hash));
    }
}
