output "dry_run_config" {
  description = "A vmscaler configuration for the dry run: save it with `terraform output -raw dry_run_config > dry-run.yaml`."
  value = yamlencode({
    policy_dir   = abspath("${path.module}/../../../policies")
    state_dir    = "/tmp/vmscaler-dry-run"
    listen       = "127.0.0.1:9464"
    region       = var.region
    endpoint_url = var.endpoint_url
    dry_run      = true
  })
}

output "dry_run_command" {
  description = "The command that evaluates the shipped policies against the emulator and changes nothing."
  value       = "AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test vmscaler run --dry-run --config dry-run.yaml"
}

output "pool_members" {
  description = "Example pool members created in the emulator."
  value       = module.example_pools.members
}

output "role_arn" {
  description = "The daemon's role as the emulator created it."
  value       = module.vmscaler_iam.role_arn
}
