//! Govern's own evaluation of a candidate, on the holdout the trainer never read: AUC,
//! Brier score, the comparison with the production model on the same rows, and fairness
//! across each protected attribute with bootstrap confidence intervals.
//!
//! Fairness is measured on the favourable outcome (`favourableOutcome`, default
//! `negative`: for a fraud or default model, not being flagged is what a customer wants):
//! - disparate impact: lowest favourable-outcome rate of a group over the highest (the
//!   four-fifths rule: at least 0.8);
//! - equal opportunity: largest difference between groups in the favourable-outcome rate
//!   among the rows whose true label is the favourable one (with `negative`: legitimate
//!   customers wrongly flagged, group against group).
//!
//! A group with fewer rows than `minGroupSize` (or fewer rows of the favourable label) is
//! insufficient evidence: the gate fails closed rather than pass on noise.

use std::collections::BTreeMap;

use arrow::{
    array::{Array, RecordBatch, StringArray},
    datatypes::DataType,
};
use bytes::Bytes;
use mlsec_lake::{
    columnar::{CURATED_SHA256_KEY, DROPPED_BY_KEY},
    model::{Artifact, ModelError, auc, brier, featurize, labels},
};
use mlsec_runtime::{
    contract::{FairnessGate, ModelSpec},
    sample::Rng,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

/// A holdout file, read.
pub struct Holdout {
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// `mlsec.contract` of the file (`<id>@<version>`).
    pub contract: Option<String>,
    pub dropped_by: Option<String>,
    /// `mlsec.curated_sha256`: the curated (training) file written in the same pass.
    pub curated_sha256: Option<String>,
}

pub fn read_holdout(bytes: Bytes) -> Result<Holdout, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let kv = |key: &str| {
        builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.clone())
    };
    let (contract, dropped_by, curated_sha256) = (kv("mlsec.contract"), kv(DROPPED_BY_KEY), kv(CURATED_SHA256_KEY));
    let batches =
        builder.build().map_err(|e| e.to_string())?.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    Ok(Holdout { batches, rows, contract, dropped_by, curated_sha256 })
}

/// One model's probabilities on the holdout rows it can score, with their labels and the
/// group of each row under every protected attribute.
#[derive(Debug, Clone, Default)]
pub struct Scored {
    pub p: Vec<f64>,
    pub y: Vec<i32>,
    pub groups: BTreeMap<String, Vec<String>>,
}

pub fn score(h: &Holdout, artifact: &Artifact, spec: &ModelSpec, protected: &[String]) -> Result<Scored, ModelError> {
    let mut out = Scored::default();
    for batch in &h.batches {
        let features = featurize(batch, &artifact.features)?;
        let ys = labels(batch, &spec.target, spec.positive_label.as_deref())?;
        let mut group_cols = Vec::with_capacity(protected.len());
        for name in protected {
            let col = batch.column_by_name(name).ok_or_else(|| ModelError::MissingColumn(name.clone()))?;
            let col = arrow::compute::cast(col, &DataType::Utf8)
                .map_err(|e| ModelError::Feature { column: name.clone(), message: e.to_string() })?;
            group_cols.push(col);
        }
        let mut rows = Vec::new();
        for (i, (x, y)) in features.into_iter().zip(ys).enumerate() {
            if let (Some(x), Some(y)) = (x, y) {
                rows.push(x);
                out.y.push(y);
                for (name, col) in protected.iter().zip(&group_cols) {
                    let s = col.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                    let g = if s.is_null(i) { "(null)".to_string() } else { s.value(i).to_string() };
                    out.groups.entry(name.clone()).or_default().push(g);
                }
            }
        }
        out.p.extend(artifact.probabilities(&rows)?);
    }
    Ok(out)
}

/// One gate's verdict (a row of the gate report's table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub id: String,
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The bound it is held to (minimum or maximum, as the id says).
    pub threshold: f64,
    pub passed: bool,
    pub detail: String,
}

/// The champion's result on the same holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChampionResult {
    pub version: String,
    pub auc: Option<f64>,
    pub brier: Option<f64>,
    /// Why it could not be scored on this holdout, if it could not.
    pub error: Option<String>,
}

