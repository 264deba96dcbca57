//! `mlsec models lineage|card`: where a model version came from and what it produced,
//! from the records the pipeline keeps (the registry, object metadata, IAM). Each object
//! the registry pins is checked at that version against the digest recorded for it; the
//! training data's files are found by their content-addressed keys and the curated file's
//! digest is compared with the registry's.
//!
//! Nothing here reads data: objects are looked at with `HeadObject` (which needs no zone
//! key), and the only bodies read are the gate report and the manifest envelope (models
//! zone, no personal data), verified against their recorded digests.

use std::fmt::Write as _;

use mlsec_aws::{
    Deployment,
    s3::{SHA256_METADATA, SOURCE_METADATA},
};
use mlsec_events::ObjectRef;
use mlsec_lake::layout;
use mlsec_runtime::{
    WorkError,
    contract::Contracts,
    ports::{ModelRecord, get_verified},
};
use serde::Serialize;

/// One thing in a model's lineage.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: String,
    /// Z1 … Z6, or `people`.
    pub zone: String,
    pub kind: String,
    /// `s3://bucket/key`, an ARN, or a KMS key id.
    pub what: String,
    pub version: Option<String>,
    pub sha256: Option<String>,
    pub detail: String,
    /// For objects the registry pins (holdout, model, gate report, manifest) and the curated
    /// dataset (compared with the record's training digest): `verified`, `missing`, `digest
    /// mismatch`, `no recorded digest`, `not readable` or `unpinned`. Objects found by their
    /// content-addressed keys (raw original, DQ report, scored outputs) show `-` when
    /// present; the landing object is named, not checked.
    pub check: String,
}

/// `from` produced (or decided) `to`.
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    pub model: String,
    pub version: String,
    pub stage: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl Lineage {
    /// Whether every stored object checked out.
    pub fn intact(&self) -> bool {
        self.nodes.iter().all(|n| matches!(n.check.as_str(), "verified" | "-"))
    }

    fn add(&mut self, node: Node, from: Option<(&str, &str)>) {
        if let Some((from, label)) = from {
            self.edges.push(Edge { from: from.to_string(), to: node.id.clone(), label: label.to_string() });
        }
        self.nodes.push(node);
    }

    /// One line per node.
    pub fn table(&self) -> String {
        let mut out = format!("lineage of {}@{} ({})\n", self.model, self.version, self.stage);
        let _ = writeln!(out, "{:<8} {:<22} {:<16} {:<14} what", "zone", "kind", "check", "sha256");
        for n in &self.nodes {
            let sha = n.sha256.as_deref().map_or("-".to_string(), |s| s.chars().take(12).collect());
            let _ = writeln!(out, "{:<8} {:<22} {:<16} {:<14} {}", n.zone, n.kind, n.check, sha, n.what);
            if !n.detail.is_empty() {
                let _ = writeln!(out, "{:<8} {:<22} {:<16} {:<14}   {}", "", "", "", "", n.detail);
            }
        }
        out
    }

    /// A Graphviz picture (`dot -Tsvg` renders it).
    pub fn dot(&self) -> String {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = format!(
            "digraph \"{}@{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n",
            esc(&self.model),
            esc(&self.version)
        );
        for n in &self.nodes {
            let colour = match n.check.as_str() {
                "verified" | "-" => "black",
                _ => "red",
            };
            let label = format!("{} {}\\n{}\\n{}", n.zone, esc(&n.kind), esc(short(&n.what)), esc(&n.check));
            let _ = writeln!(out, "  \"{}\" [label=\"{label}\", color={colour}];", esc(&n.id));
        }
        for e in &self.edges {
            let _ = writeln!(out, "  \"{}\" -> \"{}\" [label=\"{}\"];", esc(&e.from), esc(&e.to), esc(&e.label));
        }
        out.push_str("}\n");
        out
    }
}

/// The last path segment of a URI or ARN (what fits in a picture).
fn short(what: &str) -> &str {
    let what = what.split('?').next().unwrap_or(what);
    what.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(what)
}

/// What `HeadObject` says about one object version.
struct Seen {
    version: Option<String>,
    sha256: Option<String>,
    source: Option<String>,
    denied: bool,
}

