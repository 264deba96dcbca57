//! The model registry's lifecycle (Z5): stages, the conditional transitions between them,
//! and the people's decisions they depend on.
//!
//! ```text
//! candidate ─gates pass─▶ staging ─approvals─▶ production ─next promotion─▶ superseded
//!     │                      │                   ▲  │                           │  │
//!     └─gates fail─▶ rejected ◀─reject─┘         │  └──archive──▶ archived ◀──archive─┘
//!                                                └──────────── rollback ────────┘
//! any stage ─revoke─▶ revoked
//! ```
//!
//! Only the govern worker moves a version between stages. Every move is a conditional write
//! (the stage and revision it was read at, and for a promotion where `@production` pointed),
//! so a replayed event, a second delivery or a concurrent run changes nothing it did not
//! read. People's decisions live in their own table, written under the caller's STS
//! identity and read by govern, never taken from an event.

use async_trait::async_trait;
use mlsec_events::ObjectRef;
use serde::{Deserialize, Serialize};

use crate::ports::Result;

/// Lifecycle stage of a registered model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Registered by govern from the trainer's event, not yet evaluated.
    Candidate,
    /// Passed the automated gates; waits for people's approval.
    Staging,
    /// Serving: the one version `@production` points to.
    Production,
    /// Was production; replaced by a later promotion (may be rolled back to).
    Superseded,
    /// Withdrawn by a person from any stage; never serves again.
    Revoked,
    /// Failed a gate, or rejected by a person.
    Rejected,
    /// Retired by a person from production or superseded, not for cause: it serves no
    /// more and cannot be rolled back to (revoke is for cause).
    Archived,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Candidate,
        Stage::Staging,
        Stage::Production,
        Stage::Superseded,
        Stage::Revoked,
        Stage::Rejected,
        Stage::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Candidate => "candidate",
            Stage::Staging => "staging",
            Stage::Production => "production",
            Stage::Superseded => "superseded",
            Stage::Revoked => "revoked",
            Stage::Rejected => "rejected",
            Stage::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One move of a version between stages, as recorded on the version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// `None` for the registration.
    pub from: Option<Stage>,
    pub to: Stage,
    pub at_ms: i64,
    /// The worker role or person (STS ARN) whose decision it was.
    pub actor: String,
    pub reason: String,
    /// The people (IAM-resolved ARNs) whose decisions made a reviewed transition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub people: Vec<String>,
    /// The review it carried out (`<action>#<round>`), for a reviewed transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
}

/// A person's decision, bound into the manifest when it promotes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub approver_arn: String,
    /// STS `UserId` (`AIDA…` for a user, `AROA…:session` for a role session): what the
    /// decisions table is partitioned by, so no one can write another's decision.
    pub approver_id: String,
    pub at_ms: i64,
    pub reason: String,
    /// The gate report the person saw (its JSON summary's SHA-256).
    pub gate_report_sha256: String,
}

/// Govern's own evaluation of a candidate on the holdout the trainer never read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub holdout: ObjectRef,
    pub holdout_rows: i64,
    pub auc: f64,
    pub brier: f64,
    pub accuracy: f64,
    /// The production version compared on the same holdout, with its AUC there.
    pub champion: Option<(String, f64)>,
    pub passed: bool,
    /// Gate ids that failed (empty when passed).
    pub failed: Vec<String>,
    /// JSON summary (what the manifest's digest covers) and the Parquet table.
    pub report: ObjectRef,
    pub report_table: ObjectRef,
}

