//! Tests of contract loading and validation against the repository's contracts.

use std::path::Path;

use mlsec_events::DatasetRole;

use super::*;

fn repo_contracts() -> Contracts {
    Contracts::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts")).unwrap()
}

#[test]
fn the_repository_contracts_load() {
    let c = repo_contracts();
    let t = c.dataset("transactions_training").unwrap();
    assert_eq!(t.role, DatasetRole::Training);
    assert_eq!(t.column("customer_cpf").unwrap().pseudonymisation, Pseudonymisation::Hmac);
    assert_eq!(t.column("customer_name").unwrap().pseudonymisation, Pseudonymisation::Drop);
    assert_eq!(t.column("amount").unwrap().ty, ColumnType::Float64);
    let s = c.for_landing_key("bank-core/transactions_scoring/a.csv").unwrap();
    assert_eq!(s.scoring_model.as_deref(), Some("fraud_lr"));
    assert!(c.for_landing_key("bank-core/transactions_scoring/").is_none());
    assert!(c.for_landing_key("elsewhere/transactions_scoring/a.csv").is_none());
    assert_eq!(c.model_for_training("transactions_training").unwrap().name, "fraud_lr");
}

#[test]
fn quality_rules_and_transforms_are_read_from_the_contract() {
    let c = repo_contracts();
    let t = c.dataset("transactions_training").unwrap();
    let rule = |id: &str| t.quality.iter().find(|r| r.id == id).unwrap_or_else(|| panic!("no rule {id}"));
    assert_eq!(rule("transaction_id_required").check, Check::Required { column: "transaction_id".into() });
    assert_eq!(rule("transaction_id_unique").operator, Some(Operator::Eq(0.0)));
    let r = rule("channel_allowed");
    assert!(r.percent && r.severity == Severity::Error && r.operator == Some(Operator::Le(1.0)));
    assert_eq!(rule("customer_email_completeness").severity, Severity::Warning);
    assert_eq!(
        rule("card_holder_moment_amount_unique").check,
        Check::DuplicateValues { columns: vec!["customer_cpf".into(), "tx_time".into(), "amount".into()] }
    );
    assert_eq!(
        rule("tx_time_freshness").check,
        Check::Freshness { column: "tx_time".into(), max_age_ms: 7_776_000_000 }
    );
    assert_eq!(rule("row_count").operator, Some(Operator::Between(1.0, 40_000_000.0)));
    assert_eq!(t.column("tx_time").unwrap().pseudonymisation, Pseudonymisation::Generalise(Generalisation::Hour));
}

#[test]
fn quality_rules_the_pipeline_cannot_execute_are_refused() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let err = |bad: String| DatasetContract::parse(&path, &bad).unwrap_err().to_string();
    assert!(err(text.replacen("metric: rowCount", "metric: rowCounts", 1)).contains("unsupported metric"));
    assert!(err(text.replacen("engine: mlsec", "engine: soda", 1)).contains("not executed"));
    assert!(err(text.replacen("pattern: \"^[0-9]{4}$\"", "pattern: \"[0-9\"", 1)).contains("pattern"));
    assert!(err(text.replacen("        mustBeBetween: [1, 40000000]\n", "", 1)).contains("operator"));
    assert!(err(text.replacen("value: hour", "value: band", 1)).contains("does not apply"));
    assert!(err(text.replacen("id: amount_range", "id: channel_allowed", 1)).contains("used twice"));
    assert!(err(text.replacen("minimum: 0.01", "minimum: 2000000", 1)).contains("above"));
    assert!(err(text.replacen("minimum: 0.01", "minimum: .nan", 1)).contains("finite"));
    assert!(err(text.replacen("[1, 40000000]", "[40000000, 1]", 1)).contains("smallest first"));
    assert!(err(text.replacen("validValues: [online", "validValue: [online", 1)).contains("unknown argument"));
    let with_args = "metric: nullValues\n            arguments:\n              missingValues: [\"\", N/A]";
    assert!(err(text.replacen("metric: nullValues", with_args, 1)).contains("not supported"));
}

