//! The one integration-test binary (one link of the AWS SDK instead of one per file).

// Test helpers outside #[test] functions unwrap freely: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aws_drain;
mod aws_fleet;
mod aws_metrics;
mod backtest_cli;
mod backtest_record;
mod cli;
mod daemon_forecast;
mod daemon_loop;
mod daemon_process;
mod daemon_systemd;
mod deploy_deb;
mod deploy_iam;
mod deploy_terraform;
mod deploy_version;
mod operator_trust;
mod prometheus_input;
mod reliability_crash;
mod reliability_faults;
mod reliability_input;
mod reliability_lease;
mod reliability_safety;
mod support;
