//! The loop around [`Daemon::tick`]: sleeping until the next pool is due, signals, policy
//! directory polling, systemd notifications and the HTTP server's lifetime.
//!
//! - SIGHUP, or a change in the policy directory (polled every `reload_poll`), reloads policies.
//! - SIGTERM or SIGINT: the evaluation under way finishes (signals are only looked at between
//!   ticks), then the loop returns and the process exits 0.
//! - systemd (`Type=notify`): `READY=1` once policies are loaded and HTTP listens, `STATUS=`
//!   after each tick, `WATCHDOG=1` from the loop itself (so a stuck loop is noticed), and
//!   `RELOADING=1`/`STOPPING=1` around reloads and shutdown. Outside systemd these are no-ops.
//!
//! Not here: what a tick does (see [`super`]).

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};

use super::Daemon;
use super::watch::DirWatcher;
use crate::clock::Clock;

/// A clock running `scale` times faster than `base` from `origin` on: at `origin` both agree.
/// The demo uses it to replay a day of load in minutes; production runs at scale 1.
pub struct ScaledClock {
    base: Arc<dyn Clock>,
    origin: Timestamp,
    scale: f64,
}

impl ScaledClock {
    pub fn new(base: Arc<dyn Clock>, origin: Timestamp, scale: f64) -> ScaledClock {
        ScaledClock { base, origin, scale }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let wall = self.base.now();
        let elapsed = wall.duration_since(self.origin).as_secs_f64() * self.scale;
        SignedDuration::try_from_secs_f64(elapsed).ok().and_then(|d| self.origin.checked_add(d).ok()).unwrap_or(wall)
    }
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(error = %e, "cannot notify systemd");
    }
}

fn status_line(daemon: &Daemon) -> String {
    let b = daemon.board().snapshot();
    let degraded = b.degraded_pools().len();
    let mut s = format!("{} pool(s)", b.pools.len());
    if degraded > 0 {
        s.push_str(&format!(", {degraded} degraded"));
    }
    if !b.invalid_files.is_empty() {
        s.push_str(&format!(", {} invalid policy file(s)", b.invalid_files.len()));
    }
    if b.dry_run {
        s.push_str(", dry-run");
    }
    if let Some(t) = b.last_tick {
        s.push_str(&format!(", last tick {}", t.strftime("%Y-%m-%dT%H:%M:%SZ")));
    }
    s
}

/// Longest a single evaluation may go without progress before the watchdog is left to fire:
/// two AWS operation timeouts and some slack.
pub const STALL_LIMIT: Duration = Duration::from_secs(2 * crate::aws::OPERATION_TIMEOUT.as_secs() + 30);

/// Pings the systemd watchdog every `every` while the loop makes progress; once it has made
/// none for [`STALL_LIMIT`], stops pinging so systemd restarts a stuck daemon.
async fn ping_watchdog(heartbeat: Arc<super::Heartbeat>, every: Duration) {
    let mut warned = false;
    loop {
        let age = heartbeat.age();
        if age < STALL_LIMIT {
            notify(&[NotifyState::Watchdog]);
            warned = false;
        } else if !warned {
            warn!(stalled_for = ?age, "no progress in the evaluation loop: no longer pinging the watchdog");
            warned = true;
        }
        tokio::time::sleep(every).await;
    }
}

/// Runs the daemon until SIGTERM or SIGINT. `listener` (if any) serves the HTTP endpoints.
pub async fn run(mut daemon: Daemon, clock: Arc<dyn Clock>, listener: Option<TcpListener>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = match listener {
        Some(l) => {
            let addr = l.local_addr()?;
            info!(%addr, "http listening");
            let board = daemon.board();
            let mut app = crate::http::router(Arc::clone(&board), Arc::clone(&clock));
            if let Some(inbox) = daemon.alerts() {
                info!("alertmanager webhook on POST /v1/alerts");
                app = app.merge(crate::alerts::router(inbox, board, Arc::clone(&clock)));
            }
            Some(tokio::spawn(crate::http::serve_app(l, app, stop_rx)))
        }
        None => None,
    };
    let scale = daemon.config().time_scale;
    let poll = daemon.config().reload_poll;
    let mut usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2));
    let pinger = watchdog.map(|every| tokio::spawn(ping_watchdog(daemon.heartbeat(), every)));
    let mut watcher = DirWatcher::new(&daemon.config().policy_dir);
    notify(&[NotifyState::Ready, NotifyState::Status(&status_line(&daemon))]);
    info!(
        pools = daemon.policies().len(),
        dry_run = daemon.config().dry_run,
        policy_dir = %daemon.config().policy_dir.display(),
        "vmscaler running"
    );
    let reason = loop {
        let report = daemon.tick(clock.now()).await;
        notify(&[NotifyState::Status(&status_line(&daemon))]);
        // Real time to sleep: until the next pool is due on the daemon's clock, but wake for
        // directory polling and the watchdog.
        let until_due = report.next_due.map_or(poll, |due| {
            let virt = due.duration_since(clock.now()).as_secs_f64().max(0.0);
            Duration::try_from_secs_f64(virt / scale).unwrap_or(poll)
        });
        // Wake at least every 30 s so the heartbeat stays fresh while idle.
        let nap = until_due.min(poll).min(Duration::from_secs(30));
        let inbox = daemon.alerts();
        let alerted = async {
            match &inbox {
                Some(i) => i.changed.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = alerted => {
                let pools = daemon.expedite_alerted(clock.now());
                info!(pools = ?pools, "alert floors changed: evaluating now");
            }
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => {
                info!("SIGHUP: reloading policies");
                notify(&[NotifyState::Reloading]);
                daemon.reload(clock.now());
                let _ = watcher.changed();
                notify(&[NotifyState::Ready, NotifyState::Status(&status_line(&daemon))]);
            }
            () = tokio::time::sleep(nap) => {
                if watcher.changed() {
                    info!("policy directory changed: reloading policies");
                    daemon.reload(clock.now());
                }
            }
        }
    };
    info!(signal = reason, "stopping");
    notify(&[NotifyState::Stopping]);
    if let Some(p) = pinger {
        p.abort();
    }
    let _ = stop_tx.send(true);
    if let Some(h) = server {
        match tokio::time::timeout(Duration::from_secs(5), h).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "http server ended with an error"),
            Ok(Err(e)) => warn!(error = %e, "http server task failed"),
            Err(_) => warn!("http server did not stop within 5s"),
        }
    }
    info!("stopped");
    Ok(())
}
