//! `mlsec bench`: throughput and peak memory of each stage's data path on the sample,
//! in-process (no AWS calls), so the numbers measure our code rather than the emulator.
//! Run it in release: `cargo run --release -p mlsec-cli --bin mlsec -- bench`.

use std::{
    io::{BufReader, Read},
    path::Path,
    time::Instant,
};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use mlsec_ingest::Ingested;
use mlsec_runtime::{
    contract::Contracts,
    sample::{SampleKind, write_csv},
};
use serde::Serialize;

/// One stage's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub stage: &'static str,
    pub rows: u64,
    pub input_bytes: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    /// Peak resident set size of the process so far (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

/// Peak RSS of this process in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn measure(stage: &'static str, rows: u64, input_bytes: u64, started: Instant) -> Measurement {
    let seconds = started.elapsed().as_secs_f64();
    Measurement {
        stage,
        rows,
        input_bytes,
        seconds,
        rows_per_second: rows as f64 / seconds,
        peak_rss_mib: peak_rss_mib(),
    }
}

/// Runs the stages in flow order on `rows` generated rows; the CSV is written to
/// `work_dir` first and streamed from disk in 1 MiB chunks, so the input is never held
/// in memory whole.
pub fn run(contracts: &Contracts, rows: usize, work_dir: &Path, stages: &[&str]) -> Result<Vec<Measurement>> {
    std::fs::create_dir_all(work_dir)?;
    let csv_path = work_dir.join(format!("bench-training-{rows}.csv"));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
        write_csv(&mut f, SampleKind::Training, rows, 1)?;
    }
    let input_bytes = std::fs::metadata(&csv_path)?.len();
    let contract = contracts.dataset("transactions_training").context("no transactions_training contract")?;
    let mut out = Vec::new();

    // Ingest: UTF-8/control/header checks, typed decode, Parquet (zstd) spilled to a
    // file, as the worker does.
    let started = Instant::now();
    let spill = work_dir.join(format!("bench-raw-{rows}.parquet"));
    let sink = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&spill)?);
    let refused = |r: mlsec_ingest::reason::Rejection| anyhow!("{}: {}", r.reason_code.as_str(), r.detail);
    let mut gate =
        mlsec_ingest::validate::Gate::with_sink(contract, mlsec_runtime::now_ms(), vec![], sink).map_err(refused)?;
    let mut reader = BufReader::new(std::fs::File::open(&csv_path)?);
    let mut buf = vec![0u8; 1 << 20];
    // A progress line on a terminal only, redrawn at most ten times a second (one check
    // per MiB read: nothing the measurement would see).
    let mut progress = crate::output::Progress::new("bench ingest (bytes)", Some(input_bytes));
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        gate.push(&buf[..n]).map_err(refused)?;
        progress.inc(n as u64);
    }
    progress.finish();
    let accepted = gate.finish().map_err(refused)?;
    accepted.parquet.into_inner().map_err(|e| e.into_error())?;
    out.push(measure("ingest", accepted.rows, input_bytes, started));
    if stages.contains(&"curate") || stages.contains(&"train") || stages.contains(&"score") {
        // Curate, streamed file to file: schema check, every quality rule of the contract,
        // HMAC of two columns, drop of one, generalisation of one.
        let raw_len = std::fs::metadata(&spill)?.len();
        let curated_path = work_dir.join("bench-curated.parquet");
        let started = Instant::now();
        let file = std::fs::File::open(&spill)?;
        let sink = std::io::BufWriter::new(std::fs::File::create(&curated_path)?);
        let now = mlsec_runtime::now_ms();
        let curated = mlsec_curate::transform::curate(file, contract, &[7u8; 32], &[], now, sink, std::io::sink())?;
        out.push(measure("curate", curated.rows_in, raw_len, started));
        let _ = std::fs::remove_file(&spill);
        if !curated.report.rejecting().is_empty() {
            bail!("the sample failed quality rules {:?}", curated.report.rejecting());
        }
        let curated = Bytes::from(std::fs::read(&curated_path)?);
        let _ = std::fs::remove_file(&curated_path);
        if stages.contains(&"train") || stages.contains(&"score") {
            let spec = contracts.model("fraud_lr").context("no fraud_lr spec")?;
            let started = Instant::now();
            let fitted = mlsec_train::fit(curated.clone(), spec)?;
            out.push(measure("train", fitted.rows as u64, curated.len() as u64, started));
            if stages.contains(&"score") {
                let started = Instant::now();
                let (_, scored, _) =
                    mlsec_score::score(curated.clone(), &fitted.artifact, &spec.output_columns(), "bench")?;
                out.push(measure("score", scored, curated.len() as u64, started));
            }
        }
    }
    let _ = std::fs::remove_file(&spill);
    let _ = std::fs::remove_file(&csv_path);
    Ok(out)
}

