variable "name_prefix" {
  description = "Prefix of every bucket name."
  type        = string
}

variable "name_suffix" {
  description = "Suffix that makes bucket names globally unique (e.g. the account id)."
  type        = string
}

variable "buckets" {
  description = "Buckets from the topology declaration: the zone key each one is encrypted with, whether S3 sends its events to EventBridge, whether it is WORM, and whether every put must carry the dropper tag."
  type = map(object({
    key         = string
    eventbridge = bool
    object_lock = optional(bool, false)
    dropper_tag = optional(bool, false)
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
  description = "Further buckets created with S3 Object Lock, e.g. [\"raw\"] (the topology's object_lock buckets, the audit chain, always have it)."
  type        = set(string)
  default     = []
}

variable "object_lock_mode" {
  description = "Object Lock default retention mode: COMPLIANCE (no one, not even the account root, can delete or overwrite a version before it expires) or GOVERNANCE (principals with s3:BypassGovernanceRetention can)."
  type        = string
  default     = "COMPLIANCE"
  validation {
    condition     = contains(["COMPLIANCE", "GOVERNANCE"], var.object_lock_mode)
    error_message = "object_lock_mode is COMPLIANCE or GOVERNANCE."
  }
}

variable "object_lock_days" {
  description = "Default Object Lock retention, in days."
  type        = number
  default     = 2557
  validation {
    condition     = var.object_lock_days >= 1
    error_message = "Retain at least one day."
  }
}
