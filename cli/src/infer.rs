//! `mlsec contract infer`: a first data contract from a sample file, for a person to
//! review. The sample goes through the gateway's own gate (gzip, sniffing, UTF-8, CSV or
//! JSON Lines parsing) under a permissive contract whose columns are all text, so what is
//! profiled is what the pipeline will read; then each column's values are profiled:
//! type, nulls, bounds, lengths, small value sets, a shape pattern for id-like columns,
//! likely personal data (by header and by content) and likely protected attributes.
//!
//! The contract never holds a sample value, except the allowed-value sets of columns that
//! are not personal data. Limits are sized from the sample with headroom.

use std::{
    collections::{BTreeMap, HashSet},
    io::Read,
    path::Path,
};

use anyhow::{Context, Result, bail};
use mlsec_events::DatasetRole;
use mlsec_ingest::{jsonl::Members, validate::Gate};
use mlsec_runtime::contract::{
    Column, ColumnType, DatasetContract, Format, FormulaPolicy, IngestPolicy, Pseudonymisation,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

/// A string column with at most this many distinct values (and values repeating) is a
/// category: its values become the allowed set.
const MAX_CATEGORIES: usize = 20;
/// Share of a column's values that must look like a kind of personal data.
const CONTENT_SHARE: f64 = 0.8;
/// The largest sample read (as stored, and inflated).
const SAMPLE_LIMIT: u64 = 1 << 30;
/// Distinct values kept per column for the category and uniqueness tests.
const DISTINCT_CAP: usize = 2_000_000;

/// What `infer` is asked for.
#[derive(Debug, Clone)]
pub struct InferOptions {
    pub dataset: String,
    pub source: String,
    pub role: DatasetRole,
    /// Required for a scoring dataset (the contract names the model that scores it).
    pub scoring_model: Option<String>,
    pub domain: Option<String>,
}

/// The kind of personal data a column seems to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Cpf,
    Cnpj,
    Phone,
    PersonName,
    Address,
    BirthDate,
    Identifier,
}

impl PiiKind {
    fn label(self) -> &'static str {
        match self {
            PiiKind::Email => "an e-mail address",
            PiiKind::Cpf => "a CPF (Brazilian taxpayer id)",
            PiiKind::Cnpj => "a CNPJ (Brazilian company id)",
            PiiKind::Phone => "a phone number",
            PiiKind::PersonName => "a person's name",
            PiiKind::Address => "an address",
            PiiKind::BirthDate => "a date of birth",
            PiiKind::Identifier => "a personal identifier",
        }
    }

    /// The suggested treatment: identifiers keyed-hashed (still joinable within a domain),
    /// names and addresses dropped, birth dates coarsened to the month.
    fn treatment(self, ty: ColumnType) -> Pseudonymisation {
        match (self, ty) {
            (PiiKind::BirthDate, ColumnType::Timestamp) => {
                Pseudonymisation::Generalise(mlsec_runtime::contract::Generalisation::Month)
            }
            (PiiKind::PersonName | PiiKind::Address | PiiKind::BirthDate, _) => Pseudonymisation::Drop,
            (_, ColumnType::String) => Pseudonymisation::Hmac,
            _ => Pseudonymisation::Drop,
        }
    }
}

/// One column as inferred (also the `--output json` summary).
#[derive(Debug, Clone, Serialize)]
pub struct InferredColumn {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `timestamp`.
    pub r#type: &'static str,
    pub required: bool,
    pub nulls: u64,
    pub distinct: Option<usize>,
    pub primary_key: bool,
    pub pii: Option<PiiKind>,
    /// Why it was flagged: `header`, `content` or both.
    pub pii_evidence: Vec<&'static str>,
    pub pseudonymisation: String,
    pub protected: bool,
    /// Allowed values (categories of non-personal columns only).
    pub allowed: Option<Vec<String>>,
    pub pattern: Option<String>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub max_length: Option<usize>,
    #[serde(skip)]
    ty: ColumnType,
    #[serde(skip)]
    observed: (Option<f64>, Option<f64>),
    #[serde(skip)]
    formula_values: u64,
}

/// `infer`'s result: the contract text and what was found.
#[derive(Debug, Serialize)]
pub struct Inferred {
    pub dataset: String,
    pub rows: u64,
    pub rows_rejected: u64,
    pub format: String,
    pub gzip: bool,
    pub columns: Vec<InferredColumn>,
    /// Things a person should decide (rejected rows, protected-looking columns left
    /// unmarked, columns with no values).
    pub notes: Vec<String>,
    /// What `mlsec check` says of the sample under the inferred contract.
    pub sample_verdict: crate::check::Verdict,
    #[serde(skip)]
    pub contract_yaml: String,
}

/// Infers a contract from `file` (CSV, JSON Lines, optionally gzip).
pub fn infer_file(file: &Path, opts: &InferOptions) -> Result<Inferred> {
    let size = std::fs::metadata(file).with_context(|| format!("read {}", file.display()))?.len();
    if size > SAMPLE_LIMIT {
        bail!("the sample is {size} bytes; infer reads at most {SAMPLE_LIMIT} (take the first rows)");
    }
    let body = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    infer_bytes(&file.display().to_string(), &body, opts)
}

