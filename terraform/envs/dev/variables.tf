variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "name_prefix" {
  description = "Deployment prefix of every resource name (the workers' MLSEC_PREFIX)."
  type        = string
  default     = "mlsec"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name_prefix))
    error_message = "Use 2-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "lambda_zip_dir" {
  description = "Directory holding <worker>-lambda/bootstrap.zip as built by scripts/package.sh."
  type        = string
  default     = "../../../target/lambda"
}

variable "architecture" {
  description = "Lambda architecture of every worker (x86_64 or arm64)."
  type        = string
  default     = "x86_64"
}

variable "alarm_email" {
  description = "E-mail subscribed to the DLQ, error and budget alarms (null for none)."
  type        = string
  default     = null
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget; an alert fires at 80% of it."
  type        = number
  default     = 50
}

variable "object_lock_buckets" {
  description = "Buckets created with Object Lock in governance mode (e.g. [\"raw\"])."
  type        = set(string)
  default     = []
}

variable "producer_role_arns" {
  description = "Roles of the producers that upload into the landing bucket (they need the landing key)."
  type        = list(string)
  default     = []
}

variable "operator_role_arns" {
  description = "Roles of the operators who run mlsec status / dlq list / dlq replay (they need the pipeline key)."
  type        = list(string)
  default     = []
}

variable "auditor_role_arns" {
  description = "Roles of the auditors: they read and verify the audit chain (attach the auditor policy) and may only decrypt and verify with its keys."
  type        = list(string)
  default     = []
}

variable "audit_lock_mode" {
  description = "Object Lock mode of the audit bucket: COMPLIANCE for production (no one can delete a record before its retention ends), GOVERNANCE for a disposable dev deployment."
  type        = string
  default     = "GOVERNANCE"
}

variable "audit_retention_days" {
  description = "Object Lock retention of audit records, in days (e.g. 2557 for seven years)."
  type        = number
  default     = 30
}

variable "people_principals" {
  description = "Principals (IAM users, or the account root) that may assume the people roles (producer, model-risk); each session must be named after the caller's own user name. Empty: the account's root, so IAM policies in the account decide."
  type        = list(string)
  default     = []
}

variable "pinned_role_names" {
  description = "Role names, beyond the people roles, whose trust policies pin each session's name to the person (IAM Identity Center permission-set roles do): sessions of any other role cannot approve a model (ADR 0012)."
  type        = list(string)
  default     = []
}
