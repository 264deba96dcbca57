//! `mlsec check FILE --dataset NAME`: the verdict the pipeline would reach on a file,
//! before it is dropped, offline (no AWS). It runs the gateway's own decision code
//! ([`mlsec_ingest::decide::check_object`]: contract, size, gate, rejected-row threshold)
//! and, on what the gateway accepts, the curate zone's own data-quality engine
//! ([`mlsec_curate::transform::curate_split`], with the holdout split) on the gateway's Parquet.
//!
//! What it cannot see offline, and says so: whether the same bytes were accepted before
//! (the ledger), a recorded release of a quarantined object, and who the S3 requester
//! will be (the writer is assumed allowed unless `--requester` is given).

use std::path::Path;

use anyhow::{Context, Result, bail};
use mlsec_ingest::{
    decide::{Writer, check_object},
    reason::Evidence,
    validate::Accepted,
};
use mlsec_runtime::contract::Contracts;
use serde::Serialize;

use crate::output::{Table, Tone, clean, paint};

/// Rejected rows listed in a report (the count is always whole).
const LISTED_ROW_REJECTS: usize = 20;

/// What the pipeline would do with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Z1 accepts it and Z3's error rules pass: it would be curated.
    Accepted,
    /// Z1 quarantines the whole object (reason code and evidence).
    Quarantined,
    /// Z1 accepts it, Z3 rejects the dataset (a failed error-severity threshold).
    DatasetRejected,
    /// Z1 accepts it, the curate worker cannot process it and parks it (reason code
    /// `unreadable_raw_parquet` or `curate_panicked`, as the worker's failure record says).
    Parked,
}

#[derive(Debug, Serialize)]
pub struct RowRejectOut {
    pub line: u64,
    pub column: Option<String>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct RuleOut {
    pub id: String,
    pub metric: String,
    pub columns: Vec<String>,
    pub severity: String,
    pub level: String,
    pub threshold: String,
    pub failed: u64,
    pub measured: f64,
    pub rows_dropped: u64,
    /// `pass`, `warning`, `rows_dropped` or `dataset_rejected`.
    pub outcome: String,
}

/// `mlsec check`'s report (`--output json` prints it as is; field names are stable).
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub file: String,
    pub landing_key: String,
    pub dataset: Option<String>,
    pub contract: Option<String>,
    pub verdict: Verdict,
    /// Z1's reason code when quarantined.
    pub reason_code: Option<String>,
    pub detail: Option<String>,
    pub evidence: Option<Evidence>,
    pub format: Option<String>,
    pub gzip: Option<bool>,
    pub rows_read: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// The first rejected rows (Z1), in file order.
    pub row_rejects: Vec<RowRejectOut>,
    /// Z3's rules, in contract order (empty when Z1 quarantines).
    pub dq: Vec<RuleOut>,
    /// Rows Z3's row rules would drop.
    pub dq_rows_dropped: u64,
    /// Rule ids that reject the dataset.
    pub dq_rejecting: Vec<String>,
    /// What an offline check cannot know.
    pub not_checked: Vec<String>,
}

impl CheckReport {
    /// The process exit code: 0 accepted, 1 quarantined, rejected or parked.
    pub fn exit_code(&self) -> i32 {
        match self.verdict {
            Verdict::Accepted => 0,
            Verdict::Quarantined | Verdict::DatasetRejected | Verdict::Parked => 1,
        }
    }
}

/// Who will write the object (`--requester`, `--account`); `None`: an allowed writer.
#[derive(Debug, Clone, Default)]
pub struct Requester {
    pub requester: Option<String>,
    pub own_account: Option<String>,
}

/// Checks `file` as if dropped for `dataset` (its landing prefix plus the file name), or
/// at `key` when given.
pub fn check_file(
    contracts: &Contracts,
    file: &Path,
    dataset: &str,
    key: Option<&str>,
    requester: Option<&Requester>,
    now_ms: i64,
) -> Result<CheckReport> {
    let Some(contract) = contracts.dataset(dataset) else {
        let known: Vec<&str> = contracts.datasets.iter().map(|d| d.dataset.as_str()).collect();
        bail!("no contract for dataset {dataset}; known: {}", known.join(", "));
    };
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("object");
    let key = key.map(str::to_string).unwrap_or_else(|| format!("{}{name}", contract.landing_prefix));
    if let Some(other) = contracts.for_landing_key(&key).filter(|c| c.dataset != dataset) {
        bail!("--key {key} lands in dataset {}, not {dataset}", other.dataset);
    }
    // What the size alone decides, as the gateway decides it from HeadObject, before a
    // byte is read.
    let size = std::fs::metadata(file).with_context(|| format!("read {}", file.display()))?.len();
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    if let Some(r) = mlsec_ingest::decide::refused_before_reading(contracts, &key, size, writer(requester)) {
        let mut report = empty_report(contracts, &file.display().to_string(), &key, requester.is_none());
        report.reason_code = Some(r.reason_code.as_str().to_string());
        report.detail = Some(r.detail);
        report.evidence = Some(r.evidence);
        return Ok(report);
    }
    let body = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    Ok(check_bytes(contracts, &file.display().to_string(), &key, &body, requester, now_ms))
}

