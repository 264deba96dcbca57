//! The provisioner: creates everything `terraform/topology.json` declares on the target
//! account (the local emulator in practice; Terraform does it on AWS). Every step is
//! "create or confirm", so provisioning twice is harmless.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, SseSpecification, SseType,
    TimeToLiveSpecification,
};
use aws_sdk_eventbridge::types::Target;
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, EventBridgeConfiguration,
    NotificationConfiguration, PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use mlsec_runtime::{
    WorkError,
    topology::{DLQ_RETENTION_SECONDS, SQS_MAX_MESSAGE_BYTES},
};
use tracing::info;

use crate::{
    Deployment,
    errors::{classify, code},
};

/// What one provisioning run touched (names only).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Provisioned {
    pub keys: Vec<String>,
    pub buckets: Vec<String>,
    pub tables: Vec<String>,
    pub bus: String,
    pub queues: Vec<String>,
    pub rules: Vec<String>,
    /// The people roles (`<prefix>-<name>`).
    pub roles: Vec<String>,
}

/// Provisions the whole topology.
pub async fn provision(dep: &Deployment) -> Result<Provisioned, WorkError> {
    let mut out = Provisioned::default();
    for (name, decl) in &dep.topology.keys {
        ensure_key(dep, name, &decl.spec, &decl.usage, &decl.description).await?;
        out.keys.push(dep.names.key_alias(name));
    }
    for (name, decl) in &dep.topology.buckets {
        let key_arn = dep.key_arn(&decl.key).await?;
        ensure_bucket(dep, &dep.names.bucket(name), &key_arn, decl.eventbridge, decl.object_lock).await?;
        out.buckets.push(dep.names.bucket(name));
    }
    for (name, decl) in &dep.topology.tables {
        ensure_table(
            dep,
            &dep.names.table(name),
            &decl.partition_key,
            decl.sort_key.as_deref(),
            decl.ttl_attribute.as_deref(),
        )
        .await?;
        out.tables.push(dep.names.table(name));
    }
    out.bus = dep.names.bus(&dep.topology);
    ensure_bus(dep, &out.bus).await?;
    for (worker, decl) in &dep.topology.workers {
        let bus = if decl.trigger.bus == "default" { "default".to_string() } else { out.bus.clone() };
        let pattern = dep.topology.event_pattern(&dep.names, decl);
        let queue_url = ensure_queue_with_dlq(
            dep,
            &dep.names.queue(worker),
            &dep.names.dlq(worker),
            decl.queue.visibility_timeout_seconds,
            decl.queue.max_receive_count,
        )
        .await?;
        ensure_rule_to_queue(dep, &bus, &dep.names.rule(worker), &pattern, &queue_url).await?;
        out.queues.push(dep.names.queue(worker));
        out.rules.push(dep.names.rule(worker));
    }
    let account = crate::identity::whoami(&dep.sts).await?.account;
    for (person, description) in &dep.topology.people {
        ensure_person_role(dep, &dep.names.role(person), &account, description).await?;
        out.roles.push(dep.names.role(person));
    }
    info!(prefix = %dep.names.prefix, "provisioned");
    Ok(out)
}

async fn ensure_key(dep: &Deployment, name: &str, spec: &str, usage: &str, description: &str) -> Result<(), WorkError> {
    let alias = dep.names.key_alias(name);
    match dep.kms.describe_key().key_id(&alias).send().await {
        Ok(_) => return Ok(()),
        Err(e) if code(&e) == Some("NotFoundException") => {}
        Err(e) => return Err(classify("kms:DescribeKey", e)),
    }
    let created = dep
        .kms
        .create_key()
        .key_spec(KeySpec::from(spec))
        .key_usage(KeyUsageType::from(usage))
        .description(description)
        .send()
        .await
        .map_err(|e| classify("kms:CreateKey", e))?;
    let key_id = created
        .key_metadata()
        .map(|m| m.key_id().to_string())
        .ok_or_else(|| WorkError::fatal("CreateKey returned no key"))?;
    dep.kms
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key_id)
        .send()
        .await
        .map_err(|e| classify("kms:CreateAlias", e))?;
    if spec == "SYMMETRIC_DEFAULT" {
        dep.kms.enable_key_rotation().key_id(&key_id).send().await.map_err(|e| classify("kms:EnableKeyRotation", e))?;
    }
    Ok(())
}