/// [`infer_file`] on bytes already read.
pub fn infer_bytes(file: &str, body: &[u8], opts: &InferOptions) -> Result<Inferred> {
    check_name("dataset", &opts.dataset)?;
    check_name("source", &opts.source)?;
    if opts.role == DatasetRole::Scoring && opts.scoring_model.is_none() {
        bail!("a scoring dataset names the model that scores it: add --scoring-model NAME");
    }
    if body.len() as u64 > SAMPLE_LIMIT {
        bail!("the sample is {} bytes; infer reads at most {SAMPLE_LIMIT} (take the first rows)", body.len());
    }
    let gzip = body.starts_with(b"\x1f\x8b");
    let text = if gzip {
        // Inflated under the same cap: a small bomb cannot fill memory.
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(body)
            .take(SAMPLE_LIMIT + 1)
            .read_to_end(&mut out)
            .context("the gzip sample is corrupt")?;
        if out.len() as u64 > SAMPLE_LIMIT {
            bail!("the sample inflates beyond {SAMPLE_LIMIT} bytes; infer on its first rows");
        }
        out
    } else {
        body.to_vec()
    };
    if text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&text).iter().all(u8::is_ascii_whitespace) {
        bail!("the sample is empty: nothing to infer from");
    }
    let (format, names, json_types) = layout(&text)?;
    let longest_line = text.split(|b| *b == b'\n').map(<[u8]>::len).max().unwrap_or(0);
    let permissive = permissive_contract(&opts.dataset, &names, &json_types, format);
    let mut gate = Gate::new(&permissive, mlsec_runtime::now_ms(), vec![])
        .map_err(|r| anyhow::anyhow!("the gate refused the sample: {} ({})", r.reason_code.as_str(), r.detail))?;
    for chunk in body.chunks(64 * 1024) {
        gate.push(chunk)
            .map_err(|r| anyhow::anyhow!("the gate refused the sample: {} ({})", r.reason_code.as_str(), r.detail))?;
    }
    let accepted = gate
        .finish()
        .map_err(|r| anyhow::anyhow!("the gate refused the sample: {} ({})", r.reason_code.as_str(), r.detail))?;
    let mut notes = Vec::new();
    if !accepted.rejects.is_empty() {
        let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &accepted.rejects {
            *by_reason.entry(r.reason.as_str()).or_default() += 1;
        }
        let reasons: Vec<String> = by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
        notes.push(format!(
            "the gate rejected {} of {} sample rows ({}); they were not profiled",
            accepted.rejects.len(),
            accepted.rows_read,
            reasons.join(", ")
        ));
    }
    if accepted.rows == 0 {
        bail!("no row of the sample passed the gate: nothing to infer from");
    }
    let mut profiles: Vec<Profile> = names.iter().map(|n| Profile::new(n)).collect();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(accepted.parquet))?.build()?;
    let mut longest_field = 0usize;
    for batch in reader {
        let batch = batch?;
        for (i, p) in profiles.iter_mut().enumerate() {
            let col = batch.column(i);
            for row in 0..batch.num_rows() {
                match cell_text(col.as_ref(), row) {
                    None => p.nulls += 1,
                    Some(v) => {
                        longest_field = longest_field.max(v.len());
                        p.observe(&v);
                    }
                }
            }
        }
    }
    let mut columns: Vec<InferredColumn> =
        profiles.iter().zip(&json_types).map(|(p, forced)| p.conclude(*forced, &mut notes)).collect();
    // The primary key: the first unique, complete, id-named column.
    if let Some(pk) = columns.iter_mut().find(|c| {
        c.required
            && c.pii.is_none()
            && matches!(c.ty, ColumnType::String | ColumnType::Int64)
            && c.distinct == Some(accepted.rows as usize)
            && is_id_name(&c.name)
    }) {
        pk.primary_key = true;
        pk.allowed = None;
    }
    let sizing = Sizing {
        rows: accepted.rows,
        object_bytes: body.len() as u64,
        ratio: if gzip { text.len() as u64 / (body.len() as u64).max(1) } else { 1 },
        longest_line,
        longest_field,
        earliest_ms: columns
            .iter()
            .filter(|c| c.ty == ColumnType::Timestamp)
            .filter_map(|c| c.observed.0)
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.min(b)))),
        latest_ms: columns
            .iter()
            .filter(|c| c.ty == ColumnType::Timestamp)
            .filter_map(|c| c.observed.1)
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b)))),
        formulas: columns.iter().filter(|c| c.ty == ColumnType::String && c.formula_values > 0).count(),
    };
    if sizing.formulas > 0 {
        notes.push(format!(
            "{} text column(s) hold values a spreadsheet would run as formulas (+, -, =, @ first): formulaCells is \
             neutralise (kept with a leading ') instead of reject",
            sizing.formulas
        ));
    }
    let yaml = render_contract(opts, file, &columns, &sizing);
    // The contract must be one the pipeline loads, and say what was meant.
    let parsed =
        DatasetContract::parse(Path::new("inferred.yaml"), &yaml).map_err(|e| anyhow::anyhow!("internal: {e}"))?;
    let parsed_names: Vec<&str> = parsed.columns.iter().map(|c| c.name.as_str()).collect();
    if parsed_names != names.iter().map(String::as_str).collect::<Vec<_>>() {
        bail!("internal: the written contract's column names do not read back as the sample's");
    }
    for c in &columns {
        let Some(values) = &c.allowed else { continue };
        let read_back = parsed.quality.iter().find_map(|r| match &r.check {
            mlsec_runtime::contract::Check::InvalidValues { column, valid_values: Some(v), .. }
                if *column == c.name =>
            {
                Some(v)
            }
            _ => None,
        });
        if read_back != Some(values) {
            bail!("internal: the allowed values of {} do not read back as written", c.name);
        }
    }
    // The sample under its own contract, as `mlsec check` would judge it.
    let key = format!("{}{}", parsed.landing_prefix, sample_name(file));
    let own = mlsec_runtime::contract::Contracts { datasets: vec![parsed], models: vec![] };
    let verdict = crate::check::check_bytes(&own, file, &key, body, None, mlsec_runtime::now_ms());
    if verdict.verdict != crate::check::Verdict::Accepted {
        notes.push(format!(
            "the sample itself would not pass this contract ({:?}: {}): review the contract before use",
            verdict.verdict,
            verdict.reason_code.clone().unwrap_or_else(|| verdict.dq_rejecting.join(", "))
        ));
    }
    for c in &mut columns {
        c.pseudonymisation = describe(c);
    }
    Ok(Inferred {
        sample_verdict: verdict.verdict,
        dataset: opts.dataset.clone(),
        rows: accepted.rows,
        rows_rejected: accepted.rejects.len() as u64,
        format: accepted.format.to_string(),
        gzip,
        columns,
        notes,
        contract_yaml: yaml,
    })
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        bail!("--{what} {name:?}: use 1-64 lower-case letters, digits, '_' or '-'");
    }
    Ok(())
}

/// The format, column names and (JSON Lines) each column's JSON type, from the text.
fn layout(text: &[u8]) -> Result<(Format, Vec<String>, Vec<Option<ColumnType>>)> {
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        // JSON Lines: keys in first-seen order; a key's type is the JSON type of its values
        // (numbers with a fraction anywhere make it a number column).
        let mut names: Vec<String> = Vec::new();
        let mut kinds: Vec<Option<ColumnType>> = Vec::new();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
            let Ok(Members(members)) = serde_json::from_slice::<Members>(line) else {
                continue;
            };
            for (k, v) in members {
                let i = match names.iter().position(|n| *n == k) {
                    Some(i) => i,
                    None => {
                        names.push(k);
                        kinds.push(None);
                        names.len() - 1
                    }
                };
                let kind = match &v {
                    serde_json::Value::Null => continue,
                    serde_json::Value::Bool(_) => ColumnType::Boolean,
                    serde_json::Value::Number(n) if n.is_i64() => ColumnType::Int64,
                    serde_json::Value::Number(_) => ColumnType::Float64,
                    _ => ColumnType::String,
                };
                kinds[i] = Some(match (kinds[i], kind) {
                    (None, k) => k,
                    (Some(ColumnType::Int64), ColumnType::Float64) | (Some(ColumnType::Float64), ColumnType::Int64) => {
                        ColumnType::Float64
                    }
                    (Some(a), b) if a == b => a,
                    _ => ColumnType::String,
                });
            }
        }
        if names.is_empty() {
            bail!("no JSON object in the sample");
        }
        return Ok((Format::Jsonl, names, kinds));
    }
    let header_len = text.iter().position(|b| *b == b'\n').map_or(text.len(), |nl| nl + 1);
    let header = &text[..header_len];
    let (mut ranges, mut scratch) = (Vec::new(), Vec::new());
    let names = match mlsec_ingest::csv::next_record(header, true, &mut ranges, &mut scratch) {
        mlsec_ingest::csv::Record::Complete { in_scratch, error: None, .. } => {
            let src: &[u8] = if in_scratch { &scratch } else { header };
            ranges.iter().map(|(a, b)| String::from_utf8_lossy(&src[*a..*b]).into_owned()).collect::<Vec<_>>()
        }
        _ => bail!("the first line is not a CSV header"),
    };
    if names.iter().any(|n| n.trim().is_empty()) {
        bail!("the CSV header has an empty column name");
    }
    let n = names.len();
    Ok((Format::Csv, names, vec![None; n]))
}

