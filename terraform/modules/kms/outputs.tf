output "key_arns" {
  description = "Key ARN per declared key."
  value       = { for k, v in aws_kms_key.this : k => v.arn }
}

output "alias_names" {
  description = "Alias name per declared key (what the workers resolve at start-up)."
  value       = { for k, v in aws_kms_alias.this : k => v.name }
}
