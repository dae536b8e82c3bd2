variable "ami_id" {
  description = "AMI of the example pool members and of the Auto Scaling group's launch template."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "The ami_id must look like ami-0123456789abcdef0."
  }
}

variable "instance_type" {
  description = "Instance type of the example members (small: they only stand in for real workers)."
  type        = string
  default     = "t3.micro"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "The instance_type must be an EC2 instance type such as t3.micro."
  }
}

variable "subnet_ids" {
  description = "Subnets for the pool members and the Auto Scaling group (members are spread over them)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Give at least one subnet id (subnet-...)."
  }
}

variable "pool_tag_key" {
  description = "Tag key whose value names a pool; must equal pool.tag.key in the vmscaler policies."
  type        = string
  default     = "vmscaler:pool"

  validation {
    condition     = length(var.pool_tag_key) > 0 && length(var.pool_tag_key) <= 128 && !startswith(var.pool_tag_key, "aws:")
    error_message = "The pool_tag_key must be 1-128 characters and must not start with aws:."
  }
}

variable "protect_tag" {
  description = "Tag that keeps a member from ever being stopped; must equal scale_in.protect_tag in the policies."
  type = object({
    key   = string
    value = string
  })
  default = {
    key   = "vmscaler:protect"
    value = "true"
  }

  validation {
    condition     = length(var.protect_tag.key) > 0 && !startswith(var.protect_tag.key, "aws:")
    error_message = "The protect_tag key must be non-empty and must not start with aws:."
  }
}

variable "pools" {
  description = "Tagged pools by pool tag value: members started (running) and members left stopped (the warm pool); the first `protected` running members carry the protect tag."
  type = map(object({
    running   = number
    stopped   = number
    protected = optional(number, 0)
  }))

  validation {
    condition     = alltrue([for p in values(var.pools) : p.running >= 0 && p.stopped >= 0 && p.protected >= 0 && p.protected <= p.running && p.running + p.stopped <= 50])
    error_message = "Each pool needs running, stopped >= 0, protected <= running, and at most 50 members in all."
  }
}

variable "auto_scaling_group" {
  description = "The example Auto Scaling group: its name (pool.auto_scaling_group in a policy) and size bounds, or null for none."
  type = object({
    name     = string
    min_size = number
    max_size = number
    desired  = number
  })
  default = null

  validation {
    condition     = var.auto_scaling_group == null ? true : (var.auto_scaling_group.min_size <= var.auto_scaling_group.desired && var.auto_scaling_group.desired <= var.auto_scaling_group.max_size)
    error_message = "The group needs min_size <= desired <= max_size."
  }
}

variable "tags" {
  description = "Tags applied to every resource of the module, besides the pool tags."
  type        = map(string)
  default     = {}
}

variable "target_groups" {
  description = "Pools served behind a load balancer, by pool name: a target group named after the pool is created for each (its ARN goes into the pool's policy, pool.target_groups)."
  type = map(object({
    port                 = optional(number, 80)
    deregistration_delay = optional(number, 120)
    health_check_path    = optional(string, "/")
  }))
  default = {}

  validation {
    condition     = alltrue([for p, tg in var.target_groups : contains(keys(var.pools), p) && tg.deregistration_delay >= 0 && tg.deregistration_delay <= 3600])
    error_message = "Each target_groups key must be a pool of var.pools, with a deregistration_delay of 0-3600 seconds."
  }
}

variable "vpc_id" {
  description = "VPC of the subnets, for the target groups; required when target_groups is not empty."
  type        = string
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must look like vpc-0123456789abcdef0."
  }
}