/// One row of the model registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub model_name: String,
    pub model_version: String,
    pub stage: Stage,
    /// Bumped by every write; each transition is conditional on the revision it read.
    pub rev: u64,
    pub dataset: String,
    pub dataset_digest: String,
    pub contract_version: String,
    pub algorithm: String,
    /// Hyper-parameters as JSON text.
    pub params: String,
    /// What the trainer reported on its own validation split (not trusted for gates).
    pub trainer_auc: f64,
    pub trainer_accuracy: f64,
    pub train_rows: i64,
    pub test_rows: i64,
    pub artifact: ObjectRef,
    /// The `aws:userid` whose landing object became the training data (the landing tag
    /// AWS vouches for): that person may never approve this version.
    pub dropped_by: Option<String>,
    pub evaluation: Option<Evaluation>,
    /// The approvals of the promotion (or rollback) that put the version in production.
    pub approvals: Vec<Approval>,
    /// The signed manifest envelope at its pinned version.
    pub manifest: Option<ObjectRef>,
    pub signing_key_id: Option<String>,
    pub transitions: Vec<Transition>,
    pub created_at_ms: i64,
    pub stage_reason: Option<String>,
}

impl ModelRecord {
    pub fn subject(&self) -> String {
        format!("{}@{}", self.model_name, self.model_version)
    }

    /// The review round people's decisions refer to: it changes with every transition, so
    /// an approval given for one state never counts for a later one.
    pub fn round(&self) -> u32 {
        self.transitions.len() as u32
    }

    /// This record moved to `to` (revision bumped, transition appended).
    pub fn moved(&self, to: Stage, at_ms: i64, actor: &str, reason: impl Into<String>) -> ModelRecord {
        let reason = reason.into();
        let mut next = self.clone();
        next.transitions.push(Transition {
            from: Some(self.stage),
            to,
            at_ms,
            actor: actor.to_string(),
            reason: reason.clone(),
            people: Vec::new(),
            review: None,
        });
        next.stage = to;
        next.rev = self.rev + 1;
        next.stage_reason = Some(reason);
        next
    }

    /// Whether the version was in production at `at_ms`, from its own transitions.
    pub fn in_production_at(&self, at_ms: i64) -> bool {
        let mut inside = false;
        for t in &self.transitions {
            if t.at_ms > at_ms {
                break;
            }
            inside = t.to == Stage::Production;
        }
        inside
    }
}

/// What a transition does to the model's `@production` pointer.
#[derive(Debug, Clone, PartialEq)]
pub enum Pointer {
    Keep,
    /// Points it at the record's version, only if it still points at `previous` (`None`:
    /// no production version yet).
    Promote {
        previous: Option<String>,
    },
    /// Removes it, only if it points at the record's version (revoking production).
    Clear,
}

/// One conditional move: all of it happens, or none of it.
#[derive(Debug, Clone)]
pub struct StageChange {
    /// The new state (from [`ModelRecord::moved`]); written only if the stored version is
    /// still at `expected` with revision `record.rev - 1`.
    pub record: ModelRecord,
    pub expected: Stage,
    pub pointer: Pointer,
    /// The previous production version's new state (superseded), under the same condition.
    pub demote: Option<ModelRecord>,
}

/// The model registry (DynamoDB).
#[async_trait]
pub trait ModelRegistry: Send + Sync {
    /// Registers a version; false if it already exists (redelivery, replay).
    async fn create(&self, record: &ModelRecord) -> Result<bool>;
    async fn get(&self, model: &str, version: &str) -> Result<Option<ModelRecord>>;
    /// Applies `change` atomically; false when a condition failed (someone moved first).
    async fn transition(&self, change: &StageChange) -> Result<bool>;
    /// The version `@production` points to.
    async fn production(&self, model: &str) -> Result<Option<ModelRecord>>;
    /// Every version of one model.
    async fn versions(&self, model: &str) -> Result<Vec<ModelRecord>>;
    async fn list(&self) -> Result<Vec<ModelRecord>>;
}

/// What a person decided about a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewAction {
    /// staging → production (with the spec's required approvals).
    Approve,
    /// staging → rejected.
    Reject,
    /// superseded → production (a version approved before; with the required approvals).
    Rollback,
    /// any → revoked.
    Revoke,
    /// production or superseded → archived.
    Archive,
}

