//! The documents the gateway keeps at rest, written and read through serde: the reason
//! document beside each quarantined object, an approver's release record, and the
//! content ledger entry of each accepted object. Positions and codes only, never values.

use serde::{Deserialize, Serialize};

use crate::reason::{Evidence, ReasonCode};

/// Where an object version is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLocation {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

/// Why a content is in quarantine (`<dataset>/<sha256>/reason.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonDocument {
    pub reason_code: ReasonCode,
    /// Human-readable explanation, free of data values.
    pub detail: String,
    pub evidence: Evidence,
    /// Never releasable: what an attacker would send.
    pub malware_class: bool,
    /// An approver may release it (a policy decision stopped it, not its content).
    pub releasable: bool,
    /// The landing object as it was dropped.
    pub source: ObjectLocation,
    /// The copy in the quarantine bucket.
    pub quarantined_object: ObjectLocation,
    pub sha256: String,
    pub size: i64,
    /// `None` when the landing prefix matched no contract.
    pub dataset: Option<String>,
    /// `<id>@<version>` of the contract that judged it.
    pub contract: Option<String>,
    pub event_id: String,
    pub correlation_id: String,
    pub quarantined_at_ms: i64,
}

/// What an approver decided (`<dataset>/<sha256>/release.json`), kept in the quarantine
/// bucket (SSE-KMS, versioned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub dataset: String,
    pub sha256: String,
    /// The one reason the release covers.
    pub reason_code: ReasonCode,
    pub approver: String,
    pub reason: String,
    pub released_at_ms: i64,
    /// Where the object was copied back to.
    pub landing_key: String,
}

/// A content accepted before (`_ledger/<dataset>/<sha256>.json` in the raw bucket), written
/// after its event. The same bytes dropped again under the same contract version write
/// nothing new: the recorded event is published again, with its id, so a downstream zone
/// that never finished it (its copy parked, or lost) gets it, and one that did skips it.
/// Under another contract version the bytes are accepted again, as a new event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub event_id: String,
    pub rows: u64,
    pub rows_rejected: u64,
    /// The approver, when the content passed through a release.
    pub released_by: Option<String>,
    pub accepted_at_ms: i64,
    /// The contract version the content was accepted under (absent in entries written
    /// before versions were recorded: those count as the deployed version).
    #[serde(default)]
    pub contract_version: Option<String>,
    /// The `RawAccepted` envelope as published (JSON), to announce again on a re-drop.
    #[serde(default)]
    pub event: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_document_reads_back_what_was_written_and_codes_stay_strings() {
        let doc = ReasonDocument {
            reason_code: ReasonCode::RejectThreshold,
            detail: "3 of 10 rows rejected".into(),
            evidence: Evidence { line: Some(4), column: Some("amount".into()), ..Evidence::default() },
            malware_class: false,
            releasable: true,
            source: ObjectLocation { bucket: "l".into(), key: "s/d/f.csv".into(), version_id: Some("v1".into()) },
            quarantined_object: ObjectLocation { bucket: "q".into(), key: "d/ab/object".into(), version_id: None },
            sha256: "ab".into(),
            size: 10,
            dataset: Some("d".into()),
            contract: Some("c@1".into()),
            event_id: "e".into(),
            correlation_id: "c".into(),
            quarantined_at_ms: 1,
        };
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["reason_code"], "reject_threshold");
        assert_eq!(json["evidence"], serde_json::json!({"line": 4, "column": "amount"}));
        assert_eq!(serde_json::from_value::<ReasonDocument>(json).unwrap(), doc);
        let unknown = serde_json::json!({"reason_code": "no_such_reason"});
        assert!(serde_json::from_value::<ReasonDocument>(unknown).is_err());
    }
}