/// The trust policy of a people role: the account's principals may assume it only with
/// their own user name as the session name, so a session names one person (as
/// `terraform/envs/dev` builds it; moto does not evaluate it).
pub fn person_trust_policy(account: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SessionNameIsThePerson",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
            "Condition": {"StringEquals": {"sts:RoleSessionName": "${aws:username}"}}
        }]
    })
    .to_string()
}

async fn ensure_person_role(dep: &Deployment, role: &str, account: &str, description: &str) -> Result<(), WorkError> {
    let create = dep
        .iam
        .create_role()
        .role_name(role)
        .description(description)
        .assume_role_policy_document(person_trust_policy(account))
        .send()
        .await;
    match create {
        Ok(_) => Ok(()),
        // An existing role gets the pinned trust policy too (it may predate it).
        Err(e) if code(&e) == Some("EntityAlreadyExists") => dep
            .iam
            .update_assume_role_policy()
            .role_name(role)
            .policy_document(person_trust_policy(account))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("iam:UpdateAssumeRolePolicy", e)),
        Err(e) => Err(classify("iam:CreateRole", e)),
    }
}

/// Creates a bucket (Object Lock can only be enabled at creation; locally no default
/// retention is set, so the tamper tests can play the attacker; Terraform sets one).
async fn ensure_bucket(
    dep: &Deployment,
    bucket: &str,
    key_arn: &str,
    eventbridge: bool,
    object_lock: bool,
) -> Result<(), WorkError> {
    let region = dep.s3.config().region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    let mut create = dep.s3.create_bucket().bucket(bucket).object_lock_enabled_for_bucket(object_lock);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    match create.send().await {
        Ok(_) => {}
        Err(e) if matches!(code(&e), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => {}
        Err(e) => return Err(classify("s3:CreateBucket", e)),
    }
    dep.s3
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .map_err(|e| classify("s3:PutBucketVersioning", e))?;
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::AwsKms)
        .kms_master_key_id(key_arn)
        .build()
        .map_err(WorkError::fatal)?;
    let sse = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(default)
                .bucket_key_enabled(true)
                .build(),
        )
        .build()
        .map_err(WorkError::fatal)?;
    dep.s3
        .put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(sse)
        .send()
        .await
        .map_err(|e| classify("s3:PutBucketEncryption", e))?;
    dep.s3
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| classify("s3:PutPublicAccessBlock", e))?;
    if eventbridge {
        dep.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .event_bridge_configuration(EventBridgeConfiguration::builder().build())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("s3:PutBucketNotificationConfiguration", e))?;
    }
    Ok(())
}

async fn ensure_table(
    dep: &Deployment,
    table: &str,
    partition_key: &str,
    sort_key: Option<&str>,
    ttl: Option<&str>,
) -> Result<(), WorkError> {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(WorkError::fatal)
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder().attribute_name(n).key_type(t).build().map_err(WorkError::fatal)
    };
    let mut create = dep
        .dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .sse_specification(SseSpecification::builder().enabled(true).sse_type(SseType::Kms).build())
        .attribute_definitions(attr(partition_key)?)
        .key_schema(key(partition_key, KeyType::Hash)?);
    if let Some(sk) = sort_key {
        create = create.attribute_definitions(attr(sk)?).key_schema(key(sk, KeyType::Range)?);
    }
    match create.send().await {
        Ok(_) => {}
        Err(e) if code(&e) == Some("ResourceInUseException") => return Ok(()),
        Err(e) => return Err(classify("dynamodb:CreateTable", e)),
    }
    if let Some(attr) = ttl {
        dep.dynamodb
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(attr)
                    .build()
                    .map_err(WorkError::fatal)?,
            )
            .send()
            .await
            .map_err(|e| classify("dynamodb:UpdateTimeToLive", e))?;
    }
    Ok(())
}

async fn ensure_bus(dep: &Deployment, bus: &str) -> Result<(), WorkError> {
    match dep.events.create_event_bus().name(bus).send().await {
        Ok(_) => Ok(()),
        Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => Ok(()),
        Err(e) => Err(classify("events:CreateEventBus", e)),
    }
}

