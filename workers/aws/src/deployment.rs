//! A deployment: SDK clients, resource names and the topology, plus the resolution of
//! key aliases to ARNs that every write needs.

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_config::{BehaviorVersion, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};
use mlsec_events::audit::{Actor, AuditEntry};
use mlsec_runtime::{
    WorkError,
    ports::{BucketRef, Ports},
    topology::{Names, Topology},
};
use tokio::sync::{Mutex, OnceCell};

use crate::{
    audit::{AuditChain, CheckpointPolicy},
    dynamo::{DynamoDecisions, DynamoIdempotency, DynamoRegistry},
    errors::classify,
    eventbridge::EventBridgePublisher,
    kms::KmsKeys,
    s3::S3Store,
};

/// Clients and names for one deployment prefix.
#[derive(Clone)]
pub struct Deployment {
    pub names: Names,
    pub topology: Arc<Topology>,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub sts: aws_sdk_sts::Client,
    pub iam: aws_sdk_iam::Client,
    principals: Arc<crate::identity::IamPrincipals>,
    key_arns: Arc<Mutex<HashMap<String, String>>>,
}

/// Loads the SDK configuration from the environment. With `AWS_ENDPOINT_URL` set (the
/// local stack) connections fail fast instead of retrying for seconds.
pub async fn sdk_config() -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        loader = loader.region(aws_config::Region::new("us-east-1"));
    }
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        loader = loader
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(2)).build());
    }
    loader.load().await
}

/// Roles whose trust policies pin session names to people: the deployment's people roles
/// (topology `people`, built so by Terraform and the provisioner) and any the deployer
/// names in `MLSEC_PINNED_ROLES` (comma-separated role names, e.g. IAM Identity Center's
/// permission-set roles, which set the session name to the user name themselves).
pub fn pinned_roles(names: &Names, topology: &Topology) -> std::collections::BTreeSet<String> {
    let mut roles: std::collections::BTreeSet<String> = topology.people.keys().map(|p| names.role(p)).collect();
    if let Ok(extra) = std::env::var("MLSEC_PINNED_ROLES") {
        roles.extend(extra.split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::to_string));
    }
    roles
}

impl Deployment {
    /// From the environment: `MLSEC_PREFIX` for names, AWS settings for the clients.
    pub async fn from_env() -> Self {
        Self::new(&sdk_config().await, Names::from_env(), Topology::builtin())
    }

    pub fn new(sdk: &SdkConfig, names: Names, topology: Topology) -> Self {
        let local = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let s3_conf = aws_sdk_s3::config::Builder::from(sdk).force_path_style(local).build();
        let pinned = pinned_roles(&names, &topology);
        Self {
            names,
            topology: Arc::new(topology),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            sqs: aws_sdk_sqs::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            kms: aws_sdk_kms::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
            principals: Arc::new(crate::identity::IamPrincipals::new(aws_sdk_iam::Client::new(sdk), pinned)),
            key_arns: Arc::default(),
        }
    }