#[test]
fn gateway_limits_out_of_range_are_refused_at_load() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let err = |bad: String| DatasetContract::parse(&path, &bad).unwrap_err().to_string();
    // Limits whose use would overflow (line length + line end, seconds → milliseconds).
    let huge = u64::MAX.to_string();
    assert!(err(text.replacen("value: 4096", &format!("value: {huge}"), 1)).contains("maxLineBytes must be"));
    let future = format!("maxFutureSeconds\n    value: {}", u64::MAX / 10);
    assert!(err(text.replacen("maxFutureSeconds\n    value: 86400", &future, 1)).contains("maxFutureSeconds must be"));
    assert!(err(text.replacen("value: 2147483648", "value: 0", 1)).contains("maxObjectBytes must be"));
    assert!(err(text.replacen("value: 2147483648", "value: 6000000000000", 1)).contains("maxObjectBytes must be"));
    // Formula cells are rejected or neutralised; no contract can keep them as they are
    // (FormulaPolicy::Keep is `mlsec contract infer`'s profiling pass only).
    let formula = |policy: &str| {
        text.replacen("formulaCells\n    value: reject", &format!("formulaCells\n    value: {policy}"), 1)
    };
    assert!(err(formula("keep")).contains("unknown policy keep"));
    assert_eq!(
        DatasetContract::parse(&path, &formula("neutralise")).unwrap().ingest.formula_cells,
        FormulaPolicy::Neutralise
    );
    // At the bounds, the policy is usable.
    let ok = text.replacen("value: 4096", "value: 1073741824", 1);
    assert_eq!(DatasetContract::parse(&path, &ok).unwrap().ingest.max_line_bytes, 1 << 30);
}

#[test]
fn integer_bounds_are_compared_exactly_and_column_bounds_must_be_finite() {
    let two_53 = 9_007_199_254_740_992f64;
    assert!(int_within(9_007_199_254_740_992, None, Some(two_53)));
    assert!(!int_within(9_007_199_254_740_993, None, Some(two_53)), "rounds to 2^53 as an f64");
    assert!(int_within(i64::MAX, Some(0.0), None) && !int_within(i64::MIN, Some(-1e18), None));
    assert!(!int_within(1, Some(1.5), None) && int_within(2, Some(1.5), Some(2.5)) && !int_within(3, None, Some(2.5)));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let bad = text.replacen(
        "logicalTypeOptions:\n          minimum: 0\n",
        "logicalTypeOptions:\n          minimum: .nan\n",
        1,
    );
    assert_ne!(bad, text, "the amount column has a minimum of 0");
    let err = DatasetContract::parse(&path, &bad).unwrap_err().to_string();
    assert!(err.contains("must be finite"), "{err}");
}

#[test]
fn a_pii_column_without_treatment_is_refused() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/transactions_training.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let bad = text.replacen("            value: drop\n", "            value: keep\n", 1);
    assert!(DatasetContract::parse(&path, &bad).unwrap_err().to_string().contains("unknown pseudonymisation"));
    let bad = text.replacen("          - property: pseudonymisation\n            value: drop\n", "", 1);
    assert!(DatasetContract::parse(&path, &bad).unwrap_err().to_string().contains("no pseudonymisation"));
}

