//! People's decisions → stage transitions. Govern re-reads every decision from the
//! decisions table (the event only says "look"), keeps the valid ones and, when the spec's
//! quorum is reached, makes the one conditional transition the action calls for.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use mlsec_events::{
    Envelope, ModelPromoted, ModelRejected, ModelReviewed,
    audit::{AuditAction, AuditEntry, Subject},
    derive_event_id,
};
use mlsec_lake::{
    layout::models as keys,
    manifest::{MANIFEST_FORMAT, Manifest, SignedManifest},
};
use mlsec_runtime::{
    WorkError,
    contract::ModelSpec,
    now_ms,
    ports::{
        Approval, Decision, ModelRecord, Pointer, Principal, Principals, Result, ReviewAction, Stage, StageChange,
    },
    registry::glob_match,
};
use tracing::{info, warn};

use crate::{GovernWorker, WORKER};

/// The principals IAM resolves the decisions' vouched user ids (and the training data's
/// dropper) to, by user id. Anyone IAM does not know is absent, and counts for nothing.
pub type Resolved = BTreeMap<String, Principal>;

/// Resolves every user id a review needs: each decision's partition and the dropper.
pub async fn resolve(principals: &dyn Principals, record: &ModelRecord, all: &[Decision]) -> Result<Resolved> {
    let ids: BTreeSet<&str> = all.iter().map(|d| d.approver_id.as_str()).chain(record.dropped_by.as_deref()).collect();
    let mut out = Resolved::new();
    for id in ids {
        if let Some(p) = principals.resolve(id).await? {
            out.insert(id.to_string(), p);
        }
    }
    Ok(out)
}

/// Why a decision does not count. Identity is what AWS vouched for: the decision's
/// partition (`aws:userid`, pinned by the table policy) resolved through IAM; the ARN in
/// the decision's body is the writer's claim and must agree.
pub fn refusal(spec: &ModelSpec, record: &ModelRecord, d: &Decision, who: &Resolved) -> Option<String> {
    let Some(me) = who.get(&d.approver_id) else {
        return Some(format!("IAM knows no principal {}", d.approver_id));
    };
    if me.arn != d.approver_arn {
        return Some(format!("the decision claims to be {} but {} is {}", d.approver_arn, d.approver_id, me.arn));
    }
    if !spec.approval.approvers.iter().any(|p| glob_match(p, &me.arn)) {
        return Some(format!("{} is not among the spec's approvers", me.arn));
    }
    if d.action.needs_quorum() {
        let dropper = record.dropped_by.as_deref().and_then(|id| who.get(id));
        match dropper {
            None => {
                return Some(
                    "the training data's dropper is unknown to IAM, so separation of duties cannot hold".into(),
                );
            }
            Some(dropper) if dropper.person() == me.person() => {
                return Some(format!("{} dropped the training data and may not approve the model", me.person()));
            }
            Some(_) => {}
        }
        let seen = record.evaluation.as_ref().map(|e| e.report.sha256.as_str());
        if d.gate_report_sha256.as_deref() != seen {
            return Some("the approval names another gate report".into());
        }
    }
    None
}

/// The decisions that count for `action` in the record's current round, one per person
/// (two sessions of one person are one vote).
pub fn valid_decisions(
    spec: &ModelSpec,
    record: &ModelRecord,
    action: ReviewAction,
    all: &[Decision],
    who: &Resolved,
) -> (Vec<Decision>, Vec<String>) {
    let (mut ok, mut refused, mut people) = (Vec::new(), Vec::new(), BTreeSet::new());
    for d in all.iter().filter(|d| d.action == action && d.round == record.round()) {
        match refusal(spec, record, d, who) {
            Some(why) => refused.push(format!("{}: {why}", d.approver_id)),
            None if people.insert(who[&d.approver_id].person()) => ok.push(d.clone()),
            None => {}
        }
    }
    ok.sort_by(|a, b| (a.at_ms, &a.approver_id).cmp(&(b.at_ms, &b.approver_id)));
    (ok, refused)
}

