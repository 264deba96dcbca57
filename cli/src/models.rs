//! `mlsec models`: the registry as people see it, and their decisions.
//!
//! A decision (approve, reject, rollback, revoke) is recorded under the caller's STS
//! identity in the decisions table, appended to the audit chain in their name, and
//! announced with `ModelReviewed`; govern re-reads the decisions, re-checks them and makes
//! the transition. The CLI refuses early what govern would refuse (self-approval, an
//! approver the spec does not name, a stage the action does not apply to), so people see
//! why at once; govern's check is the one that holds. Re-running a decision whose first run
//! failed part-way (after recording it) finishes it: the stored decision is audited and
//! announced again, and both deduplicate.

use std::time::{Duration, Instant};

use mlsec_aws::{Deployment, identity::whoami};
use mlsec_events::{
    Envelope, ModelReviewed,
    audit::{AuditAction, AuditEntry, Subject},
    derive_event_id,
};
use mlsec_govern::review::{refusal, valid_decisions};
use mlsec_runtime::{
    WorkError,
    contract::Contracts,
    now_ms,
    ports::{Decision, ModelRecord, ReviewAction, Stage},
};
use serde::Serialize;

/// `NAME@VERSION`.
pub fn parse_subject(s: &str) -> Result<(String, String), WorkError> {
    match s.split_once('@') {
        Some((m, v)) if !m.is_empty() && !v.is_empty() => Ok((m.to_string(), v.to_string())),
        _ => Err(WorkError::fatal(format!("{s}: expected NAME@VERSION"))),
    }
}

/// One row of `models list`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub model: String,
    pub version: String,
    pub stage: Stage,
    pub holdout_auc: Option<f64>,
    pub brier: Option<f64>,
    pub approvers: Vec<String>,
    pub reason: Option<String>,
}

/// `models list` for people.
pub fn render_list(rows: &[ModelRow]) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut t = crate::output::Table::new(["model", "version", "stage", "auc", "brier", "approvers", "reason"]);
    for r in rows {
        t.row([
            r.model.clone(),
            r.version.clone(),
            r.stage.as_str().to_string(),
            f(r.holdout_auc),
            f(r.brier),
            if r.approvers.is_empty() { "-".to_string() } else { r.approvers.join(", ") },
            r.reason.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    if t.is_empty() { "no model registered\n".into() } else { t.render() }
}

pub async fn list(dep: &Deployment) -> Result<Vec<ModelRow>, WorkError> {
    let mut rows: Vec<ModelRow> = dep
        .ports("operator")
        .registry
        .list()
        .await?
        .into_iter()
        .map(|r| ModelRow {
            holdout_auc: r.evaluation.as_ref().map(|e| e.auc),
            brier: r.evaluation.as_ref().map(|e| e.brier),
            approvers: r.approvals.iter().map(|a| a.approver_arn.clone()).collect(),
            model: r.model_name,
            version: r.model_version,
            stage: r.stage,
            reason: r.stage_reason,
        })
        .collect();
    rows.sort_by(|a, b| (&a.model, &a.version).cmp(&(&b.model, &b.version)));
    Ok(rows)
}

pub async fn show(dep: &Deployment, model: &str, version: &str) -> Result<ModelRecord, WorkError> {
    dep.ports("operator")
        .registry
        .get(model, version)
        .await?
        .ok_or_else(|| WorkError::fatal(format!("{model}@{version} is not registered")))
}

/// One move in a model's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    pub at_ms: i64,
    pub at: String,
    pub version: String,
    pub from: Option<Stage>,
    pub to: Stage,
    pub actor: String,
    pub reason: String,
}

/// Every transition of every version of `model`, oldest first.
pub async fn history(dep: &Deployment, model: &str) -> Result<Vec<HistoryRow>, WorkError> {
    let mut rows: Vec<HistoryRow> = dep
        .ports("operator")
        .registry
        .versions(model)
        .await?
        .into_iter()
        .flat_map(|r| {
            r.transitions.into_iter().map(move |t| HistoryRow {
                at_ms: t.at_ms,
                at: mlsec_runtime::time::format_rfc3339_ms(t.at_ms),
                version: r.model_version.clone(),
                from: t.from,
                to: t.to,
                actor: t.actor,
                reason: t.reason,
            })
        })
        .collect();
    rows.sort_by_key(|r| r.at_ms);
    Ok(rows)
}

/// The version that was in production at `at_ms`, from the versions' own transitions.
pub async fn production_at(dep: &Deployment, model: &str, at_ms: i64) -> Result<Option<String>, WorkError> {
    let versions = dep.ports("operator").registry.versions(model).await?;
    Ok(versions.into_iter().find(|r| r.in_production_at(at_ms)).map(|r| r.model_version))
}

/// What `decide` did.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    pub model: String,
    pub version: String,
    pub action: ReviewAction,
    pub by: String,
    pub round: u32,
    /// Valid decisions for this action and round, counting this one, and how many it takes.
    pub valid: usize,
    pub required: usize,
    /// The version's stage after govern acted (or as it was, if the quorum is not reached
    /// or govern did not answer within the wait).
    pub stage: Stage,
}