async fn head(dep: &Deployment, bucket: &str, key: &str, version: Option<&str>) -> Result<Option<Seen>, WorkError> {
    let out = dep.s3.head_object().bucket(bucket).key(key).set_version_id(version.map(str::to_string)).send().await;
    match out {
        Ok(o) => Ok(Some(Seen {
            version: o.version_id().map(str::to_string),
            sha256: o.metadata().and_then(|m| m.get(SHA256_METADATA)).cloned(),
            source: o.metadata().and_then(|m| m.get(SOURCE_METADATA)).cloned(),
            denied: false,
        })),
        Err(e) if mlsec_aws::errors::is_missing(&e) || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            Ok(None)
        }
        // Denied: say so rather than fail the whole lineage (without ListBucket, S3 answers
        // a missing object with 403 too).
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
            Ok(Some(Seen { version: None, sha256: None, source: None, denied: true }))
        }
        Err(e) => Err(mlsec_aws::errors::classify("s3:HeadObject", e)),
    }
}

/// A node for a claim check, checked at its pinned version.
async fn object(
    dep: &Deployment,
    id: &str,
    zone: &str,
    kind: &str,
    o: &ObjectRef,
    detail: String,
) -> Result<Node, WorkError> {
    let check = match (&o.version_id, head(dep, &o.bucket, &o.key, o.version_id.as_deref()).await?) {
        (_, None) => "missing",
        (_, Some(s)) if s.denied => "not readable",
        (_, Some(s)) => match s.sha256.as_deref() {
            None => "no recorded digest",
            Some(d) if d != o.sha256 => "digest mismatch",
            Some(_) if o.version_id.is_none() => "unpinned",
            Some(_) => "verified",
        },
    }
    .to_string();
    Ok(Node {
        id: id.into(),
        zone: zone.into(),
        kind: kind.into(),
        what: format!("s3://{}/{}", o.bucket, o.key),
        version: o.version_id.clone(),
        sha256: Some(o.sha256.clone()),
        detail,
        check,
    })
}

/// A node for an object the records name only by key (the latest version is looked at).
async fn derived(
    dep: &Deployment,
    id: &str,
    zone: &str,
    kind: &str,
    bucket: &str,
    key: &str,
) -> Result<(Node, Option<String>), WorkError> {
    let seen = head(dep, bucket, key, None).await?;
    let node = Node {
        id: id.into(),
        zone: zone.into(),
        kind: kind.into(),
        what: format!("s3://{bucket}/{key}"),
        version: seen.as_ref().and_then(|s| s.version.clone()),
        sha256: seen.as_ref().and_then(|s| s.sha256.clone()),
        detail: String::new(),
        check: match &seen {
            None => "missing".into(),
            Some(s) if s.denied => "not readable".into(),
            Some(_) => "-".into(),
        },
    };
    Ok((node, seen.and_then(|s| s.source)))
}

