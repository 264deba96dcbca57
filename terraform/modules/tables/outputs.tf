output "table_names" {
  description = "Table name per declared table."
  value       = { for k, t in aws_dynamodb_table.this : k => t.name }
}

output "table_arns" {
  description = "Table ARN per declared table."
  value       = { for k, t in aws_dynamodb_table.this : k => t.arn }
}
