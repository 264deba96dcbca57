output "bucket_names" {
  description = "Bucket name per declared bucket."
  value       = { for k, b in aws_s3_bucket.zone : k => b.bucket }
}

output "bucket_arns" {
  description = "Bucket ARN per declared bucket."
  value       = { for k, b in aws_s3_bucket.zone : k => b.arn }
}

output "access_log_bucket" {
  description = "Bucket receiving the zone buckets' server access logs."
  value       = aws_s3_bucket.logs.bucket
}