/// What govern measured and decided; its JSON form is what the manifest's digest covers
/// and what an approver is shown. No wall clock inside: the same evaluation gives the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub model_name: String,
    pub model_version: String,
    pub holdout_sha256: String,
    pub holdout_rows: usize,
    pub scored_rows: usize,
    pub auc: f64,
    pub brier: f64,
    pub accuracy: f64,
    pub decision_threshold: f64,
    pub champion: Option<ChampionResult>,
    pub gates: Vec<GateResult>,
    pub passed: bool,
}

impl GateReport {
    pub fn failed(&self) -> Vec<String> {
        self.gates.iter().filter(|g| !g.passed).map(|g| g.id.clone()).collect()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a gate report always serialises")
    }
}

fn gate(id: impl Into<String>, value: f64, threshold: f64, passed: bool, detail: impl Into<String>) -> GateResult {
    GateResult {
        id: id.into(),
        value: Some(value),
        ci_low: None,
        ci_high: None,
        threshold,
        passed,
        detail: detail.into(),
    }
}

/// Applies the spec's gates to the challenger's scores (and the champion's, when there is one).
pub fn evaluate(
    spec: &ModelSpec,
    threshold: f64,
    holdout_rows: usize,
    challenger: &Scored,
    champion: Option<(String, Result<Scored, String>)>,
) -> (Vec<GateResult>, f64, f64, f64, Option<ChampionResult>) {
    let g = &spec.gates;
    let (a, b) = (auc(&challenger.p, &challenger.y), brier(&challenger.p, &challenger.y));
    let correct = challenger.p.iter().zip(&challenger.y).filter(|(p, y)| i32::from(**p >= threshold) == **y).count();
    let accuracy = correct as f64 / challenger.p.len().max(1) as f64;
    let n = challenger.p.len();
    let mut gates = vec![gate(
        "holdout_rows",
        n as f64,
        g.min_holdout_rows as f64,
        n >= g.min_holdout_rows,
        format!("{n} scored holdout rows (of {holdout_rows})"),
    )];
    gates.push(gate("min_auc", a, g.min_auc, a >= g.min_auc, format!("holdout AUC {a:.4}")));
    if let Some(max) = g.max_brier {
        gates.push(gate("max_brier", b, max, b <= max, format!("holdout Brier score {b:.4}")));
    }
    let champion = champion.map(|(version, scored)| match scored {
        Ok(s) => ChampionResult { version, auc: Some(auc(&s.p, &s.y)), brier: Some(brier(&s.p, &s.y)), error: None },
        Err(e) => ChampionResult { version, auc: None, brier: None, error: Some(e) },
    });
    if let (Some(drop), Some(c)) = (g.max_auc_drop, &champion) {
        gates.push(match c.auc {
            Some(ca) => gate(
                "max_auc_drop",
                ca - a,
                drop,
                a >= ca - drop,
                format!("challenger AUC {a:.4} against champion {} {ca:.4} on the same holdout", c.version),
            ),
            None => GateResult {
                id: "max_auc_drop".into(),
                value: None,
                ci_low: None,
                ci_high: None,
                threshold: drop,
                passed: false,
                detail: format!(
                    "champion {} cannot be scored on this holdout ({}): no comparison, so no promotion",
                    c.version,
                    c.error.as_deref().unwrap_or("?")
                ),
            },
        });
    }
    if let Some(f) = &g.fairness {
        if challenger.groups.is_empty() {
            gates.push(GateResult {
                id: "fairness".into(),
                value: None,
                ci_low: None,
                ci_high: None,
                threshold: f.min_ratio,
                passed: false,
                detail: "the spec sets a fairness gate but the training contract marks no column protected".into(),
            });
        }
        for (column, groups) in &challenger.groups {
            gates.extend(fairness(column, groups, challenger, threshold, f, spec.seed));
        }
    }
    (gates, a, b, accuracy, champion)
}

/// Per-group counts of one protected attribute.
#[derive(Debug, Clone, Default)]
struct GroupStats {
    rows: usize,
    favourable: usize,
    /// Rows whose true label is the favourable one, and of those, how many got it.
    qualified: usize,
    qualified_favourable: usize,
}

fn stats<'a>(
    idx: impl Iterator<Item = usize>,
    groups: &'a [String],
    s: &Scored,
    threshold: f64,
    fav: i32,
) -> BTreeMap<&'a str, GroupStats> {
    let mut out: BTreeMap<&str, GroupStats> = BTreeMap::new();
    for i in idx {
        let e = out.entry(groups[i].as_str()).or_default();
        let decision = i32::from(s.p[i] >= threshold);
        e.rows += 1;
        e.favourable += usize::from(decision == fav);
        if s.y[i] == fav {
            e.qualified += 1;
            e.qualified_favourable += usize::from(decision == fav);
        }
    }
    out
}