/// The lineage of `model@version`: landing object → raw → curated (contract, DQ report) →
/// holdout → model → gate report → approvals → manifest and signing key → scored outputs.
pub async fn lineage(
    dep: &Deployment,
    contracts: &Contracts,
    model: &str,
    version: &str,
) -> Result<Lineage, WorkError> {
    let record = crate::models::show(dep, model, version).await?;
    let mut l = Lineage {
        model: model.into(),
        version: version.into(),
        stage: record.stage.to_string(),
        nodes: Vec::new(),
        edges: Vec::new(),
    };
    let ports = dep.ports("operator");
    let dataset = record.dataset.clone();
    // The training data's files are named by the landing object's SHA-256; the holdout's
    // claim check gives it.
    let stem = record
        .evaluation
        .as_ref()
        .and_then(|e| e.holdout.key.rsplit('/').next())
        .and_then(|f| f.strip_suffix(".parquet"))
        .map(str::to_string);
    let dropper = match record.dropped_by.as_deref() {
        Some(id) => ports.principals.resolve(id).await?.map_or(format!("{id} (unknown to IAM)"), |p| p.arn),
        None => "unknown".into(),
    };
    if let Some(stem) = &stem {
        let (mut original, source) = derived(
            dep,
            "raw-original",
            "Z2",
            "raw original copy",
            &dep.names.bucket("raw"),
            &layout::raw::original(&dataset, stem),
        )
        .await?;
        original.sha256 = original.sha256.or_else(|| Some(stem.clone()));
        let landing = Node {
            id: "landing".into(),
            zone: "Z1".into(),
            kind: "landing object".into(),
            what: source.clone().unwrap_or_else(|| format!("s3://{}/… (sha256 {stem})", dep.names.bucket("landing"))),
            version: source.as_deref().and_then(|s| s.split_once("?versionId=")).map(|(_, v)| v.to_string()),
            sha256: Some(stem.clone()),
            detail: format!("dropped by {dropper}"),
            check: "-".into(),
        };
        l.add(landing, None);
        l.add(original, Some(("landing", "ingest: copy")));
        let curated_key = layout::curated::parquet(&dataset, &record.contract_version, stem);
        let (mut curated, _) =
            derived(dep, "curated", "Z3", "curated dataset", &dep.names.bucket("curated"), &curated_key).await?;
        curated.check = match &curated.sha256 {
            _ if curated.check != "-" => curated.check.clone(),
            Some(d) if *d == record.dataset_digest => "verified".into(),
            Some(_) => "digest mismatch".into(),
            None => "no recorded digest".into(),
        };
        curated.detail = format!("contract {dataset}@{}", record.contract_version);
        l.add(curated, Some(("raw-original", "ingest, curate: gate, quality rules, pseudonymise")));
        let (dq, _) = derived(
            dep,
            "dq-report",
            "Z3",
            "data-quality report",
            &dep.names.bucket("curated"),
            &layout::curated::dq_report(&dataset, &record.contract_version, stem),
        )
        .await?;
        l.add(dq, Some(("curated", "curate: rules judged")));
    }
    if let Some(e) = &record.evaluation {
        let detail = format!("{} rows, routed by a keyed hash away from the trainer", e.holdout_rows);
        let from = stem.as_ref().map(|_| ("raw-original", "curate: keyed-hash split"));
        l.add(object(dep, "holdout", "Z3", "holdout", &e.holdout, detail).await?, from);
    }
    let from = stem.as_ref().map(|_| ("curated", "train: fit"));
    let detail = format!("{} ({}), trainer's AUC {:.4}", record.algorithm, record.params, record.trainer_auc);
    l.add(object(dep, "model", "Z4", "model artifact", &record.artifact, detail).await?, from);
    if let Some(e) = &record.evaluation {
        let verdict = if e.passed { "passed".to_string() } else { format!("failed: {}", e.failed.join(", ")) };
        let detail = format!("holdout AUC {:.4}, Brier {:.4}; {verdict}", e.auc, e.brier);
        l.add(
            object(dep, "gate-report", "Z5", "gate report", &e.report, detail).await?,
            Some(("model", "govern: evaluate")),
        );
        l.edges.push(Edge { from: "holdout".into(), to: "gate-report".into(), label: "scored by govern".into() });
    }
    for (i, a) in record.approvals.iter().enumerate() {
        let node = Node {
            id: format!("approval-{i}"),
            zone: "people".into(),
            kind: "approval".into(),
            what: a.approver_arn.clone(),
            version: None,
            sha256: Some(a.gate_report_sha256.clone()),
            detail: format!("{}: {}", mlsec_runtime::time::format_rfc3339_ms(a.at_ms), a.reason),
            check: "-".into(),
        };
        l.add(node, Some(("gate-report", "reviewed")));
    }
    if let Some(m) = &record.manifest {
        let key = record.signing_key_id.clone().unwrap_or_default();
        l.add(
            object(dep, "manifest", "Z5", "signed manifest", m, format!("signed with {key}")).await?,
            Some(("model", "govern: sign")),
        );
        for i in 0..record.approvals.len() {
            l.edges.push(Edge { from: format!("approval-{i}"), to: "manifest".into(), label: "bound".into() });
        }
    }
    // Scored outputs: every scoring dataset of this model, under this version.
    let scored = dep.names.bucket("scored");
    for ds in contracts.datasets.iter().filter(|d| d.scoring_model.as_deref() == Some(model)) {
        let prefix = format!("{}/model={model}@{version}/", ds.dataset);
        let mut keys = Vec::new();
        let mut pages = dep.s3.list_objects_v2().bucket(&scored).prefix(&prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| mlsec_aws::errors::classify("s3:ListObjectsV2", e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        }
        for (i, key) in keys.iter().enumerate() {
            let (node, _) =
                derived(dep, &format!("scored-{}-{i}", ds.dataset), "Z6", "scored output", &scored, key).await?;
            let from = if record.manifest.is_some() { "manifest" } else { "model" };
            l.add(node, Some((from, "score: verified, then scored")));
        }
    }
    Ok(l)
}

/// Model card: what the model is, what it was judged on, how it did, who approved it.
pub struct Card {
    pub markdown: String,
    pub html: String,
}

pub async fn card(dep: &Deployment, contracts: &Contracts, model: &str, version: &str) -> Result<Card, WorkError> {
    let record = crate::models::show(dep, model, version).await?;
    let spec = contracts.model(model);
    let lineage = lineage(dep, contracts, model, version).await?;
    let report: Option<serde_json::Value> = match &record.evaluation {
        Some(e) => {
            let bytes = get_verified(dep.ports("operator").store.as_ref(), &e.report, &e.report.sha256).await?;
            Some(serde_json::from_slice(&bytes).map_err(|err| WorkError::permanent("gate_report_unreadable", err))?)
        }
        None => None,
    };
    let doc = CardDoc::new(&record, spec.map(|s| s.description.as_str()), report.as_ref(), &lineage);
    Ok(Card { markdown: doc.markdown(), html: doc.html() })
}

/// A titled table of the card: title, column heads, rows.
type Section = (&'static str, Vec<&'static str>, Vec<Vec<String>>);

/// The card's content, rendered twice (Markdown and HTML) from the same rows.
struct CardDoc {
    title: String,
    facts: Vec<(String, String)>,
    gates: Vec<[String; 5]>,
    approvals: Vec<[String; 3]>,
    lineage: Vec<[String; 4]>,
    history: Vec<[String; 4]>,
}

impl CardDoc {
    fn new(r: &ModelRecord, description: Option<&str>, report: Option<&serde_json::Value>, l: &Lineage) -> Self {
        let e = r.evaluation.as_ref();
        let num = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.4}"));
        let mut facts = vec![
            ("Model".to_string(), format!("{}@{}", r.model_name, r.model_version)),
            ("Description".into(), description.unwrap_or("-").to_string()),
            ("Stage".into(), r.stage.to_string()),
            ("Algorithm".into(), format!("{} {}", r.algorithm, r.params)),
            ("Training data".into(), format!("{}@{} (sha256 {})", r.dataset, r.contract_version, r.dataset_digest)),
            ("Training rows".into(), format!("{} fitted, {} kept back by the trainer", r.train_rows, r.test_rows)),
        ];
        if let Some(e) = e {
            facts.push((
                "Holdout".into(),
                format!("{} rows the trainer never read (sha256 {})", e.holdout_rows, e.holdout.sha256),
            ));
            facts.push(("Holdout AUC".into(), format!("{:.4} (the trainer reported {:.4})", e.auc, r.trainer_auc)));
            facts.push(("Brier score".into(), format!("{:.4}", e.brier)));
            facts.push(("Accuracy".into(), format!("{:.4}", e.accuracy)));
            if let Some((v, auc)) = &e.champion {
                facts.push(("Champion".into(), format!("{v}: AUC {auc:.4} on the same holdout")));
            }
            facts.push((
                "Verdict".into(),
                if e.passed { "every gate passed".into() } else { format!("failed: {}", e.failed.join(", ")) },
            ));
        }
        if let Some(m) = &r.manifest {
            facts.push((
                "Manifest".into(),
                format!("s3://{}/{} (signed with {})", m.bucket, m.key, r.signing_key_id.as_deref().unwrap_or("-")),
            ));
        }
        facts.push((
            "Lineage".into(),
            if l.intact() { "every stored object verified".into() } else { "NOT INTACT: see the lineage table".into() },
        ));
        let gates = report
            .and_then(|g| g["gates"].as_array())
            .map(|gs| {
                gs.iter()
                    .map(|g| {
                        let ci = match (g["ci_low"].as_f64(), g["ci_high"].as_f64()) {
                            (Some(a), Some(b)) => format!("[{a:.3}, {b:.3}]"),
                            _ => "-".into(),
                        };
                        [
                            g["id"].as_str().unwrap_or("?").to_string(),
                            num(&g["value"]),
                            ci,
                            num(&g["threshold"]),
                            format!(
                                "{} {}",
                                if g["passed"].as_bool() == Some(true) { "pass" } else { "FAIL" },
                                g["detail"].as_str().unwrap_or("")
                            ),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        let approvals = r
            .approvals
            .iter()
            .map(|a| [a.approver_arn.clone(), mlsec_runtime::time::format_rfc3339_ms(a.at_ms), a.reason.clone()])
            .collect();
        let lineage =
            l.nodes.iter().map(|n| [n.zone.clone(), n.kind.clone(), n.what.clone(), n.check.clone()]).collect();
        let history = r
            .transitions
            .iter()
            .map(|t| {
                [
                    mlsec_runtime::time::format_rfc3339_ms(t.at_ms),
                    format!("{} → {}", t.from.map_or("-".to_string(), |s| s.to_string()), t.to),
                    t.actor.clone(),
                    t.reason.clone(),
                ]
            })
            .collect();
        Self {
            title: format!("Model card: {}@{}", r.model_name, r.model_version),
            facts,
            gates,
            approvals,
            lineage,
            history,
        }
    }

    fn sections(&self) -> Vec<Section> {
        vec![
            (
                "Gates (govern, on the holdout)",
                vec!["gate", "value", "95% interval", "threshold", "result"],
                self.gates.iter().map(|r| r.to_vec()).collect(),
            ),
            (
                "Approvals",
                vec!["approver (as AWS says)", "at", "reason"],
                self.approvals.iter().map(|r| r.to_vec()).collect(),
            ),
            ("Lineage", vec!["zone", "kind", "object", "check"], self.lineage.iter().map(|r| r.to_vec()).collect()),
            ("History", vec!["at", "move", "by", "reason"], self.history.iter().map(|r| r.to_vec()).collect()),
        ]
    }

    fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = format!("# {}\n\n", self.title);
        for (k, v) in &self.facts {
            let _ = writeln!(out, "- **{k}**: {}", cell(v));
        }
        for (title, head, rows) in self.sections() {
            let _ = write!(out, "\n## {title}\n\n");
            if rows.is_empty() {
                out.push_str("None.\n");
                continue;
            }
            let _ = writeln!(out, "| {} |", head.join(" | "));
            let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
            for r in rows {
                let _ = writeln!(out, "| {} |", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "));
            }
        }
        out
    }

    fn html(&self) -> String {
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        let mut out = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title>\n<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}}</style></head>\n<body><h1>{0}</h1>\n<dl>\n",
            esc(&self.title)
        );
        for (k, v) in &self.facts {
            let _ = writeln!(out, "<dt><b>{}</b></dt><dd>{}</dd>", esc(k), esc(v));
        }
        out.push_str("</dl>\n");
        for (title, head, rows) in self.sections() {
            let _ = writeln!(out, "<h2>{}</h2>", esc(title));
            if rows.is_empty() {
                out.push_str("<p>None.</p>\n");
                continue;
            }
            out.push_str("<table><tr>");
            for h in head {
                let _ = write!(out, "<th>{}</th>", esc(h));
            }
            out.push_str("</tr>\n");
            for r in rows {
                out.push_str("<tr>");
                for c in r {
                    let _ = write!(out, "<td>{}</td>", esc(&c));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</table>\n");
        }
        out.push_str("</body></html>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_escapes_what_people_and_data_wrote() {
        let record: ModelRecord = serde_json::from_value(serde_json::json!({
            "model_name": "m", "model_version": "v1", "stage": "production", "rev": 3, "dataset": "d",
            "dataset_digest": "x", "contract_version": "1", "algorithm": "lr", "params": "{}", "trainer_auc": 0.9,
            "trainer_accuracy": 0.9, "train_rows": 1, "test_rows": 1,
            "artifact": {"bucket": "b", "key": "k", "version_id": "1", "sha256": "s", "size": 1},
            "dropped_by": null, "evaluation": null, "manifest": null, "signing_key_id": null,
            "approvals": [{"approver_arn": "arn:aws:iam::1:user/risk-ana", "approver_id": "AIDA1", "at_ms": 0,
                "reason": "<script>alert(1)</script> | ok", "gate_report_sha256": "g"}],
            "transitions": [], "created_at_ms": 0, "stage_reason": null
        }))
        .unwrap();
        let l = Lineage {
            model: "m".into(),
            version: "v1".into(),
            stage: "production".into(),
            nodes: vec![],
            edges: vec![],
        };
        let doc = CardDoc::new(&record, Some("a & b"), None, &l);
        let (md, html) = (doc.markdown(), doc.html());
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("a &amp; b"));
        assert!(md.contains("\\| ok"), "a table cell cannot break the Markdown table: {md}");
        assert!(md.contains("| arn:aws:iam::1:user/risk-ana |"));
    }

    #[test]
    fn the_picture_quotes_names_and_marks_what_failed() {
        let mut l =
            Lineage { model: "m\"x".into(), version: "v".into(), stage: "s".into(), nodes: vec![], edges: vec![] };
        let node = |id: &str, check: &str| Node {
            id: id.into(),
            zone: "Z4".into(),
            kind: "model artifact".into(),
            what: "s3://b/m/v/model.json?versionId=3".into(),
            version: None,
            sha256: None,
            detail: String::new(),
            check: check.into(),
        };
        l.add(node("a", "verified"), None);
        l.add(node("b", "missing"), Some(("a", "made")));
        let dot = l.dot();
        assert!(dot.starts_with("digraph \"m\\\"x@v\""), "{dot}");
        assert!(dot.contains("\"b\" [label=\"Z4 model artifact\\nmodel.json\\nmissing\", color=red]"), "{dot}");
        assert!(dot.contains("\"a\" -> \"b\" [label=\"made\"]"));
        assert!(!l.intact());
    }
}
