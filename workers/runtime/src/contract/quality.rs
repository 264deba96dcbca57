//! ODCS v3.1 `quality` entries: validated and turned into executable [`QualityRule`]s,
//! one function per metric. A rule the pipeline cannot execute refuses the contract.

use serde::Deserialize;

use super::types::*;

/// An ODCS v3.1 `quality` entry (the parts this pipeline executes).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OdcsQuality {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    arguments: Option<serde_yaml::Value>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    engine: Option<String>,
    #[serde(default)]
    implementation: Option<serde_yaml::Value>,
    #[serde(default)]
    must_be: Option<f64>,
    #[serde(default)]
    must_not_be: Option<f64>,
    #[serde(default)]
    must_be_greater_than: Option<f64>,
    #[serde(default)]
    must_be_greater_or_equal_to: Option<f64>,
    #[serde(default)]
    must_be_less_than: Option<f64>,
    #[serde(default)]
    must_be_less_or_equal_to: Option<f64>,
    #[serde(default)]
    must_be_between: Option<[f64; 2]>,
    #[serde(default)]
    must_not_be_between: Option<[f64; 2]>,
}

impl OdcsQuality {
    fn operator(&self) -> Result<Option<Operator>, String> {
        let ops: Vec<Operator> = [
            self.must_be.map(Operator::Eq),
            self.must_not_be.map(Operator::Ne),
            self.must_be_greater_than.map(Operator::Gt),
            self.must_be_greater_or_equal_to.map(Operator::Ge),
            self.must_be_less_than.map(Operator::Lt),
            self.must_be_less_or_equal_to.map(Operator::Le),
            self.must_be_between.map(|[a, b]| Operator::Between(a, b)),
            self.must_not_be_between.map(|[a, b]| Operator::NotBetween(a, b)),
        ]
        .into_iter()
        .flatten()
        .collect();
        for op in &ops {
            if let Operator::Between(a, b) | Operator::NotBetween(a, b) = op
                && (a > b || !a.is_finite() || !b.is_finite())
            {
                return Err("a between operator needs two finite numbers, smallest first".into());
            }
        }
        match ops.as_slice() {
            [] => Ok(None),
            [op] => Ok(Some(*op)),
            _ => Err("give one operator (mustBe, mustBeLessThan, ...) per rule".into()),
        }
    }

    fn argument(&self, name: &str) -> Option<&serde_yaml::Value> {
        self.arguments.as_ref().and_then(|a| a.get(name))
    }

    /// Validates the entry and turns it into a rule; `column` is `None` at schema level.
    /// `Ok(None)` for `type: text` (documentation, nothing to execute).
    fn rule(&self, column: Option<&Column>, known: &dyn Fn(&str) -> bool) -> Result<Option<QualityRule>, String> {
        let severity = match self.severity.as_deref() {
            None | Some("error") => Severity::Error,
            Some("warning") => Severity::Warning,
            Some(other) => return Err(format!("severity must be error or warning, got {other}")),
        };
        let percent = match self.unit.as_deref() {
            None | Some("rows") => false,
            Some("percent") => true,
            Some(other) => return Err(format!("unit must be rows or percent, got {other}")),
        };
        let operator = self.operator()?;
        let check = match self.kind.as_deref().unwrap_or("library") {
            "text" => return Ok(None),
            "library" => match self.metric.as_deref() {
                Some("nullValues") | Some("missingValues") => self.null_values(column)?,
                Some("invalidValues") => self.invalid_values(column)?,
                Some("duplicateValues") => self.duplicate_values(column, known)?,
                Some("rowCount") => self.row_count(column, percent)?,
                other => return Err(format!("unsupported metric {other:?}")),
            },
            "custom" if self.engine.as_deref() == Some("mlsec") => self.freshness(column)?,
            other => {
                return Err(format!(
                    "quality type {other} (engine {:?}) is not executed by this pipeline; use library metrics, \
                     type text, or type custom with engine mlsec",
                    self.engine
                ));
            }
        };
        let operator = match (&check, operator) {
            (Check::Freshness { .. }, None) => None,
            (Check::Freshness { .. }, Some(_)) => return Err("freshness takes no operator".into()),
            (_, None) => return Err("a library metric needs one operator (mustBe, mustBeLessThan, ...)".into()),
            (_, op) => op,
        };
        let id = match &self.id {
            Some(id) => id.clone(),
            None => {
                let target = check.columns().join("_");
                if target.is_empty() { check.metric().to_string() } else { format!("{target}_{}", check.metric()) }
            }
        };
        Ok(Some(QualityRule { id, check, severity, operator, percent }))
    }

    /// `nullValues` (alias `missingValues`): nulls in a column. Only nulls are counted.
    fn null_values(&self, column: Option<&Column>) -> Result<Check, String> {
        let column = column.ok_or("nullValues applies to a property, not the schema")?;
        if self.arguments.is_some() {
            return Err("arguments of nullValues/missingValues (e.g. missingValues lists) are not supported; \
                        only nulls are counted"
                .into());
        }
        Ok(Check::NullValues { column: column.name.clone() })
    }

