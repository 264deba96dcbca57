# Example root: the whole topology from terraform/topology.json, the same declaration
# the local provisioner (`mlsec provision`) reads.

locals {
  topology = jsondecode(file("${path.module}/../../topology.json"))
  workers  = local.topology.workers
  suffix   = data.aws_caller_identity.current.account_id
  # Per key, the worker roles that use it; producers upload into landing; operators
  # read queues, DLQs and the registry (pipeline key).
  worker_key_users = {
    for key, _ in local.topology.keys : key => [
      for w, decl in local.workers : module.roles.role_arns[w] if contains([for k in decl.keys : split(":", k)[0]], key)
    ]
  }
  # Every worker and operator appends to the audit chain (records encrypted with the audit
  # key, checkpoints signed with the audit signing key); auditors only read and verify.
  writers = concat(values(module.roles.role_arns), var.operator_role_arns)
  key_users = merge(local.worker_key_users, {
    landing       = concat(local.worker_key_users["landing"], var.producer_role_arns)
    pipeline      = concat(local.worker_key_users["pipeline"], var.operator_role_arns)
    audit         = local.writers
    audit_signing = local.writers
  })
  key_readers = {
    audit         = var.auditor_role_arns
    audit_signing = var.auditor_role_arns
  }
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
  bus_name        = module.events.bus_name
  bus_arn         = module.events.bus_arn
  bucket_suffix   = local.suffix
  lambda_zip      = "${var.lambda_zip_dir}/${each.key}-lambda/bootstrap.zip"
  architecture    = var.architecture
  alarm_topic_arn = aws_sns_topic.alarms.arn
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