/// (disparate-impact ratio, equal-opportunity difference) of one set of group counts.
fn measures(st: &BTreeMap<&str, GroupStats>) -> (f64, f64) {
    let rates: Vec<f64> = st.values().map(|g| g.favourable as f64 / g.rows.max(1) as f64).collect();
    let (lo, hi) = rates.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let di = if hi > 0.0 { lo / hi } else { 1.0 };
    let tprs: Vec<f64> =
        st.values().filter(|g| g.qualified > 0).map(|g| g.qualified_favourable as f64 / g.qualified as f64).collect();
    let eo = match (tprs.iter().cloned().reduce(f64::min), tprs.iter().cloned().reduce(f64::max)) {
        (Some(lo), Some(hi)) => hi - lo,
        _ => 0.0,
    };
    (di, eo)
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i])
}

/// The fairness gates of one protected attribute.
fn fairness(
    column: &str,
    groups: &[String],
    s: &Scored,
    threshold: f64,
    f: &FairnessGate,
    seed: u64,
) -> Vec<GateResult> {
    let fav = if f.favourable_outcome == "positive" { 1 } else { 0 };
    let n = groups.len();
    let st = stats(0..n, groups, s, threshold, fav);
    let mut out = Vec::new();
    let small: Vec<String> = st
        .iter()
        .filter(|(_, g)| g.rows < f.min_group_size || g.qualified < f.min_group_size)
        .map(|(name, g)| format!("{name} ({} rows, {} with the favourable label)", g.rows, g.qualified))
        .collect();
    let fewest = st.values().map(|g| g.rows.min(g.qualified)).min().unwrap_or(0);
    out.push(GateResult {
        id: format!("fairness.{column}.group_size"),
        value: Some(fewest as f64),
        ci_low: None,
        ci_high: None,
        threshold: f.min_group_size as f64,
        passed: small.is_empty() && st.len() >= 2,
        detail: if st.len() < 2 {
            format!("{} group(s): nothing to compare, insufficient evidence", st.len())
        } else if small.is_empty() {
            format!("{} groups, each with at least {} rows", st.len(), f.min_group_size)
        } else {
            format!("insufficient evidence: {}", small.join(", "))
        },
    });
    let (di, eo) = measures(&st);
    // Bootstrap: resample rows with replacement; a resample missing a group is skipped.
    let salt = u64::from_str_radix(&mlsec_events::sha256_hex(column.as_bytes())[..16], 16).unwrap_or(0);
    let mut rng = Rng::new(seed ^ salt);
    let (mut dis, mut eos) = (Vec::with_capacity(f.bootstrap), Vec::with_capacity(f.bootstrap));
    for _ in 0..f.bootstrap {
        let sample = (0..n).map(|_| rng.below(n));
        let b = stats(sample, groups, s, threshold, fav);
        if b.len() == st.len() {
            let (d, e) = measures(&b);
            dis.push(d);
            eos.push(e);
        }
    }
    dis.sort_by(f64::total_cmp);
    eos.sort_by(f64::total_cmp);
    let per_group = |rate: &dyn Fn(&GroupStats) -> f64| {
        st.iter().map(|(name, g)| format!("{name} {:.4}", rate(g))).collect::<Vec<_>>().join(", ")
    };
    out.push(GateResult {
        id: format!("fairness.{column}.disparate_impact"),
        value: Some(di),
        ci_low: percentile(&dis, 0.025),
        ci_high: percentile(&dis, 0.975),
        threshold: f.min_ratio,
        passed: di >= f.min_ratio,
        detail: format!(
            "favourable-outcome rate by group: {}",
            per_group(&|g| g.favourable as f64 / g.rows.max(1) as f64)
        ),
    });
    out.push(GateResult {
        id: format!("fairness.{column}.equal_opportunity"),
        value: Some(eo),
        ci_low: percentile(&eos, 0.025),
        ci_high: percentile(&eos, 0.975),
        threshold: f.max_equal_opportunity_diff,
        passed: eo <= f.max_equal_opportunity_diff,
        detail: format!(
            "favourable-outcome rate among rows with the favourable label: {}",
            per_group(&|g| g.qualified_favourable as f64 / g.qualified.max(1) as f64)
        ),
    });
    out
}

