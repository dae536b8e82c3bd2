# A dry run against a local emulator: the same example fleets as examples/ops-host, tagged for
# the shipped policies, plus the daemon's IAM role, created in moto or LocalStack. Then run
#   vmscaler run --dry-run --endpoint-url <endpoint_url> --config <config>
# (the `dry_run_command` output) and watch it decide without changing anything.

resource "aws_vpc" "example" {
  cidr_block = "10.80.0.0/16"
}

resource "aws_subnet" "example" {
  vpc_id     = aws_vpc.example.id
  cidr_block = "10.80.1.0/24"
}

module "vmscaler_iam" {
  source = "../../modules/vmscaler-iam"

  name             = "vmscaler-dry-run"
  policy_json_path = "${path.module}/../../generated/vmscaler-iam-policy.json"
}

module "example_pools" {
  source = "../../modules/example-pools"

  ami_id       = var.ami_id
  subnet_ids   = [aws_subnet.example.id]
  pool_tag_key = "vmscaler:pool"
  protect_tag  = { key = "vmscaler:protect", value = "true" }

  pools = {
    "web-storefront" = { running = 4, stopped = 4, protected = 1 }
    "gpu-transcode"  = { running = 2, stopped = 2 }
  }

  auto_scaling_group = var.with_auto_scaling_group ? {
    name     = "queue-workers"
    min_size = 1
    max_size = 40
    desired  = 1
  } : null
}
