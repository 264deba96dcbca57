//! Data quality as code: the contract's `quality` rules evaluated batch by batch.
//!
//! Row rules (`required`, `invalidValues`) judge each row; with severity `error` a failing
//! row is dropped from the curated data and recorded (row number and rule id, never the
//! value) in the curate rejects file. Dataset rules (`nullValues`, `duplicateValues`,
//! `rowCount`, `freshness`) and the thresholds of row rules judge the dataset: a failed
//! `error` rule rejects it (`DatasetRejected`), a failed `warning` rule is reported only.
//! Schema drift (the raw data's columns and types against the contract) is checked first
//! and always rejects.

use std::{
    collections::HashSet,
    hash::{BuildHasher, Hash, Hasher},
    sync::Arc,
};

use arrow::{
    array::{
        Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, StringBuilder,
        TimestampMillisecondArray, UInt64Builder,
    },
    datatypes::{DataType, Field, Schema},
};
use mlsec_lake::columnar::arrow_type;
use mlsec_runtime::contract::{Check, DatasetContract, QualityRule, Severity};
use regex::Regex;

use crate::{
    error::{CurateError, input},
    keyset::{KeySet, RUN_KEYS},
};

/// Rule id of the schema check.
pub const SCHEMA_RULE: &str = "schema_drift";

/// Differences between the raw data's schema and the contract, by column name (no values).
pub fn schema_drift(contract: &DatasetContract, schema: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for c in &contract.columns {
        match schema.field_with_name(&c.name) {
            Err(_) => out.push(format!("missing column {}", c.name)),
            Ok(f) if f.data_type() != &arrow_type(c.ty) => {
                out.push(format!("column {} is {}, contract says {}", c.name, f.data_type(), arrow_type(c.ty)))
            }
            Ok(_) => {}
        }
    }
    for f in schema.fields() {
        if contract.column(f.name()).is_none() {
            out.push(format!("column {} is not in the contract", f.name()));
        }
    }
    out
}

/// One rule's outcome, as written to the DQ report.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleResult {
    pub id: String,
    pub metric: String,
    pub columns: Vec<String>,
    pub severity: Severity,
    /// `row` or `dataset`.
    pub level: &'static str,
    /// The threshold as written in the contract (`mustBe 0 rows`), or the freshness bound.
    pub threshold: String,
    /// Rows that failed (nulls, invalid values, duplicates), rows kept for `rowCount`,
    /// age in seconds for `freshness`, mismatching columns for the schema check.
    pub failed: u64,
    /// The number compared with the threshold (`failed`, or a percent of rows read).
    pub measured: f64,
    /// Rows removed from the curated data by this rule.
    pub rows_dropped: u64,
    pub passed: bool,
    /// `pass`, `warning`, `rows_dropped` or `dataset_rejected`.
    pub outcome: &'static str,
}

/// The DQ report of one dataset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DqReport {
    pub rules: Vec<RuleResult>,
    pub rows_read: u64,
    pub rows_dropped: u64,
}

impl DqReport {
    /// Ids of the rules that reject the dataset.
    pub fn rejecting(&self) -> Vec<String> {
        self.rules.iter().filter(|r| r.outcome == "dataset_rejected").map(|r| r.id.clone()).collect()
    }

    /// Ids of the failed warning rules.
    pub fn warnings(&self) -> Vec<String> {
        self.rules.iter().filter(|r| r.outcome == "warning").map(|r| r.id.clone()).collect()
    }

    pub fn passed(&self) -> usize {
        self.rules.iter().filter(|r| r.passed).count()
    }

    /// A report of a dataset whose schema drifted: only the schema rule is evaluated.
    pub fn drifted(problems: &[String]) -> Self {
        Self {
            rules: vec![RuleResult {
                id: SCHEMA_RULE.into(),
                metric: "schema".into(),
                columns: vec![],
                severity: Severity::Error,
                level: "dataset",
                threshold: format!("mustBe 0 differences ({})", problems.join("; ")),
                failed: problems.len() as u64,
                measured: problems.len() as f64,
                rows_dropped: 0,
                passed: problems.is_empty(),
                outcome: if problems.is_empty() { "pass" } else { "dataset_rejected" },
            }],
            rows_read: 0,
            rows_dropped: 0,
        }
    }

