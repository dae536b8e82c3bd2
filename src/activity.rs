//! The activity log: what changed, per pool, kept for weeks (the state keeps only the last
//! decisions, holds included: at a 30 s interval that is 25 minutes).
//!
//! Changes only: actions and their outcomes (dry-run ones marked), pre-warm floors engaged and
//! released, a pool degraded and recovered, policies added, updated, removed or rejected on
//! reload, pauses and resumes. One JSON object per line in `<state_dir>/activity/pools/<pool>.jsonl`
//! (daemon-wide events in `_daemon.jsonl` beside `pools/`), appended with `O_APPEND` (a crash can at worst
//! leave one partial last line, which readers skip). Bounded: a file that reaches
//! [`MAX_FILE_BYTES`] is rotated to `.1` (the previous `.1` dropped), so a pool keeps at most
//! twice that. Sized for retention: an event is about 300 bytes, so a generation holds some
//! 14,000 changes, two weeks of a pool acting every 90 s around the clock; a calm pool keeps
//! months. Each pool has its own files, so a flapping pool cannot push out another's history.
//!
//! Writing never fails the daemon: an error is logged once per file and the evaluation goes on.
//! Not here: deciding what is a change (the daemon compares each evaluation with the last).

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::state::DecisionEntry;

/// A generation's size limit; rotation keeps two.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Daemon-wide events; pools' files live in `pools/`, so no policy name can collide with it.
const DAEMON_FILE: &str = "_daemon.jsonl";

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    /// The pool; `None` for daemon-wide events (a rejected file that defined no running pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `action`, `not_acted_on` (paused), `floor_engaged`, `floor_released`, `degraded`, `recovered`, `policy_added`,
    /// `policy_updated`, `policy_removed`, `policy_rejected`, `paused`, `resumed`.
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    /// Outcomes of an action, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<String>,
}

impl Event {
    pub fn new(at: Timestamp, policy: Option<&str>, kind: &str, message: impl Into<String>) -> Event {
        Event {
            at,
            policy: policy.map(str::to_owned),
            kind: kind.to_owned(),
            message: message.into(),
            dry_run: false,
            current: None,
            desired: None,
            outcomes: Vec::new(),
        }
    }
}

/// The log in a state directory.
#[derive(Debug)]
pub struct ActivityLog {
    dir: PathBuf,
    max_bytes: u64,
    /// Files whose write error was already logged.
    failed: Mutex<BTreeSet<PathBuf>>,
}

impl ActivityLog {
    /// The log under `<state_dir>/activity` (created on first write).
    pub fn open(state_dir: &Path) -> ActivityLog {
        ActivityLog::with_limit(state_dir, MAX_FILE_BYTES)
    }

    /// With another generation size (tests of rotation).
    pub fn with_limit(state_dir: &Path, max_bytes: u64) -> ActivityLog {
        ActivityLog { dir: state_dir.join("activity"), max_bytes, failed: Mutex::default() }
    }

    fn file_for(&self, policy: Option<&str>) -> PathBuf {
        match policy {
            None => self.dir.join(DAEMON_FILE),
            Some(p) => {
                let mut name = String::with_capacity(p.len() + 6);
                for b in p.bytes() {
                    if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                        name.push(char::from(b));
                    } else {
                        name.push_str(&format!("%{b:02X}"));
                    }
                }
                name.push_str(".jsonl");
                self.dir.join("pools").join(name)
            }
        }
    }

    /// Appends `event`, rotating its file first when it is full. Errors are logged, not returned.
    pub fn append(&self, event: &Event) {
        let path = self.file_for(event.policy.as_deref());
        if let Err(e) = self.try_append(&path, event) {
            let mut failed = self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if failed.insert(path.clone()) {
                warn!(file = %path.display(), error = %e, "cannot write the activity log (further errors for this file are not logged)");
            }
        }
    }

    fn try_append(&self, path: &Path, event: &Event) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if fs::metadata(path).is_ok_and(|m| m.len() + line.len() as u64 > self.max_bytes) {
            fs::rename(path, rotated(path))?;
        }
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(&line)
    }

    /// Events at or after `since`, oldest first; one pool's, or every pool's and the daemon's.
    pub fn read(&self, policy: Option<&str>, since: Option<Timestamp>) -> Vec<Event> {
        let files: Vec<PathBuf> = match policy {
            Some(p) => vec![self.file_for(Some(p))],
            None => {
                let mut v = vec![self.dir.join(DAEMON_FILE)];
                if let Ok(rd) = fs::read_dir(self.dir.join("pools")) {
                    v.extend(
                        rd.filter_map(Result::ok)
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|x| x == "jsonl")),
                    );
                }
                v
            }
        };
        let mut out = Vec::new();
        for f in files {
            for path in [rotated(&f), f] {
                let Ok(file) = fs::File::open(&path) else { continue };
                for line in BufReader::new(file).lines().map_while(Result::ok) {
                    // A partial last line (a crash mid-write) or a foreign line is skipped.
                    if let Ok(e) = serde_json::from_str::<Event>(&line)
                        && since.is_none_or(|s| e.at >= s)
                    {
                        out.push(e);
                    }
                }
            }
        }
        out.sort_by_key(|e| e.at);
        out
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// The changes one evaluation made, compared with the pool's previous decision: an action
/// (with its outcomes), a floor engaged or released.
pub fn log_evaluation(
    log: &ActivityLog,
    d: &vmscaler_engine::Decision,
    entry: &DecisionEntry,
    previous: Option<&DecisionEntry>,
) {
    let pool = Some(d.policy.as_str());
    let before = previous.and_then(|p| p.prewarm.as_deref());
    let now_rule = entry.prewarm.as_deref();
    if before != now_rule {
        if let Some(rule) = before {
            log.append(&Event::new(d.at, pool, "floor_released", format!("pre-warm rule {rule:?} no longer holds")));
        }
        if let (Some(rule), Some(f)) = (now_rule, &d.floor) {
            let what = if f.ramping { "ramping" } else { "holding" };
            let message = format!(
                "pre-warm rule {rule:?} {what} a floor of {} (event {} to {})",
                f.capacity, f.event_start, f.event_end
            );
            log.append(&Event::new(d.at, pool, "floor_engaged", message));
        }
    }
    // Held back by a pause: logged once per change of what was wanted, not every evaluation.
    let held_back =
        |e: &DecisionEntry| !e.outcomes.is_empty() && e.outcomes.iter().all(|o| o.starts_with("not acted on"));
    let repeated = previous.is_some_and(|p| held_back(p) && (p.current, p.desired) == (entry.current, entry.desired));
    let quiet = held_back(entry) && repeated;
    if !d.actions.is_empty() && !quiet {
        let verb = if d.desired > d.current { "scale up" } else { "scale down" };
        let mut e = Event::new(
            d.at,
            pool,
            if held_back(entry) { "not_acted_on" } else { "action" },
            format!("{verb}: {} -> {}; {}", d.current, d.desired, entry.reasons.join("; ")),
        );
        e.dry_run = entry.dry_run;
        e.current = Some(d.current);
        e.desired = Some(d.desired);
        e.outcomes.clone_from(&entry.outcomes);
        log.append(&e);
    }
}

