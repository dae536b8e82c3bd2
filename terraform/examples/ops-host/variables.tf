variable "region" {
  description = "AWS region of the ops host and the example fleets."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "The region must be an AWS region name such as eu-west-1."
  }
}

variable "ami_id" {
  description = "Debian 12/13 or Ubuntu 22.04+ (amd64) AMI for the ops host and the example members."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "The ami_id must look like ami-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Subnets for the ops host (the first one) and the example fleets; the ops host needs outbound HTTPS to the AWS APIs."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Give at least one subnet id (subnet-...)."
  }
}

variable "vpc_id" {
  description = "VPC of the subnets, for the example web pool's target group."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "ops_instance_type" {
  description = "Instance type of the ops host; vmscaler needs well under 100 MiB of memory."
  type        = string
  default     = "t3.micro"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\\.[a-z0-9]+$", var.ops_instance_type))
    error_message = "The ops_instance_type must be an EC2 instance type such as t3.micro."
  }
}

variable "deb_url" {
  description = "HTTPS URL the ops host downloads the vmscaler .deb from (built by scripts/build-deb.sh), e.g. a release asset or a presigned S3 URL."
  type        = string

  validation {
    condition     = can(regex("^https://", var.deb_url))
    error_message = "The deb_url must be an https:// URL."
  }
}

variable "deb_sha256" {
  description = "SHA-256 of the .deb (sha256sum output); user data refuses a package that does not match."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.deb_sha256))
    error_message = "The deb_sha256 must be 64 lowercase hex digits."
  }
}

variable "enabled_policies" {
  description = "Example policies (from /usr/share/vmscaler/policies) the ops host copies into /etc/vmscaler/policies."
  type        = list(string)
  default     = ["web-storefront", "gpu-transcode", "queue-workers"]

  validation {
    condition     = alltrue([for p in var.enabled_policies : can(regex("^[a-z0-9][a-z0-9-]*$", p))])
    error_message = "Policy names are lowercase letters, digits and dashes."
  }
}

variable "dry_run" {
  description = "Start the daemon in dry-run mode (decide and log, change nothing). Set false to go live."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}
