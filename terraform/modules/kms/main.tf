# One customer-managed key per zone, plus the pseudonymisation HMAC key and the model
# signing key. Each key policy names only the worker roles that use it, each with the
# actions of its access mode (a key policy naming a role grants by itself, so the IAM
# narrowing alone would not hold): full use, read (decrypt / verify) or sign.
# Administration stays with the account (IAM decides who administers).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
  usage_actions = {
    ENCRYPT_DECRYPT     = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    GENERATE_VERIFY_MAC = ["kms:GenerateMac", "kms:DescribeKey"]
    SIGN_VERIFY         = ["kms:Sign", "kms:Verify", "kms:GetPublicKey", "kms:DescribeKey"]
  }
  read_actions = {
    ENCRYPT_DECRYPT     = ["kms:Decrypt", "kms:DescribeKey"]
    GENERATE_VERIFY_MAC = ["kms:VerifyMac", "kms:DescribeKey"]
    SIGN_VERIFY         = ["kms:Verify", "kms:GetPublicKey", "kms:DescribeKey"]
  }
}

data "aws_iam_policy_document" "key" {
  for_each = var.keys
  # In a key policy, "*" as resource means this key and nothing else.
  #checkov:skip=CKV_AWS_111:Key policy; resource "*" is the key itself, usage is limited to named roles
  #checkov:skip=CKV_AWS_356:Key policy; resource "*" is the key itself
  #checkov:skip=CKV_AWS_109:Key policy; administration stays with the account root so IAM decides who administers

  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  # DynamoDB, Lambda and CloudWatch Logs use the key through grants on the caller's behalf.
  statement {
    sid       = "GrantsForAwsResources"
    actions   = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }

  dynamic "statement" {
    for_each = length(lookup(var.key_users, each.key, [])) > 0 ? [1] : []
    content {
      sid       = "WorkersUse"
      actions   = local.usage_actions[each.value.usage]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = var.key_users[each.key]
      }
    }
  }

  dynamic "statement" {
    for_each = length(lookup(var.key_readers, each.key, [])) > 0 ? [1] : []
    content {
      sid       = "ReadersOnly"
      actions   = local.read_actions[each.value.usage]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = var.key_readers[each.key]
      }
    }
  }

  # Signing only (govern on the model-signing key): no Verify, no GetPublicKey needed.
  dynamic "statement" {
    for_each = length(lookup(var.key_signers, each.key, [])) > 0 ? [1] : []
    content {
      sid       = "SignersOnly"
      actions   = ["kms:Sign", "kms:DescribeKey"]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = var.key_signers[each.key]
      }
    }
  }

  dynamic "statement" {
    for_each = length(lookup(var.service_users, each.key, [])) > 0 ? [1] : []
    content {
      sid       = "ServicesUse"
      actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = var.service_users[each.key]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  for_each                 = var.keys
  description              = "${var.name_prefix}: ${each.value.description}"
  customer_master_key_spec = each.value.spec
  key_usage                = each.value.usage
  # Rotation exists for symmetric keys only; HMAC and asymmetric keys are rotated by
  # creating a new key and moving the alias (see docs/adr/0005 and 0006).
  enable_key_rotation     = each.value.spec == "SYMMETRIC_DEFAULT"
  deletion_window_in_days = var.deletion_window_in_days
  policy                  = data.aws_iam_policy_document.key[each.key].json
}

resource "aws_kms_alias" "this" {
  for_each      = var.keys
  name          = "alias/${var.name_prefix}-${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}