    /// One row per rule; counts only, never a value of the data.
    pub fn to_batch(&self) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("rule_id", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("columns", DataType::Utf8, false),
            Field::new("severity", DataType::Utf8, false),
            Field::new("level", DataType::Utf8, false),
            Field::new("threshold", DataType::Utf8, false),
            Field::new("failed", DataType::UInt64, false),
            Field::new("measured", DataType::Float64, false),
            Field::new("rows_dropped", DataType::UInt64, false),
            Field::new("passed", DataType::Boolean, false),
            Field::new("outcome", DataType::Utf8, false),
            Field::new("rows_read", DataType::UInt64, false),
        ]));
        let s = |f: &dyn Fn(&RuleResult) -> String| -> ArrayRef {
            Arc::new(StringArray::from(self.rules.iter().map(f).collect::<Vec<_>>()))
        };
        let u = |f: &dyn Fn(&RuleResult) -> u64| -> ArrayRef {
            let mut b = UInt64Builder::new();
            self.rules.iter().for_each(|r| b.append_value(f(r)));
            Arc::new(b.finish())
        };
        let columns: Vec<ArrayRef> = vec![
            s(&|r| r.id.clone()),
            s(&|r| r.metric.clone()),
            s(&|r| r.columns.join(",")),
            s(&|r| r.severity.as_str().into()),
            s(&|r| r.level.into()),
            s(&|r| r.threshold.clone()),
            u(&|r| r.failed),
            Arc::new(Float64Array::from(self.rules.iter().map(|r| r.measured).collect::<Vec<_>>())),
            u(&|r| r.rows_dropped),
            Arc::new(BooleanArray::from(self.rules.iter().map(|r| r.passed).collect::<Vec<_>>())),
            s(&|r| r.outcome.into()),
            u(&|_| self.rows_read),
        ];
        RecordBatch::try_new(schema, columns).expect("columns match the report schema")
    }
}

enum Kind {
    Required(usize),
    Nulls(usize),
    Invalid { col: usize, values: Option<HashSet<String>>, regex: Option<Regex>, min: Option<f64>, max: Option<f64> },
    Duplicates { cols: Vec<usize>, keys: KeySet, hashers: (ahash::RandomState, ahash::RandomState) },
    RowCount,
    Freshness { col: usize, newest: Option<i64>, max_age_ms: i64 },
}

struct State<'c> {
    rule: &'c QualityRule,
    kind: Kind,
    failed: u64,
}

/// Rejected rows of one batch: (row number in the raw data, rule id).
pub type Rejects<'c> = Vec<(u64, &'c str)>;

/// Evaluates a contract's rules over the batches of one dataset.
pub struct Engine<'c> {
    rules: Vec<State<'c>>,
    rows: u64,
    dropped: u64,
    now_ms: i64,
}

impl<'c> Engine<'c> {
    /// `schema` must have passed [`schema_drift`].
    pub fn new(contract: &'c DatasetContract, schema: &Schema, now_ms: i64) -> Result<Self, CurateError> {
        let idx = |name: &str| schema.index_of(name).map_err(|_| input(format!("raw data lacks column {name}")));
        let mut rules = Vec::with_capacity(contract.quality.len());
        for rule in &contract.quality {
            let kind = match &rule.check {
                Check::Required { column } => Kind::Required(idx(column)?),
                Check::NullValues { column } => Kind::Nulls(idx(column)?),
                Check::InvalidValues { column, valid_values, pattern, minimum, maximum } => Kind::Invalid {
                    col: idx(column)?,
                    values: valid_values.as_ref().map(|v| v.iter().cloned().collect()),
                    // The whole value must match; the regex crate runs in linear time, so a
                    // contract's pattern cannot be turned into a ReDoS by the data.
                    regex: pattern
                        .as_ref()
                        .map(|p| Regex::new(&format!("^(?:{p})$")).map_err(|e| input(format!("rule {}: {e}", rule.id))))
                        .transpose()?,
                    min: *minimum,
                    max: *maximum,
                },
                Check::DuplicateValues { columns } => Kind::Duplicates {
                    cols: columns.iter().map(|c| idx(c)).collect::<Result<_, _>>()?,
                    keys: KeySet::new(RUN_KEYS),
                    hashers: (random_state(), random_state()),
                },
                Check::RowCount => Kind::RowCount,
                Check::Freshness { column, max_age_ms } => {
                    Kind::Freshness { col: idx(column)?, newest: None, max_age_ms: *max_age_ms }
                }
            };
            rules.push(State { rule, kind, failed: 0 });
        }
        Ok(Self { rules, rows: 0, dropped: 0, now_ms })
    }