/// Records `action` on `model@version` as the caller (STS), then waits up to `wait` for
/// govern to make the transition when this decision completes the quorum.
pub async fn decide(
    dep: &Deployment,
    contracts: &Contracts,
    model: &str,
    version: &str,
    action: ReviewAction,
    reason: &str,
    wait: Duration,
) -> Result<Decided, WorkError> {
    let refuse = |m: String| WorkError::permanent("decision_refused", m);
    if reason.trim().is_empty() {
        return Err(refuse("a decision needs a --reason".into()));
    }
    let spec = contracts.model(model).ok_or_else(|| refuse(format!("no model spec named {model}")))?;
    let me = whoami(&dep.sts).await?;
    let ports = dep.ports("operator");
    let record = show(dep, model, version).await?;
    if !action.applies_to(record.stage) {
        return Err(refuse(format!(
            "{} does not apply to {}@{version}, which is {}",
            action.as_str(),
            model,
            record.stage
        )));
    }
    let decision = Decision {
        approver_id: me.user_id.clone(),
        approver_arn: me.arn.clone(),
        model_name: model.to_string(),
        model_version: version.to_string(),
        action,
        round: record.round(),
        reason: reason.to_string(),
        at_ms: now_ms(),
        gate_report_sha256: record.evaluation.as_ref().map(|e| e.report.sha256.clone()),
    };
    // What govern will check, from the same sources: STS for the caller, IAM for the dropper.
    let mut who = mlsec_govern::review::resolve(ports.principals.as_ref(), &record, &[]).await?;
    if let Some(p) = ports.principals.resolve(&me.user_id).await? {
        who.insert(me.user_id.clone(), p);
    }
    if let Some(why) = refusal(spec, &record, &decision, &who) {
        return Err(refuse(why));
    }
    // Recorded before (a run that failed before its audit record or announcement): go on
    // with the stored decision; the audit chain and govern deduplicate, so re-running the
    // command finishes what the first run began.
    let decision = if ports.decisions.record(&decision).await? {
        decision
    } else {
        ports
            .decisions
            .for_version(model, version)
            .await?
            .into_iter()
            .find(|d| d.approver_id == decision.approver_id && d.key() == decision.key())
            .ok_or_else(|| WorkError::transient("decisions:read", "the recorded decision is not readable yet"))?
    };
    let audit_action = match action {
        ReviewAction::Approve => AuditAction::ModelApproved,
        ReviewAction::Reject => AuditAction::ModelRejected,
        ReviewAction::Rollback => AuditAction::ModelRolledBack,
        ReviewAction::Revoke => AuditAction::ModelRevoked,
        ReviewAction::Archive => AuditAction::ModelArchived,
    };
    let decision_id = derive_event_id(&format!("{}|{}", decision.approver_id, decision.key()), "operator");
    let entry = AuditEntry::new(audit_action, Subject::new("model", record.subject()), &decision_id)
        .reason(&decision.reason)
        .attribute("decision", action.as_str())
        .attribute("round", decision.round)
        .attribute("gate_report_sha256", decision.gate_report_sha256.clone().unwrap_or_default());
    dep.audit_log("operator", me.actor()).append(entry).await?;
    let event = ModelReviewed {
        event_id: decision_id,
        correlation_id: record.subject(),
        model_name: model.to_string(),
        model_version: version.to_string(),
        action: action.as_str().into(),
        round: decision.round as i32,
        occurred_at_ms: decision.at_ms,
    };
    ports.bus.publish(&[Envelope::wrap(&event)?]).await?;
    let all = ports.decisions.for_version(model, version).await?;
    let who = mlsec_govern::review::resolve(ports.principals.as_ref(), &record, &all).await?;
    let (valid, _) = valid_decisions(spec, &record, action, &all, &who);
    let required = if action.needs_quorum() { spec.approval.required_approvals } else { 1 };
    let mut stage = record.stage;
    if valid.len() >= required {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let now = show(dep, model, version).await?;
            if now.rev != record.rev {
                stage = now.stage;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(Decided {
        model: model.to_string(),
        version: version.to_string(),
        action,
        by: me.arn,
        round: decision.round,
        valid: valid.len(),
        required,
        stage,
    })
}