/// Every column text (JSON Lines: its JSON type), every limit wide: the gate parses and
/// checks bytes, the profile decides.
fn permissive_contract(
    dataset: &str,
    names: &[String],
    json_types: &[Option<ColumnType>],
    format: Format,
) -> DatasetContract {
    let columns = names
        .iter()
        .zip(json_types)
        .map(|(name, ty)| Column {
            name: name.clone(),
            ty: ty.unwrap_or(ColumnType::String),
            required: false,
            pii: false,
            protected: false,
            primary_key: false,
            pseudonymisation: Pseudonymisation::None,
            minimum: None,
            maximum: None,
            max_length: None,
        })
        .collect();
    DatasetContract {
        id: format!("urn:mlsec:infer:{dataset}"),
        dataset: dataset.to_string(),
        version: "0.0.0".into(),
        domain: "infer".into(),
        role: DatasetRole::Training,
        landing_prefix: format!("infer/{dataset}/"),
        ingest: IngestPolicy {
            formats: vec![format],
            gzip: true,
            max_object_bytes: SAMPLE_LIMIT,
            max_decompressed_bytes: SAMPLE_LIMIT,
            max_compression_ratio: 1_000_000,
            max_line_bytes: 1 << 26,
            max_field_bytes: 1 << 24,
            max_rows: u64::MAX / 4,
            max_rejected_ratio: 1.0,
            // `-12.5`, `+55 11 ...` must be profiled as they are.
            formula_cells: FormulaPolicy::Keep,
            allowed_writers: vec![],
            max_future_ms: 100 * 365 * 86_400_000,
            min_timestamp_ms: i64::MIN / 4,
        },
        scoring_model: None,
        holdout_fraction: 0.0,
        columns,
        quality: vec![],
    }
}

fn cell_text(col: &dyn arrow::array::Array, row: usize) -> Option<String> {
    use arrow::array::{AsArray, types::*};
    use arrow::datatypes::DataType;
    if col.is_null(row) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(row).to_string(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Float64 => {
            let v = col.as_primitive::<Float64Type>().value(row);
            // Keep the fraction visible, so 5.0 is not taken for an integer.
            if v.fract() == 0.0 { format!("{v:.1}") } else { v.to_string() }
        }
        DataType::Boolean => col.as_boolean().value(row).to_string(),
        _ => return None,
    })
}

/// A run of one character class in a value's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Digit,
    Upper,
    Lower,
    /// A punctuation character, kept literally.
    Lit(char),
}

