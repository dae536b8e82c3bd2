output "members" {
  description = "Instance ids of the example members by name, with their pool and intended state."
  value = {
    for name, m in local.members : name => {
      id        = aws_instance.member[name].id
      pool      = m.pool
      state     = m.running ? "running" : "stopped"
      protected = m.protected
    }
  }
}

output "pool_tags" {
  description = "The tag (key = value) each pool's members carry, as a vmscaler policy selects them."
  value       = { for pool in keys(var.pools) : pool => { key = var.pool_tag_key, value = pool } }
}

output "auto_scaling_group_name" {
  description = "Name of the example Auto Scaling group, or null."
  value       = var.auto_scaling_group == null ? null : aws_autoscaling_group.group[0].name
}

output "target_group_arns" {
  description = "ARN of each pool's target group, by pool name (for pool.target_groups and the IAM module's target_group_arns)."
  value       = { for pool, tg in aws_lb_target_group.pool : pool => tg.arn }
}
