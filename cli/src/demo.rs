//! The demo: the whole chain on the local stack, as a new user first sees it.
//!
//! Provisions, starts every worker in this process, subscribes to every pipeline event,
//! drops a generated training file and a hostile file (a ZIP renamed `.csv`), waits for
//! the hostile file to be quarantined and the model to pass govern's gates (staging),
//! approves it as a second identity (an STS session of the model-risk role, not the one
//! that dropped the data), waits for the promotion, drops a scoring file, waits for
//! `RecordsScored`, and prints what happened and where everything lives.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use aws_sdk_s3::primitives::ByteStream;
use mlsec_aws::{Deployment, provision};
use mlsec_runtime::{
    WorkError,
    contract::Contracts,
    ports::ReviewAction,
    sample::{SampleKind, write_csv},
};
use serde::Serialize;

use crate::{
    local::{self, PollOptions, WORKERS},
    ops::{Received, Subscription, drop_bytes, drop_file},
};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub training_rows: usize,
    pub scoring_rows: usize,
    pub out_dir: PathBuf,
    pub timeout: Duration,
}

/// What the demo prints (also returned for tests).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub rows_accepted: i64,
    pub objects_quarantined: Vec<String>,
    pub rows_curated: i64,
    pub rows_rejected_by_dq: i64,
    /// Training rows curate routed to the holdout (read by govern only).
    pub rows_holdout: i64,
    /// One line per dataset judged by the curate zone's data-quality rules.
    pub data_quality: Vec<String>,
    pub datasets_rejected: Vec<String>,
    pub model: String,
    pub model_auc: f64,
    pub model_accuracy: f64,
    /// Govern's holdout AUC and Brier score (the trainer's own figures are `model_auc`).
    pub holdout_auc: f64,
    pub holdout_brier: f64,
    /// Who dropped the training data, and who approved the model (STS ARNs).
    pub dropped_by: String,
    pub approved_by: String,
    pub rows_scored: i64,
    pub rows_flagged: i64,
    pub outputs: Vec<String>,
    pub seconds: f64,
    /// Records on the audit chain, checkpoints that verified, and the verdict.
    pub audit_records: u64,
    pub audit_checkpoints: u64,
    pub audit_faults: Vec<String>,
}

fn uri(v: &serde_json::Value) -> String {
    format!("s3://{}/{}", v["bucket"].as_str().unwrap_or("?"), v["key"].as_str().unwrap_or("?"))
}

