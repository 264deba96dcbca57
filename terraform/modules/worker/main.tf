# One zone worker: its queue and DLQ, the rule that feeds the queue, the Lambda function
# and its event-source mapping, its least-privilege policy, its logs and alarms.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  full_name = "${var.name_prefix}-${var.name}"
  # The function's timeout is sized per worker (tests/terraform checks it against the
  # contracts). Lambda refuses a queue whose visibility is shorter than it, so the queue's
  # own timeout is at least the function's; the driver then keeps the messages it works on
  # invisible for the in-flight window only (queue.visibility_timeout_seconds), renewing
  # every third of it, so a crashed invocation's messages return within that window.
  # AWS's "six times the timeout" margin is for throttled invocations; the mapping's
  # maximum concurrency equals the reserved concurrency, so the poller never throttles.
  timeout_seconds    = min(900, max(3, coalesce(try(var.worker.lambda.timeout_seconds, null), 60)))
  visibility_seconds = max(var.worker.queue.visibility_timeout_seconds, local.timeout_seconds)
  key_names       = [for k in var.worker.keys : split(":", k)[0]]
  key_access      = { for k in var.worker.keys : split(":", k)[0] => try(split(":", k)[1], "") }
  symmetric_keys  = [for k in local.key_names : k if !contains(["pseudonym", "signing"], k)]
  # Keys the worker only decrypts with (it reads that zone, never writes it).
  full_keys = [for k in local.symmetric_keys : k if local.key_access[k] == ""]
  read_keys = [for k in local.symmetric_keys : k if local.key_access[k] == "read"]
  table_names  = [for t in var.worker.tables : split(":", t)[0]]
  table_access = { for t in var.worker.tables : split(":", t)[0] => try(split(":", t)[1], "") }
  write_tables = [for t in local.table_names : t if local.table_access[t] == ""]
  read_tables  = [for t in local.table_names : t if local.table_access[t] == "read"]
  # Each event type only from the workers (or operators) that emit it.
  sources = distinct(flatten([for d in var.worker.trigger.detail_types : var.event_sources[d]]))
  event_pattern = var.worker.trigger.s3_bucket != null ? jsonencode({
    source        = ["aws.s3"]
    "detail-type" = var.worker.trigger.detail_types
    detail        = { bucket = { name = [var.bucket_names[var.worker.trigger.s3_bucket]] } }
    }) : jsonencode(merge({
      source        = local.sources
      "detail-type" = var.worker.trigger.detail_types
    }, var.worker.trigger.role == null ? {} : { detail = { role = [var.worker.trigger.role] } }))
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${local.full_name}-dlq"
  message_retention_seconds = 1209600
  max_message_size          = 262144
  kms_master_key_id         = var.key_arns["pipeline"]
}

# Only the worker's own queue may redrive into its DLQ, and nobody may send to it: what is
# parked came through the worker's queue (SQS's own redrive move is not a SendMessage
# call; the redrive-allow policy governs it). `mlsec dlq replay` also refuses any body no
# record of the worker names (cli/src/dlq.rs), should a body get in some other way.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.queue.arn]
  })
}

data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "NobodySendsToTheDlq"
    effect    = "Deny"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

resource "aws_sqs_queue" "queue" {
  name                       = local.full_name
  visibility_timeout_seconds = local.visibility_seconds
  max_message_size           = 262144
  kms_master_key_id          = var.key_arns["pipeline"]
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.worker.queue.max_receive_count
  })
}

resource "aws_cloudwatch_event_rule" "trigger" {
  name           = local.full_name
  description    = "Feeds the ${var.name} worker's queue"
  event_bus_name = var.worker.trigger.bus == "default" ? "default" : var.bus_name
  event_pattern  = local.event_pattern
}

resource "aws_cloudwatch_event_target" "queue" {
  rule           = aws_cloudwatch_event_rule.trigger.name
  event_bus_name = aws_cloudwatch_event_rule.trigger.event_bus_name
  target_id      = "queue"
  arn            = aws_sqs_queue.queue.arn
}