async fn queue_arn(dep: &Deployment, url: &str) -> Result<String, WorkError> {
    let out = dep
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| classify("sqs:GetQueueAttributes", e))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| WorkError::fatal(format!("queue {url} has no ARN")))
}

async fn create_queue(dep: &Deployment, name: &str) -> Result<String, WorkError> {
    let out = dep.sqs.create_queue().queue_name(name).send().await.map_err(|e| classify("sqs:CreateQueue", e))?;
    out.queue_url().map(str::to_string).ok_or_else(|| WorkError::fatal("CreateQueue returned no URL"))
}

/// Creates (or updates) a queue and its DLQ; returns the queue URL.
pub async fn ensure_queue_with_dlq(
    dep: &Deployment,
    queue: &str,
    dlq: &str,
    visibility_timeout: i32,
    max_receive_count: i32,
) -> Result<String, WorkError> {
    let dlq_url = create_queue(dep, dlq).await?;
    dep.sqs
        .set_queue_attributes()
        .queue_url(&dlq_url)
        .attributes(QueueAttributeName::MessageRetentionPeriod, DLQ_RETENTION_SECONDS.to_string())
        .attributes(QueueAttributeName::MaximumMessageSize, SQS_MAX_MESSAGE_BYTES.to_string())
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
        .send()
        .await
        .map_err(|e| classify("sqs:SetQueueAttributes", e))?;
    let dlq_arn = queue_arn(dep, &dlq_url).await?;
    let url = create_queue(dep, queue).await?;
    let redrive =
        serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count }).to_string();
    dep.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility_timeout.to_string())
        .attributes(QueueAttributeName::MaximumMessageSize, SQS_MAX_MESSAGE_BYTES.to_string())
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
        .send()
        .await
        .map_err(|e| classify("sqs:SetQueueAttributes", e))?;
    Ok(url)
}

/// Creates (or updates) a rule on `bus` with `pattern` targeting the queue, and a queue
/// policy that lets only that rule send to it.
pub async fn ensure_rule_to_queue(
    dep: &Deployment,
    bus: &str,
    rule: &str,
    pattern: &serde_json::Value,
    queue_url: &str,
) -> Result<(), WorkError> {
    let put = dep
        .events
        .put_rule()
        .name(rule)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .map_err(|e| classify("events:PutRule", e))?;
    let rule_arn = put.rule_arn().unwrap_or_default().to_string();
    let arn = queue_arn(dep, queue_url).await?;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OnlyItsRule",
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": arn,
            "Condition": { "ArnEquals": { "aws:SourceArn": rule_arn } }
        }]
    });
    dep.sqs
        .set_queue_attributes()
        .queue_url(queue_url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(|e| classify("sqs:SetQueueAttributes", e))?;
    dep.events
        .put_targets()
        .rule(rule)
        .event_bus_name(bus)
        .targets(Target::builder().id("queue").arn(arn).build().map_err(WorkError::fatal)?)
        .send()
        .await
        .map_err(|e| classify("events:PutTargets", e))?;
    Ok(())
}

/// A consumer's subscription: its own rule on the pipeline bus and its own queue (+DLQ).
/// Returns the queue URL.
pub async fn subscribe(dep: &Deployment, name: &str, detail_types: &[String]) -> Result<String, WorkError> {
    let queue = format!("{}-sub-{name}", dep.names.prefix);
    let url = ensure_queue_with_dlq(dep, &queue, &format!("{queue}-dlq"), 30, 5).await?;
    // Exact sources: each requested event type only from its declared emitters (the
    // subscriber checks them again on every message).
    let mut sources: Vec<String> =
        detail_types.iter().flat_map(|d| dep.topology.emitters(d)).map(|w| dep.names.event_source(w)).collect();
    sources.sort();
    sources.dedup();
    if sources.is_empty() {
        return Err(WorkError::fatal(format!("nobody emits {}", detail_types.join(", "))));
    }
    let pattern = serde_json::json!({ "source": sources, "detail-type": detail_types });
    ensure_rule_to_queue(dep, &dep.names.bus(&dep.topology), &queue, &pattern, &url).await?;
    Ok(url)
}