fn list(v: &serde_json::Value) -> String {
    let items: Vec<&str> = v.as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

/// `transactions_training@1.1.0: 15/15 rules passed, 0 rows dropped, warnings: none`.
fn dq_line(e: &serde_json::Value) -> String {
    let dq = &e["dq"];
    format!(
        "{}@{}: {}/{} rules passed, {} rows dropped, warnings: {}, rejecting: {}",
        e["dataset"].as_str().unwrap_or("?"),
        e["contract_version"].as_str().unwrap_or("?"),
        dq["passed"].as_i64().unwrap_or(0),
        dq["rules"].as_i64().unwrap_or(0),
        dq["rows_dropped"].as_i64().unwrap_or(0),
        list(&dq["warnings"]),
        list(&dq["rejecting"]),
    )
}

fn summarise(events: &[Received], started: Instant) -> Summary {
    let mut s = Summary::default();
    for r in events {
        let e = &r.event;
        match r.schema.as_str() {
            "RawAccepted" => {
                s.rows_accepted += e["rows"].as_i64().unwrap_or(0);
                s.outputs.push(format!("raw (Z2):        {}", uri(&e["parquet"])));
            }
            "ObjectQuarantined" => {
                s.objects_quarantined.push(format!(
                    "{} ({})",
                    e["source_key"].as_str().unwrap_or("?"),
                    e["reason_code"].as_str().unwrap_or("?")
                ));
                s.outputs.push(format!("quarantine:      {}", uri(&e["reason_document"])));
            }
            "DatasetCurated" => {
                s.rows_curated += e["rows_out"].as_i64().unwrap_or(0);
                s.rows_rejected_by_dq += e["rows_rejected"].as_i64().unwrap_or(0);
                s.outputs.push(format!("curated (Z3):    {}", uri(&e["curated"])));
                if let Some(h) = e["holdout_rows"].as_i64() {
                    s.rows_holdout += h;
                    s.outputs.push(format!("holdout (Z3):    {}", uri(&e["holdout"])));
                }
                s.data_quality.push(dq_line(e));
                s.outputs.push(format!("DQ report (Z3):  {}", uri(&e["dq"]["report"])));
            }
            "DatasetRejected" => {
                s.data_quality.push(dq_line(e));
                s.datasets_rejected.push(format!(
                    "{} (rules: {})",
                    e["dataset"].as_str().unwrap_or("?"),
                    list(&e["dq"]["rejecting"])
                ));
                s.outputs.push(format!("DQ report (Z3):  {}", uri(&e["dq"]["report"])));
            }
            "ModelTrained" => {
                s.model = format!(
                    "{}@{}",
                    e["model_name"].as_str().unwrap_or("?"),
                    e["model_version"].as_str().unwrap_or("?")
                );
                s.model_auc = e["auc"].as_f64().unwrap_or(0.0);
                s.model_accuracy = e["accuracy"].as_f64().unwrap_or(0.0);
                s.outputs.push(format!("model (Z4):      {}", uri(&e["artifact"])));
            }
            "ModelStaged" => {
                s.holdout_auc = e["auc"].as_f64().unwrap_or(0.0);
                s.holdout_brier = e["brier"].as_f64().unwrap_or(0.0);
                s.outputs.push(format!("gates (Z5):      {}", uri(&e["gate_report"])));
            }
            "ModelPromoted" => {
                s.outputs.push(format!("manifest (Z5):   {} (signed envelope)", uri(&e["manifest"])));
            }
            "RecordsScored" => {
                s.rows_scored += e["rows"].as_i64().unwrap_or(0);
                s.rows_flagged += e["flagged"].as_i64().unwrap_or(0);
                s.outputs.push(format!("scored (Z6):     {}", uri(&e["scored"])));
            }
            _ => {}
        }
    }
    s.seconds = started.elapsed().as_secs_f64();
    s
}

/// Runs the demo against `dep`.
pub async fn run(dep: &Deployment, contracts: Arc<Contracts>, opts: &DemoOptions) -> Result<Summary, WorkError> {
    let started = Instant::now();
    provision::provision(dep).await?;
    let all: Vec<String> = mlsec_events::CATALOGUE.iter().map(|s| s.to_string()).collect();
    let sub = Subscription::create(dep, "demo", &all).await?;
    let running = local::start(
        dep,
        contracts.clone(),
        &WORKERS,
        PollOptions { wait_seconds: 1, retry_delay: Duration::from_secs(2) },
    )
    .await?;
    let result = async {
        std::fs::create_dir_all(&opts.out_dir)
            .map_err(|e| WorkError::fatal(format!("{}: {e}", opts.out_dir.display())))?;
        let training = opts.out_dir.join("transactions-2026-11-training.csv");
        let scoring = opts.out_dir.join("transactions-2026-11-28.csv");
        let write = |path: &PathBuf, kind, rows, seed| -> Result<(), WorkError> {
            let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(WorkError::fatal)?);
            write_csv(&mut f, kind, rows, seed).map_err(WorkError::fatal)
        };
        write(&training, SampleKind::Training, opts.training_rows, 42)?;
        write(&scoring, SampleKind::Scoring, opts.scoring_rows, 43)?;
        // Two people, each a session of a people role the provisioner created: a data
        // engineer drops the data, a risk officer approves the model.
        let me = mlsec_aws::identity::whoami(&dep.sts).await?;
        let role = |name: &str| format!("arn:aws:iam::{}:role/{}", me.account, dep.names.role(name));
        let producer = dep.assume_role(&role("producer"), "data-engineer").await?;
        let dropper = mlsec_aws::identity::whoami(&producer.sts).await?;
        println!("dropping {} training rows and a ZIP renamed .csv as {} ...", opts.training_rows, dropper.arn);
        drop_file(&producer, &training, "bank-core", "transactions_training").await?;
        let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
        zip.extend_from_slice(b"not really a spreadsheet");
        drop_bytes(&producer, "bank-core/transactions_training/invoice.csv", ByteStream::from(zip)).await?;
        let mut events = sub.wait_for(&["ObjectQuarantined", "ModelTrained"], opts.timeout).await?;
        events.extend(sub.wait_for(&["ModelStaged"], opts.timeout).await?);
        let staged =
            events.iter().rev().find(|e| e.schema == "ModelStaged").map(|e| e.event.clone()).unwrap_or_default();
        let (model, version) =
            (staged["model_name"].as_str().unwrap_or("?"), staged["model_version"].as_str().unwrap_or("?"));
        println!(
            "{model}@{version}: candidate -> staging (govern's gates passed on the holdout: AUC {:.3}, Brier {:.4})",
            staged["auc"].as_f64().unwrap_or(0.0),
            staged["brier"].as_f64().unwrap_or(0.0)
        );
        let reviewer = dep.assume_role(&role("model-risk"), "risk-officer").await?;
        let decided = crate::models::decide(
            &reviewer,
            &contracts,
            model,
            version,
            ReviewAction::Approve,
            "demo: gate report reviewed",
            opts.timeout,
        )
        .await?;
        println!("approved by {} (the training data was dropped by {}) -> {}", decided.by, dropper.arn, decided.stage);
        events.extend(sub.wait_for(&["ModelPromoted"], opts.timeout).await?);
        println!("model promoted; dropping {} scoring rows ...", opts.scoring_rows);
        drop_file(&producer, &scoring, "bank-core", "transactions_scoring").await?;
        events.extend(sub.wait_for(&["RecordsScored"], opts.timeout).await?);
        let mut s = summarise(&events, started);
        (s.dropped_by, s.approved_by) = (dropper.arn, decided.by);
        Ok::<_, WorkError>(s)
    };
    let summary = result.await;
    let stopped = running.stop().await;
    let mut summary = summary?;
    stopped?;
    // Seal the run with a checkpoint in the operator's name, then verify the whole chain.
    let (actor, _) = crate::ops::operator(dep).await?;
    let chain = dep.audit_chain("operator", actor).await?;
    if let Some(h) = chain.head().await? {
        chain.checkpoint(h.head).await?;
    }
    let report = crate::audit::load(dep).await.map_err(WorkError::fatal)?.verify(1);
    summary.audit_records = report.records;
    summary.audit_checkpoints = report.checkpoints;
    summary.audit_faults = report.faults.iter().map(ToString::to_string).collect();
    Ok(summary)
}

