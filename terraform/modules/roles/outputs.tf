output "role_arns" {
  description = "Execution role ARN per worker."
  value       = { for k, r in aws_iam_role.worker : k => r.arn }
}

output "role_names" {
  description = "Execution role name per worker."
  value       = { for k, r in aws_iam_role.worker : k => r.name }
}
