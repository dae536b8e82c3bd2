//! `vmscaler run --config FILE`: the long-running daemon.
//!
//! Loads the configuration (command-line flags override it), sets up logging (text or JSON on
//! stderr, which journald captures), connects to AWS, binds HTTP, and hands over to
//! [`crate::daemon::run`]. Exits 0 on SIGTERM, 78 on a configuration error.
//!
//! With a `lease:` section it also runs the lease keeper beside the loop (see
//! [`crate::lease`]): a first round before the first evaluation, and on SIGTERM, once the
//! last evaluation has finished, every lease is handed back so other daemons take over at once.
//!
//! Not here: the loop itself (see [`crate::daemon`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::aws::lease::LeaseTable;
use crate::aws::{Aws, AwsSettings};
use crate::clock::{Clock, SystemClock};
use crate::cmd::EX_CONFIG;
use crate::config::{Config, LogFormat};
use crate::daemon::{self, Daemon, runloop::ScaledClock};
use crate::lease::Leases;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short, value_name = "FILE", default_value = "/etc/vmscaler/vmscaler.yaml")]
    pub config: PathBuf,
    /// Change nothing in any fleet: read, decide, log and record only.
    #[arg(long)]
    pub dry_run: bool,
    /// AWS endpoint for every service (moto, LocalStack), overriding the configuration.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// HTTP listen address, overriding the configuration (`off` disables HTTP).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("VMSCALER_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vmscaler: {e}");
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    if args.dry_run {
        cfg.dry_run = true;
    }
    if let Some(url) = args.endpoint_url {
        cfg.endpoint_url = Some(url);
    }
    if let Some(l) = args.listen {
        cfg.listen = match l.trim() {
            "off" | "none" | "" => None,
            s => match s.parse() {
                Ok(a) => Some(a),
                Err(e) => {
                    eprintln!("vmscaler: --listen {s:?}: {e}");
                    return Ok(ExitCode::from(EX_CONFIG));
                }
            },
        };
    }
    init_logging(cfg.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_daemon(cfg))
}

async fn run_daemon(cfg: Config) -> anyhow::Result<ExitCode> {
    let wall: Arc<dyn Clock> = Arc::new(SystemClock);
    let clock: Arc<dyn Clock> = if (cfg.time_scale - 1.0).abs() > f64::EPSILON {
        let origin = cfg.time_origin.unwrap_or_else(|| wall.now());
        tracing::warn!(scale = cfg.time_scale, origin = %origin, "the daemon's clock runs faster than wall time (demo setting)");
        Arc::new(ScaledClock::new(wall, origin, cfg.time_scale))
    } else {
        wall
    };
    let settings = AwsSettings {
        region: cfg.region.clone(),
        endpoint_url: cfg.endpoint_url.clone(),
        profile: cfg.profile.clone(),
    };
    let aws = Aws::connect(&settings).await?;
    let attempts = std::env::var("VMSCALER_CREDENTIALS_RETRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    if let Err(e) = crate::aws::credentials::check(&aws, attempts).await {
        tracing::error!("{e}");
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let listener = match cfg.listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                // A port in use or an address not on this host: the configuration's to fix.
                tracing::error!(address = %addr, error = %e, "cannot listen");
                eprintln!("vmscaler: cannot listen on {addr}: {e}");
                return Ok(ExitCode::from(EX_CONFIG));
            }
        },
        None => None,
    };
    let lease_cfg = cfg.lease.clone();
    let scale = cfg.time_scale;
    let table = lease_cfg.as_ref().map(|l| LeaseTable::new(&aws, &l.table));
    let (mut daemon, report) = match Daemon::new(cfg, aws, clock.now()) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot start");
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    if daemon.policies().is_empty() {
        tracing::warn!(rejected = report.rejected.len(), "no valid policy loaded: waiting for policy files");
    }
    let keeper = match (lease_cfg, table) {
        (Some(lc), Some(table)) => {
            if lc.create_table {
                match table.create().await {
                    Ok(true) => tracing::info!(table = %lc.table, "lease table created"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "cannot create the lease table");
                        return Ok(ExitCode::from(EX_CONFIG));
                    }
                }
            }
            if let Err(e) = table.read().await {
                tracing::error!(error = %e, "cannot read the lease table: not starting");
                return Ok(ExitCode::from(EX_CONFIG));
            }
            let leases = Leases::new(table, &lc, Arc::clone(&clock));
            daemon.set_leases(leases.clone());
            let first = leases.round(clock.now()).await;
            tracing::info!(
                holder = %lc.holder,
                table = %lc.table,
                ttl = ?lc.ttl,
                members = first.members,
                share = first.share,
                held = ?first.held,
                "sharing pools through leases"
            );
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let keeper = leases.clone();
            let task = tokio::spawn(async move { keeper.keep(scale, stopped).await });
            Some((leases, stop, task))
        }
        _ => None,
    };
    let result = daemon::run(daemon, clock, listener).await;
    if let Some((leases, stop, task)) = keeper {
        let _ = stop.send(true);
        let _ = task.await;
        leases.shutdown().await;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}
