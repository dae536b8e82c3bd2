//! The one integration-test binary (one link of the AWS SDK instead of one per file).

mod cli;
mod support;
mod daemon_loop;
mod daemon_process;
mod daemon_systemd;
mod aws_fleet;
mod aws_metrics;
mod deploy_iam;
mod deploy_terraform;
mod deploy_deb;
mod backtest_cli;
mod backtest_record;
