//! Who the caller is, as AWS says: STS `GetCallerIdentity`. Operator actions record this
//! identity (ARN and account), never a typed name, and separation of duties compares it.

use std::{collections::HashMap, sync::Mutex};

use async_trait::async_trait;
use mlsec_events::audit::Actor;
use mlsec_runtime::{
    WorkError,
    ports::{Principal, Principals, Result},
};

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

/// IAM as the [`Principals`] port: a vouched user id's unique-id part (`AROA…:<session>`
/// for a role session, `AIDA…` for a user) is looked up among the account's roles or users;
/// a role session resolves to its `assumed-role/<role>/<session>` ARN, exactly what STS
/// names it. Unique ids are never reused, so found ids are cached for the life of the
/// process (a principal deleted since still resolves there until the next cold start); an
/// unknown id is asked again next time.
pub struct IamPrincipals {
    iam: aws_sdk_iam::Client,
    /// Unique id → the role's ARN (roles) or the user's ARN (users).
    known: Mutex<HashMap<String, String>>,
    /// Roles whose trust policies pin session names to people.
    pinned_roles: std::collections::BTreeSet<String>,
}

impl IamPrincipals {
    pub fn new(iam: aws_sdk_iam::Client, pinned_roles: std::collections::BTreeSet<String>) -> Self {
        Self { iam, known: Mutex::default(), pinned_roles }
    }

    async fn refresh_roles(&self) -> Result<()> {
        let mut pages = self.iam.list_roles().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("iam:ListRoles", e))?;
            let mut known = self.known.lock().unwrap();
            for r in page.roles() {
                known.insert(r.role_id().to_string(), r.arn().to_string());
            }
        }
        Ok(())
    }

    async fn refresh_users(&self) -> Result<()> {
        let mut pages = self.iam.list_users().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("iam:ListUsers", e))?;
            let mut known = self.known.lock().unwrap();
            for u in page.users() {
                known.insert(u.user_id().to_string(), u.arn().to_string());
            }
        }
        Ok(())
    }
}

/// `arn:aws:iam::123:role/path/name` + session → `arn:aws:sts::123:assumed-role/name/session`.
fn session_arn(role_arn: &str, session: &str) -> Option<String> {
    let (head, resource) = role_arn.split_once(":role/")?;
    let name = resource.rsplit('/').next()?;
    Some(format!("{}:assumed-role/{name}/{session}", head.replacen(":iam:", ":sts:", 1)))
}

#[async_trait]
impl Principals for IamPrincipals {
    async fn resolve(&self, user_id: &str) -> Result<Option<Principal>> {
        let (unique, session) = match user_id.split_once(':') {
            Some((u, s)) => (u, Some(s)),
            None => (user_id, None),
        };
        let lookup = |this: &Self| this.known.lock().unwrap().get(unique).cloned();
        let arn = match lookup(self) {
            Some(a) => Some(a),
            // A role session's id is `<role id>:<session>`, a user's has no session part
            // (AWS's ids start `AROA` and `AIDA`; the emulator's users' do not).
            None if session.is_some() => {
                self.refresh_roles().await?;
                lookup(self)
            }
            None => {
                self.refresh_users().await?;
                lookup(self)
            }
        };
        let arn = match (arn, session) {
            (Some(role), Some(s)) => session_arn(&role, s),
            (Some(user), None) if user.contains(":user/") => Some(user),
            _ => None,
        };
        Ok(arn.map(|arn| {
            let mut p = Principal { user_id: user_id.to_string(), arn, pinned: false };
            p.pinned = p.role().is_some_and(|r| self.pinned_roles.contains(r));
            p
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_role_session_is_named_as_sts_names_it() {
        assert_eq!(
            super::session_arn("arn:aws:iam::123:role/people/model-risk", "ana").as_deref(),
            Some("arn:aws:sts::123:assumed-role/model-risk/ana")
        );
        assert_eq!(super::session_arn("arn:aws:iam::123:user/ana", "x"), None);
    }
}