    /// Keys each uniqueness rule holds in memory before it spills a sorted run
    /// (default [`RUN_KEYS`]).
    pub fn with_run_keys(mut self, run_keys: usize) -> Self {
        for s in &mut self.rules {
            if let Kind::Duplicates { keys, .. } = &mut s.kind {
                *keys = KeySet::new(run_keys);
            }
        }
        self
    }

    /// Evaluates every rule on `batch`: first the row rules, which decide the rows kept,
    /// then the dataset rules on the kept rows only (a dropped row cannot make its clean
    /// twin a duplicate, nor count as the newest value). Returns the rows to keep and,
    /// for each dropped row, the error rules it failed.
    pub fn observe(&mut self, batch: &RecordBatch) -> Result<(BooleanArray, Rejects<'c>), CurateError> {
        let n = batch.num_rows();
        let first = self.rows;
        self.rows += n as u64;
        let mut keep = vec![true; n];
        let mut rejects: Rejects<'c> = Vec::new();
        let mut fail = vec![false; n];
        for state in self.rules.iter_mut().filter(|s| s.rule.check.is_row_rule()) {
            fail.iter_mut().for_each(|f| *f = false);
            match &state.kind {
                Kind::Required(col) => {
                    let a = batch.column(*col);
                    if a.null_count() > 0 {
                        (0..n).for_each(|i| fail[i] = a.is_null(i));
                    }
                }
                Kind::Invalid { col, values, regex, min, max } => {
                    invalid_rows(batch.column(*col), values.as_ref(), regex.as_ref(), *min, *max, &mut fail)?;
                }
                _ => unreachable!("filtered to row rules"),
            }
            let failed = fail.iter().filter(|f| **f).count();
            state.failed += failed as u64;
            if failed > 0 && state.rule.severity == Severity::Error {
                for (i, f) in fail.iter().enumerate() {
                    if *f {
                        keep[i] = false;
                        rejects.push((first + i as u64, state.rule.id.as_str()));
                    }
                }
            }
        }
        let all_kept = keep.iter().all(|k| *k);
        let kept = keep.iter().filter(|k| **k).count();
        for state in self.rules.iter_mut().filter(|s| !s.rule.check.is_row_rule()) {
            match &mut state.kind {
                Kind::Nulls(col) => {
                    let a = batch.column(*col);
                    state.failed +=
                        if all_kept { a.null_count() } else { (0..n).filter(|&i| keep[i] && a.is_null(i)).count() }
                            as u64;
                }
                Kind::Duplicates { cols, keys, hashers } => {
                    let columns: Vec<Cells> =
                        cols.iter().map(|c| Cells::of(batch.column(*c))).collect::<Result<_, _>>()?;
                    for i in (0..n).filter(|&i| keep[i]) {
                        // As in SQL, a key with a null part is not a duplicate of anything.
                        if columns.iter().any(|c| c.is_null(i)) {
                            continue;
                        }
                        let (mut a, mut b) = (hashers.0.build_hasher(), hashers.1.build_hasher());
                        for c in &columns {
                            c.hash(i, &mut a);
                            c.hash(i, &mut b);
                        }
                        let key = (u128::from(a.finish()) << 64) | u128::from(b.finish());
                        keys.insert(key).map_err(|e| CurateError::Output(format!("uniqueness spill: {e}")))?;
                    }
                }
                Kind::RowCount => {}
                Kind::Freshness { col, newest, .. } => {
                    let a = batch
                        .column(*col)
                        .as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .ok_or_else(|| CurateError::Input("freshness column is not a timestamp".into()))?;
                    let m = if all_kept {
                        arrow::compute::max(a)
                    } else {
                        (0..n).filter(|&i| keep[i] && a.is_valid(i)).map(|i| a.value(i)).max()
                    };
                    if let Some(m) = m {
                        *newest = Some(newest.map_or(m, |x| x.max(m)));
                    }
                }
                Kind::Required(_) | Kind::Invalid { .. } => unreachable!("filtered to dataset rules"),
            }
        }
        rejects.sort_by_key(|r| r.0);
        self.dropped += (n - kept) as u64;
        Ok((BooleanArray::from(keep), rejects))
    }