/// The ingest worker end to end against a stack (the emulator or AWS): the sample is
/// uploaded to the landing bucket, then the worker handles its notification in this
/// process, streaming the object from S3 (never holding it whole), writing raw and
/// publishing. Reports the handling time and this process's peak RSS; the upload is not
/// timed. The stack must be provisioned (`mlsec provision`).
pub async fn run_ingest_via_s3(
    dep: &mlsec_aws::Deployment,
    contracts: std::sync::Arc<Contracts>,
    rows: usize,
    work_dir: &Path,
) -> Result<Measurement> {
    std::fs::create_dir_all(work_dir)?;
    // A different seed per run: the same bytes twice would be a duplicate (a no-op).
    let seed = mlsec_runtime::now_ms() as u64 % 10_000;
    let csv_path = work_dir.join(format!("bench-s3-{rows}.csv"));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
        write_csv(&mut f, SampleKind::Training, rows, seed)?;
    }
    let input_bytes = std::fs::metadata(&csv_path)?.len();
    let key = format!("bank-core/transactions_training/bench-{seed}.csv");
    let body = aws_sdk_s3::primitives::ByteStream::from_path(&csv_path).await?;
    crate::ops::drop_bytes(dep, &key, body).await?;
    let _ = std::fs::remove_file(&csv_path);
    let landing = dep.names.bucket("landing");
    let head = dep.s3.head_object().bucket(&landing).key(&key).send().await?;
    let detail = serde_json::json!({
        "bucket": { "name": landing },
        "object": { "key": key, "size": head.content_length(), "version-id": head.version_id() },
        "requester": std::env::var("MLSEC_ACCOUNT_ID").unwrap_or_default(),
    });
    let body = mlsec_runtime::inbound::eventbridge_body("aws.s3", "Object Created", detail);
    let message = mlsec_runtime::Inbound::parse("bench", &body)?;
    let worker = mlsec_host::ingest(dep, contracts).await?;
    let started = Instant::now();
    let outcome = worker.ingest(&message).await?;
    if !matches!(outcome, Ingested::Accepted { .. }) {
        bail!("the sample was not accepted: {outcome}");
    }
    Ok(measure("ingest-s3", rows as u64, input_bytes, started))
}

/// Offline verification speed: a chain of `records` records (sealed in memory, a signed
/// checkpoint every 1,000) verified by `mlsec_lake::audit::verify` on one core, as an
/// auditor's laptop would run it. Only the verification is timed.
pub fn audit_verify(records: u64) -> Result<Measurement> {
    use mlsec_events::audit::{AuditAction, AuditEntry, AuditRecord, Subject};
    use mlsec_lake::audit::{Checkpoint, StoredRecord, record_key, verify};
    use p256::{
        ecdsa::{Signature, SigningKey, signature::Signer},
        pkcs8::EncodePublicKey,
    };
    let key = SigningKey::from_slice(&[9u8; 32])?;
    let public = key.verifying_key().to_public_key_der()?.as_bytes().to_vec();
    let (mut stored, mut checkpoints, mut prev) = (Vec::with_capacity(records as usize), Vec::new(), [0u8; 32]);
    let mut bytes_total = 0u64;
    for seq in 1..=records {
        let entry = AuditEntry::new(
            AuditAction::ModelTrained,
            Subject::new("model", "fraud_lr@0123456789ab"),
            format!("{seq:016x}"),
        )
        .reason("candidate")
        .attribute("auc", "0.8630")
        .attribute("train_rows", 16000);
        let (r, bytes) = AuditRecord::seal(seq, prev, 1_764_000_000_000 + seq as i64, entry)?;
        prev = r.hash;
        bytes_total += bytes.len() as u64;
        stored
            .push(StoredRecord { key: record_key(if seq.is_multiple_of(2) { "train" } else { "govern" }, seq), bytes });
        if seq.is_multiple_of(1000) || seq == records {
            let head_hash = hex::encode(r.hash);
            let sig: Signature = key.sign(&Checkpoint::message_of(seq, &head_hash, 0));
            checkpoints.push(Checkpoint {
                seq,
                head_hash,
                time_ms: 0,
                key_id: "bench".into(),
                signature: hex::encode(sig.to_der().as_bytes()),
            });
        }
    }
    let started = Instant::now();
    let report = verify(&stored, &checkpoints, None, &public, 1);
    let m = measure("audit-verify", report.records, bytes_total, started);
    if !report.ok() || report.records != records {
        bail!("the generated chain does not verify: {:?}", report.faults.first());
    }
    Ok(m)
}

/// Appends per second against a stack (the emulator or AWS), by `writers` concurrent
/// writers of `per_writer` records each. The stack must be provisioned.
pub async fn audit_appends(dep: &mlsec_aws::Deployment, writers: u64, per_writer: u64) -> Result<Measurement> {
    use mlsec_events::audit::{Actor, AuditAction, AuditEntry, Subject};
    use mlsec_runtime::ports::AuditLog;
    let run = mlsec_runtime::now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    let mut chains = Vec::new();
    for w in 0..writers {
        chains.push(dep.audit_chain(&format!("bench{w}"), Actor::worker(format!("bench{w}"))).await?);
    }
    let started = Instant::now();
    for (w, chain) in chains.into_iter().enumerate() {
        tasks.spawn(async move {
            for i in 0..per_writer {
                let entry = AuditEntry::new(
                    AuditAction::GateEvaluated,
                    Subject::new("model", "bench@1"),
                    format!("{run}-{w}-{i}"),
                )
                .reason("passed");
                chain.append(entry).await?;
            }
            Ok::<_, mlsec_runtime::WorkError>(())
        });
    }
    for r in tasks.join_all().await {
        r?;
    }
    Ok(measure(if writers == 1 { "audit-append-1" } else { "audit-append-n" }, writers * per_writer, 0, started))
}
