# Zone buckets: versioned, SSE-KMS with the zone's key and a Bucket Key, public access
# blocked, TLS only, puts must name the zone's key, access-logged, lifecycle for old
# versions; Object Lock (governance) optional.

locals {
  names = { for b, _ in var.buckets : b => "${var.name_prefix}-${b}-${var.name_suffix}" }
  # The topology's WORM buckets (the audit chain) and any the deployer adds.
  locked = setunion(var.object_lock_buckets, [for b, d in var.buckets : b if d.object_lock])
}

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV2_AWS_62:The access-log bucket is not a pipeline input; nothing consumes its events
  #checkov:skip=CKV_AWS_144:Cross-region replication is a data-residency decision left to the deployer
  #checkov:skip=CKV_AWS_18:This is the access-log bucket; logging it into itself would loop
  bucket              = "${var.name_prefix}-access-logs-${var.name_suffix}"
  object_lock_enabled = false
}

resource "aws_s3_bucket" "zone" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a data-residency decision left to the deployer (banks often must keep data in one region)
  for_each            = var.buckets
  bucket              = local.names[each.key]
  object_lock_enabled = contains(local.locked, each.key)
}

resource "aws_s3_bucket_versioning" "zone" {
  for_each = merge(aws_s3_bucket.zone, { _logs = aws_s3_bucket.logs })
  bucket   = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "zone" {
  for_each = var.buckets
  bucket   = aws_s3_bucket.zone[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.key_arns[each.value.key]
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.key_arns[var.log_key]
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "all" {
  for_each                = merge(aws_s3_bucket.zone, { _logs = aws_s3_bucket.logs })
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_logging" "zone" {
  for_each      = var.buckets
  bucket        = aws_s3_bucket.zone[each.key].id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "${each.key}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "all" {
  for_each = merge(aws_s3_bucket.zone, { _logs = aws_s3_bucket.logs })
  bucket   = each.value.id
  rule {
    id     = "expire-noncurrent-and-abort-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_object_lock_configuration" "zone" {
  for_each = local.locked
  bucket   = aws_s3_bucket.zone[each.key].id
  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_days
    }
  }
}

resource "aws_s3_bucket_notification" "eventbridge" {
  for_each    = { for b, d in var.buckets : b => d if d.eventbridge }
  bucket      = aws_s3_bucket.zone[each.key].id
  eventbridge = true
}

data "aws_iam_policy_document" "zone" {
  for_each = var.buckets

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.zone[each.key].arn,
      "${aws_s3_bucket.zone[each.key].arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # WORM buckets: no principal may remove a version or loosen the lock, whatever IAM says.
  dynamic "statement" {
    for_each = contains(local.locked, each.key) ? [1] : []
    content {
      sid       = "DenyDeletingOrUnlocking"
      effect    = "Deny"
      actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention"]
      resources = [aws_s3_bucket.zone[each.key].arn, "${aws_s3_bucket.zone[each.key].arn}/*"]
      principals {
        type        = "*"
        identifiers = ["*"]
      }
    }
  }

  # Drop buckets: the `mlsec-dropped-by` tag is AWS's word, not the uploader's. A put (or a
  # tagging) that names a dropper must name the caller's own user id, and a dropper tag
  # never changes once set. A put without the tag (a multipart part, a copy, a drop made
  # without `mlsec drop`) is let through: ingest then finds no dropper and govern refuses
  # every approval of a model trained on it (fail closed, ADR 0012).
  dynamic "statement" {
    for_each = each.value.dropper_tag ? [1] : []
    content {
      sid       = "DenyDropsTaggedWithAnotherDropper"
      effect    = "Deny"
      actions   = ["s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"]
      resources = ["${aws_s3_bucket.zone[each.key].arn}/*"]
      principals {
        type        = "*"
        identifiers = ["*"]
      }
      condition {
        test     = "Null"
        variable = "s3:RequestObjectTag/mlsec-dropped-by"
        values   = ["false"]
      }
      condition {
        test     = "StringNotEquals"
        variable = "s3:RequestObjectTag/mlsec-dropped-by"
        values   = ["$${aws:userid}"]
      }
    }
  }

  dynamic "statement" {
    for_each = each.value.dropper_tag ? [1] : []
    content {
      sid       = "DenyRetaggingDrops"
      effect    = "Deny"
      actions   = ["s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"]
      resources = ["${aws_s3_bucket.zone[each.key].arn}/*"]
      principals {
        type        = "*"
        identifiers = ["*"]
      }
      condition {
        test     = "Null"
        variable = "s3:ExistingObjectTag/mlsec-dropped-by"
        values   = ["false"]
      }
    }
  }

  # Every object is SSE-KMS: a put that asks for another encryption (SSE-S3) is denied, so
  # no body is readable without its zone key.
  statement {
    sid       = "DenyPutsWithOtherEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.zone[each.key].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }

  statement {
    sid       = "DenyPutsWithoutTheZoneKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.zone[each.key].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    # Puts that name no key get the bucket default (the zone key); puts that name
    # another key are denied.
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [var.key_arns[each.value.key]]
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.logs.arn,
      "${aws_s3_bucket.logs.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json
}

resource "aws_s3_bucket_policy" "zone" {
  for_each = var.buckets
  bucket   = aws_s3_bucket.zone[each.key].id
  policy   = data.aws_iam_policy_document.zone[each.key].json
}
