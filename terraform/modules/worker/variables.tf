variable "name_prefix" {
  description = "Prefix of every resource name (the deployment's MLSEC_PREFIX)."
  type        = string
}

variable "name" {
  description = "Worker name (a key of the topology's workers)."
  type        = string
}

variable "worker" {
  description = "The worker's declaration from terraform/topology.json."
  type = object({
    zone = string
    trigger = object({
      bus         = string
      s3_bucket   = optional(string)
      detail_types = list(string)
      role        = optional(string)
    })
    reads         = list(string)
    reads_records = optional(map(list(string)), {})
    writes        = list(string)
    keys   = list(string)
    tables = list(string)
    emits  = list(string)
    resolves_people = optional(bool, false)
    queue = object({
      visibility_timeout_seconds = number
      max_receive_count          = number
    })
    lambda = optional(object({
      timeout_seconds      = optional(number)
      memory_mb            = optional(number)
      ephemeral_storage_mb = optional(number)
      batch_size           = optional(number)
    }), {})
  })
  validation {
    condition     = contains(["default", "pipeline"], var.worker.trigger.bus)
    error_message = "A worker listens on the default bus (S3 events) or the pipeline bus."
  }
}

variable "event_sources" {
  description = "Per event type, the EventBridge sources allowed to emit it (<prefix>.<worker> or <prefix>.operator)."
  type        = map(list(string))
}

variable "role_name" {
  description = "Name of the worker's execution role (from the roles module)."
  type        = string
}

variable "role_arn" {
  description = "ARN of the worker's execution role."
  type        = string
}

variable "bucket_names" {
  description = "Bucket name per declared bucket."
  type        = map(string)
}

variable "bucket_arns" {
  description = "Bucket ARN per declared bucket."
  type        = map(string)
}

variable "key_arns" {
  description = "KMS key ARN per declared key."
  type        = map(string)
}

variable "table_arns" {
  description = "Table ARN per declared table."
  type        = map(string)
}

variable "bus_name" {
  description = "Name of the pipeline bus."
  type        = string
}

variable "bus_arn" {
  description = "ARN of the pipeline bus."
  type        = string
}

variable "bucket_suffix" {
  description = "Suffix of bucket names, passed to the worker as MLSEC_BUCKET_SUFFIX."
  type        = string
}

variable "lambda_zip" {
  description = "Path of the worker's zip from `cargo lambda build --release --output-format zip --include contracts`."
  type        = string
}

variable "architecture" {
  description = "Lambda architecture: x86_64 or arm64 (build the zip for the same one)."
  type        = string
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "Architecture must be x86_64 or arm64."
  }
}

variable "memory_mb" {
  description = "Lambda memory (MB); CPU scales with it."
  type        = number
  default     = 1024
}

variable "reserved_concurrency" {
  description = "Reserved concurrency: caps the worker's parallelism and its share of the account's."
  type        = number
  default     = 5
  validation {
    # The event-source mapping's maximum concurrency equals it, and that is at least 2.
    condition     = var.reserved_concurrency >= 2
    error_message = "Reserve at least two concurrent executions (the SQS mapping's minimum maximum concurrency)."
  }
}

variable "batch_size" {
  description = "SQS messages per invocation (at most 10 for ReportBatchItemFailures without a window)."
  type        = number
  default     = 10
  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 10
    error_message = "Batch size must be 1 to 10."
  }
}

variable "log_retention_days" {
  description = "Days the worker's logs are kept."
  type        = number
  default     = 365
}

variable "alarm_topic_arn" {
  description = "SNS topic notified by the worker's alarms (null for none)."
  type        = string
  default     = null
}

variable "vpc" {
  description = "Optional VPC placement (private subnets with endpoints for S3, SQS, EventBridge, DynamoDB, KMS and Logs); null deploys without a VPC."
  type = object({
    subnet_ids         = list(string)
    security_group_ids = list(string)
  })
  default = null
}

variable "code_signing_config_arn" {
  description = "Optional Lambda code-signing configuration enforced on the worker's zip (null for none)."
  type        = string
  default     = null
}

variable "pinned_role_names" {
  description = "Roles beyond the deployment's people roles whose trust policies pin the session name to the person (e.g. IAM Identity Center permission-set roles): their sessions count as people in separation of duties (ADR 0012)."
  type        = list(string)
  default     = []
}
