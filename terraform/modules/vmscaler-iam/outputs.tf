output "role_name" {
  description = "Name of the daemon's IAM role."
  value       = aws_iam_role.vmscaler.name
}

output "role_arn" {
  description = "ARN of the daemon's IAM role."
  value       = aws_iam_role.vmscaler.arn
}

output "policy_arn" {
  description = "ARN of the least-privilege policy attached to the role."
  value       = aws_iam_policy.vmscaler.arn
}

output "instance_profile_name" {
  description = "Instance profile to give the ops host (aws_instance.iam_instance_profile)."
  value       = aws_iam_instance_profile.vmscaler.name
}

output "instance_profile_arn" {
  description = "ARN of the instance profile."
  value       = aws_iam_instance_profile.vmscaler.arn
}

output "lease_table_arn" {
  description = "ARN of the DynamoDB lease table, or null when vmscaler runs on a single host."
  value       = one(aws_dynamodb_table.leases[*].arn)
}
