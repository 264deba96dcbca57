//! Who the caller is, as AWS says: STS `GetCallerIdentity`. Operator actions record this
//! identity (ARN and account), never a typed name, and separation of duties compares it.

use mlsec_events::audit::Actor;
use mlsec_runtime::{WorkError, ports::Result};

use crate::errors::classify;

/// The caller of this process's credentials, as a person actor.
pub async fn caller(sts: &aws_sdk_sts::Client) -> Result<Actor> {
    let out = sts.get_caller_identity().send().await.map_err(|e| classify("sts:GetCallerIdentity", e))?;
    let arn = out.arn().ok_or_else(|| WorkError::fatal("sts:GetCallerIdentity returned no ARN"))?;
    let account = out.account().ok_or_else(|| WorkError::fatal("sts:GetCallerIdentity returned no account"))?;
    Ok(Actor::person(arn, account))
}
