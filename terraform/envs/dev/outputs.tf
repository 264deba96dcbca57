output "landing_bucket" {
  description = "Drop objects here under <source>/<dataset>/."
  value       = module.buckets.bucket_names["landing"]
}

output "pipeline_bus" {
  description = "The pipeline bus; consumers add rules here (mlsec subscribe)."
  value       = module.events.bus_name
}

output "queues" {
  description = "Queue and DLQ URL per worker."
  value       = { for w, m in module.worker : w => { queue = m.queue_url, dlq = m.dlq_url } }
}

output "worker_env" {
  description = "Environment for running mlsec against this deployment."
  value       = "export MLSEC_PREFIX=${var.name_prefix} MLSEC_BUCKET_SUFFIX=${local.suffix} AWS_REGION=${var.region}"
}

output "operator_audit_policy_arn" {
  description = "Attach to the operator roles: they append their actions to the audit chain."
  value       = aws_iam_policy.operator_audit.arn
}

output "auditor_policy_arn" {
  description = "Attach to the auditor roles: read and verify the audit chain, write nothing."
  value       = aws_iam_policy.auditor.arn
}
