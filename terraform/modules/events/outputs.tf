output "bus_name" {
  description = "Name of the pipeline bus."
  value       = aws_cloudwatch_event_bus.pipeline.name
}

output "bus_arn" {
  description = "ARN of the pipeline bus."
  value       = aws_cloudwatch_event_bus.pipeline.arn
}