    /// The report, once every batch has been observed.
    pub fn finish(self) -> Result<DqReport, CurateError> {
        let rows = self.rows;
        let mut states = Vec::with_capacity(self.rules.len());
        for mut s in self.rules {
            if let Kind::Duplicates { keys, .. } = &mut s.kind {
                let keys = std::mem::replace(keys, KeySet::new(1));
                s.failed += keys.finish().map_err(|e| CurateError::Output(format!("uniqueness spill: {e}")))?;
            }
            states.push(s);
        }
        let rules = states
            .into_iter()
            .map(|s| {
                let r = s.rule;
                let row_rule = r.check.is_row_rule();
                let (failed, measured, passed, threshold) = match s.kind {
                    Kind::RowCount => {
                        // Rows kept after the row rules: a file whose every row was dropped
                        // is an empty dataset, not a curated one.
                        let kept = rows - self.dropped;
                        let op = r.operator.expect("library rules have an operator");
                        (kept, kept as f64, op.holds(kept as f64), format!("{} rows kept", op.describe()))
                    }
                    Kind::Freshness { newest, max_age_ms, .. } => {
                        let age_s = newest.map(|t| (self.now_ms - t).max(0) as u64 / 1000);
                        let passed = newest.is_some_and(|t| self.now_ms - t <= max_age_ms);
                        let threshold = format!("newest value at most {} s old", max_age_ms / 1000);
                        (age_s.unwrap_or(u64::MAX), age_s.map_or(f64::INFINITY, |a| a as f64), passed, threshold)
                    }
                    _ => {
                        let measured = if r.percent {
                            if rows == 0 { 0.0 } else { s.failed as f64 * 100.0 / rows as f64 }
                        } else {
                            s.failed as f64
                        };
                        let unit = if r.percent { "percent" } else { "rows" };
                        match r.operator {
                            Some(op) => (s.failed, measured, op.holds(measured), format!("{} {unit}", op.describe())),
                            None => (s.failed, measured, s.failed == 0, "not null (drops the row)".into()),
                        }
                    }
                };
                let rows_dropped = if row_rule && r.severity == Severity::Error { s.failed } else { 0 };
                let outcome = match (passed, r.severity, r.operator) {
                    (true, ..) if rows_dropped > 0 => "rows_dropped",
                    (true, ..) => "pass",
                    (false, Severity::Warning, _) => "warning",
                    (false, Severity::Error, None) if row_rule => "rows_dropped",
                    (false, Severity::Error, _) => "dataset_rejected",
                };
                RuleResult {
                    id: r.id.clone(),
                    metric: r.check.metric().into(),
                    columns: r.check.columns(),
                    severity: r.severity,
                    level: if row_rule { "row" } else { "dataset" },
                    threshold,
                    failed,
                    measured,
                    rows_dropped,
                    passed,
                    outcome,
                }
            })
            .collect();
        Ok(DqReport { rules, rows_read: rows, rows_dropped: self.dropped })
    }
}

/// A keyed hasher for uniqueness keys. Two of them (independent random keys) make a
/// 128-bit key: the chance that two different keys of a 40M-row dataset collide by
/// accident is about 2^-76. ahash is fast, not cryptographic: someone who studies it might
/// prepare colliding values, but a collision can only fake a duplicate (a false
/// rejection), which anyone who can submit data can cause with a real duplicate anyway.
fn random_state() -> ahash::RandomState {
    let seed = std::hash::RandomState::new();
    ahash::RandomState::with_seeds(seed.hash_one(1u8), seed.hash_one(2u8), seed.hash_one(3u8), seed.hash_one(4u8))
}

/// Marks the rows whose value breaks an `invalidValues` rule (nulls are not invalid).
fn invalid_rows(
    a: &ArrayRef,
    values: Option<&HashSet<String>>,
    regex: Option<&Regex>,
    min: Option<f64>,
    max: Option<f64>,
    fail: &mut [bool],
) -> Result<(), CurateError> {
    if let Some(s) = a.as_any().downcast_ref::<StringArray>() {
        for (i, v) in s.iter().enumerate() {
            if let Some(v) = v {
                fail[i] = values.is_some_and(|set| !set.contains(v)) || regex.is_some_and(|re| !re.is_match(v));
            }
        }
        return Ok(());
    }
    let out_of_range = |v: f64| v.is_nan() || min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m);
    if let Some(f) = a.as_any().downcast_ref::<Float64Array>() {
        for (i, v) in f.iter().enumerate() {
            fail[i] = v.is_some_and(out_of_range);
        }
    } else if let Some(f) = a.as_any().downcast_ref::<Int64Array>() {
        for (i, v) in f.iter().enumerate() {
            fail[i] = v.is_some_and(|v| !mlsec_runtime::contract::int_within(v, min, max));
        }
    } else {
        return Err(input(format!("invalidValues on an unsupported column type {}", a.data_type())));
    }
    Ok(())
}