/// Human-readable summary.
pub fn print(s: &Summary) {
    println!();
    println!("== mlsec demo: the whole chain ran on the local stack in {:.1} s ==", s.seconds);
    println!("rows accepted (Z1->Z2):   {}", s.rows_accepted);
    println!("objects quarantined:      {}", s.objects_quarantined.len());
    for q in &s.objects_quarantined {
        println!("  - {q}");
    }
    println!(
        "rows curated (Z3):        {} (dropped by row rules: {}; {} more held out for Z5)",
        s.rows_curated, s.rows_rejected_by_dq, s.rows_holdout
    );
    println!(
        "data quality (Z3):        {} datasets judged, {} rejected",
        s.data_quality.len(),
        s.datasets_rejected.len()
    );
    for d in &s.data_quality {
        println!("  - {d}");
    }
    println!(
        "model (Z4):               {}  trainer's validation AUC {:.3}  accuracy {:.3}",
        s.model, s.model_auc, s.model_accuracy
    );
    println!(
        "governance (Z5):          holdout AUC {:.3}  Brier {:.4}, every gate passed (fairness too) -> staging",
        s.holdout_auc, s.holdout_brier
    );
    println!("  approved by:            {} (data dropped by {})", s.approved_by, s.dropped_by);
    println!("  -> production, manifest KMS-signed and bound to the approval");
    println!("rows scored (Z6):         {} ({} flagged)", s.rows_scored, s.rows_flagged);
    println!("outputs (all SSE-KMS, zone keys):");
    for o in &s.outputs {
        println!("  {o}");
    }
    match s.audit_faults.first() {
        None => println!(
            "audit (Z9):               {} records, {} signed checkpoint{}, chain verified",
            s.audit_records,
            s.audit_checkpoints,
            if s.audit_checkpoints == 1 { "" } else { "s" }
        ),
        Some(f) => println!("audit (Z9):               {} records, chain NOT verified: {f}", s.audit_records),
    }
}