    /// `invalidValues`: `validValues` and `pattern` for strings, `minimum`/`maximum` for numbers.
    fn invalid_values(&self, column: Option<&Column>) -> Result<Check, String> {
        let c = column.ok_or("invalidValues applies to a property")?;
        if let Some(serde_yaml::Value::Mapping(m)) = &self.arguments {
            for k in m.keys() {
                let k = k.as_str().unwrap_or("?");
                if !["validValues", "pattern", "minimum", "maximum"].contains(&k) {
                    return Err(format!("invalidValues: unknown argument {k}"));
                }
            }
        }
        let valid_values = match self.argument("validValues") {
            None => None,
            Some(serde_yaml::Value::Sequence(items)) => Some(
                items
                    .iter()
                    .map(scalar_text)
                    .collect::<Option<Vec<_>>>()
                    .ok_or("arguments.validValues must be a list of scalars")?,
            ),
            Some(_) => return Err("arguments.validValues must be a list".into()),
        };
        let pattern = match self.argument("pattern") {
            None => None,
            Some(serde_yaml::Value::String(p)) => {
                regex::Regex::new(p).map_err(|e| format!("arguments.pattern: {e}"))?;
                Some(p.clone())
            }
            Some(_) => return Err("arguments.pattern must be a string".into()),
        };
        let (minimum, maximum) = (self.finite_argument("minimum")?, self.finite_argument("maximum")?);
        if let (Some(lo), Some(hi)) = (minimum, maximum)
            && lo > hi
        {
            return Err("arguments.minimum is above arguments.maximum".into());
        }
        if (valid_values.is_some() || pattern.is_some()) && c.ty != ColumnType::String {
            return Err("validValues and pattern apply to string columns".into());
        }
        if (minimum.is_some() || maximum.is_some()) && !matches!(c.ty, ColumnType::Int64 | ColumnType::Float64) {
            return Err("minimum and maximum apply to numeric columns".into());
        }
        if valid_values.is_none() && pattern.is_none() && minimum.is_none() && maximum.is_none() {
            return Err("invalidValues needs arguments: validValues, pattern, minimum or maximum".into());
        }
        Ok(Check::InvalidValues { column: c.name.clone(), valid_values, pattern, minimum, maximum })
    }

    fn finite_argument(&self, name: &str) -> Result<Option<f64>, String> {
        match self.argument(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or(format!("arguments.{name} must be a finite number")),
        }
    }

    /// `duplicateValues`: one column (property level) or `arguments.properties` (schema level).
    fn duplicate_values(&self, column: Option<&Column>, known: &dyn Fn(&str) -> bool) -> Result<Check, String> {
        let columns = match (column, self.argument("properties")) {
            (Some(c), None) => vec![c.name.clone()],
            (None, Some(serde_yaml::Value::Sequence(items))) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .filter(|v| !v.is_empty())
                .ok_or("arguments.properties must list column names")?,
            (Some(_), Some(_)) => return Err("arguments.properties belongs to schema-level rules".into()),
            (None, _) => return Err("a schema-level duplicateValues needs arguments.properties".into()),
        };
        if let Some(unknown) = columns.iter().find(|c| !known(c)) {
            return Err(format!("duplicateValues: unknown column {unknown}"));
        }
        Ok(Check::DuplicateValues { columns })
    }

    /// `rowCount`: rows read, at schema level, counted in rows.
    fn row_count(&self, column: Option<&Column>, percent: bool) -> Result<Check, String> {
        if column.is_some() {
            return Err("rowCount applies to the schema, not a property".into());
        }
        if percent {
            return Err("rowCount counts rows; unit percent does not apply".into());
        }
        Ok(Check::RowCount)
    }

    /// `type: custom`, `engine: mlsec`: `implementation.freshness.maxAgeSeconds` on a timestamp.
    fn freshness(&self, column: Option<&Column>) -> Result<Check, String> {
        let c = column.ok_or("mlsec custom rules apply to a property")?;
        let secs = self
            .implementation
            .as_ref()
            .and_then(|i| i.get("freshness"))
            .and_then(|f| f.get("maxAgeSeconds"))
            .and_then(|s| s.as_u64())
            .filter(|s| (1..=100 * 365 * 86_400).contains(s))
            .ok_or("implementation must be freshness.maxAgeSeconds (1 s to 100 years)")?;
        if c.ty != ColumnType::Timestamp {
            return Err("freshness applies to timestamp columns".into());
        }
        Ok(Check::Freshness { column: c.name.clone(), max_age_ms: secs as i64 * 1000 })
    }
}

/// A YAML scalar as text (strings, numbers, booleans).
pub(super) fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The contract's quality rules: `required` columns first, then property-level entries,
/// then schema-level entries. Rule ids must be unique.
/// `per_column[i]` holds the entries of `columns[i]`.
pub(super) fn parse_quality(
    columns: &[Column],
    per_column: &[&[OdcsQuality]],
    schema_level: &[OdcsQuality],
) -> Result<Vec<QualityRule>, String> {
    let known = |name: &str| columns.iter().any(|c| c.name == name);
    let mut rules: Vec<QualityRule> = columns
        .iter()
        .filter(|c| c.required)
        .map(|c| QualityRule {
            id: format!("{}_required", c.name),
            check: Check::Required { column: c.name.clone() },
            severity: Severity::Error,
            operator: None,
            percent: false,
        })
        .collect();
    for (entries, c) in per_column.iter().zip(columns) {
        for q in entries.iter() {
            if let Some(rule) = q.rule(Some(c), &known).map_err(|e| format!("column {} quality: {e}", c.name))? {
                rules.push(rule);
            }
        }
    }
    for q in schema_level {
        if let Some(rule) = q.rule(None, &known).map_err(|e| format!("schema quality: {e}"))? {
            rules.push(rule);
        }
    }
    for (i, r) in rules.iter().enumerate() {
        if rules[..i].iter().any(|o| o.id == r.id) {
            return Err(format!("quality rule id {} is used twice", r.id));
        }
    }
    Ok(rules)
}