/// [`check_file`] on bytes already read.
pub fn check_bytes(
    contracts: &Contracts,
    file: &str,
    key: &str,
    body: &[u8],
    requester: Option<&Requester>,
    now_ms: i64,
) -> CheckReport {
    let mut report = empty_report(contracts, file, key, requester.is_none());
    let (contract, accepted) = match check_object(contracts, key, body, writer(requester), now_ms) {
        Ok(v) => v,
        Err(refused) => {
            let (r, parsed) = *refused;
            report.reason_code = Some(r.reason_code.as_str().to_string());
            report.detail = Some(r.detail);
            report.evidence = Some(r.evidence);
            if let (Some(parsed), Some(c)) = (parsed, contracts.for_landing_key(key)) {
                rows(&mut report, c, &parsed);
            }
            return report;
        }
    };
    rows(&mut report, contract, &accepted);
    // Z3 on the gateway's Parquet, as the curate worker runs it (the holdout split of a
    // training dataset included): the curated output itself is not needed (its keys are
    // the deployment's, not ours), only the DQ report, which judges raw values.
    let parquet = bytes::Bytes::from(accepted.parquet);
    let scratch_key = [0u8; 32];
    let split = (contract.role == mlsec_events::DatasetRole::Training).then(|| mlsec_curate::transform::HoldoutSplit {
        key: scratch_key.to_vec(),
        column: contract.primary_key().map(|pk| pk.name.clone()),
        fraction: contract.holdout_fraction,
        out: std::io::sink(),
    });
    let curated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        mlsec_curate::transform::curate_split(
            parquet,
            contract,
            &scratch_key,
            &[],
            now_ms,
            std::io::sink(),
            std::io::sink(),
            split,
        )
    }));
    match curated {
        Err(_) => {
            // The worker turns a panic into a permanent failure: parked, not rejected.
            report.verdict = Verdict::Parked;
            report.reason_code = Some("curate_panicked".into());
            report.detail = Some("the curate zone's transform panicked on this input".into());
        }
        Ok(Err(mlsec_curate::error::CurateError::Input(e))) => {
            // The curate worker parks it (`unreadable_raw_parquet`), no DatasetRejected.
            report.verdict = Verdict::Parked;
            report.reason_code = Some("unreadable_raw_parquet".into());
            report.detail = Some(format!("the curate zone cannot read the gateway's Parquet: {e}"));
        }
        Ok(Err(mlsec_curate::error::CurateError::Output(e))) => {
            // The worker retries a failed write (transient); here the outputs are sinks,
            // which do not fail, so this is the check's own failure.
            report.verdict = Verdict::Parked;
            report.reason_code = Some("transient".into());
            report.detail = Some(format!("writing the curated output failed (the worker would retry): {e}"));
        }
        Ok(Ok(curated)) => {
            let dq = curated.report;
            report.dq_rows_dropped = dq.rows_dropped;
            report.dq_rejecting = dq.rejecting();
            report.dq = dq
                .rules
                .into_iter()
                .map(|r| RuleOut {
                    id: r.id,
                    metric: r.metric,
                    columns: r.columns,
                    severity: r.severity.as_str().to_string(),
                    level: r.level.to_string(),
                    threshold: r.threshold,
                    failed: r.failed,
                    measured: r.measured,
                    rows_dropped: r.rows_dropped,
                    outcome: r.outcome.to_string(),
                })
                .collect();
            report.verdict = if report.dq_rejecting.is_empty() { Verdict::Accepted } else { Verdict::DatasetRejected };
        }
    }
    report
}

/// The gateway's writer from `--requester`/`--account`; none given: an allowed writer.
fn writer(requester: Option<&Requester>) -> Writer<'_> {
    match requester {
        None => Writer::Trusted,
        Some(r) => Writer::Requester { requester: r.requester.as_deref(), own_account: r.own_account.as_deref() },
    }
}

/// A report naming the file, its landing key and contract, with nothing decided yet.
fn empty_report(contracts: &Contracts, file: &str, key: &str, writer_assumed: bool) -> CheckReport {
    let mut not_checked = vec![
        "whether these bytes were accepted before (the gateway's ledger)".to_string(),
        "releases recorded for a quarantined copy".to_string(),
    ];
    if writer_assumed {
        not_checked.push("the S3 requester: assumed to be a writer the contract allows".into());
    }
    let contract = contracts.for_landing_key(key);
    CheckReport {
        file: file.to_string(),
        landing_key: key.to_string(),
        dataset: contract.map(|c| c.dataset.clone()),
        contract: contract.map(|c| format!("{}@{}", c.id, c.version)),
        verdict: Verdict::Quarantined,
        reason_code: None,
        detail: None,
        evidence: None,
        format: None,
        gzip: None,
        rows_read: 0,
        rows_accepted: 0,
        rows_rejected: 0,
        row_rejects: Vec::new(),
        dq: Vec::new(),
        dq_rows_dropped: 0,
        dq_rejecting: Vec::new(),
        not_checked,
    }
}