fn shape(v: &str) -> Option<Vec<(Class, usize)>> {
    let mut out: Vec<(Class, usize)> = Vec::new();
    for ch in v.chars() {
        let c = match ch {
            '0'..='9' => Class::Digit,
            'A'..='Z' => Class::Upper,
            'a'..='z' => Class::Lower,
            '-' | '_' | '.' | '/' | ':' | '#' | '@' | '+' => Class::Lit(ch),
            _ => return None,
        };
        match out.last_mut() {
            Some((last, n)) if *last == c && !matches!(c, Class::Lit(_)) => *n += 1,
            _ => out.push((c, 1)),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A column's values, seen once.
struct Profile {
    name: String,
    non_null: u64,
    nulls: u64,
    all_bool: bool,
    all_int: bool,
    all_float: bool,
    all_ts: bool,
    min: Option<f64>,
    max: Option<f64>,
    min_len: usize,
    max_len: usize,
    distinct: HashSet<String>,
    distinct_overflow: bool,
    /// Shape runs with (min, max) lengths, while every value has the same run classes.
    shape: Option<Vec<(Class, usize, usize)>>,
    shape_broken: bool,
    /// Values a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first).
    formula: u64,
    email: u64,
    cpf: u64,
    cnpj: u64,
    phone: u64,
    person_name: u64,
}

impl Profile {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            non_null: 0,
            nulls: 0,
            all_bool: true,
            all_int: true,
            all_float: true,
            all_ts: true,
            min: None,
            max: None,
            min_len: usize::MAX,
            max_len: 0,
            distinct: HashSet::new(),
            distinct_overflow: false,
            shape: None,
            shape_broken: false,
            formula: 0,
            email: 0,
            cpf: 0,
            cnpj: 0,
            phone: 0,
            person_name: 0,
        }
    }

    fn observe(&mut self, v: &str) {
        self.non_null += 1;
        self.min_len = self.min_len.min(v.len());
        self.max_len = self.max_len.max(v.len());
        self.all_bool &= matches!(v, "true" | "false" | "TRUE" | "FALSE" | "True" | "False");
        let leading_zero = {
            let digits = v.strip_prefix('-').unwrap_or(v);
            digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.")
        };
        let int = v.parse::<i64>().ok().filter(|_| !leading_zero);
        self.all_int &= int.is_some();
        let float = v.parse::<f64>().ok().filter(|f| f.is_finite() && !leading_zero);
        self.all_float &= float.is_some();
        let ts = mlsec_runtime::time::parse_rfc3339_ms(v.as_bytes());
        self.all_ts &= ts.is_some();
        if let Some(x) = float.or(ts.map(|t| t as f64)) {
            self.min = Some(self.min.map_or(x, |m| m.min(x)));
            self.max = Some(self.max.map_or(x, |m| m.max(x)));
        }
        if !self.distinct_overflow {
            if self.distinct.len() >= DISTINCT_CAP {
                self.distinct_overflow = true;
                self.distinct.clear();
            } else {
                self.distinct.insert(v.to_string());
            }
        }
        if !self.shape_broken {
            match (shape(v), &mut self.shape) {
                (None, _) => self.shape_broken = true,
                (Some(s), None) => self.shape = Some(s.into_iter().map(|(c, n)| (c, n, n)).collect()),
                (Some(s), Some(known)) => {
                    if s.len() != known.len() || s.iter().zip(known.iter()).any(|(a, b)| a.0 != b.0) {
                        self.shape_broken = true;
                    } else {
                        for ((_, n), (_, lo, hi)) in s.iter().zip(known.iter_mut()) {
                            *lo = (*lo).min(*n);
                            *hi = (*hi).max(*n);
                        }
                    }
                }
            }
        }
        self.formula += mlsec_ingest::values::is_formula(v.as_bytes()) as u64;
        self.email += is_email(v) as u64;
        let digits: String = v.chars().filter(char::is_ascii_digit).collect();
        let only = |allowed: &str| v.chars().all(|c| c.is_ascii_digit() || allowed.contains(c));
        self.cpf += (digits.len() == 11 && only(".-") && cpf_valid(&digits)) as u64;
        self.cnpj += (digits.len() == 14 && only("./-") && cnpj_valid(&digits)) as u64;
        self.phone += (is_phone(v, &digits)) as u64;
        self.person_name += is_person_name(v) as u64;
    }

    fn share(&self, n: u64) -> bool {
        self.non_null > 0 && n as f64 >= CONTENT_SHARE * self.non_null as f64
    }

    fn conclude(&self, forced: Option<ColumnType>, notes: &mut Vec<String>) -> InferredColumn {
        let any = self.non_null > 0;
        let tokens = tokens(&self.name);
        let has = |words: &[&str]| tokens.iter().any(|t| words.contains(&t.as_str()));
        let joined = tokens.concat();
        let ty = match forced {
            // A JSON string may still hold a timestamp (the gate parses it from the string).
            Some(ColumnType::String) if any && self.all_ts => ColumnType::Timestamp,
            Some(t) => t,
            None if !any => ColumnType::String,
            None if self.all_bool => ColumnType::Boolean,
            None if self.all_int => ColumnType::Int64,
            None if self.all_float => ColumnType::Float64,
            None if self.all_ts => ColumnType::Timestamp,
            None => ColumnType::String,
        };
        // Codes are labels, not quantities (merchant category 5411, a CEP): kept as text.
        let ty = if ty == ColumnType::Int64
            && forced.is_none()
            && has(&["code", "category", "mcc", "zip", "cep", "postcode", "cat", "cnae", "ncm"])
        {
            ColumnType::String
        } else {
            ty
        };
        if !any {
            notes.push(format!("column {} has no value in the sample: typed string, optional", self.name));
        }
        let distinct = (!self.distinct_overflow).then_some(self.distinct.len());
        let is_category = ty == ColumnType::String
            && distinct.is_some_and(|d| (1..=MAX_CATEGORIES).contains(&d) && (d as u64) * 2 <= self.non_null);
        // By header. A kind applies to the types it can be stored as (a numeric
        // `mail_count` is no e-mail address).
        let text_like = ty == ColumnType::String;
        let id_like = matches!(ty, ColumnType::String | ColumnType::Int64);
        // Words that make a `..._name` column name a thing, not a person (whole words: a
        // `shopper_name` is a person).
        let not_a_person = [
            "product", "merchant", "file", "company", "brand", "item", "bank", "store", "shop", "host", "column",
            "table", "dataset", "model", "city", "street", "country", "category", "plan", "event", "campaign",
            "segment", "type", "status", "branch", "device", "app", "domain",
        ];
        let by_header = if text_like && (has(&["email", "mail"]) || joined.contains("email")) {
            Some(PiiKind::Email)
        } else if id_like && has(&["cpf"]) {
            Some(PiiKind::Cpf)
        } else if id_like && has(&["cnpj"]) {
            Some(PiiKind::Cnpj)
        } else if id_like && has(&["phone", "telephone", "telefone", "celular", "mobile", "tel", "fone", "whatsapp"]) {
            Some(PiiKind::Phone)
        } else if text_like
            && ((has(&["name", "nome", "surname", "firstname", "lastname", "fullname"]) && !has(&not_a_person))
                // One word (`customername`, `username`): not one that starts with a thing.
                || (tokens.len() == 1
                    && joined.ends_with("name")
                    && !not_a_person.iter().any(|w| joined.starts_with(w))))
        {
            Some(PiiKind::PersonName)
        } else if text_like && has(&["address", "endereco", "street", "rua", "zip", "postcode", "cep"]) {
            Some(PiiKind::Address)
        } else if matches!(ty, ColumnType::String | ColumnType::Timestamp | ColumnType::Int64)
            && has(&["birth", "dob", "birthday", "nascimento", "birthdate"])
        {
            Some(PiiKind::BirthDate)
        } else if id_like
            && (has(&["ssn", "passport", "rg", "nin", "iban"])
                || (has(&["tax", "cpr", "nif", "nino"]) && has(&["id", "number", "no"])))
        {
            Some(PiiKind::Identifier)
        } else {
            None
        };
        // By content (strings only). Name-shaped values alone do not make a small set of
        // categories personal ("Credit Card", "New York"); with a name header they do.
        let content = |names: bool| {
            if ty != ColumnType::String {
                None
            } else if self.share(self.email) {
                Some(PiiKind::Email)
            } else if self.share(self.cpf) {
                Some(PiiKind::Cpf)
            } else if self.share(self.cnpj) {
                Some(PiiKind::Cnpj)
            } else if self.share(self.phone) {
                Some(PiiKind::Phone)
            } else if names && self.share(self.person_name) {
                Some(PiiKind::PersonName)
            } else {
                None
            }
        };
        let by_content = content(!is_category || by_header.is_some());
        // Kinds with a content test can be refuted by the values: German credit's
        // "telephone" is "none" or "yes, registered ...", a small set of categories. Other
        // kinds (names, addresses, birth dates, identifiers) are taken on the header's word.
        // Names are not refutable: a single first name fails the two-word content test.
        let refutable = matches!(by_header, Some(PiiKind::Email | PiiKind::Cpf | PiiKind::Cnpj | PiiKind::Phone));
        let (pii, evidence) = match (by_header, by_content) {
            (Some(h), Some(_)) => (Some(h), vec!["header", "content"]),
            (None, Some(c)) => (Some(c), vec!["content"]),
            (Some(h), None) if refutable && (is_category || ty == ColumnType::Boolean) => {
                notes.push(format!(
                    "column {}: the name suggests {}, but its values are a small set of categories; not marked \
                     personal data, and its values are not copied into the contract (add them as validValues if \
                     they are not personal)",
                    self.name,
                    h.label()
                ));
                (None, vec![])
            }
            (Some(h), None) => (Some(h), vec!["header"]),
            (None, None) => (None, vec![]),
        };
        let protected_name = has(&[
            "age",
            "gender",
            "sex",
            "race",
            "ethnicity",
            "ethnic",
            "religion",
            "marital",
            "nationality",
            "disability",
            "foreign",
        ]);
        let protected = protected_name && pii.is_none() && (is_category || ty == ColumnType::Boolean);
        if protected_name && !protected && pii.is_none() {
            notes.push(format!(
                "column {} looks like a protected attribute but has {} distinct values: add a banded copy (e.g. {}_band) \
                 and mark that protected: true for the fairness gate",
                self.name,
                distinct.map_or("many".to_string(), |d| d.to_string()),
                self.name
            ));
        }
        // A header that named personal data keeps the values out, whatever the content said.
        // Nor are name-shaped values copied, whatever the header says.
        let name_shaped = self.share(self.person_name);
        let allowed = (is_category && pii.is_none() && by_header.is_none() && !name_shaped).then(|| {
            // As the gate stores them: formula-like text is kept with a leading `'` once
            // the contract neutralises it (it does when a text column holds any).
            let mut v: Vec<String> = self
                .distinct
                .iter()
                .map(|v| if mlsec_ingest::values::is_formula(v.as_bytes()) { format!("'{v}") } else { v.clone() })
                .collect();
            v.sort();
            v
        });
        if is_category && pii.is_none() && name_shaped {
            notes.push(format!(
                "column {}: its values look like people's names; not marked personal data by its name, and its values \
                 are not copied into the contract: review it",
                self.name
            ));
        }
        let unique = distinct.is_some_and(|d| d as u64 == self.non_null);
        let pattern = match (&self.shape, self.shape_broken, ty) {
            (Some(s), false, ColumnType::String)
                if !is_category && (unique || pii.is_some()) && s.len() > 1 && self.formula == 0 =>
            {
                Some(pattern(s))
            }
            _ => None,
        };
        let (minimum, maximum) = match ty {
            ColumnType::Int64 | ColumnType::Float64 => bounds(self.min, self.max),
            _ => (None, None),
        };
        let max_length = match ty {
            ColumnType::String if any && self.min_len == self.max_len && self.max_len <= 8 => Some(self.max_len),
            ColumnType::String if any => Some((self.max_len * 2).next_power_of_two().max(8)),
            _ => None,
        };
        InferredColumn {
            name: self.name.clone(),
            r#type: type_name(ty),
            required: any && self.nulls == 0,
            nulls: self.nulls,
            distinct,
            primary_key: false,
            pii,
            pii_evidence: evidence,
            pseudonymisation: String::new(),
            protected,
            allowed,
            pattern,
            minimum,
            maximum,
            max_length,
            ty,
            observed: (self.min, self.max),
            formula_values: self.formula,
        }
    }
}

fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::String => "string",
        ColumnType::Int64 => "integer",
        ColumnType::Float64 => "number",
        ColumnType::Boolean => "boolean",
        ColumnType::Timestamp => "timestamp",
    }
}

