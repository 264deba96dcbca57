variable "name_prefix" {
  description = "Prefix of every resource name; aliases are alias/<prefix>-<key>."
  type        = string
}

variable "keys" {
  description = "Keys from the topology declaration (spec, usage, description)."
  type = map(object({
    spec        = string
    usage       = string
    description = string
  }))
  validation {
    condition     = alltrue([for k in values(var.keys) : contains(["SYMMETRIC_DEFAULT", "HMAC_256", "ECC_NIST_P256"], k.spec)])
    error_message = "Key specs must be SYMMETRIC_DEFAULT, HMAC_256 or ECC_NIST_P256."
  }
}

variable "key_users" {
  description = "Per key, the ARNs of the roles allowed to use it: the worker roles the topology gives it, plus producers (landing) and operators (pipeline)."
  type        = map(list(string))
}

variable "key_readers" {
  description = "Per key, the ARNs of roles that may only read with it: Decrypt (symmetric keys) or Verify and GetPublicKey (signing keys), never encrypt or sign (e.g. auditors)."
  type        = map(list(string))
  default     = {}
}

variable "key_signers" {
  description = "Per signing key, the ARNs of roles that may only sign with it (Sign, DescribeKey): the model-signing key's signer is the govern role alone."
  type        = map(list(string))
  default     = {}
}

variable "service_users" {
  description = "Per key, AWS service principals allowed to use it (e.g. logs, events, s3 for bucket logging)."
  type        = map(list(string))
  default     = {}
}

variable "deletion_window_in_days" {
  description = "Waiting period before a scheduled key deletion."
  type        = number
  default     = 30
  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "KMS allows 7 to 30 days."
  }
}