data "aws_iam_policy_document" "queue" {
  statement {
    sid       = "OnlyItsRule"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.queue.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.trigger.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "queue" {
  queue_url = aws_sqs_queue.queue.id
  policy    = data.aws_iam_policy_document.queue.json
}

resource "aws_cloudwatch_log_group" "worker" {
  name              = "/aws/lambda/${local.full_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.key_arns["pipeline"]
}

# The worker's permissions: its own queue, the buckets it reads and writes, the keys and
# tables the topology gives it, the pipeline bus if it emits, and its own log group.
data "aws_iam_policy_document" "worker" {
  statement {
    sid       = "OwnQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.queue.arn]
  }

  statement {
    sid       = "ReadInputBuckets"
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"]
    resources = [for b in var.worker.reads : "${var.bucket_arns[b]}/*"]
  }

  statement {
    sid       = "ListInputBuckets"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [for b in var.worker.reads : var.bucket_arns[b]]
  }

  # The worker's own records in buckets it does not consume (the gateway's content ledger
  # and release records), by key pattern. Listing is granted on those buckets so that a
  # missing record is a 404, not a 403; listing shows keys (dataset/sha256), not content.
  dynamic "statement" {
    for_each = length(var.worker.reads_records) > 0 ? [1] : []
    content {
      sid     = "ReadOwnRecords"
      actions = ["s3:GetObject", "s3:GetObjectVersion"]
      resources = flatten([
        for b, patterns in var.worker.reads_records : [for p in patterns : "${var.bucket_arns[b]}/${p}"]
      ])
    }
  }

  dynamic "statement" {
    for_each = length(var.worker.reads_records) > 0 ? [1] : []
    content {
      sid       = "ListRecordBuckets"
      actions   = ["s3:ListBucket"]
      resources = [for b in keys(var.worker.reads_records) : var.bucket_arns[b]]
    }
  }

  statement {
    sid       = "WriteOutputBuckets"
    actions   = ["s3:PutObject"]
    resources = [for b in var.worker.writes : "${var.bucket_arns[b]}/*"]
  }

  # A retry heads the key it is about to write: when it already holds the same digest (an
  # earlier attempt wrote it and crashed before `done`), the write is skipped. HeadObject
  # needs s3:GetObject, which reads whole objects: granted only on data-zone outputs whose
  # contents the worker derives from inputs it reads anyway. Never the models bucket
  # (shared by train and govern: gate reports and holdout metrics must stay out of the
  # trainer's reach) or the holdout bucket (only govern reads it, ADR 0011); there a retry
  # gets a 403 on the head and simply writes again. No GetObjectVersion, no tagging.
  statement {
    sid       = "HeadOwnOutputs"
    actions   = ["s3:GetObject"] # HeadOwnOutputs
    resources = [for b in var.worker.writes : "${var.bucket_arns[b]}/*" if !contains(["models", "holdout"], b)]
  }

  statement {
    sid       = "UseZoneKeys"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [for k in local.full_keys : var.key_arns[k]]
  }

  dynamic "statement" {
    for_each = length(local.read_keys) > 0 ? [1] : []
    content {
      sid       = "DecryptReadZones"
      actions   = ["kms:Decrypt", "kms:DescribeKey"]
      resources = [for k in local.read_keys : var.key_arns[k]]
    }
  }

  dynamic "statement" {
    for_each = contains(local.key_names, "pseudonym") ? [1] : []
    content {
      sid       = "DerivePseudonymSubkeys"
      actions   = ["kms:GenerateMac", "kms:DescribeKey"]
      resources = [for k in local.key_names : var.key_arns[k] if k == "pseudonym"]
    }
  }

  dynamic "statement" {
    for_each = contains(local.key_names, "signing") ? [1] : []
    content {
      sid       = "SigningKey"
      actions   = local.key_access["signing"] == "sign" ? ["kms:Sign", "kms:DescribeKey"] : ["kms:Verify", "kms:GetPublicKey", "kms:DescribeKey"]
      resources = [for k in local.key_names : var.key_arns[k] if k == "signing"]
    }
  }

  # Separation of duties compares people: the user ids AWS vouched for (decision
  # partitions, landing dropper tags) resolve to role and user ARNs through IAM.
  dynamic "statement" {
    for_each = var.worker.resolves_people ? [1] : []
    content {
      sid       = "ResolvePeople"
      actions   = ["iam:ListRoles", "iam:ListUsers"]
      resources = ["*"] # IAM's list actions take no resource; read-only, within the account
    }
  }

  # Z9: every worker appends to the audit chain, only under its own prefix, and advances
  # the head item or writes its own decision and pending items, nothing else.
  statement {
    sid     = "AppendAudit"
    actions = ["s3:PutObject"]
    resources = [
      "${var.bucket_arns["audit"]}/records/${var.name}/*",
      "${var.bucket_arns["audit"]}/checkpoints/*",
    ]
  }

  statement {
    sid       = "ReadOwnAuditRecords"
    actions   = ["s3:GetObject"]
    resources = ["${var.bucket_arns["audit"]}/records/${var.name}/*"]
  }

  # Without ListBucket a missing own record is a 403, not a 404: the retry that stores a
  # claimed record must see it missing.
  statement {
    sid       = "ListOwnAuditRecords"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arns["audit"]]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["records/${var.name}/*"]
    }
  }

  statement {
    sid       = "AuditHead"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [var.table_arns["audit"]]
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = ["head"]
    }
  }

  statement {
    sid       = "AuditClaims"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]
    resources = [var.table_arns["audit"]]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["decision#${var.name}#*"]
    }
  }

  statement {
    sid       = "AuditKeys"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.key_arns["audit"]]
  }

  statement {
    sid       = "SignAuditCheckpoints"
    actions   = ["kms:Sign", "kms:DescribeKey"]
    resources = [var.key_arns["audit_signing"]]
  }

  # Every worker claims its inputs before it works on them, under keys
  # `<worker>#<input id>` only: no worker can write, renew or release another's claims,
  # or mark another's input done so that it skips a real one.
  statement {
    sid       = "OwnClaims"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [var.table_arns["idempotency"]]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["${var.name}#*"]
    }
  }

  # Registry stages are written by govern alone; score and operators only read them.
  dynamic "statement" {
    for_each = length(local.write_tables) > 0 ? [1] : []
    content {
      sid       = "WriteTables"
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem", "dynamodb:Query"]
      resources = [for t in local.write_tables : var.table_arns[t]]
    }
  }

  dynamic "statement" {
    for_each = length(local.read_tables) > 0 ? [1] : []
    content {
      sid       = "ReadTables"
      actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"]
      resources = [for t in local.read_tables : var.table_arns[t]]
    }
  }

  # Only as itself, and only the event types it declares: a worker role cannot publish
  # another zone's events (consumers also refuse them by source).
  dynamic "statement" {
    for_each = length(var.worker.emits) > 0 ? [1] : []
    content {
      sid       = "PublishOnPipelineBus"
      actions   = ["events:PutEvents"]
      resources = [var.bus_arn]
      condition {
        test     = "StringEquals"
        variable = "events:source"
        values   = ["${var.name_prefix}.${var.name}"]
      }
      condition {
        test     = "ForAllValues:StringEquals"
        variable = "events:detail-type"
        values   = var.worker.emits
      }
    }
  }

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.worker.arn}:*"]
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "${local.full_name}-least-privilege"
  role   = var.role_name
  policy = data.aws_iam_policy_document.worker.json
}

