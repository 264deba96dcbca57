//! Every object key the pipeline writes, per bucket: content-addressed (the SHA-256 of the
//! input) so that a redelivery overwrites identical bytes instead of adding a copy.
//!
//! | bucket | key |
//! |---|---|
//! | raw | `original/<dataset>/<sha256>` (byte-identical copy) |
//! | raw | `<dataset>/ingest_date=<YYYY-MM-DD>/<sha256>.parquet` (+ `.rejects.parquet`) |
//! | raw | `_ledger/<dataset>/<sha256>.json` (content accepted before) |
//! | quarantine | `<dataset>/<sha256>/object`, `reason.json`, `release.json` |
//! | curated | `<dataset>/contract=<version>/<sha256>.parquet`, `_dq/…`, `_rejects/…` |
//! | models | `<model>/<version>/model.json`, `manifest.json`, `signature` |
//! | scored | `<dataset>/model=<model>@<version>/<digest>.parquet` |

/// Raw zone (Z2).
pub mod raw {
    /// The byte-identical copy of an accepted landing object.
    pub fn original(dataset: &str, sha256: &str) -> String {
        format!("original/{dataset}/{sha256}")
    }

    /// The typed Parquet of an accepted object, dated by the day it landed (UTC).
    pub fn parquet(dataset: &str, landed_date: &str, sha256: &str) -> String {
        format!("{dataset}/ingest_date={landed_date}/{sha256}.parquet")
    }

    /// The rows the gateway rejected (positions and reasons, no values), beside the Parquet.
    pub fn rejects(dataset: &str, landed_date: &str, sha256: &str) -> String {
        format!("{dataset}/ingest_date={landed_date}/{sha256}.rejects.parquet")
    }

    /// The content ledger entry: written last, so its presence means the content was fully
    /// accepted before.
    pub fn ledger(dataset: &str, sha256: &str) -> String {
        format!("_ledger/{dataset}/{sha256}.json")
    }
}

/// Quarantine (Z2).
pub mod quarantine {
    /// Directory of objects whose landing prefix matches no contract.
    pub const UNREGISTERED: &str = "_unregistered";

    /// The quarantined copy, under a fixed name: a landing file name must not collide with
    /// the documents beside it.
    pub fn object(dataset: &str, sha256: &str) -> String {
        format!("{dataset}/{sha256}/object")
    }

    /// Why the content was quarantined.
    pub fn reason(dataset: &str, sha256: &str) -> String {
        format!("{dataset}/{sha256}/reason.json")
    }

    /// An approver's release of the content.
    pub fn release(dataset: &str, sha256: &str) -> String {
        format!("{dataset}/{sha256}/release.json")
    }

    /// `(dataset, sha256)` of a reason document's key, `None` for any other key.
    pub fn parse_reason(key: &str) -> Option<(&str, &str)> {
        let (dataset, rest) = key.split_once('/')?;
        let (sha256, file) = rest.split_once('/')?;
        (file == "reason.json").then_some((dataset, sha256))
    }
}

/// Curated zone (Z3).
pub mod curated {
    pub(crate) fn base(dataset: &str, contract_version: &str, raw_sha256: &str) -> String {
        format!("{dataset}/contract={contract_version}/{raw_sha256}")
    }

    /// The curated Parquet of one raw object.
    pub fn parquet(dataset: &str, contract_version: &str, raw_sha256: &str) -> String {
        format!("{}.parquet", base(dataset, contract_version, raw_sha256))
    }

    /// Its data-quality report.
    pub fn dq_report(dataset: &str, contract_version: &str, raw_sha256: &str) -> String {
        format!("_dq/{}.parquet", base(dataset, contract_version, raw_sha256))
    }

    /// The rows its error rules dropped (row numbers and rule ids).
    pub fn rejects(dataset: &str, contract_version: &str, raw_sha256: &str) -> String {
        format!("_rejects/{}.parquet", base(dataset, contract_version, raw_sha256))
    }
}

/// Models bucket (Z4/Z5).
pub mod models {
    /// The trainer's artifact (written by train).
    pub fn artifact(model: &str, version: &str) -> String {
        format!("{model}/{version}/model.json")
    }

    /// The trainer's own report: metrics on its validation split, rows, params (train).
    pub fn training(model: &str, version: &str) -> String {
        format!("{model}/{version}/training.json")
    }

    /// Govern's gate report: JSON summary (covered by the manifest) and Parquet table.
    pub fn gate_report(model: &str, version: &str) -> String {
        format!("{model}/{version}/gate-report.json")
    }

    pub fn gate_table(model: &str, version: &str) -> String {
        format!("{model}/{version}/gate-report.parquet")
    }

    /// The signed manifest envelope of one promotion round (govern).
    pub fn manifest(model: &str, version: &str, round: u32) -> String {
        format!("{model}/{version}/manifest-r{round}.signed.json")
    }
}

/// The holdout bucket (written by curate, read by govern only).
pub mod holdout {
    /// Same base as the curated training object it was split from.
    pub fn parquet(dataset: &str, contract_version: &str, raw_sha256: &str) -> String {
        format!("{}.parquet", super::curated::base(dataset, contract_version, raw_sha256))
    }
}

pub mod scored {
    /// Scores of one curated dataset by one model version.
    pub fn parquet(dataset: &str, model: &str, version: &str, dataset_digest: &str) -> String {
        format!("{dataset}/model={model}@{version}/{dataset_digest}.parquet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_key_parses_back_and_other_keys_do_not() {
        let key = quarantine::reason("transactions", "ab12");
        assert_eq!(quarantine::parse_reason(&key), Some(("transactions", "ab12")));
        assert_eq!(quarantine::parse_reason(&quarantine::release("transactions", "ab12")), None);
        assert_eq!(quarantine::parse_reason(&quarantine::object("transactions", "ab12")), None);
        assert_eq!(quarantine::parse_reason("transactions/reason.json"), None);
    }
}
