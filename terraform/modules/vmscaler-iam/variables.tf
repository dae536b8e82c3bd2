variable "name" {
  description = "Name of the IAM role, policy and instance profile created for the vmscaler daemon."
  type        = string
  default     = "vmscaler"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.name))
    error_message = "The name must be 1-64 characters from A-Z, a-z, 0-9 and +=,.@_- (IAM role name rules)."
  }
}

variable "policy_json_path" {
  description = "Path of the IAM policy document written by `vmscaler iam-policy --policies DIR --out FILE`. Null uses the document generated for the repository's policies/ (terraform/generated/vmscaler-iam-policy.json)."
  type        = string
  default     = null

  validation {
    condition     = var.policy_json_path == null || can(regex("\\.json$", var.policy_json_path))
    error_message = "The policy_json_path must name a .json file written by `vmscaler iam-policy`."
  }
}

variable "path" {
  description = "IAM path for the role, policy and instance profile."
  type        = string
  default     = "/vmscaler/"

  validation {
    condition     = can(regex("^/([A-Za-z0-9+=,.@_-]+/)*$", var.path))
    error_message = "The path must start and end with a slash, like /vmscaler/."
  }
}

variable "permissions_boundary_arn" {
  description = "ARN of a managed policy used as the role's permissions boundary, or null for none."
  type        = string
  default     = null

  validation {
    condition     = var.permissions_boundary_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:policy/.+$", var.permissions_boundary_arn))
    error_message = "The permissions_boundary_arn must be an IAM policy ARN (arn:aws:iam::123456789012:policy/NAME)."
  }
}

variable "tags" {
  description = "Tags applied to every IAM resource of the module."
  type        = map(string)
  default     = {}
}

variable "lease_table_name" {
  description = "DynamoDB lease table for running vmscaler on several ops hosts (the config's lease.table), created here with TTL clean-up; null (the default) for a single host, which needs no table. The policy document must then grant it: generate it with `vmscaler iam-policy --lease-table NAME`."
  type        = string
  default     = null

  validation {
    condition     = var.lease_table_name == null || can(regex("^[A-Za-z0-9_.-]{3,255}$", var.lease_table_name))
    error_message = "The lease_table_name must be a DynamoDB table name: 3-255 characters from A-Z, a-z, 0-9 and _.-."
  }
}

variable "target_group_arns" {
  description = "Load balancer target groups vmscaler registers members in and deregisters them from (the ARNs the policies' pool.target_groups name once Terraform created them); empty keeps the generated document's own ARNs."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.target_group_arns : can(regex("^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]+$", a))])
    error_message = "Each target_group_arns entry must be a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)."
  }
}
