variable "name_prefix" {
  description = "Prefix of every resource name; the bus is <prefix>-<pipeline_bus>."
  type        = string
}

variable "pipeline_bus" {
  description = "Name of the pipeline bus in the topology declaration."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed key that encrypts the pipeline bus's events."
  type        = string
}

variable "archive_retention_days" {
  description = "Days the archive of the pipeline bus keeps events (for replays)."
  type        = number
  default     = 30
  validation {
    condition     = var.archive_retention_days >= 1
    error_message = "Keep archived events at least one day."
  }
}