impl GovernWorker {
    pub(crate) async fn reviewed(&self, ev: &ModelReviewed) -> Result<String, WorkError> {
        let spec = self.spec(&ev.model_name)?;
        let action = ReviewAction::parse(&ev.action)
            .ok_or_else(|| WorkError::permanent("unknown_action", format!("review action {}", ev.action)))?;
        let record = self.ports.registry.get(&ev.model_name, &ev.model_version).await?.ok_or_else(|| {
            WorkError::permanent("unregistered_model", format!("{}@{}", ev.model_name, ev.model_version))
        })?;
        if !action.applies_to(record.stage) || ev.round as u32 != record.round() {
            // Stale or replayed: the version moved on since the person decided.
            return Ok(format!(
                "{}: {} does not apply to a {} version in round {}",
                record.subject(),
                action.as_str(),
                record.stage,
                record.round()
            ));
        }
        let all = self.ports.decisions.for_version(&record.model_name, &record.model_version).await?;
        let who = resolve(self.ports.principals.as_ref(), &record, &all).await?;
        let (valid, refused) = valid_decisions(spec, &record, action, &all, &who);
        for r in &refused {
            warn!(worker = WORKER, model = %record.subject(), refused = %r, "decision does not count");
        }
        let needed = if action.needs_quorum() { spec.approval.required_approvals } else { 1 };
        if valid.len() < needed {
            return Ok(format!(
                "{}: {}/{needed} valid {} decisions{}",
                record.subject(),
                valid.len(),
                action.as_str(),
                if refused.is_empty() { String::new() } else { format!("; refused: {}", refused.join("; ")) }
            ));
        }
        let approvals: Vec<Approval> = valid.iter().map(Decision::approval).collect();
        let event_id = derive_event_id(&ev.event_id, WORKER);
        match action {
            ReviewAction::Approve | ReviewAction::Rollback => {
                self.promote(record, action, approvals, ev, &event_id).await
            }
            ReviewAction::Reject | ReviewAction::Revoke => {
                self.withdraw(record, action, &approvals[0], ev, &event_id).await
            }
        }
    }

