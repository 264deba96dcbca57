# Example root: the whole topology from terraform/topology.json, the same declaration
# the local provisioner (`mlsec provision`) reads.

locals {
  topology = jsondecode(file("${path.module}/../../topology.json"))
  workers  = local.topology.workers
  suffix   = data.aws_caller_identity.current.account_id
  # Per key, the worker roles that use it; producers upload into landing; operators
  # read queues, DLQs and the registry (pipeline key).
  # Per key and access mode (topology: `key` full use, `key:read` decrypt only, `key:sign`,
  # `key:verify`), the worker roles: the key policies grant each mode its actions only.
  worker_key_access = {
    for key, _ in local.topology.keys : key => {
      for w, decl in local.workers : module.roles.role_arns[w] => try(split(":", [for k in decl.keys : k if split(":", k)[0] == key][0])[1], "")
      if contains([for k in decl.keys : split(":", k)[0]], key)
    }
  }
  worker_key_users   = { for key, roles in local.worker_key_access : key => [for r, a in roles : r if a == ""] }
  worker_key_readers = { for key, roles in local.worker_key_access : key => [for r, a in roles : r if a == "read" || a == "verify"] }
  key_signers        = { for key, roles in local.worker_key_access : key => [for r, a in roles : r if a == "sign"] }
  # Per event type, who may emit it: the rules match these sources exactly.
  event_sources = {
    for d in distinct(concat(flatten([for w, decl in local.workers : decl.emits]), local.topology.operator_emits)) : d => concat(
      [for w, decl in local.workers : "${var.name_prefix}.${w}" if contains(decl.emits, d)],
      contains(local.topology.operator_emits, d) ? ["${var.name_prefix}.operator"] : []
    )
  }
  # Every worker and operator appends to the audit chain (records encrypted with the audit
  # key, checkpoints signed with the audit signing key); auditors only read and verify.
  people  = { for p, r in aws_iam_role.people : p => r.arn }
  writers = concat(values(module.roles.role_arns), var.operator_role_arns, [local.people["model-risk"], local.people["incident-responder"]])
  key_users = merge(local.worker_key_users, {
    landing       = concat(local.worker_key_users["landing"], var.producer_role_arns, [local.people["producer"]])
    pipeline      = concat(local.worker_key_users["pipeline"], var.operator_role_arns, [local.people["model-risk"], local.people["incident-responder"]])
    audit         = local.writers
    audit_signing = local.writers
  })
  key_readers = merge(local.worker_key_readers, {
    audit         = var.auditor_role_arns
    audit_signing = var.auditor_role_arns
  })
}

data "aws_caller_identity" "current" {}

module "roles" {
  source      = "../../modules/roles"
  name_prefix = var.name_prefix
  workers     = toset(keys(local.workers))
}

module "kms" {
  source      = "../../modules/kms"
  name_prefix = var.name_prefix
  keys        = local.topology.keys
  key_users   = local.key_users
  key_readers = local.key_readers
  key_signers = local.key_signers
  service_users = {
    pipeline   = ["events.amazonaws.com", "logs.${var.region}.amazonaws.com", "cloudtrail.amazonaws.com", "cloudwatch.amazonaws.com", "budgets.amazonaws.com"]
    quarantine = ["logging.s3.amazonaws.com"]
  }
}

module "buckets" {
  source              = "../../modules/buckets"
  name_prefix         = var.name_prefix
  name_suffix         = local.suffix
  buckets             = local.topology.buckets
  key_arns            = module.kms.key_arns
  object_lock_buckets = var.object_lock_buckets
  object_lock_mode    = var.audit_lock_mode
  object_lock_days    = var.audit_retention_days
}