/// Lower-case words of a column name (`customerEmail`, `customer-e-mail` → customer, email).
fn tokens(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if !ch.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = ch.is_lowercase();
        cur.extend(ch.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    // "e mail" → "email".
    let mut merged: Vec<String> = Vec::new();
    for t in out {
        if t == "mail" && merged.last().is_some_and(|p| p == "e") {
            merged.pop();
            merged.push("email".into());
        } else {
            merged.push(t);
        }
    }
    merged
}

fn is_id_name(name: &str) -> bool {
    let t = tokens(name);
    t.last().is_some_and(|l| ["id", "key", "uuid", "guid", "number", "ref", "reference"].contains(&l.as_str()))
}

fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else { return false };
    let Some((_, tld)) = domain.rsplit_once('.') else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && !v.contains(char::is_whitespace)
        && domain.split('.').all(|p| !p.is_empty())
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
}

fn is_phone(v: &str, digits: &str) -> bool {
    let formatted = v.starts_with('+') || v.contains('(') || (v.contains([' ', '-']) && digits.len() >= 10);
    (10..=13).contains(&digits.len())
        && formatted
        && v.chars().all(|c| c.is_ascii_digit() || "+()- .".contains(c))
        && !cpf_valid(digits)
}

/// Two to four words, each a capital letter followed by lower-case letters (or a short
/// lower-case particle: da, de, dos, van, von).
fn is_person_name(v: &str) -> bool {
    let words: Vec<&str> = v.split(' ').collect();
    (2..=4).contains(&words.len())
        && v.len() <= 60
        && words.iter().all(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(c) if c.is_uppercase() => cs.clone().count() >= 1 && cs.all(|c| c.is_lowercase() || c == '\''),
                _ => ["da", "de", "do", "das", "dos", "e", "van", "von", "del", "di"].contains(w),
            }
        })
}

fn cpf_valid(d: &str) -> bool {
    let n: Vec<u32> = d.chars().filter_map(|c| c.to_digit(10)).collect();
    if n.len() != 11 || n.iter().all(|x| *x == n[0]) {
        return false;
    }
    let check = |len: usize| {
        let s: u32 = n[..len].iter().enumerate().map(|(i, x)| x * (len as u32 + 1 - i as u32)).sum();
        let r = (s * 10) % 11;
        if r == 10 { 0 } else { r }
    };
    check(9) == n[9] && check(10) == n[10]
}

fn cnpj_valid(d: &str) -> bool {
    let n: Vec<u32> = d.chars().filter_map(|c| c.to_digit(10)).collect();
    if n.len() != 14 || n.iter().all(|x| *x == n[0]) {
        return false;
    }
    let check = |len: usize| {
        let weights: Vec<u32> = if len == 12 {
            vec![5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
        } else {
            vec![6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
        };
        let s: u32 = n[..len].iter().zip(&weights).map(|(x, w)| x * w).sum();
        let r = s % 11;
        if r < 2 { 0 } else { 11 - r }
    };
    check(12) == n[12] && check(13) == n[13]
}

fn pattern(shape: &[(Class, usize, usize)]) -> String {
    let mut out = String::from("^");
    for (c, lo, hi) in shape {
        let class = match c {
            Class::Digit => "[0-9]".to_string(),
            Class::Upper => "[A-Z]".to_string(),
            Class::Lower => "[a-z]".to_string(),
            Class::Lit(ch) => regex_escape(*ch),
        };
        out.push_str(&class);
        match (c, lo == hi) {
            (Class::Lit(_), _) => {}
            (_, true) => out.push_str(&format!("{{{lo}}}")),
            // Variable runs: the sample's shortest to twice its longest.
            (_, false) => out.push_str(&format!("{{{lo},{}}}", hi * 2)),
        }
    }
    out.push('$');
    out
}

fn regex_escape(ch: char) -> String {
    if ".+*?()[]{}|^$\\/#".contains(ch) { format!("\\{ch}") } else { ch.to_string() }
}

/// Bounds with headroom: 0 for a column that never went negative, else twice the sample's
/// extreme; the top twice the sample's largest; both rounded out to 1, 2 or 5 × 10^k.
fn bounds(min: Option<f64>, max: Option<f64>) -> (Option<f64>, Option<f64>) {
    let (Some(lo), Some(hi)) = (min, max) else { return (None, None) };
    let lo = if lo >= 0.0 { 0.0 } else { -round_125(-lo * 2.0) };
    let hi = if hi <= 0.0 { 0.0 } else { round_125(hi * 2.0) };
    // Past f64's range (a sample near 1e308) no bound is written: the gate's own range
    // checks still apply.
    (lo.is_finite().then_some(lo), hi.is_finite().then_some(hi))
}

fn round_125(x: f64) -> f64 {
    if x <= 1.0 {
        return 1.0;
    }
    if !x.is_finite() || x > 1e307 {
        return f64::INFINITY;
    }
    let mut base = 10f64.powf(x.log10().floor());
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * base >= x {
                return m * base;
            }
        }
        base *= 10.0;
    }
}

