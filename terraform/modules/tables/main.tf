# Model registry and idempotency tables: on-demand, point-in-time recovery, customer-managed
# KMS, TTL where the topology declares one.

resource "aws_dynamodb_table" "this" {
  for_each     = var.tables
  name         = "${var.name_prefix}-${each.key}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = each.value.partition_key
  range_key    = each.value.sort_key

  attribute {
    name = each.value.partition_key
    type = "S"
  }

  dynamic "attribute" {
    for_each = each.value.sort_key == null ? [] : [each.value.sort_key]
    content {
      name = attribute.value
      type = "S"
    }
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  dynamic "ttl" {
    for_each = each.value.ttl_attribute == null ? [] : [each.value.ttl_attribute]
    content {
      attribute_name = ttl.value
      enabled        = true
    }
  }

  deletion_protection_enabled = true
}