impl ReviewAction {
    pub const ALL: [ReviewAction; 5] = [
        ReviewAction::Approve,
        ReviewAction::Reject,
        ReviewAction::Rollback,
        ReviewAction::Revoke,
        ReviewAction::Archive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewAction::Approve => "approve",
            ReviewAction::Reject => "reject",
            ReviewAction::Rollback => "rollback",
            ReviewAction::Revoke => "revoke",
            ReviewAction::Archive => "archive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The stages the action applies to.
    pub fn applies_to(self, stage: Stage) -> bool {
        match self {
            ReviewAction::Approve | ReviewAction::Reject => stage == Stage::Staging,
            ReviewAction::Rollback => stage == Stage::Superseded,
            ReviewAction::Revoke => !matches!(stage, Stage::Revoked),
            ReviewAction::Archive => matches!(stage, Stage::Production | Stage::Superseded),
        }
    }

    /// Whether the spec's `requiredApprovals` distinct people must agree.
    pub fn needs_quorum(self) -> bool {
        matches!(self, ReviewAction::Approve | ReviewAction::Rollback)
    }

    /// The stage the action moves a version to.
    pub fn target(self) -> Stage {
        match self {
            ReviewAction::Approve | ReviewAction::Rollback => Stage::Production,
            ReviewAction::Reject => Stage::Rejected,
            ReviewAction::Revoke => Stage::Revoked,
            ReviewAction::Archive => Stage::Archived,
        }
    }
}

/// A person's decision, as the CLI records it (identity from STS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub approver_id: String,
    pub approver_arn: String,
    pub model_name: String,
    pub model_version: String,
    pub action: ReviewAction,
    /// The record's [`ModelRecord::round`] the person saw.
    pub round: u32,
    pub reason: String,
    pub at_ms: i64,
    pub gate_report_sha256: Option<String>,
}

impl Decision {
    /// Sort key within the approver's partition: one decision per action and round.
    pub fn key(&self) -> String {
        format!("{}@{}#{}#{}", self.model_name, self.model_version, self.action.as_str(), self.round)
    }

    pub fn approval(&self) -> Approval {
        Approval {
            approver_arn: self.approver_arn.clone(),
            approver_id: self.approver_id.clone(),
            at_ms: self.at_ms,
            reason: self.reason.clone(),
            gate_report_sha256: self.gate_report_sha256.clone().unwrap_or_default(),
        }
    }
}

/// People's decisions (DynamoDB, partitioned by the approver's STS `UserId`).
#[async_trait]
pub trait Decisions: Send + Sync {
    /// Records a decision; false if that person already decided this action in this round.
    async fn record(&self, decision: &Decision) -> Result<bool>;
    /// Every decision about one version.
    async fn for_version(&self, model: &str, version: &str) -> Result<Vec<Decision>>;
}

/// A principal as IAM knows it: the ARN that IAM resolves a vouched `aws:userid` to. The
/// user id is what AWS itself put in the request (the decisions table's partition, the
/// landing object's dropper tag, both enforced by policy); the ARN comes from IAM, never
/// from a body the person wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user_id: String,
    pub arn: String,
    /// For a role session: whether the role's trust policy pins the session name to the
    /// person (the deployment's people roles, and roles the deployer names), so that the
    /// session name can stand for a person.
    #[serde(default)]
    pub pinned: bool,
}

impl Principal {
    /// The role of a role session (`arn:…:assumed-role/<role>/<session>`).
    pub fn role(&self) -> Option<&str> {
        let resource = self.arn.splitn(6, ':').nth(5)?;
        resource.strip_prefix("assumed-role/").and_then(|r| r.split('/').next())
    }

    /// The person behind the principal, as `account/name`: an IAM user's name, or the
    /// session name of a role whose trust policy pins it (ADR 0012). Two sessions of one
    /// person are then one person, whichever pinned role they come through. A session of
    /// a role that does not pin session names is no one in particular: every session of it
    /// is the one person `account/role:<role>`.
    pub fn person(&self) -> String {
        let mut parts = self.arn.splitn(6, ':');
        let account = parts.nth(4).unwrap_or_default();
        let resource = parts.next().unwrap_or_default();
        let name = match resource.split_once('/') {
            Some(("assumed-role", rest)) if self.pinned => rest.rsplit('/').next().unwrap_or(rest).to_string(),
            Some(("assumed-role", rest)) => format!("role:{}", rest.split('/').next().unwrap_or(rest)),
            Some(("user", rest)) => rest.rsplit('/').next().unwrap_or(rest).to_string(),
            _ => resource.to_string(),
        };
        format!("{account}/{name}")
    }
}

