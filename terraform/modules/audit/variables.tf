variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
}

variable "name_suffix" {
  description = "Suffix that makes the trail bucket name globally unique (e.g. the account id)."
  type        = string
}

variable "data_event_bucket_arns" {
  description = "Bucket ARNs whose object-level (data) events the trail records."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "Customer-managed key that encrypts the trail, its bucket and its log group (its policy must allow cloudtrail.amazonaws.com and logs)."
  type        = string
}

variable "log_retention_days" {
  description = "Days the trail's CloudWatch log group keeps events."
  type        = number
  default     = 365
}
