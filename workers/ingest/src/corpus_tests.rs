//! The hostile corpus (`tests/corpus/`, made by `tests/corpus/generate.py`): every file is
//! dropped through the gateway and must end in quarantine with its expected reason code
//! (and, for row-level problems, the expected first rejected row's reason), with nothing
//! in the raw zone and no panic.

use std::{path::Path, sync::Arc};

use mlsec_events::ObjectQuarantined;
use mlsec_runtime::{Handler, Inbound, contract::Contracts, fakes::FakePorts, inbound::eventbridge_body};

use crate::{IngestConfig, IngestWorker, reason::ReasonCode};

const ACCOUNT: &str = "123456789012";

struct Case {
    file: String,
    reason: String,
    row_reason: Option<String>,
    key: String,
    requester: String,
}

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

fn cases() -> Vec<Case> {
    let manifest = std::fs::read_to_string(corpus_dir().join("expected.tsv")).unwrap();
    let dash = |s: &str, default: String| if s == "-" { default } else { s.to_string() };
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "{l}");
            Case {
                file: f[0].into(),
                reason: f[1].into(),
                row_reason: (f[2] != "-").then(|| f[2].to_string()),
                key: dash(f[3], format!("bank-core/transactions_training/{}", f[0])),
                requester: dash(f[4], ACCOUNT.into()),
            }
        })
        .collect()
}

#[tokio::test]
async fn every_hostile_file_is_quarantined_with_its_reason() {
    let cases = cases();
    assert!(cases.len() >= 40, "the corpus has {} files", cases.len());
    let contracts =
        Arc::new(Contracts::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts")).unwrap());
    let mut failures = Vec::new();
    for case in &cases {
        assert!(ReasonCode::parse(&case.reason).is_some(), "{}: unknown reason {}", case.file, case.reason);
        let body = std::fs::read(corpus_dir().join(&case.file)).unwrap();
        let f = FakePorts::new();
        let config = IngestConfig {
            landing_bucket: "t-landing".into(),
            raw: mlsec_runtime::fakes::bucket("t-raw"),
            quarantine: mlsec_runtime::fakes::bucket("t-quarantine"),
            account_id: Some(ACCOUNT.into()),
        };
        let worker = IngestWorker::new(f.ports(), contracts.clone(), config);
        let version = f.store.seed("t-landing", &case.key, body.clone());
        let detail = serde_json::json!({
            "bucket": {"name": "t-landing"},
            "object": {"key": case.key, "size": body.len(), "etag": "e", "version-id": version},
            "requester": case.requester,
        });
        let msg = Inbound::parse("m", &eventbridge_body("aws.s3", "Object Created", detail)).unwrap();
        if let Err(e) = worker.handle(&msg).await {
            failures.push(format!("{}: handler error {e}", case.file));
            continue;
        }
        let events = f.bus.events();
        let Some(event) = events.first().and_then(|e| e.open::<ObjectQuarantined>().ok()) else {
            failures.push(format!("{}: not quarantined ({} events)", case.file, events.len()));
            continue;
        };
        if event.reason_code != case.reason {
            failures.push(format!("{}: {} instead of {}", case.file, event.reason_code, case.reason));
            continue;
        }
        if let Some(row_reason) = &case.row_reason {
            let doc = f.store.object("t-quarantine", &event.reason_document.key).unwrap().body;
            let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
            let detail = doc["detail"].as_str().unwrap_or_default();
            if !detail.contains(&format!("(first: {row_reason} ")) {
                failures.push(format!("{}: first rejected row is not {row_reason}: {detail}", case.file));
            }
        }
        if f.store.keys().iter().any(|(b, _)| b == "t-raw") {
            failures.push(format!("{}: something reached the raw zone", case.file));
        }
    }
    assert!(failures.is_empty(), "{} of {} corpus files failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// `docs/zones/z1-ingestion.md` names every reason code, and every test it cites exists.
#[test]
fn the_zone_document_covers_every_reason_code_and_cites_real_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("docs/zones/z1-ingestion.md")).unwrap();
    for code in ReasonCode::ALL {
        assert!(doc.contains(&format!("`{}`", code.as_str())), "{} is not documented", code.as_str());
    }
    let cited = mlsec_runtime::doccheck::cited_tests(&doc, |s| ReasonCode::parse(s).is_some());
    assert!(cited.len() > 10, "the document cites tests");
    let missing = mlsec_runtime::doccheck::missing_tests(&root, &cited);
    assert!(missing.is_empty(), "the document cites tests that do not exist: {missing:?}");
}
