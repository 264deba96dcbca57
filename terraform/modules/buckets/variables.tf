variable "name_prefix" {
  description = "Prefix of every bucket name."
  type        = string
}

variable "name_suffix" {
  description = "Suffix that makes bucket names globally unique (e.g. the account id)."
  type        = string
}

variable "buckets" {
  description = "Buckets from the topology declaration: the zone key each one is encrypted with, and whether S3 sends its events to EventBridge."
  type = map(object({
    key         = string
    eventbridge = bool
  }))
}

variable "key_arns" {
  description = "KMS key ARN per declared key (from the kms module)."
  type        = map(string)
}

variable "log_key" {
  description = "Name of the declared key that encrypts the access-log bucket."
  type        = string
  default     = "quarantine"
}

variable "noncurrent_version_days" {
  description = "Days a non-current object version is kept before expiry."
  type        = number
  default     = 90
  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "Keep non-current versions at least one day."
  }
}

variable "object_lock_buckets" {
  description = "Buckets created with S3 Object Lock (governance mode), e.g. [\"raw\"]."
  type        = set(string)
  default     = []
}

variable "object_lock_days" {
  description = "Default governance-mode retention for Object Lock buckets."
  type        = number
  default     = 30
}