/// A copy of the repository's contracts with `fraud_lr.yaml` edited by `edit`, loaded.
fn load_with_spec(name: &str, edit: impl Fn(String) -> String) -> Result<Contracts, ContractError> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let dir = std::env::temp_dir().join(format!("mlsec-spec-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("models")).unwrap();
    for f in ["transactions_training.yaml", "transactions_scoring.yaml"] {
        std::fs::copy(repo.join(f), dir.join(f)).unwrap();
    }
    let spec = std::fs::read_to_string(repo.join("models/fraud_lr.yaml")).unwrap();
    std::fs::write(dir.join("models/fraud_lr.yaml"), edit(spec)).unwrap();
    let out = Contracts::load_dir(&dir);
    std::fs::remove_dir_all(&dir).ok();
    out
}

#[test]
fn the_training_contract_marks_its_protected_attribute_and_holdout_share() {
    let c = repo_contracts();
    let t = c.dataset("transactions_training").unwrap();
    let protected: Vec<&str> = t.columns.iter().filter(|c| c.protected).map(|c| c.name.as_str()).collect();
    assert_eq!(protected, ["age_band"]);
    assert_eq!((t.holdout_fraction, t.primary_key().unwrap().name.as_str()), (0.2, "transaction_id"));
    assert_eq!(c.dataset("transactions_scoring").unwrap().holdout_fraction, 0.0);
    let spec = c.model("fraud_lr").unwrap();
    assert_eq!(spec.l2_alpha().unwrap(), 1.0, "C = 1 as scikit-learn's default");
    assert!(spec.approval.required_approvals >= 1 && !spec.approval.approvers.is_empty());
}

#[test]
fn a_model_spec_that_does_not_fit_its_training_contract_is_refused_at_load_naming_the_field() {
    // (case, text in fraud_lr.yaml, replaced by, expected in the message)
    let cases = [
        (
            "string-target",
            "target: is_fraud",
            "target: merchant_category",
            "target merchant_category is a string column: set positiveLabel",
        ),
        ("leak", "target: is_fraud", "target: channel\npositiveLabel: atm", "target channel is also a feature"),
        (
            "missing-feature",
            "column: amount",
            "column: amount_brl",
            "feature amount_brl is not a column of transactions_training",
        ),
        ("transform", "transform: night", "transform: log1p", "feature tx_time"),
        ("id", "idColumn: transaction_id", "idColumn: tx", "idColumn tx is not a column"),
        (
            "dropped-subject",
            "subjectColumn: customer_cpf",
            "subjectColumn: customer_name",
            "subjectColumn customer_name is dropped",
        ),
        ("class-weight", "  C: 1.0", "  classWeight: balanced", "params.classWeight must be {positive: N}"),
        ("class-weight-range", "  C: 1.0", "  classWeight: {positive: 0}", "params.classWeight must be {positive: N}"),
        ("unknown-param", "  C: 1.0", "  gamma: 2", "params.gamma: unknown parameter"),
        ("no-approvers", "requiredApprovals: 1", "requiredApprovals: 7", "approval.requiredApprovals"),
    ];
    for (name, from, to, expected) in cases {
        match load_with_spec(name, |s| s.replace(from, to)) {
            Err(ContractError::Invalid { path, message }) => {
                assert!(path.ends_with("models/fraud_lr.yaml"), "{name}: {}", path.display());
                assert!(message.contains(expected), "{name}: {message}");
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
    }
    // A string target with its positive label loads.
    let ok = load_with_spec("positive-label", |s| {
        s.replace("target: is_fraud", "target: merchant_category\npositiveLabel: \"5411\"")
    });
    assert_eq!(ok.unwrap().model("fraud_lr").unwrap().positive_label.as_deref(), Some("5411"));
}

#[test]
fn a_training_dataset_without_a_primary_key_must_ask_for_row_routing() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/german-credit/contracts");
    let text = std::fs::read_to_string(example.join("german_credit.yaml")).unwrap();
    let load = |text: &str| {
        let dir = std::env::temp_dir().join(format!("mlsec-rows-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("german_credit.yaml"), text).unwrap();
        let out = Contracts::load_dir(&dir);
        std::fs::remove_dir_all(&dir).ok();
        out
    };
    let c = load(&text).unwrap();
    assert!(c.dataset("german_credit").unwrap().primary_key().is_none());
    let silent = text.replace("  - property: holdoutBy\n    value: row\n", "");
    assert_ne!(silent, text);
    match load(&silent) {
        Err(ContractError::Invalid { message, .. }) => assert!(message.contains("holdoutBy: row"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
