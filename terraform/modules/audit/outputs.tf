output "trail_arn" {
  description = "ARN of the data-events trail."
  value       = aws_cloudtrail.data_events.arn
}

output "trail_bucket" {
  description = "Bucket receiving the trail's log files."
  value       = aws_s3_bucket.trail.bucket
}