# Operators append their actions (releases, replays) to the audit chain as `operator`;
# attach this policy to the operator roles.
data "aws_iam_policy_document" "operator_audit" {
  statement {
    sid       = "AppendAudit"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${module.buckets.bucket_arns["audit"]}/records/operator/*", "${module.buckets.bucket_arns["audit"]}/checkpoints/*"]
  }
  statement {
    sid       = "ListOwnAuditRecords"
    actions   = ["s3:ListBucket"]
    resources = [module.buckets.bucket_arns["audit"]]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["records/operator/*"]
    }
  }
  statement {
    sid       = "AuditHead"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [module.tables.table_arns["audit"]]
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = ["head"]
    }
  }
  statement {
    sid       = "AuditClaims"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
    resources = [module.tables.table_arns["audit"]]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["decision#operator#*"]
    }
  }
  statement {
    sid       = "AuditKeys"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey", "kms:Sign"]
    resources = [module.kms.key_arns["audit"], module.kms.key_arns["audit_signing"]]
  }
}

resource "aws_iam_policy" "operator_audit" {
  name   = "${var.name_prefix}-operator-audit"
  policy = data.aws_iam_policy_document.operator_audit.json
}

# People's decisions on models (`mlsec models approve|reject|rollback|revoke|archive`): each
# person writes only the decisions table partition of their own STS UserId, reads the
# registry (never writes it: stages belong to govern), and announces a decision as
# `<prefix>.operator` with the one event type operators emit. Attach to the approvers'
# roles (the spec's `approvers` patterns then name which sessions count).
data "aws_iam_policy_document" "operator_models" {
  statement {
    sid       = "PipelineKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [module.kms.key_arns["pipeline"]]
  }
  # The CLI refuses early what govern would (self-approval): it resolves the dropper's
  # user id as govern does.
  statement {
    sid       = "ResolvePeople"
    actions   = ["iam:ListRoles", "iam:ListUsers"]
    resources = ["*"] # IAM's list actions take no resource; read-only, within the account
  }
  statement {
    sid       = "RecordOwnDecisions"
    actions   = ["dynamodb:PutItem"]
    resources = [module.tables.table_arns["decisions"]]
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = ["$${aws:userid}"]
    }
  }
  # `mlsec models lineage|card`: HeadObject on the data zones (it needs no zone key, and
  # these people have none, so bodies stay unreadable), the scored outputs listed, and
  # the models zone read (gate reports and manifests; no personal data there).
  statement {
    sid       = "LineageHeads"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [for b in ["raw", "curated", "holdout", "scored"] : "${module.buckets.bucket_arns[b]}/*"]
  }
  # Without ListBucket a missing object is a 403, not a 404: lineage must see it missing.
  statement {
    sid       = "LineageList"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [for b in ["raw", "curated", "holdout", "models", "scored"] : module.buckets.bucket_arns[b]]
  }
  statement {
    sid       = "ReadModelsZone"
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "kms:Decrypt"]
    resources = ["${module.buckets.bucket_arns["models"]}/*", module.kms.key_arns["models"]]
  }
  statement {
    sid       = "ReadRegistryAndDecisions"
    actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"]
    resources = [module.tables.table_arns["registry"], module.tables.table_arns["decisions"]]
  }
  statement {
    sid       = "AnnounceDecisions"
    actions   = ["events:PutEvents"]
    resources = [module.events.bus_arn]
    condition {
      test     = "StringEquals"
      variable = "events:source"
      values   = ["${var.name_prefix}.operator"]
    }
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "events:detail-type"
      values   = local.topology.operator_emits
    }
  }
}

resource "aws_iam_policy" "operator_models" {
  name   = "${var.name_prefix}-operator-models"
  policy = data.aws_iam_policy_document.operator_models.json
}

# People roles (topology `people`). A session's name must be the caller's own user name
# (`sts:RoleSessionName` = `$${aws:username}`), so a session stands for one person: two
# sessions of one person are one vote, and a dropper is recognised whichever role they
# approve through (ADR 0012). With IAM Identity Center, which sets the session name
# itself, give the spec's approvers patterns its roles instead.
data "aws_iam_policy_document" "people_trust" {
  statement {
    sid     = "SessionNameIsThePerson"
    actions = ["sts:AssumeRole", "sts:SetSourceIdentity"]
    principals {
      type        = "AWS"
      identifiers = length(var.people_principals) > 0 ? var.people_principals : ["arn:aws:iam::${local.suffix}:root"]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:RoleSessionName"
      values   = ["$${aws:username}"]
    }
  }
}

resource "aws_iam_role" "people" {
  for_each             = local.topology.people
  name                 = "${var.name_prefix}-${each.key}"
  description          = each.value
  assume_role_policy   = data.aws_iam_policy_document.people_trust.json
  max_session_duration = 3600
}

# Producers put into their landing prefixes, each object tagged with their own user id
# (the landing bucket policy denies any other tag).
data "aws_iam_policy_document" "producer" {
  statement {
    sid       = "DropIntoLanding"
    actions   = ["s3:PutObject", "s3:PutObjectTagging"]
    resources = ["${module.buckets.bucket_arns["landing"]}/*"]
  }
  statement {
    sid       = "LandingKey"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt", "kms:DescribeKey"]
    resources = [module.kms.key_arns["landing"]]
  }
}

resource "aws_iam_policy" "producer" {
  name   = "${var.name_prefix}-producer"
  policy = data.aws_iam_policy_document.producer.json
}

# Incident responders (`mlsec dlq list|show|replay`): take, hand back and delete parked
# messages in the DLQs, send them back to their worker's queue (never to a DLQ: those
# deny every sender), read the workers' claims and failure records (ids, codes and
# digests; GetItem only), and append their replays to the audit chain.
data "aws_iam_policy_document" "operator_incidents" {
  statement {
    sid       = "ParkedMessages"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    resources = [for w in module.worker : w.dlq_arn]
  }
  statement {
    sid       = "ReplayIntoWorkerQueues"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    resources = [for w in module.worker : w.queue_arn]
  }
  statement {
    sid       = "PipelineKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [module.kms.key_arns["pipeline"]]
  }
  statement {
    sid       = "ReadFailureRecords"
    actions   = ["dynamodb:GetItem"]
    resources = [module.tables.table_arns["idempotency"]]
  }
  # `mlsec dlq archive|restore`: parked messages kept in the incident bucket (pipeline key).
  statement {
    sid       = "IncidentBucket"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:ListBucket"]
    resources = [module.buckets.bucket_arns["incidents"], "${module.buckets.bucket_arns["incidents"]}/*"]
  }
  # `mlsec status` (the runbooks' first step) lists the registry; it holds no personal data.
  statement {
    sid       = "ReadRegistry"
    actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"]
    resources = [module.tables.table_arns["registry"]]
  }
}

resource "aws_iam_policy" "operator_incidents" {
  name   = "${var.name_prefix}-operator-incidents"
  policy = data.aws_iam_policy_document.operator_incidents.json
}

resource "aws_iam_role_policy_attachment" "people" {
  for_each = {
    "producer/drop"                  = { role = "producer", policy = aws_iam_policy.producer.arn }
    "model-risk/decide"              = { role = "model-risk", policy = aws_iam_policy.operator_models.arn }
    "model-risk/audit-trail"         = { role = "model-risk", policy = aws_iam_policy.operator_audit.arn }
    "incident-responder/dlq"         = { role = "incident-responder", policy = aws_iam_policy.operator_incidents.arn }
    "incident-responder/audit-trail" = { role = "incident-responder", policy = aws_iam_policy.operator_audit.arn }
  }
  role       = aws_iam_role.people[each.value.role].name
  policy_arn = each.value.policy
}

# Auditors read the whole chain and verify it; they write nothing.
data "aws_iam_policy_document" "auditor" {
  statement {
    sid       = "ReadTheChain"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${module.buckets.bucket_arns["audit"]}/*"]
  }
  statement {
    sid       = "ListTheChain"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [module.buckets.bucket_arns["audit"]]
  }
  statement {
    sid       = "ReadTheHead"
    actions   = ["dynamodb:GetItem"]
    resources = [module.tables.table_arns["audit"]]
  }
  statement {
    sid       = "DecryptAndVerify"
    actions   = ["kms:Decrypt", "kms:GetPublicKey", "kms:Verify", "kms:DescribeKey"]
    resources = [module.kms.key_arns["audit"], module.kms.key_arns["audit_signing"]]
  }
}

resource "aws_iam_policy" "auditor" {
  name   = "${var.name_prefix}-auditor"
  policy = data.aws_iam_policy_document.auditor.json
}

module "tables" {
  source      = "../../modules/tables"
  name_prefix = var.name_prefix
  tables      = local.topology.tables
  kms_key_arn = module.kms.key_arns["pipeline"]
}

module "events" {
  source       = "../../modules/events"
  name_prefix  = var.name_prefix
  pipeline_bus = local.topology.pipeline_bus
  kms_key_arn  = module.kms.key_arns["pipeline"]
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = module.kms.key_arns["pipeline"]
}

data "aws_iam_policy_document" "alarms" {
  statement {
    sid       = "AlarmSourcesPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com", "cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms.json
}

resource "aws_sns_topic_subscription" "alarms" {
  count     = var.alarm_email == null ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

module "worker" {
  source          = "../../modules/worker"
  for_each        = local.workers
  name_prefix     = var.name_prefix
  name            = each.key
  worker          = each.value
  role_name       = module.roles.role_names[each.key]
  role_arn        = module.roles.role_arns[each.key]
  bucket_names    = module.buckets.bucket_names
  bucket_arns     = module.buckets.bucket_arns
  key_arns        = module.kms.key_arns
  table_arns      = module.tables.table_arns
  event_sources   = local.event_sources
  bus_name        = module.events.bus_name
  bus_arn         = module.events.bus_arn
  bucket_suffix   = local.suffix
  lambda_zip      = "${var.lambda_zip_dir}/${each.key}-lambda/bootstrap.zip"
  architecture    = var.architecture
  alarm_topic_arn = aws_sns_topic.alarms.arn
  # Only the people roles pin session names unless the deployer names more.
  pinned_role_names = var.pinned_role_names
}

module "audit" {
  source                 = "../../modules/audit"
  name_prefix            = var.name_prefix
  name_suffix            = local.suffix
  data_event_bucket_arns = values(module.buckets.bucket_arns)
  kms_key_arn            = module.kms.key_arns["pipeline"]
}

resource "aws_budgets_budget" "monthly" {
  name         = "${var.name_prefix}-monthly"
  budget_type  = "COST"
  limit_amount = tostring(var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  notification {
    comparison_operator       = "GREATER_THAN"
    threshold                 = 80
    threshold_type            = "PERCENTAGE"
    notification_type         = "ACTUAL"
    subscriber_sns_topic_arns = [aws_sns_topic.alarms.arn]
  }
}