struct Sizing {
    rows: u64,
    object_bytes: u64,
    ratio: u64,
    longest_line: usize,
    longest_field: usize,
    earliest_ms: Option<f64>,
    latest_ms: Option<f64>,
    /// Text columns with formula-like values.
    formulas: usize,
}

/// The file's name as it goes into a comment and a landing key: only characters that
/// cannot end a comment or a line.
fn sample_name(file: &str) -> String {
    Path::new(file)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("sample")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect()
}

fn describe(c: &InferredColumn) -> String {
    match treatment(c) {
        Pseudonymisation::None => "none".into(),
        Pseudonymisation::Hmac => "hmac".into(),
        Pseudonymisation::Drop => "drop".into(),
        Pseudonymisation::Mask { keep_last } => format!("mask (keep last {keep_last})"),
        Pseudonymisation::Generalise(g) => format!("generalise {g:?}").to_lowercase(),
    }
}

fn treatment(c: &InferredColumn) -> Pseudonymisation {
    match (c.pii, c.ty) {
        (Some(k), ty) => k.treatment(ty),
        // Exact event times single people out (quasi-identifier): kept to the hour.
        (None, ColumnType::Timestamp) => Pseudonymisation::Generalise(mlsec_runtime::contract::Generalisation::Hour),
        (None, _) => Pseudonymisation::None,
    }
}

/// A YAML double-quoted scalar of `s`, every character outside printable ASCII escaped
/// (`\uXXXX`, `\UXXXXXXXX` above the BMP; YAML has no surrogate pairs): YAML folds some characters JSON leaves
/// raw (U+0085 NEL becomes a space), so nothing but ASCII is written unescaped.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(ch),
            _ if (ch as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", ch as u32)),
            _ => out.push_str(&format!("\\U{:08X}", ch as u32)),
        }
    }
    out.push('"');
    out
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

