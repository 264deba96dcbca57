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
    // Only approvals need people: a reject, revoke or archive (which can only stop a model)
    // may come from any approver, a break-glass role's session included.
    if let Some(role) = me.role().filter(|_| !me.pinned && d.action.needs_quorum()) {
        return Some(format!(
            "role {role} does not pin its session names to people (ADR 0012), so a session of it speaks for no one"
        ));
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
        match (refusal(spec, record, d, who), who.get(&d.approver_id)) {
            (None, Some(p)) if people.insert(p.person()) => ok.push(d.clone()),
            (None, _) => {}
            (Some(why), _) => refused.push(format!("{}: {why}", d.approver_id)),
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
        let round = u32::try_from(ev.round)
            .map_err(|_| WorkError::permanent("bad_round", format!("review round {}", ev.round)))?;
        // One move, one id, whichever decision's announcement triggered it (with two
        // approvers, each announces): the move's effects deduplicate by it.
        let event_id = derive_event_id(&format!("{}#{}#{round}", record.subject(), action.as_str()), WORKER);
        if moved_by(&record, action, round) {
            // This review already moved the version (an earlier delivery, or a concurrent
            // governor): its record and announcement may not have followed. Both are
            // idempotent, so finish them.
            return self.finish(&record, action, &event_id).await;
        }
        if !action.applies_to(record.stage) || round != record.round() {
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
        let next = match action {
            ReviewAction::Approve | ReviewAction::Rollback => self.promote(&record, action, approvals).await?,
            ReviewAction::Reject | ReviewAction::Revoke | ReviewAction::Archive => {
                self.withdraw(&record, action, &approvals[0]).await?
            }
        };
        match next {
            Some(next) => self.finish(&next, action, &event_id).await,
            None => {
                // Lost the race: fine if the winner made this very move (then finish its
                // record and announcement), otherwise try again on a fresh read.
                let now = self.ports.registry.get(&record.model_name, &record.model_version).await?;
                match now {
                    Some(now) if moved_by(&now, action, round) => self.finish(&now, action, &event_id).await,
                    _ => Err(WorkError::transient(
                        "registry:transition",
                        format!("{} or its production pointer moved concurrently", record.subject()),
                    )),
                }
            }
        }
    }

    /// staging → production (approve) or superseded → production (rollback), superseding
    /// the current production version in the same transaction. `None` if the conditional
    /// transaction lost to a concurrent change.
    async fn promote(
        &self,
        record: &ModelRecord,
        action: ReviewAction,
        approvals: Vec<Approval>,
    ) -> Result<Option<ModelRecord>, WorkError> {
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
        let mut next = record.moved(Stage::Production, now, WORKER, reason);
        let t = next.transitions.last_mut().expect("just moved");
        (t.people, t.review) = (approvers, Some(review_of(action, record.round())));
        next.approvals = approvals;
        next.manifest = Some(manifest_ref);
        next.signing_key_id = Some(self.config.signing_key_id.clone());
        let demote = previous.as_ref().map(|p| p.moved(Stage::Superseded, now, WORKER, superseded_by(version)));
        let change = StageChange {
            record: next.clone(),
            expected: record.stage,
            pointer: Pointer::Promote { previous: previous.as_ref().map(|p| p.model_version.clone()) },
            demote,
        };
        Ok(self.ports.registry.transition(&change).await?.then_some(next))
    }

    /// staging → rejected (reject), any → revoked (revoke), or production | superseded →
    /// archived (archive); clears `@production` if it pointed here, so scoring stops from the
    /// next message on. `None` if the conditional transaction lost to a concurrent change.
    async fn withdraw(
        &self,
        record: &ModelRecord,
        action: ReviewAction,
        by: &Approval,
    ) -> Result<Option<ModelRecord>, WorkError> {
        let to = action.target();
        let reason = format!("{} by {}: {}", to, by.approver_arn, by.reason);
        let mut next = record.moved(to, now_ms(), WORKER, reason);
        let t = next.transitions.last_mut().expect("just moved");
        (t.people, t.review) = (vec![by.approver_arn.clone()], Some(review_of(action, record.round())));
        let pointer = if record.stage == Stage::Production { Pointer::Clear } else { Pointer::Keep };
        let change = StageChange { record: next.clone(), expected: record.stage, pointer, demote: None };
        Ok(self.ports.registry.transition(&change).await?.then_some(next))
    }

    /// What follows a reviewed transition, once it is durable: the audit record and the
    /// announcement, both rebuilt from the registry record alone (so a redelivery, or the
    /// governor that lost the race, produces the same ones; the audit chain and consumers
    /// deduplicate by event id).
    async fn finish(&self, after: &ModelRecord, action: ReviewAction, event_id: &str) -> Result<String, WorkError> {
        let t = after.transitions.last().ok_or_else(|| WorkError::fatal("a reviewed version without transitions"))?;
        let (from, people) = (t.from.unwrap_or(Stage::Candidate), t.people.join(","));
        let subject = Subject::new("model", after.subject());
        let envelope = match action {
            ReviewAction::Approve | ReviewAction::Rollback => {
                let e =
                    after.evaluation.as_ref().ok_or_else(|| WorkError::permanent("not_evaluated", after.subject()))?;
                let manifest = after.manifest.clone().ok_or_else(|| WorkError::fatal("promoted without a manifest"))?;
                let previous = self.superseded_at(after, t.at_ms).await?;
                let audit_action = if action == ReviewAction::Approve {
                    AuditAction::ModelPromoted
                } else {
                    AuditAction::ModelRolledBack
                };
                let audit = AuditEntry::new(audit_action, subject, event_id)
                    .reason(t.reason.clone())
                    .input(after.artifact.clone())
                    .input(e.report.clone())
                    .output(manifest.clone())
                    .attribute("approvers", &people)
                    .attribute("round", t.review.as_deref().and_then(|r| r.split_once('#')).map_or("", |(_, r)| r))
                    .attribute("previous", previous.clone().unwrap_or_else(|| "none".into()));
                self.ports.audit.append(audit).await?;
                Envelope::wrap(&ModelPromoted {
                    event_id: event_id.to_string(),
                    correlation_id: after.subject(),
                    model_name: after.model_name.clone(),
                    model_version: after.model_version.clone(),
                    stage: Stage::Production.as_str().into(),
                    artifact_sha256: after.artifact.sha256.clone(),
                    manifest,
                    signing_key_id: after.signing_key_id.clone().unwrap_or_else(|| self.config.signing_key_id.clone()),
                    auc: e.auc,
                    occurred_at_ms: t.at_ms,
                    previous_version: previous,
                    approvers: Some(t.people.clone()),
                })?
            }
            ReviewAction::Reject | ReviewAction::Revoke | ReviewAction::Archive => {
                let (audit_action, code) = match action {
                    ReviewAction::Reject => (AuditAction::ModelRejected, "rejected_by_reviewer"),
                    ReviewAction::Archive => (AuditAction::ModelArchived, "archived"),
                    _ => (AuditAction::ModelRevoked, "revoked"),
                };
                let audit = AuditEntry::new(audit_action, subject, event_id)
                    .reason(t.reason.clone())
                    .input(after.artifact.clone())
                    .attribute("by", &people)
                    .attribute("from_stage", from.as_str());
                self.ports.audit.append(audit).await?;
                Envelope::wrap(&ModelRejected {
                    event_id: event_id.to_string(),
                    correlation_id: after.subject(),
                    model_name: after.model_name.clone(),
                    model_version: Some(after.model_version.clone()),
                    dataset: after.dataset.clone(),
                    stage: "review".into(),
                    reason_code: code.into(),
                    reason: t.reason.clone(),
                    gate_report: after.evaluation.as_ref().map(|e| e.report.clone()),
                    occurred_at_ms: t.at_ms,
                })?
            }
        };
        self.ports.bus.publish(&[envelope]).await?;
        info!(worker = WORKER, event_id = %event_id, model = %after.subject(), stage = %after.stage, "reviewed transition announced");
        Ok(format!("{} {}", after.subject(), after.stage))
    }

    /// The version this promotion superseded: the one demoted in the same transaction.
    async fn superseded_at(&self, promoted: &ModelRecord, at_ms: i64) -> Result<Option<String>, WorkError> {
        let reason = superseded_by(&promoted.model_version);
        let versions = self.ports.registry.versions(&promoted.model_name).await?;
        Ok(versions
            .into_iter()
            .find(|r| r.transitions.iter().any(|t| t.at_ms == at_ms && t.to == Stage::Superseded && t.reason == reason))
            .map(|r| r.model_version))
    }
}

fn superseded_by(version: &str) -> String {
    format!("superseded by {version}")
}

/// The review a transition carried out (`<action>#<round>`).
fn review_of(action: ReviewAction, round: u32) -> String {
    format!("{}#{round}", action.as_str())
}

/// Whether the version's last move is the one this very review (action and round) made:
/// recorded on the transition, with the people behind it.
fn moved_by(record: &ModelRecord, action: ReviewAction, round: u32) -> bool {
    record.stage == action.target()
        && record.transitions.last().is_some_and(|t| {
            let review = match t.review.as_deref() {
                Some(r) => r == review_of(action, round),
                // A move recorded before moves named their review: the round and target
                // must fit, and people must have made it (a gate rejection has none).
                None => record.round() == round + 1,
            };
            t.actor == WORKER && review && !t.people.is_empty()
        })
}
