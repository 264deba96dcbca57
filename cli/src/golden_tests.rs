//! Golden tests of what the CLI prints: the table and the JSON of `status`, `quarantine
//! list/show`, `dlq list`, `models list`, `audit show`, `check` and `contract infer`, on
//! fixed inputs, compared byte for byte with `cli/tests/golden/`. A change of output is a
//! change of these files, reviewed like code: `UPDATE_GOLDEN=1 cargo test -p mlsec-cli
//! golden` rewrites them. JSON field names are what scripts depend on.

use std::path::{Path, PathBuf};

use mlsec_aws::queues::Depth;
use mlsec_events::audit::{Actor, AuditAction, AuditEntry, AuditRecord, Subject};
use mlsec_ingest::{quarantine::QuarantineEntry, reason::ReasonCode};
use mlsec_runtime::{
    contract::Contracts,
    registry::Stage,
    sample::{SampleKind, csv_bytes},
};

use crate::{
    check, dlq,
    infer::{self, InferOptions},
    models::ModelRow,
    ops::{self, ModelStatus, Status, WorkerStatus},
    output,
};

/// 2026-12-01T12:00:00Z.
const NOW: i64 = 1_796_126_400_000;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden(name: &str, got: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: UPDATE_GOLDEN=1 writes it", path.display()));
    assert!(
        got == want,
        "{name} changed (UPDATE_GOLDEN=1 rewrites it after review):\n--- want\n{want}\n--- got\n{got}"
    );
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

fn repo_contracts() -> Contracts {
    Contracts::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts")).unwrap()
}

#[test]
fn golden_status() {
    let depth = |visible, in_flight| Depth { visible, in_flight };
    let s = Status {
        workers: vec![
            WorkerStatus {
                worker: "curate".into(),
                queue: depth(0, 1),
                dlq: depth(3, 0),
                dlq_oldest_age_ms: Some(5_400_000),
                dlq_oldest_error: None,
            },
            WorkerStatus {
                worker: "ingest".into(),
                queue: depth(12, 2),
                dlq: depth(0, 0),
                dlq_oldest_age_ms: None,
                dlq_oldest_error: None,
            },
            WorkerStatus {
                worker: "score".into(),
                queue: depth(0, 0),
                dlq: depth(1, 0),
                dlq_oldest_age_ms: None,
                dlq_oldest_error: Some("sqs:ReceiveMessage: AccessDenied".into()),
            },
        ],
        models: vec![
            ModelStatus {
                model: "fraud_lr".into(),
                version: "3f2a9c1b04de".into(),
                stage: "production".into(),
                auc: Some(0.88312),
                reason: None,
            },
            ModelStatus {
                model: "fraud_lr".into(),
                version: "77aa01c3b9e2".into(),
                stage: "rejected".into(),
                auc: Some(0.61),
                reason: Some("minAuc 0.75 not met".into()),
            },
        ],
    };
    golden("status.txt", &ops::render_status(&s));
    golden("status.json", &json(&s));
}

#[test]
fn golden_quarantine_list_and_show() {
    let entries = vec![QuarantineEntry {
        dataset: "transactions_training".into(),
        sha256: "9b1f".repeat(16),
        reason_code: ReasonCode::RejectThreshold,
        detail: "3 of 100 rows rejected (first: out_of_range at line 7), above the contract's ratio".into(),
        source_key: "bank-core/transactions_training/batch-7.csv".into(),
        quarantined_at_ms: NOW - 3_600_000,
        malware_class: false,
        releasable: true,
        released_by: None,
    }];
    golden("quarantine-list.txt", &ops::render_quarantine_list(&entries));
    golden("quarantine-list.json", &json(&entries));
    golden("quarantine-list-empty.txt", &ops::render_quarantine_list(&[]));
    let doc = serde_json::json!({"reason": {"reason_code": "archive", "evidence": {"byte_offset": 0}, "releasable": false},
        "release": null});
    golden("quarantine-show.txt", &output::fields(&doc));
}

#[test]
fn golden_dlq_list() {
    let groups = vec![
        dlq::Group {
            reason: "contract_version_mismatch".into(),
            event_type: "RawAccepted".into(),
            count: 7,
            unproven: 0,
            oldest_ms: Some(NOW - 2 * 3_600_000),
            newest_ms: Some(NOW - 60_000),
        },
        dlq::Group {
            reason: "unrecorded".into(),
            event_type: "undecodable".into(),
            count: 1,
            unproven: 1,
            oldest_ms: Some(NOW - 30_000),
            newest_ms: Some(NOW - 30_000),
        },
    ];
    golden("dlq-list.txt", &dlq::render_groups("curate", &groups, NOW));
    golden("dlq-list-empty.txt", &dlq::render_groups("curate", &[], NOW));
    golden("dlq-list.json", &json(&serde_json::json!({ "groups": groups })));
}

#[test]
fn golden_models_list() {
    let rows = vec![ModelRow {
        model: "fraud_lr".into(),
        version: "3f2a9c1b04de".into(),
        stage: Stage::Production,
        holdout_auc: Some(0.8831),
        brier: Some(0.0266),
        approvers: vec!["arn:aws:sts::123456789012:assumed-role/mlsec-model-risk/ana".into()],
        reason: None,
    }];
    golden("models-list.txt", &crate::models::render_list(&rows));
    golden("models-list.json", &json(&rows));
}

#[test]
fn golden_audit_show() {
    let entry = AuditEntry {
        actor: Actor::person("arn:aws:sts::123456789012:assumed-role/mlsec-incident-responder/bruno", "123456789012"),
        ..AuditEntry::new(AuditAction::DlqReplayed, Subject::new("queue", "curate"), "cmd-7")
            .reason("INC-42: contract rolled back")
            .attribute("moved", 7)
    };
    let records = vec![AuditRecord { seq: 41, prev_hash: [7; 32], time_ms: NOW, entry, hash: [9; 32] }];
    golden("audit-show.txt", &crate::audit::render_records(&records));
    golden("audit-show.jsonl", &(serde_json::to_string(&records[0]).unwrap() + "\n"));
}

#[test]
fn golden_check() {
    let contracts = repo_contracts();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus");
    for (file, name) in [("formula-plus.csv", "check-reject-threshold"), ("zip-named.csv", "check-archive")] {
        let body = std::fs::read(corpus.join(file)).unwrap();
        let key = format!("bank-core/transactions_training/{file}");
        let r = check::check_bytes(&contracts, file, &key, &body, None, NOW);
        golden(&format!("{name}.txt"), &check::render(&r, false));
        golden(&format!("{name}.json"), &json(&r));
    }
    let sample = csv_bytes(SampleKind::Scoring, 200, 3);
    let r = check::check_bytes(&contracts, "today.csv", "bank-core/transactions_scoring/today.csv", &sample, None, NOW);
    assert_eq!(r.exit_code(), 0);
    golden("check-accepted.txt", &check::render(&r, false));
    golden("check-accepted.json", &json(&r));
}

#[test]
fn golden_contract_infer() {
    let sample = csv_bytes(SampleKind::Training, 500, 5);
    let opts = InferOptions {
        dataset: "card_payments".into(),
        source: "acquirer".into(),
        role: mlsec_events::DatasetRole::Training,
        scoring_model: None,
        domain: None,
    };
    let inferred = infer::infer_bytes("payments.csv", &sample, &opts).unwrap();
    golden("infer-summary.txt", &infer::render(&inferred));
    golden("infer-contract.yaml", &inferred.contract_yaml);
    golden("infer-summary.json", &json(&inferred));
    // Data we did not make (no id column, categories in the data set's own words).
    let gz =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/german-credit/germancredit.csv.gz"))
            .unwrap();
    let opts = InferOptions { dataset: "german_credit".into(), source: "credit".into(), ..opts };
    let inferred = infer::infer_bytes("germancredit.csv.gz", &gz, &opts).unwrap();
    golden("infer-german-credit.yaml", &inferred.contract_yaml);
    golden("infer-german-credit.txt", &infer::render(&inferred));
}