resource "aws_lambda_function" "worker" {
  #checkov:skip=CKV_AWS_116:SQS-triggered; failed messages go to the queue's redrive DLQ (a Lambda DLQ only serves async invocations)
  #checkov:skip=CKV_AWS_50:X-Ray needs xray:Put* on "*", which the no-wildcard worker policy forbids; logs carry correlation ids
  #checkov:skip=CKV_AWS_117:VPC placement is optional (var.vpc); workers call only AWS APIs
  #checkov:skip=CKV_AWS_272:Code signing is optional (var.code_signing_config_arn); zips are built from a pinned lockfile in CI
  function_name                  = local.full_name
  description                    = "mlsec ${var.name} worker (${var.worker.zone})"
  role                           = var.role_arn
  filename                       = var.lambda_zip
  source_code_hash               = filebase64sha256(var.lambda_zip)
  handler                        = "bootstrap"
  runtime                        = "provided.al2023"
  architectures                  = [var.architecture]
  memory_size                    = coalesce(try(var.worker.lambda.memory_mb, null), var.memory_mb)
  timeout                        = local.timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = var.key_arns["pipeline"]
  code_signing_config_arn        = var.code_signing_config_arn

  # /tmp holds the gateway's Parquet spill: sized per worker in the topology.
  ephemeral_storage {
    size = coalesce(try(var.worker.lambda.ephemeral_storage_mb, null), 512)
  }

  dynamic "vpc_config" {
    for_each = var.vpc == null ? [] : [var.vpc]
    content {
      subnet_ids         = vpc_config.value.subnet_ids
      security_group_ids = vpc_config.value.security_group_ids
    }
  }

  environment {
    variables = {
      MLSEC_PREFIX                    = var.name_prefix
      MLSEC_BUCKET_SUFFIX             = var.bucket_suffix
      MLSEC_CONTRACTS_DIR             = "/var/task/contracts"
      MLSEC_ACCOUNT_ID                = data.aws_caller_identity.current.account_id
      MLSEC_PINNED_ROLES              = join(",", var.pinned_role_names)
      MLSEC_VISIBILITY_WINDOW_SECONDS = var.worker.queue.visibility_timeout_seconds # the in-flight window the driver renews
      RUST_LOG                        = "info"
    }
  }

  depends_on = [aws_iam_role_policy.worker, aws_cloudwatch_log_group.worker]
}

resource "aws_lambda_event_source_mapping" "queue" {
  event_source_arn        = aws_sqs_queue.queue.arn
  function_name           = aws_lambda_function.worker.arn
  batch_size              = coalesce(try(var.worker.lambda.batch_size, null), var.batch_size)
  function_response_types = ["ReportBatchItemFailures"]

  # The poller invokes at most as many functions as are reserved: no invocation is
  # throttled, so throttling never counts a receive toward maxReceiveCount.
  scaling_config {
    maximum_concurrency = var.reserved_concurrency
  }
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  alarm_name          = "${local.full_name}-dlq-not-empty"
  alarm_description   = "Messages are parked in the ${var.name} DLQ: see mlsec dlq list ${var.name}"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  alarm_name          = "${local.full_name}-errors"
  alarm_description   = "The ${var.name} worker's invocations fail"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.worker.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
}