    /// staging → production (approve) or superseded → production (rollback), superseding
    /// the current production version in the same transaction.
    async fn promote(
        &self,
        record: ModelRecord,
        action: ReviewAction,
        approvals: Vec<Approval>,
        ev: &ModelReviewed,
        event_id: &str,
    ) -> Result<String, WorkError> {
        let e = record.evaluation.as_ref().ok_or_else(|| WorkError::permanent("not_evaluated", record.subject()))?;
        if action == ReviewAction::Rollback && record.approvals.is_empty() {
            return Err(WorkError::permanent("never_approved", format!("{} was never approved", record.subject())));
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            model_name: record.model_name.clone(),
            model_version: record.model_version.clone(),
            stage: Stage::Production.as_str().into(),
            round: record.round(),
            algorithm: record.algorithm.clone(),
            artifact: record.artifact.clone(),
            dataset: record.dataset.clone(),
            contract_version: record.contract_version.clone(),
            dataset_digest: record.dataset_digest.clone(),
            holdout_sha256: e.holdout.sha256.clone(),
            gate_report_sha256: e.report.sha256.clone(),
            auc: e.auc,
            brier: e.brier,
            approvals: approvals.clone(),
            signing_key_id: self.config.signing_key_id.clone(),
        };
        let envelope = SignedManifest::sign(self.ports.keys.as_ref(), &manifest).await?;
        let (name, version) = (&record.model_name, &record.model_version);
        let manifest_ref = self
            .ports
            .store
            .put(
                &self.config.models,
                &keys::manifest(name, version, record.round()),
                Bytes::from(envelope.to_bytes()),
                "application/json",
            )
            .await?;
        let previous = self.ports.registry.production(name).await?.filter(|p| p.model_version != *version);
        let now = now_ms();
        let approvers: Vec<String> = approvals.iter().map(|a| a.approver_arn.clone()).collect();
        let reason = format!(
            "{} by {}",
            if action == ReviewAction::Approve { "approved" } else { "rolled back" },
            approvers.join(", ")
        );
        let mut next = record.moved(Stage::Production, now, WORKER, reason.clone());
        next.approvals = approvals;
        next.manifest = Some(manifest_ref.clone());
        next.signing_key_id = Some(self.config.signing_key_id.clone());
        let demote =
            previous.as_ref().map(|p| p.moved(Stage::Superseded, now, WORKER, format!("superseded by {version}")));
        let change = StageChange {
            record: next.clone(),
            expected: record.stage,
            pointer: Pointer::Promote { previous: previous.as_ref().map(|p| p.model_version.clone()) },
            demote,
        };
        let audit_action =
            if action == ReviewAction::Approve { AuditAction::ModelPromoted } else { AuditAction::ModelRolledBack };
        let audit = AuditEntry::new(audit_action, Subject::new("model", record.subject()), event_id)
            .reason(reason)
            .input(record.artifact.clone())
            .input(e.report.clone())
            .output(manifest_ref.clone())
            .attribute("approvers", approvers.join(","))
            .attribute("round", record.round())
            .attribute("previous", previous.as_ref().map_or("none".to_string(), |p| p.model_version.clone()));
        self.ports.audit.append(audit).await?;
        if !self.ports.registry.transition(&change).await? {
            let now = self.ports.registry.get(name, version).await?;
            if now.as_ref().is_some_and(|r| r.stage == Stage::Production) {
                return Ok(format!("{} already promoted", record.subject()));
            }
            return Err(WorkError::transient(
                "registry:transition",
                format!("{} or production moved concurrently", record.subject()),
            ));
        }
        let event = ModelPromoted {
            event_id: event_id.to_string(),
            correlation_id: ev.correlation_id.clone(),
            model_name: name.clone(),
            model_version: version.clone(),
            stage: Stage::Production.as_str().into(),
            artifact_sha256: record.artifact.sha256.clone(),
            manifest: manifest_ref,
            signing_key_id: self.config.signing_key_id.clone(),
            auc: e.auc,
            occurred_at_ms: now,
            previous_version: previous.map(|p| p.model_version),
            approvers: Some(approvers),
        };
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, event_id = %event.event_id, model = %record.subject(), "promoted to production");
        Ok(format!("promoted {}", record.subject()))
    }

    /// staging → rejected (reject) or any → revoked (revoke; clears `@production` if it
    /// pointed here, so scoring stops from the next message on).
    async fn withdraw(
        &self,
        record: ModelRecord,
        action: ReviewAction,
        by: &Approval,
        ev: &ModelReviewed,
        event_id: &str,
    ) -> Result<String, WorkError> {
        let (to, audit_action, code) = match action {
            ReviewAction::Reject => (Stage::Rejected, AuditAction::ModelRejected, "rejected_by_reviewer"),
            _ => (Stage::Revoked, AuditAction::ModelRevoked, "revoked"),
        };
        let reason = format!("{} by {}: {}", to, by.approver_arn, by.reason);
        let next = record.moved(to, now_ms(), WORKER, reason.clone());
        let pointer = if record.stage == Stage::Production { Pointer::Clear } else { Pointer::Keep };
        let change = StageChange { record: next.clone(), expected: record.stage, pointer, demote: None };
        let audit = AuditEntry::new(audit_action, Subject::new("model", record.subject()), event_id)
            .reason(reason.clone())
            .input(record.artifact.clone())
            .attribute("by", &by.approver_arn)
            .attribute("from_stage", record.stage.as_str());
        self.ports.audit.append(audit).await?;
        if !self.ports.registry.transition(&change).await? {
            return Err(WorkError::transient(
                "registry:transition",
                format!("{} moved concurrently", record.subject()),
            ));
        }
        let event = ModelRejected {
            event_id: event_id.to_string(),
            correlation_id: ev.correlation_id.clone(),
            model_name: record.model_name.clone(),
            model_version: Some(record.model_version.clone()),
            dataset: record.dataset.clone(),
            stage: "review".into(),
            reason_code: code.into(),
            reason,
            gate_report: record.evaluation.as_ref().map(|e| e.report.clone()),
            occurred_at_ms: now_ms(),
        };
        self.ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
        info!(worker = WORKER, model = %record.subject(), stage = %to, "withdrawn");
        Ok(format!("{} {to}", record.subject()))
    }
}
