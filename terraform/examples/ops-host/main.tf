# An ops host running vmscaler under its own least-privilege role, next to example fleets that
# the shipped policies (policies/*.yaml) manage: two tagged pools with running and stopped
# members and one Auto Scaling group.

module "vmscaler_iam" {
  source = "../../modules/vmscaler-iam"

  name              = "vmscaler"
  policy_json_path  = "${path.module}/../../generated/vmscaler-iam-policy.json"
  target_group_arns = values(module.example_pools.target_group_arns)
  tags              = var.tags
}

module "example_pools" {
  source = "../../modules/example-pools"

  ami_id       = var.ami_id
  subnet_ids   = var.subnet_ids
  vpc_id       = var.vpc_id
  pool_tag_key = "vmscaler:pool"
  protect_tag  = { key = "vmscaler:protect", value = "true" }
  tags         = var.tags

  # web-storefront serves behind an ALB: its policy lists this group (pool.target_groups).
  target_groups = {
    "web-storefront" = { deregistration_delay = 120, health_check_path = "/healthz" }
  }

  pools = {
    "web-storefront" = { running = 4, stopped = 4, protected = 1 }
    "gpu-transcode"  = { running = 2, stopped = 2 }
  }

  auto_scaling_group = {
    name     = "queue-workers"
    min_size = 1
    max_size = 40
    desired  = 1
  }
}

resource "aws_instance" "ops" {
  ami                  = var.ami_id
  instance_type        = var.ops_instance_type
  subnet_id            = var.subnet_ids[0]
  iam_instance_profile = module.vmscaler_iam.instance_profile_name

  # IMDSv2 only; one hop, so containers on the host cannot reach the role's credentials.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    encrypted = true
  }

  user_data_replace_on_change = true
  user_data = templatefile("${path.module}/user-data.sh.tftpl", {
    deb_url          = var.deb_url
    deb_sha256       = var.deb_sha256
    region           = var.region
    dry_run          = var.dry_run
    enabled_policies = var.enabled_policies
    target_groups    = [for pool, arn in module.example_pools.target_group_arns : { pool = pool, arn = arn }]
  })

  tags = merge(var.tags, { Name = "vmscaler-ops" })
}
