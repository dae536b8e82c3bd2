//! `vmscaler pause POOL [--until T | --for 2h] [--reason TEXT]` and `vmscaler resume POOL`:
//! through the daemon's HTTP API (see [`crate::ops`]). A paused pool is still evaluated and
//! reported, but not acted on, until it is resumed or its `--until` passes; the pause survives
//! restarts. With `VMSCALER_API_TOKEN` set, it is sent as a bearer token (the daemon requires
//! one when it listens beyond loopback).

use std::process::ExitCode;

use super::status::{EX_UNAVAILABLE, encode, http_request};
use super::validate::Output;
use crate::ops::{PauseRequest, TOKEN_ENV};

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// The policy (pool) to pause.
    pub policy: String,
    /// Resume by itself at this instant (RFC 3339).
    #[arg(long, conflicts_with = "for_")]
    pub until: Option<jiff::Timestamp>,
    /// Resume by itself after this long (`2h`), on the daemon's clock.
    #[arg(long = "for", id = "for_", value_name = "DURATION")]
    pub for_: Option<String>,
    /// Why (shown in status and history).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// The daemon's HTTP address.
    #[arg(long, value_name = "URL", env = "VMSCALER_URL", default_value = "http://127.0.0.1:9464")]
    pub url: String,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    pub policy: String,
    #[arg(long, value_name = "URL", env = "VMSCALER_URL", default_value = "http://127.0.0.1:9464")]
    pub url: String,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

fn send(url: &str, path: &str, body: &str) -> Result<String, ExitCode> {
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty());
    http_request(url, "POST", path, Some(body), token.as_deref()).map_err(|e| {
        eprintln!("vmscaler: {e:#}");
        ExitCode::from(EX_UNAVAILABLE)
    })
}

pub fn pause(args: PauseArgs) -> anyhow::Result<ExitCode> {
    let req = PauseRequest { until: args.until, for_: args.for_.clone(), reason: args.reason.clone() };
    let path = format!("/v1/pools/{}/pause", encode(&args.policy));
    let body = match send(&args.url, &path, &serde_json::to_string(&req)?) {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    match args.output {
        Output::Json => println!("{body}"),
        Output::Text => {
            let p: crate::ops::Pause = serde_json::from_str(&body)?;
            println!("{}: {} (evaluated and reported, not acted on)", args.policy, p.describe());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/pools/{}/resume", encode(&args.policy));
    let body = match send(&args.url, &path, "{}") {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    match args.output {
        Output::Json => println!("{body}"),
        Output::Text => {
            let v: serde_json::Value = serde_json::from_str(&body)?;
            if v["was_paused"] == true {
                println!("{}: resumed", args.policy);
            } else {
                println!("{}: was not paused", args.policy);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