    /// The same deployment, with the credentials of a session of `role_arn` (STS
    /// `AssumeRole`): how a person takes their operator role, and how the demo acts as a
    /// second person.
    pub async fn assume_role(&self, role_arn: &str, session: &str) -> Result<Deployment, WorkError> {
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session)
            .send()
            .await
            .map_err(|e| classify("sts:AssumeRole", e))?;
        let c = out.credentials().ok_or_else(|| WorkError::fatal("sts:AssumeRole returned no credentials"))?;
        let creds = aws_sdk_sts::config::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "mlsec-assume-role",
        );
        let sdk = sdk_config()
            .await
            .to_builder()
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(creds))
            .build();
        Ok(Deployment::new(&sdk, self.names.clone(), (*self.topology).clone()))
    }

    /// ARN of a declared key (alias resolved once, then cached).
    pub async fn key_arn(&self, key: &str) -> Result<String, WorkError> {
        if let Some(arn) = self.key_arns.lock().await.get(key) {
            return Ok(arn.clone());
        }
        let alias = self.names.key_alias(key);
        let out = self.kms.describe_key().key_id(&alias).send().await.map_err(|e| classify("kms:DescribeKey", e))?;
        let arn = out
            .key_metadata()
            .and_then(|m| m.arn())
            .ok_or_else(|| WorkError::fatal(format!("key {alias} has no ARN")))?
            .to_string();
        self.key_arns.lock().await.insert(key.to_string(), arn.clone());
        Ok(arn)
    }

    /// A writable bucket with its zone's key, as the topology declares it.
    pub async fn bucket_ref(&self, bucket: &str) -> Result<BucketRef, WorkError> {
        let decl = self
            .topology
            .buckets
            .get(bucket)
            .ok_or_else(|| WorkError::fatal(format!("bucket {bucket} is not in the topology")))?;
        Ok(BucketRef { name: self.names.bucket(bucket), kms_key_arn: self.key_arn(&decl.key).await? })
    }

    /// What the Lambda driver uses to bring failed messages back soon.
    pub fn retry_scheduler(&self) -> Arc<dyn mlsec_runtime::ports::RetryScheduler> {
        Arc::new(crate::queues::SqsRetry::new(self.sqs.clone()))
    }

    /// The batch core's books for `worker`: its claims and failure records, its bus (for
    /// `ProcessingFailed`) and its queue's maxReceiveCount.
    pub fn books(&self, worker: &str) -> mlsec_runtime::batch::Books {
        let ports = self.ports(worker);
        mlsec_runtime::batch::Books::new(worker, ports.idempotency, ports.bus)
    }

    /// The ports for `worker` (its events carry source `<prefix>.<worker>`).
    pub fn ports(&self, worker: &str) -> Ports {
        Ports {
            store: Arc::new(S3Store::new(self.s3.clone())),
            bus: Arc::new(EventBridgePublisher::new(
                self.events.clone(),
                self.names.bus(&self.topology),
                self.names.event_source(worker),
            )),
            registry: Arc::new(DynamoRegistry::new(self.dynamodb.clone(), self.names.table("registry"))),
            decisions: Arc::new(DynamoDecisions::new(self.dynamodb.clone(), self.names.table("decisions"))),
            principals: self.principals.clone(),
            idempotency: Arc::new(DynamoIdempotency::new(self.dynamodb.clone(), self.names.table("idempotency"))),
            keys: Arc::new(KmsKeys::new(self.kms.clone())),
            audit: self.audit_log(worker, Actor::worker(self.names.role(worker))),
        }
    }

    /// The audit chain as `writer` (records under `records/<writer>/`), recording `actor`.
    pub fn audit_log(&self, writer: &str, actor: Actor) -> Arc<dyn mlsec_runtime::ports::AuditLog> {
        Arc::new(LazyAudit { dep: self.clone(), writer: writer.to_string(), actor, chain: OnceCell::new() })
    }

    /// The audit chain's writer handle, its bucket and signing key resolved.
    pub async fn audit_chain(&self, writer: &str, actor: Actor) -> Result<AuditChain, WorkError> {
        Ok(AuditChain::new(
            self.dynamodb.clone(),
            self.names.table("audit"),
            Arc::new(S3Store::new(self.s3.clone())),
            Arc::new(KmsKeys::new(self.kms.clone())),
            self.bucket_ref("audit").await?,
            self.key_arn("audit_signing").await?,
            writer,
            actor,
            CheckpointPolicy::from_env(),
        ))
    }

    /// URL of a queue by name.
    pub async fn queue_url(&self, name: &str) -> Result<String, WorkError> {
        let out = self.sqs.get_queue_url().queue_name(name).send().await.map_err(|e| classify("sqs:GetQueueUrl", e))?;
        out.queue_url().map(str::to_string).ok_or_else(|| WorkError::fatal(format!("queue {name} has no URL")))
    }
}

/// An audit chain resolved on first use (the bucket's key and the signing key need KMS).
struct LazyAudit {
    dep: Deployment,
    writer: String,
    actor: Actor,
    chain: OnceCell<AuditChain>,
}

#[async_trait::async_trait]
impl mlsec_runtime::ports::AuditLog for LazyAudit {
    async fn append(&self, entry: AuditEntry) -> mlsec_runtime::ports::Result<u64> {
        let chain = self.chain.get_or_try_init(|| self.dep.audit_chain(&self.writer, self.actor.clone())).await?;
        chain.append(entry).await
    }
}