/// Resolves vouched user ids (`AIDA…`, `AROA…:session`) to principals (IAM).
#[async_trait]
pub trait Principals: Send + Sync {
    /// `None` when IAM knows no such principal (a deleted user or role, or credentials
    /// that are not an IAM identity): separation of duties then fails closed.
    async fn resolve(&self, user_id: &str) -> Result<Option<Principal>>;
}

/// `*` matches any run of characters (ARN patterns in a spec's `approvers`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_is_a_user_name_or_a_pinned_session_name_in_an_account() {
        let p = |arn: &str| Principal { user_id: "x".into(), arn: arn.into(), pinned: true }.person();
        assert_eq!(p("arn:aws:iam::123:user/ops/ana"), "123/ana");
        assert_eq!(p("arn:aws:sts::123:assumed-role/model-risk/ana"), "123/ana");
        assert_eq!(p("arn:aws:sts::123:assumed-role/producer/ana"), "123/ana");
        assert_ne!(
            p("arn:aws:sts::123:assumed-role/model-risk/ana"),
            p("arn:aws:sts::456:assumed-role/model-risk/ana")
        );
        assert_eq!(p("arn:aws:iam::123:root"), "123/root");
        // A role that does not pin session names: all its sessions are one, and no one's.
        let unpinned = |arn: &str| Principal { user_id: "x".into(), arn: arn.into(), pinned: false };
        assert_eq!(unpinned("arn:aws:sts::123:assumed-role/etl/ana").person(), "123/role:etl");
        assert_eq!(unpinned("arn:aws:sts::123:assumed-role/etl/bob").person(), "123/role:etl");
        assert_eq!(unpinned("arn:aws:sts::123:assumed-role/etl/bob").role(), Some("etl"));
        assert_eq!(unpinned("arn:aws:iam::123:user/ana").role(), None);
    }

    #[test]
    fn globs_match_arn_patterns() {
        assert!(glob_match("arn:aws:iam::*:user/risk-*", "arn:aws:iam::123:user/risk-ana"));
        assert!(!glob_match("arn:aws:iam::*:user/risk-*", "arn:aws:iam::123:user/dev-bob"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXcYb"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
    }

    #[test]
    fn production_at_a_time_follows_the_transitions() {
        let t = |from: Option<Stage>, to, at_ms| Transition {
            from,
            to,
            at_ms,
            actor: "a".into(),
            reason: "r".into(),
            people: vec![],
            review: None,
        };
        let mut r: ModelRecord = serde_json::from_value(serde_json::json!({
            "model_name": "m", "model_version": "v", "stage": "superseded", "rev": 4, "dataset": "d",
            "dataset_digest": "x", "contract_version": "1", "algorithm": "lr", "params": "{}", "trainer_auc": 0.9,
            "trainer_accuracy": 0.9, "train_rows": 1, "test_rows": 1,
            "artifact": {"bucket": "b", "key": "k", "version_id": null, "sha256": "s", "size": 1},
            "dropped_by": null, "evaluation": null, "approvals": [], "manifest": null, "signing_key_id": null,
            "transitions": [], "created_at_ms": 0, "stage_reason": null
        }))
        .unwrap();
        r.transitions = vec![
            t(None, Stage::Candidate, 10),
            t(Some(Stage::Candidate), Stage::Staging, 20),
            t(Some(Stage::Staging), Stage::Production, 30),
            t(Some(Stage::Production), Stage::Superseded, 50),
        ];
        assert!(!r.in_production_at(29));
        assert!(r.in_production_at(30) && r.in_production_at(49));
        assert!(!r.in_production_at(50));
        let moved = r.moved(Stage::Production, 60, "ops", "rollback");
        assert_eq!((moved.rev, moved.stage, moved.round()), (5, Stage::Production, 5));
        assert!(moved.in_production_at(61));
    }
}
