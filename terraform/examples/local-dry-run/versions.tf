terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

# Every service the example touches goes to the local emulator; nothing reaches AWS.
provider "aws" {
  region                      = var.region
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true

  endpoints {
    autoscaling = var.endpoint_url
    cloudwatch  = var.endpoint_url
    dynamodb    = var.endpoint_url
    ec2         = var.endpoint_url
    iam         = var.endpoint_url
    sts         = var.endpoint_url
  }
}