fn render_contract(opts: &InferOptions, file: &str, columns: &[InferredColumn], s: &Sizing) -> String {
    let rows = s.rows;
    let ds = &opts.dataset;
    let role = match opts.role {
        DatasetRole::Training => "training",
        DatasetRole::Scoring => "scoring",
    };
    let mut y = String::new();
    let file_name = sample_name(file);
    y.push_str(&format!(
        "# Data contract (ODCS v3) for the {ds} dataset, inferred by `mlsec contract infer` from\n# {} rows of \
         {file_name}. Review it before use: types, required columns, personal data and limits\n# are guesses from \
         one sample. No sample value is copied here except the allowed values of\n# categories that are not personal \
         data.\n",
        rows
    ));
    y.push_str("apiVersion: v3.1.0\nkind: DataContract\n");
    y.push_str(&format!(
        "id: {}\nname: {}\nversion: 0.1.0\nstatus: draft\n",
        q(&format!("urn:mlsec:contract:{ds}")),
        q(ds)
    ));
    y.push_str(&format!("domain: {}\n", q(opts.domain.as_deref().unwrap_or(&opts.source))));
    y.push_str(&format!(
        "description:\n  purpose: {}\n",
        q(&format!("{ds} ({role} data), contract inferred from a sample; to be reviewed by its owner."))
    ));
    y.push_str(&format!("team:\n  - username: {}\n    role: owner\n", q(&format!("{ds}-owners"))));
    y.push_str(&format!(
        "schema:\n  - name: {n}\n    physicalName: {n}\n    logicalType: object\n    physicalType: table\n    properties:\n",
        n = q(ds)
    ));
    for c in columns {
        let (logical, physical) = match c.ty {
            ColumnType::String => ("string", "string"),
            ColumnType::Int64 => ("integer", "bigint"),
            ColumnType::Float64 => ("number", "double"),
            ColumnType::Boolean => ("boolean", "boolean"),
            ColumnType::Timestamp => ("date", "timestamp"),
        };
        y.push_str(&format!(
            "      - name: {}\n        logicalType: {logical}\n        physicalType: {physical}\n        required: {}\n",
            q(&c.name),
            c.required
        ));
        if c.primary_key {
            y.push_str("        primaryKey: true\n");
        }
        let classification = if c.pii.is_some() || c.protected { "restricted" } else { "internal" };
        y.push_str(&format!("        classification: {classification}\n"));
        let mut description = match c.pii {
            Some(k) => format!(
                "Likely {} (by {}): pseudonymised in the curated zone.",
                k.label(),
                c.pii_evidence.join(" and ")
            ),
            None if c.protected => {
                "Looks like a protected attribute: the fairness gate compares decisions across its groups; \
                                    not a feature."
                    .to_string()
            }
            None => format!("Inferred {}.", c.r#type),
        };
        if c.ty == ColumnType::Timestamp && c.pii.is_none() {
            description.push_str(" Kept to the hour in the curated zone (exact times single people out).");
        }
        y.push_str(&format!("        description: {}\n", q(&description)));
        let mut options = Vec::new();
        if let Some(m) = c.max_length {
            options.push(format!("maxLength: {m}"));
        }
        if let Some(m) = c.minimum {
            options.push(format!("minimum: {}", num(m)));
        }
        if let Some(m) = c.maximum {
            options.push(format!("maximum: {}", num(m)));
        }
        if !options.is_empty() {
            y.push_str("        logicalTypeOptions:\n");
            for o in options {
                y.push_str(&format!("          {o}\n"));
            }
        }
        let mut props: Vec<(String, String)> = Vec::new();
        if c.pii.is_some() {
            props.push(("pii".into(), "true".into()));
        }
        match treatment(c) {
            Pseudonymisation::None => {}
            Pseudonymisation::Hmac => props.push(("pseudonymisation".into(), "hmac".into())),
            Pseudonymisation::Drop => props.push(("pseudonymisation".into(), "drop".into())),
            Pseudonymisation::Mask { keep_last } => {
                props.push(("pseudonymisation".into(), "mask".into()));
                props.push(("maskKeepLast".into(), keep_last.to_string()));
            }
            Pseudonymisation::Generalise(g) => {
                props.push(("pseudonymisation".into(), "generalise".into()));
                let g = match g {
                    mlsec_runtime::contract::Generalisation::Hour => "hour",
                    mlsec_runtime::contract::Generalisation::Day => "day",
                    mlsec_runtime::contract::Generalisation::Month => "month",
                    mlsec_runtime::contract::Generalisation::Band(_) => "band",
                };
                props.push(("generalisation".into(), g.into()));
            }
        }
        if c.protected {
            props.push(("protected".into(), "true".into()));
        }
        if !props.is_empty() {
            y.push_str("        customProperties:\n");
            for (k, v) in props {
                y.push_str(&format!("          - property: {k}\n            value: {v}\n"));
            }
        }
        let mut rules: Vec<String> = Vec::new();
        let id = |suffix: &str| q(&format!("{}_{suffix}", c.name));
        if c.primary_key {
            rules.push(format!(
                "          - id: {}\n            metric: duplicateValues\n            mustBe: 0\n            severity: error\n            dimension: uniqueness\n",
                id("unique")
            ));
        }
        if let Some(p) = &c.pattern {
            // A shape seen in one sample is a guess: reported, never dropping rows, until
            // the owner makes it an error.
            rules.push(format!(
                "          - id: {}\n            metric: invalidValues\n            arguments:\n              pattern: {}\n            mustBe: 0\n            severity: warning\n            dimension: conformity\n            description: \"Shape of every sample value; make it an error once confirmed.\"\n",
                id("format"),
                q(p)
            ));
        }
        if let Some(values) = &c.allowed {
            let list: Vec<String> = values.iter().map(|v| q(v)).collect();
            rules.push(format!(
                "          - id: {}\n            metric: invalidValues\n            arguments:\n              validValues: [{}]\n            mustBeLessOrEqualTo: 1\n            unit: percent\n            severity: error\n            dimension: conformity\n",
                id("allowed"),
                list.join(", ")
            ));
        }
        if !c.required && c.nulls > 0 {
            let share = 100.0 * c.nulls as f64 / rows.max(1) as f64;
            let bound = round_125((share * 2.0).max(5.0)).min(100.0);
            rules.push(format!(
                "          - id: {}\n            metric: nullValues\n            mustBeLessThan: {}\n            unit: percent\n            severity: warning\n            dimension: completeness\n",
                id("completeness"),
                num(bound)
            ));
        }
        if !rules.is_empty() {
            y.push_str("        quality:\n");
            for r in rules {
                y.push_str(&r);
            }
        }
    }
    let max_rows = (s.rows.saturating_mul(1000)).clamp(1_000_000, 1 << 40);
    y.push_str(&format!(
        "    quality:\n      - id: row_count\n        metric: rowCount\n        mustBeBetween: [1, {max_rows}]\n        severity: error\n        dimension: coverage\n"
    ));
    let max_object = s.object_bytes.saturating_mul(1000).clamp(1 << 31, 5 << 40);
    let ratio = (s.ratio * 2).clamp(50, 1_000_000);
    let line = (s.longest_line * 2).next_power_of_two().max(4096);
    let field = (s.longest_field * 2).next_power_of_two().max(256).min(line);
    // 2000, 1900 or year 0, whichever is the latest before the sample's earliest timestamp.
    let min_ts = match s.earliest_ms {
        Some(ms) if ms >= 946_684_800_000.0 => "2000-01-01T00:00:00Z".to_string(),
        Some(ms) if ms >= -2_208_988_800_000.0 => "1900-01-01T00:00:00Z".to_string(),
        // Older: the first year the format knows (a sample's own date is never written).
        Some(_) => "0000-01-01T00:00:00Z".to_string(),
        None => "2000-01-01T00:00:00Z".to_string(),
    };
    // Timestamps ahead of now in the sample (schedules, expiries) widen the future bound.
    let ahead_s = s.latest_ms.map_or(0.0, |ms| (ms - mlsec_runtime::now_ms() as f64) / 1000.0);
    let max_future = if ahead_s > 86_400.0 { ((ahead_s * 2.0) as u64).min(100 * 365 * 86_400) } else { 86_400 };
    let formula_cells = if s.formulas > 0 { "neutralise" } else { "reject" };
    y.push_str("customProperties:\n");
    let mut props: Vec<(&str, String)> =
        vec![("role", role.into()), ("landingPrefix", q(&format!("{}/{ds}/", opts.source)))];
    match opts.role {
        DatasetRole::Training => {
            props.push(("holdoutFraction", "0.2".into()));
            if !columns.iter().any(|c| c.primary_key) {
                // No id column: the holdout is routed by the keyed hash of the whole row.
                props.push(("holdoutBy", "row".into()));
            }
        }
        DatasetRole::Scoring => {
            props.push(("scoringModel", q(opts.scoring_model.as_deref().unwrap_or_default())));
        }
    }
    props.extend([
        ("formats", "csv,jsonl".to_string()),
        ("gzip", "true".into()),
        ("maxObjectBytes", max_object.to_string()),
        ("maxDecompressedBytes", max_object.saturating_mul(2).to_string()),
        ("maxCompressionRatio", ratio.to_string()),
        ("maxLineBytes", line.to_string()),
        ("maxFieldBytes", field.to_string()),
        ("maxRows", max_rows.to_string()),
        ("maxRejectedRowRatio", "0.01".into()),
        ("formulaCells", formula_cells.into()),
        ("minTimestamp", q(&min_ts)),
        ("maxFutureSeconds", max_future.to_string()),
    ]);
    for (k, v) in props {
        y.push_str(&format!("  - property: {k}\n    value: {v}\n"));
    }
    y.push_str("  - property: allowedWriters\n    value:\n      - self\n");
    y
}

/// The inferred columns for people.
pub fn render(r: &Inferred) -> String {
    let mut t = crate::output::Table::new(["column", "type", "required", "personal data", "treatment", "notes"]);
    for c in &r.columns {
        let mut notes = Vec::new();
        if c.primary_key {
            notes.push("primary key".to_string());
        }
        if c.protected {
            notes.push("protected".into());
        }
        if let Some(a) = &c.allowed {
            notes.push(format!("{} allowed values", a.len()));
        }
        if c.pattern.is_some() {
            notes.push("pattern".into());
        }
        let pii = c.pii.map_or("-".to_string(), |k| {
            format!("{} ({})", serde_json::to_value(k).unwrap().as_str().unwrap_or(""), c.pii_evidence.join("+"))
        });
        t.row([
            c.name.clone(),
            c.r#type.to_string(),
            if c.required { "yes" } else { "no" }.to_string(),
            pii,
            c.pseudonymisation.clone(),
            notes.join(", "),
        ]);
    }
    let mut out = format!(
        "{}: {} rows profiled ({}{}), {} rejected by the gate\n",
        r.dataset,
        r.rows,
        r.format,
        if r.gzip { ", gzip" } else { "" },
        r.rows_rejected
    );
    out.push_str(&t.render());
    for n in &r.notes {
        out.push_str(&format!("note: {}\n", crate::output::clean(n)));
    }
    out
}

/// What `models init` is asked for.
#[derive(Debug, Clone)]
pub struct ModelInit {
    pub dataset: String,
    pub target: String,
    pub name: Option<String>,
    pub positive_label: Option<String>,
    pub id_column: Option<String>,
}

/// The allowed values a contract's `invalidValues` rule lists for a column.
fn allowed_values(ds: &DatasetContract, column: &str) -> Option<Vec<String>> {
    ds.quality.iter().find_map(|r| match &r.check {
        mlsec_runtime::contract::Check::InvalidValues { column: c, valid_values: Some(v), .. } if c == column => {
            Some(v.clone())
        }
        _ => None,
    })
}

/// A first model spec for a training contract (YAML), checked as the workers check specs.
pub fn model_init(contracts: &mlsec_runtime::contract::Contracts, o: &ModelInit) -> Result<String> {
    let Some(ds) = contracts.dataset(&o.dataset) else {
        let known: Vec<&str> = contracts.datasets.iter().map(|d| d.dataset.as_str()).collect();
        bail!("no contract for dataset {}; known: {}", o.dataset, known.join(", "));
    };
    if ds.role != DatasetRole::Training {
        bail!("{} is a scoring dataset; a model is trained on a training dataset", ds.dataset);
    }
    let Some(target) = ds.column(&o.target) else {
        bail!("{} is not a column of {}", o.target, ds.dataset);
    };
    let positive = match (target.ty, &o.positive_label) {
        (ColumnType::Boolean, None) => None,
        (ColumnType::Boolean, Some(_)) => bail!("--positive-label applies to string targets; {} is boolean", o.target),
        (ColumnType::String, Some(p)) => Some(p.clone()),
        (ColumnType::String, None) => {
            let values =
                allowed_values(ds, &o.target).map(|v| format!(" (one of {})", v.join(", "))).unwrap_or_default();
            bail!("{} is a string column: give --positive-label, its positive value{values}", o.target);
        }
        (ty, _) => bail!("target {} is {ty:?}: it must be boolean, or a string with --positive-label", o.target),
    };
    let id_column = match (&o.id_column, ds.primary_key()) {
        (Some(c), _) => c.clone(),
        (None, Some(pk)) => pk.name.clone(),
        (None, None) => bail!(
            "{} has no primary key: give --id-column, the column that identifies a scored row in the scoring data",
            ds.dataset
        ),
    };
    let name = o.name.clone().unwrap_or_else(|| format!("{}_lr", ds.dataset));
    check_name("name", &name)?;
    let mut features = String::new();
    let mut left_out = Vec::new();
    for c in &ds.columns {
        let why = if c.name == o.target {
            Some("the target")
        } else if c.name == id_column || c.primary_key {
            Some("an identifier")
        } else if matches!(
            c.pseudonymisation,
            Pseudonymisation::Hmac | Pseudonymisation::Drop | Pseudonymisation::Mask { .. }
        ) {
            Some("personal data")
        } else if c.protected {
            Some("protected; the fairness gate compares across it")
        } else {
            None
        };
        if let Some(why) = why {
            left_out.push(format!("{} ({why})", c.name));
            continue;
        }
        match c.ty {
            ColumnType::Int64 | ColumnType::Float64 => {
                let heavy = c.minimum.is_some_and(|m| m >= 0.0) && c.maximum.is_some_and(|m| m > 1000.0);
                features.push_str(&format!("  - column: {}\n", q(&c.name)));
                if heavy {
                    features.push_str("    transform: log1p          # non-negative with a long tail\n");
                }
            }
            ColumnType::Timestamp => {
                features.push_str(&format!("  - column: {}\n    transform: hour_of_day\n", q(&c.name)));
            }
            ColumnType::Boolean => features.push_str(&format!("  - column: {}\n", q(&c.name))),
            ColumnType::String => match allowed_values(ds, &c.name) {
                Some(values) if values.len() >= 2 => {
                    let list: Vec<String> = values.iter().map(|v| q(v)).collect();
                    features.push_str(&format!("  - column: {}\n    oneHot: [{}]\n", q(&c.name), list.join(", ")));
                }
                _ => left_out.push(format!("{} (text without an allowed set)", c.name)),
            },
        }
    }
    if features.is_empty() {
        bail!("no column of {} can be a feature: {}", ds.dataset, left_out.join(", "));
    }
    let protected: Vec<&str> = ds.columns.iter().filter(|c| c.protected).map(|c| c.name.as_str()).collect();
    let mut y = format!(
        "# Model spec written by `mlsec models init` for {ds}: review the features, the gates and\n# the approvers \
         before you put it in contracts/models/.\n",
        ds = ds.dataset
    );
    if !left_out.is_empty() {
        y.push_str(&format!("# Left out: {}.\n", left_out.join(", ")));
    }
    y.push_str(&format!(
        "kind: ModelSpec\nname: {}\ndescription: {}\ntrainingDataset: {}\nalgorithm: logistic_regression\ntarget: {}\n",
        q(&name),
        q(&format!("Logistic regression on {}.", ds.dataset)),
        q(&ds.dataset),
        q(&o.target)
    ));
    if let Some(p) = &positive {
        y.push_str(&format!("positiveLabel: {}\n", q(p)));
    }
    y.push_str(&format!("idColumn: {}\nfeatures:\n{features}", q(&id_column)));
    y.push_str(
        "params:\n  C: 1.0             # inverse L2 strength, as scikit-learn's LogisticRegression\nholdoutFraction: \
         0.25\nseed: 42\nrefit: true\ngates:\n  minAuc: 0.7\n  maxAucDrop: 0.02   # against the production model, on \
         the same holdout\n  maxBrier: 0.25\n  minHoldoutRows: 200\n",
    );
    if !protected.is_empty() {
        y.push_str(&format!(
            "  fairness:          # over the contract's protected columns ({})\n    minRatio: 0.8\n    \
             maxEqualOpportunityDiff: 0.1\n    minGroupSize: 30\n    bootstrap: 200\n    favourableOutcome: negative     \
             # not being flagged\n",
            protected.join(", ")
        ));
    }
    y.push_str(
        "decisionThreshold: 0.5\napproval:\n  # STS ARNs of the people who may approve; never the principal that dropped \
         the data.\n  approvers:\n    - \"arn:aws:sts::*:assumed-role/*-model-risk/*\"\n  requiredApprovals: 1\n",
    );
    let spec: mlsec_runtime::contract::ModelSpec =
        serde_yaml::from_str(&y).map_err(|e| anyhow::anyhow!("internal: the written spec does not parse: {e}"))?;
    contracts.check_spec(&spec).map_err(|e| anyhow::anyhow!("the spec would not load: {e}"))?;
    Ok(y)
}
