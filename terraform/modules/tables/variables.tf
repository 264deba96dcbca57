variable "name_prefix" {
  description = "Prefix of every table name."
  type        = string
}

variable "tables" {
  description = "Tables from the topology declaration."
  type = map(object({
    partition_key = string
    sort_key      = optional(string)
    ttl_attribute = optional(string)
  }))
}

variable "kms_key_arn" {
  description = "Customer-managed key that encrypts the tables."
  type        = string
}