/// The gate report as a Parquet table (one row per gate).
pub fn report_table(report: &GateReport) -> Result<Vec<u8>, String> {
    use std::sync::Arc;

    use arrow::{
        array::{ArrayRef, BooleanArray, Float64Array},
        datatypes::{Field, Schema},
    };
    let gates = &report.gates;
    let schema = Arc::new(Schema::new(vec![
        Field::new("gate", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("ci_low", DataType::Float64, true),
        Field::new("ci_high", DataType::Float64, true),
        Field::new("threshold", DataType::Float64, false),
        Field::new("passed", DataType::Boolean, false),
        Field::new("detail", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(gates.iter().map(|g| g.id.as_str()))),
        Arc::new(gates.iter().map(|g| g.value).collect::<Float64Array>()),
        Arc::new(gates.iter().map(|g| g.ci_low).collect::<Float64Array>()),
        Arc::new(gates.iter().map(|g| g.ci_high).collect::<Float64Array>()),
        Arc::new(Float64Array::from_iter_values(gates.iter().map(|g| g.threshold))),
        Arc::new(gates.iter().map(|g| Some(g.passed)).collect::<BooleanArray>()),
        Arc::new(StringArray::from_iter_values(gates.iter().map(|g| g.detail.as_str()))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    let meta = [("mlsec.model".to_string(), format!("{}@{}", report.model_name, report.model_version))];
    let props = mlsec_lake::columnar::writer_properties(&meta, mlsec_lake::columnar::CURATED_ROW_GROUP_ROWS);
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| e.to_string())?;
    w.write(&batch).map_err(|e| e.to_string())?;
    w.close().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate_spec() -> FairnessGate {
        FairnessGate {
            min_ratio: 0.8,
            max_equal_opportunity_diff: 0.1,
            min_group_size: 30,
            bootstrap: 100,
            favourable_outcome: "negative".into(),
        }
    }

    /// `n` rows per group; group `b` flagged (the adverse outcome) at `rate_b`, `a` at 2%.
    fn scored(n: usize, rate_b: f64) -> (Vec<String>, Scored) {
        let (mut groups, mut s) = (Vec::new(), Scored::default());
        for (g, rate) in [("a", 0.02), ("b", rate_b)] {
            for i in 0..n {
                groups.push(g.to_string());
                let flagged = (i as f64) < rate * n as f64;
                s.p.push(if flagged { 0.9 } else { 0.1 });
                s.y.push(i32::from(i % 10 == 0));
            }
        }
        (groups, s)
    }

    fn by_id<'a>(gates: &'a [GateResult], suffix: &str) -> &'a GateResult {
        gates.iter().find(|g| g.id.ends_with(suffix)).unwrap()
    }

    #[test]
    fn a_model_that_flags_one_group_far_more_fails_disparate_impact_and_equal_opportunity() {
        let (groups, s) = scored(500, 0.5);
        let gates = fairness("age_band", &groups, &s, 0.5, &gate_spec(), 1);
        let di = by_id(&gates, "disparate_impact");
        assert!(!di.passed, "{di:?}");
        assert!(di.value.unwrap() < 0.6 && di.ci_high.unwrap() < 0.8, "{di:?}");
        assert!(!by_id(&gates, "equal_opportunity").passed);
        assert!(by_id(&gates, "group_size").passed);
    }

    #[test]
    fn a_model_that_treats_groups_alike_passes_with_an_interval_around_one() {
        let (groups, s) = scored(500, 0.02);
        let gates = fairness("age_band", &groups, &s, 0.5, &gate_spec(), 1);
        let di = by_id(&gates, "disparate_impact");
        assert!(di.passed && (di.value.unwrap() - 1.0).abs() < 1e-9, "{di:?}");
        assert!(di.ci_low.unwrap() <= 1.0 && di.ci_low.unwrap() > 0.9, "{di:?}");
        assert!(gates.iter().all(|g| g.passed), "{gates:?}");
    }

    #[test]
    fn a_group_below_the_minimum_is_insufficient_evidence_and_fails_closed() {
        let (groups, s) = scored(20, 0.02);
        let gates = fairness("age_band", &groups, &s, 0.5, &gate_spec(), 1);
        let size = by_id(&gates, "group_size");
        assert!(!size.passed && size.detail.starts_with("insufficient evidence"), "{size:?}");
    }
}
