output "ops_instance_id" {
  description = "Instance id of the ops host (connect with SSM Session Manager or your usual access)."
  value       = aws_instance.ops.id
}

output "role_arn" {
  description = "ARN of the role vmscaler runs as."
  value       = module.vmscaler_iam.role_arn
}

output "pool_members" {
  description = "Example pool members with their pool and initial state."
  value       = module.example_pools.members
}

output "auto_scaling_group_name" {
  description = "Name of the example Auto Scaling group."
  value       = module.example_pools.auto_scaling_group_name
}
