# Example fleets for vmscaler: tagged EC2 pools (running members are capacity, stopped members
# are the warm pool vmscaler starts first) and an Auto Scaling group it resizes. The tags equal
# the ones the policies in policies/ select, so those policies manage these fleets as they are.

locals {
  # One entry per member: "web-storefront-03" => { pool, index, running, protected }.
  members = merge([
    for pool, spec in var.pools : {
      for i in range(spec.running + spec.stopped) : format("%s-%02d", pool, i + 1) => {
        pool      = pool
        index     = i
        running   = i < spec.running
        protected = i < spec.protected
      }
    }
  ]...)
}

resource "aws_instance" "member" {
  for_each = local.members

  ami           = var.ami_id
  instance_type = var.instance_type
  subnet_id     = var.subnet_ids[each.value.index % length(var.subnet_ids)]

  metadata_options {
    http_tokens   = "required"
    http_endpoint = "enabled"
  }

  tags = merge(
    var.tags,
    { Name = each.key, (var.pool_tag_key) = each.value.pool },
    each.value.protected ? tomap({ (var.protect_tag.key) = var.protect_tag.value }) : tomap({}),
  )
}

resource "aws_ec2_instance_state" "member" {
  for_each = local.members

  instance_id = aws_instance.member[each.key].id
  state       = each.value.running ? "running" : "stopped"

  lifecycle {
    # vmscaler starts and stops members afterwards: that is not drift.
    ignore_changes = [state]
  }
}

resource "aws_launch_template" "group" {
  count = var.auto_scaling_group == null ? 0 : 1

  name_prefix   = "${var.auto_scaling_group.name}-"
  image_id      = var.ami_id
  instance_type = var.instance_type

  metadata_options {
    http_tokens   = "required"
    http_endpoint = "enabled"
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = var.auto_scaling_group.name })
  }
}

resource "aws_autoscaling_group" "group" {
  count = var.auto_scaling_group == null ? 0 : 1

  name                = var.auto_scaling_group.name
  min_size            = var.auto_scaling_group.min_size
  max_size            = var.auto_scaling_group.max_size
  desired_capacity    = var.auto_scaling_group.desired
  vpc_zone_identifier = var.subnet_ids

  launch_template {
    id      = aws_launch_template.group[0].id
    version = "$Latest"
  }

  dynamic "tag" {
    for_each = var.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    # vmscaler owns the desired capacity once the group exists.
    ignore_changes = [desired_capacity]
  }
}

# Target groups of the pools behind a load balancer. No attachments here: vmscaler registers
# running members itself (and deregisters them before it stops them), so Terraform would only
# fight it. Put the group behind a listener of your load balancer.
resource "aws_lb_target_group" "pool" {
  for_each = var.target_groups

  name                 = each.key
  port                 = each.value.port
  protocol             = "HTTP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = each.value.deregistration_delay
  tags                 = var.tags

  health_check {
    path                = each.value.health_check_path
    healthy_threshold   = 2
    unhealthy_threshold = 2
    interval            = 10
  }
}