/// A key column of one batch, downcast once.
enum Cells<'a> {
    Str(&'a StringArray),
    F64(&'a Float64Array),
    I64(&'a Int64Array),
    Ts(&'a TimestampMillisecondArray),
    Bool(&'a BooleanArray),
}

impl<'a> Cells<'a> {
    fn of(a: &'a ArrayRef) -> Result<Self, CurateError> {
        let any = a.as_any();
        let cells = if let Some(s) = any.downcast_ref() {
            Self::Str(s)
        } else if let Some(f) = any.downcast_ref() {
            Self::F64(f)
        } else if let Some(v) = any.downcast_ref() {
            Self::I64(v)
        } else if let Some(t) = any.downcast_ref() {
            Self::Ts(t)
        } else if let Some(b) = any.downcast_ref() {
            Self::Bool(b)
        } else {
            return Err(CurateError::Input(format!("duplicateValues on an unsupported column type {}", a.data_type())));
        };
        Ok(cells)
    }

    fn is_null(&self, i: usize) -> bool {
        match self {
            Self::Str(a) => a.is_null(i),
            Self::F64(a) => a.is_null(i),
            Self::I64(a) => a.is_null(i),
            Self::Ts(a) => a.is_null(i),
            Self::Bool(a) => a.is_null(i),
        }
    }

    /// Feeds one non-null cell into a hasher; a string ends with a terminator byte (as
    /// `str`'s `Hash` writes it), so `("a,b", "c")` and `("a", "b,c")` hash differently.
    fn hash(&self, i: usize, h: &mut impl Hasher) {
        match self {
            Self::Str(a) => a.value(i).hash(h),
            Self::F64(a) => a.value(i).to_bits().hash(h),
            Self::I64(a) => a.value(i).hash(h),
            Self::Ts(a) => a.value(i).hash(h),
            Self::Bool(a) => a.value(i).hash(h),
        }
    }
}

/// The curate rejects file's batch: raw row number and rule id, never a value.
pub fn rejects_batch(rejects: &[(u64, &str)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("raw_row", DataType::UInt64, false),
        Field::new("rule_id", DataType::Utf8, false),
    ]));
    let mut row = UInt64Builder::with_capacity(rejects.len());
    let mut rule = StringBuilder::with_capacity(rejects.len(), rejects.len() * 16);
    for (r, id) in rejects {
        row.append_value(*r);
        rule.append_value(id);
    }
    RecordBatch::try_new(schema, vec![Arc::new(row.finish()), Arc::new(rule.finish())])
        .expect("columns match the rejects schema")
}

/// Schema of [`rejects_batch`].
pub fn rejects_schema() -> Arc<Schema> {
    rejects_batch(&[]).schema()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_int64_range_is_compared_exactly_beyond_two_to_the_53() {
        // 2^53 + 1 rounds to 2^53 as an f64: only an exact comparison sees it is over.
        let limit = 9_007_199_254_740_992f64;
        let a: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(9_007_199_254_740_992),
            Some(9_007_199_254_740_993),
            None,
            Some(i64::MIN),
            Some(-5),
        ]));
        let mut fail = vec![false; 5];
        invalid_rows(&a, None, None, Some(-5.0), Some(limit), &mut fail).unwrap();
        assert_eq!(fail, vec![false, true, false, true, false]);
        // A fractional bound is rounded inwards: 1.5 ≤ v means 2 ≤ v.
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let mut fail = vec![false; 2];
        invalid_rows(&b, None, None, Some(1.5), None, &mut fail).unwrap();
        assert_eq!(fail, vec![true, false]);
    }

    #[test]
    fn a_float_range_refuses_nan_and_lets_nulls_through() {
        let f: ArrayRef = Arc::new(Float64Array::from(vec![Some(f64::NAN), Some(0.5), None, Some(2.0)]));
        let mut fail = vec![false; 4];
        invalid_rows(&f, None, None, Some(0.0), Some(1.0), &mut fail).unwrap();
        assert_eq!(fail, vec![true, false, false, true]);
    }
}
