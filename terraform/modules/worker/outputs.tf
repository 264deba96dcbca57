output "queue_url" {
  description = "URL of the worker's queue."
  value       = aws_sqs_queue.queue.id
}

output "dlq_url" {
  description = "URL of the worker's dead-letter queue."
  value       = aws_sqs_queue.dlq.id
}

output "function_name" {
  description = "Name of the worker's Lambda function."
  value       = aws_lambda_function.worker.function_name
}

output "rule_arn" {
  description = "ARN of the rule that feeds the worker's queue."
  value       = aws_cloudwatch_event_rule.trigger.arn
}

output "queue_arn" {
  description = "ARN of the worker's queue (mlsec dlq replay sends to it)."
  value       = aws_sqs_queue.queue.arn
}

output "dlq_arn" {
  description = "ARN of the worker's dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}