/// What a reload changed.
pub fn log_reload(log: &ActivityLog, r: &crate::daemon::ReloadReport, now: Timestamp) {
    for (names, kind, what) in [
        (&r.added, "policy_added", "policy added"),
        (&r.updated, "policy_updated", "policy updated"),
        (&r.removed, "policy_removed", "policy removed: no longer evaluated"),
        (&r.kept, "policy_rejected", "policy file rejected: the last good version keeps running"),
    ] {
        for n in names {
            log.append(&Event::new(now, Some(n), kind, what));
        }
    }
    for (file, first) in &r.rejected {
        log.append(&Event::new(now, None, "policy_rejected", format!("{}: {first}", file.display())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmscaler-activity-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_floor_is_logged_when_it_engages_and_when_it_is_released_not_in_between() {
        let d = dir("floors");
        let log = ActivityLog::open(&d);
        let p = vmscaler_engine::policy::parse_policy(
            "t.yaml",
            "name: web\npool: {tag: {key: pool, value: web}}\nmin: 2\nmax: 20\nmetrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}\nprewarm:\n  - {name: promo, start: 2026-12-03T12:00, duration: 1h, time_zone: UTC, capacity: 8}\n",
        )
        .policy
        .unwrap();
        let fleet = vmscaler_engine::Fleet::Group(vmscaler_engine::GroupState {
            name: "g".into(),
            min: 0,
            max: 50,
            desired: 8,
            in_service: 8,
            activity_in_progress: false,
        });
        let h = vmscaler_engine::PoolHistory::default();
        let mut previous: Option<DecisionEntry> = None;
        for t in ["2026-12-03T11:50:00Z", "2026-12-03T12:10:00Z", "2026-12-03T12:20:00Z", "2026-12-03T13:10:00Z"] {
            let d = vmscaler_engine::decide(&p, &h, &fleet, t.parse().unwrap());
            let entry = DecisionEntry {
                policy: "web".into(),
                at: d.at,
                current: d.current,
                desired: d.desired,
                score: d.score,
                proposal: d.proposal,
                reasons: d.reasons(),
                outcomes: vec![],
                dry_run: false,
                prewarm: d.floor.as_ref().map(|f| f.rule.clone()),
                shortfall: 0,
                next_evaluation: d.next_evaluation,
            };
            log_evaluation(&log, &d, &entry, previous.as_ref());
            previous = Some(entry);
        }
        let kinds: Vec<String> = log.read(Some("web"), None).into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["floor_engaged", "floor_released"]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn appends_reads_back_filters_and_rotates_within_its_bound() {
        let d = dir("rotate");
        let log = ActivityLog::with_limit(&d, 2_000);
        let t0: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        for i in 0..100 {
            let at = t0 + jiff::SignedDuration::from_mins(i);
            log.append(&Event::new(at, Some("web"), "action", format!("scale up {i}")));
        }
        log.append(&Event::new(t0, None, "policy_rejected", "bad.yaml"));
        log.append(&Event::new(t0, Some("api"), "paused", "by ops"));
        let pools = d.join("activity").join("pools");
        let size = |p: &str| fs::metadata(pools.join(p)).map(|m| m.len()).unwrap_or(0);
        assert!(size("web.jsonl") <= 2_000 && size("web.jsonl.1") <= 2_000, "bounded");
        let web = log.read(Some("web"), None);
        // Two generations: the newest events, in order, none lost between the two files.
        assert!(web.len() > 20 && web.len() < 100, "{}", web.len());
        assert_eq!(web.last().unwrap().message, "scale up 99");
        assert!(web.windows(2).all(|w| w[0].at < w[1].at));
        let since = log.read(Some("web"), Some(t0 + jiff::SignedDuration::from_mins(95)));
        assert_eq!(since.len(), 5);
        let all = log.read(None, None);
        assert!(all.iter().any(|e| e.kind == "policy_rejected") && all.iter().any(|e| e.kind == "paused"));
        // A partial last line (a crash mid-write) is skipped.
        let mut f = OpenOptions::new().append(true).open(pools.join("api.jsonl")).unwrap();
        f.write_all(b"{\"at\":\"2026-12").unwrap();
        assert_eq!(log.read(Some("api"), None).len(), 1);
        let _ = fs::remove_dir_all(&d);
    }
}
