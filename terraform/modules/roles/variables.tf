variable "name_prefix" {
  description = "Prefix of every resource name (the deployment's MLSEC_PREFIX)."
  type        = string
}

variable "workers" {
  description = "Worker names from the topology declaration; one execution role each."
  type        = set(string)
}

variable "permissions_boundary_arn" {
  description = "Optional permissions boundary attached to every worker role (null for none)."
  type        = string
  default     = null
}
