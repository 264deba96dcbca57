//! Who the caller is, as AWS says: STS `GetCallerIdentity`. Operator actions record this
//! identity (ARN and account), never a typed name, and separation of duties compares it.

use mlsec_events::audit::Actor;
use mlsec_runtime::{WorkError, ports::Result};

use crate::errors::classify;

/// What STS says about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub arn: String,
    pub account: String,
    /// `AIDA…` for an IAM user, `AROA…:<session>` for a role session: the value IAM's
    /// `${aws:userid}` policy variable takes, which partitions the decisions table.
    pub user_id: String,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::person(&self.arn, &self.account)
    }
}

pub async fn whoami(sts: &aws_sdk_sts::Client) -> Result<Caller> {
    let out = sts.get_caller_identity().send().await.map_err(|e| classify("sts:GetCallerIdentity", e))?;
    let field = |v: Option<&str>, name: &str| {
        v.map(str::to_string).ok_or_else(|| WorkError::fatal(format!("sts:GetCallerIdentity returned no {name}")))
    };
    Ok(Caller {
        arn: field(out.arn(), "ARN")?,
        account: field(out.account(), "account")?,
        user_id: field(out.user_id(), "UserId")?,
    })
}

/// The caller of this process's credentials, as a person actor.
pub async fn caller(sts: &aws_sdk_sts::Client) -> Result<Actor> {
    Ok(whoami(sts).await?.actor())
}