/// What the gate read: rows, rejected rows and the first of them.
fn rows(report: &mut CheckReport, contract: &mlsec_runtime::contract::DatasetContract, accepted: &Accepted<Vec<u8>>) {
    let names: Vec<&str> = contract.columns.iter().map(|c| c.name.as_str()).collect();
    report.format = Some(accepted.format.to_string());
    report.gzip = Some(accepted.gzip);
    report.rows_read = accepted.rows_read;
    report.rows_accepted = accepted.rows;
    report.rows_rejected = accepted.rejects.len() as u64;
    report.row_rejects = accepted
        .rejects
        .iter()
        .take(LISTED_ROW_REJECTS)
        .map(|r| RowRejectOut {
            line: r.line,
            column: r.column.and_then(|i| names.get(i as usize)).map(|s| s.to_string()),
            reason: r.reason.as_str().to_string(),
        })
        .collect();
}

/// The report for people.
pub fn render(r: &CheckReport, colour: bool) -> String {
    let mut out = String::new();
    let verdict = match r.verdict {
        Verdict::Accepted => paint("ACCEPTED", Tone::Good, colour),
        Verdict::Quarantined => paint("QUARANTINED", Tone::Bad, colour),
        Verdict::DatasetRejected => paint("DATASET REJECTED", Tone::Bad, colour),
        Verdict::Parked => paint("PARKED", Tone::Bad, colour),
    };
    let mut head = Table::new(["file".to_string(), clean(&r.file)]);
    head.row(["lands at", &r.landing_key]);
    if let (Some(d), Some(c)) = (&r.dataset, &r.contract) {
        head.row(["dataset", &format!("{d} ({c})")]);
    }
    let verdict_row = match (&r.reason_code, r.verdict) {
        (Some(code), Verdict::Parked) => ["verdict (Z3)".to_string(), format!("{verdict} {}", clean(code))],
        (Some(code), _) => ["verdict (Z1)".to_string(), format!("{verdict} {}", clean(code))],
        (None, Verdict::DatasetRejected) => {
            ["verdict (Z3)".to_string(), format!("{verdict} by {}", clean(&r.dq_rejecting.join(", ")))]
        }
        (None, _) => ["verdict".to_string(), verdict],
    };
    head.painted_row(verdict_row);
    if let Some(d) = &r.detail {
        head.row(["detail", d]);
    }
    if let Some(e) = &r.evidence {
        let mut at = Vec::new();
        if let Some(l) = e.line {
            at.push(format!("line {l}"));
        }
        if let Some(b) = e.byte_offset {
            at.push(format!("byte {b}"));
        }
        if let Some(c) = &e.column {
            at.push(format!("column {c}"));
        }
        if let Some(rule) = &e.rule {
            at.push(format!("rule {rule}"));
        }
        if !at.is_empty() {
            head.row(["evidence", &at.join(", ")]);
        }
    }
    if let Some(format) = &r.format {
        let gz = if r.gzip == Some(true) { ", gzip" } else { "" };
        head.row([
            "rows (Z1)",
            &format!("{} read, {} accepted, {} rejected ({format}{gz})", r.rows_read, r.rows_accepted, r.rows_rejected),
        ]);
    }
    out.push_str(&head.render());
    if !r.row_rejects.is_empty() {
        let shown = if r.rows_rejected as usize > r.row_rejects.len() {
            format!(" (first {} of {})", r.row_rejects.len(), r.rows_rejected)
        } else {
            String::new()
        };
        out.push_str(&format!("\nrejected rows{shown}\n"));
        let mut t = Table::new(["line", "column", "reason"]);
        for x in &r.row_rejects {
            t.row([x.line.to_string(), x.column.clone().unwrap_or_else(|| "-".into()), x.reason.clone()]);
        }
        out.push_str(&indent(&t.render()));
    }
    if !r.dq.is_empty() {
        out.push_str(&format!("\ndata-quality rules (Z3): {} rows would be dropped\n", r.dq_rows_dropped));
        let mut t = Table::new(["rule", "metric", "severity", "threshold", "measured", "outcome"]);
        // Passing `required` rules (one per required column) are one line.
        let required_ok = r.dq.iter().filter(|x| x.metric == "required" && x.outcome == "pass").count();
        if required_ok > 0 {
            t.painted_row([
                format!("{required_ok} required columns"),
                "required".into(),
                "error".into(),
                "not null (drops the row)".into(),
                "0".into(),
                paint("pass", Tone::Good, colour),
            ]);
        }
        for x in r.dq.iter().filter(|x| !(x.metric == "required" && x.outcome == "pass")) {
            let tone = match x.outcome.as_str() {
                "pass" => Tone::Good,
                "dataset_rejected" => Tone::Bad,
                _ => Tone::Warn,
            };
            t.painted_row([
                clean(&x.id),
                clean(&x.metric),
                clean(&x.severity),
                clean(&x.threshold),
                trim_float(x.measured),
                paint(&clean(&x.outcome), tone, colour),
            ]);
        }
        out.push_str(&indent(&t.render()));
    }
    out.push_str(&format!("\nnot checked offline: {}\n", clean(&r.not_checked.join("; "))));
    out
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v:.3}") }
}
