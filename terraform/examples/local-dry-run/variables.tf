variable "endpoint_url" {
  description = "Local AWS emulator: moto server (`.venv/bin/moto_server -p 5000`) or LocalStack (http://127.0.0.1:4566; its community edition has no Auto Scaling, so set with_auto_scaling_group = false)."
  type        = string
  default     = "http://127.0.0.1:5000"

  validation {
    condition     = can(regex("^http://(127\\.0\\.0\\.1|localhost|\\[::1\\]):[0-9]+/?$", var.endpoint_url))
    error_message = "The endpoint_url must be a loopback http:// URL: this example never talks to AWS."
  }
}

variable "region" {
  description = "Region name the emulator uses."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "The region must be an AWS region name such as eu-west-1."
  }
}

variable "ami_id" {
  description = "AMI id the emulator accepts (moto ships ami-12c6146b; LocalStack accepts ami-df5de72bdb3b)."
  type        = string
  default     = "ami-12c6146b"

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "The ami_id must look like ami-0123456789abcdef0."
  }
}

variable "with_auto_scaling_group" {
  description = "Create the queue-workers Auto Scaling group (false for LocalStack community, which has no Auto Scaling)."
  type        = bool
  default     = true
}
