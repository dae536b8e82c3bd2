//! Persisted per-pool state: the history window and the recent decisions.
//!
//! One JSON file per policy in the state directory (`<state_dir>/pools/<policy>.json`), written
//! atomically (temporary file, fsync, rename, fsync of the directory) so a crash leaves either
//! the old or the new version, never a torn one. A file that does not parse is renamed aside to
//! `<file>.corrupt-<unix seconds>` and reported; the pool then starts from an empty history
//! rather than stopping the daemon. Anything but a regular file in its place (a FIFO, a
//! directory, a socket) is set aside the same way without being opened, so it cannot block
//! start-up. A state directory deleted under the running daemon is recreated by the next save.
//!
//! The file's format is [`crate::formats::StateFileV1`], converted to and from the
//! in-memory [`PoolState`] here: the engine's types are never written as they are.
//!
//! Not here: deciding what to keep (the pool's `PoolCycle` prunes its history) or reading
//! the clock (callers pass `now`).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use vmscaler_engine::{Action, EvalRecord, PoolCycle};

/// Version of the state file format; files of another version are set aside like corrupt ones.
pub use crate::formats::STATE_VERSION;
use crate::formats::{StateFileV1, StateProbe};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is corrupt ({reason}); moved aside to {moved_to}")]
    Corrupt { path: PathBuf, reason: String, moved_to: PathBuf },
    #[error("{path} is corrupt ({reason}) and could not be moved aside: {source}")]
    CorruptStuck { path: PathBuf, reason: String, source: std::io::Error },
}

/// One decision as kept for `/v1/decisions`, `vmscaler status` and the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEntry {
    pub policy: String,
    pub at: Timestamp,
    pub current: u32,
    pub desired: u32,
    pub score: Option<f64>,
    pub proposal: u32,
    /// The engine's reasons, in order.
    pub reasons: Vec<String>,
    /// What was done (or would have been, in dry-run), one line per outcome.
    pub outcomes: Vec<String>,
    pub dry_run: bool,
    /// Name of the pre-warm rule holding a floor, if any.
    pub prewarm: Option<String>,
    pub shortfall: u32,
    pub next_evaluation: Timestamp,
}

/// Everything persisted for one pool (written as [`StateFileV1`]).
#[derive(Debug, Clone)]
pub struct PoolState {
    pub policy: String,
    pub saved_at: Timestamp,
    /// The pool's history and forecast model, and the only way to advance them.
    pub cycle: PoolCycle,
    /// Oldest first.
    pub decisions: VecDeque<DecisionEntry>,
    /// A decision whose actions were being carried out: written before the first mutating
    /// call, cleared once the outcome is recorded. Found at the pool's next evaluation (after
    /// a crash, or actions that outlasted the budget), it is reconciled with the fleet as
    /// described then (see [`Intent`]).
    pub intent: Option<Intent>,
    /// Members taken out of their load balancer target groups on the way to being stopped,
    /// by instance id (see `crate::daemon::drain`).
    pub draining: BTreeMap<String, Drain>,
}

/// One member's drain: deregistered at `since`, stopped once its target groups show it drained
/// or the drain timeout has passed, whichever comes first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    pub since: Timestamp,
    /// Its private IPv4 address, once known (`ip` target groups, the pre-stop hook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
}

/// What a pool was about to do, persisted before doing it (a write-ahead record).
///
/// A crash between this write and the recording of the outcome leaves the intent in the state
/// file. The next evaluation records it as decided, cooldown included, and lists each action
/// as confirmed or unconfirmed by the fleet; what did not happen is decided again once the
/// cooldown is over (a request from the stopped run may still be in flight). So an action is
/// never repeated, and never lost for good.
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    /// The decision's record as decided (`desired`, `scaled`), before any outcome.
    pub record: EvalRecord,
    /// The actions about to be carried out.
    pub actions: Vec<Action>,
    /// The decision as it would have been listed.
    pub entry: DecisionEntry,
}

impl PoolState {
    pub fn new(policy: &str, now: Timestamp) -> PoolState {
        PoolState {
            policy: policy.to_owned(),
            saved_at: now,
            cycle: PoolCycle::new(),
            decisions: VecDeque::new(),
            intent: None,
            draining: BTreeMap::new(),
        }
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Opens (creating if needed) `<state_dir>/pools`.
    pub fn open(state_dir: &Path) -> Result<StateStore, StateError> {
        let dir = state_dir.join("pools");
        fs::create_dir_all(&dir).map_err(|source| StateError::Dir { path: dir.clone(), source })?;
        Ok(StateStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `policy`'s state. Names are escaped so any policy name maps to one
    /// plain file inside the directory.
    pub fn path_for(&self, policy: &str) -> PathBuf {
        let mut name = String::with_capacity(policy.len() + 5);
        for b in policy.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                name.push(char::from(b));
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        name.push_str(".json");
        self.dir.join(name)
    }

    /// The temporary file [`StateStore::save`] writes before renaming it over
    /// [`StateStore::path_for`]; one left behind means a save was interrupted.
    pub fn temp_path_for(&self, policy: &str) -> PathBuf {
        let mut tmp = self.path_for(policy).into_os_string();
        tmp.push(".tmp");
        PathBuf::from(tmp)
    }

    /// Loads `policy`'s state; `Ok(None)` when there is none yet. A corrupt file is renamed
    /// aside (suffix `.corrupt-<unix seconds of now>`) and reported as [`StateError::Corrupt`].
    pub fn load(&self, policy: &str, now: Timestamp) -> Result<Option<PoolState>, StateError> {
        let path = self.path_for(policy);
        // Reading a FIFO would block until a writer came: look before opening.
        match fs::metadata(&path) {
            Ok(m) if !m.is_file() => {
                let reason = format!("not a regular file but {}", file_kind(&m.file_type()));
                return Err(set_aside(path, reason, now));
            }
            _ => {}
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let reason = match serde_json::from_slice::<StateProbe>(&bytes) {
            Ok(p) if p.version != STATE_VERSION => format!("unknown version {}", p.version),
            Ok(p) if p.policy != policy => format!("belongs to policy {:?}", p.policy),
            Ok(_) => match serde_json::from_slice::<StateFileV1>(&bytes) {
                Ok(file) => return Ok(Some(file.into())),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        Err(set_aside(path, reason, now))
    }

    /// Writes `state` atomically: temporary file, fsync, rename over the old file, fsync dir.
    pub fn save(&self, state: &PoolState) -> Result<(), StateError> {
        let path = self.path_for(&state.policy);
        let bytes = serde_json::to_vec(&StateFileV1::from(state))
            .map_err(|e| StateError::Write { path: path.clone(), source: std::io::Error::other(e) })?;
        let tmp = self.temp_path_for(&state.policy);
        // A FIFO in the temporary file's place would block the write: remove it first.
        if fs::symlink_metadata(&tmp).is_ok_and(|m| !m.is_file()) {
            let _ = fs::remove_file(&tmp).or_else(|_| fs::remove_dir_all(&tmp));
        }
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        let result = match write() {
            // The directory was deleted under the daemon: recreate it and write again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.dir.is_dir() => {
                fs::create_dir_all(&self.dir).and_then(|()| write())
            }
            r => r,
        };
        result.map_err(|source| {
            let _ = fs::remove_file(&tmp);
            StateError::Write { path, source }
        })
    }

    /// Policies with a state file, for diagnostics.
    pub fn list(&self) -> Vec<PathBuf> {
        let Ok(rd) = fs::read_dir(&self.dir) else { return vec![] };
        let mut out: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        out.sort();
        out
    }
}

/// Renames `path` aside to `<path>.corrupt-<unix seconds of now>`.
fn set_aside(path: PathBuf, reason: String, now: Timestamp) -> StateError {
    let mut moved_to = path.clone().into_os_string();
    moved_to.push(format!(".corrupt-{}", now.as_second()));
    let moved_to = PathBuf::from(moved_to);
    match fs::rename(&path, &moved_to) {
        Ok(()) => StateError::Corrupt { path, reason, moved_to },
        Err(source) => StateError::CorruptStuck { path, reason, source },
    }
}

fn file_kind(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmscaler_engine::Sample;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmscaler-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    #[test]
    fn round_trip_and_no_temp_left() {
        let d = tmpdir("rt");
        let store = StateStore::open(&d).expect("open");
        assert!(store.load("web pool/1", ts(100)).expect("load").is_none());
        let mut st = PoolState::new("web pool/1", ts(100));
        st.cycle.observe("cpu", Sample { at: ts(90), value: 42.0 });
        store.save(&st).expect("save");
        st.cycle.observe("cpu", Sample { at: ts(95), value: 43.0 });
        store.save(&st).expect("save again");
        let back = store.load("web pool/1", ts(200)).expect("load").expect("some");
        assert_eq!(StateFileV1::from(&back), StateFileV1::from(&st));
        let names: Vec<String> = fs::read_dir(store.dir())
            .expect("rd")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["web%20pool%2F1.json"]);
        let _ = fs::remove_dir_all(&d);
    }

    /// Finding 8: the state directory deleted under the daemon is recreated by the next save.
    #[test]
    fn a_vanished_directory_is_recreated() {
        let d = tmpdir("vanished");
        let store = StateStore::open(&d).expect("open");
        fs::remove_dir_all(&d).expect("rm");
        store.save(&PoolState::new("web", ts(1))).expect("saved after recreating the directory");
        assert!(store.load("web", ts(2)).expect("load").is_some());
        let _ = fs::remove_dir_all(&d);
    }

    /// Finding 11: a FIFO in place of a state file (or of its temporary file) is set aside with
    /// a clear error and never blocks.
    #[test]
    fn a_fifo_is_set_aside_not_opened() {
        let d = tmpdir("fifo");
        let store = StateStore::open(&d).expect("open");
        let path = store.path_for("web");
        let made = std::process::Command::new("mkfifo").arg(&path).status().expect("mkfifo");
        assert!(made.success());
        let err = store.load("web", ts(77)).expect_err("a FIFO");
        assert!(err.to_string().contains("not a regular file but a FIFO"), "{err}");
        assert!(store.dir().join("web.json.corrupt-77").exists());
        let made = std::process::Command::new("mkfifo").arg(store.temp_path_for("web")).status().expect("mkfifo");
        assert!(made.success());
        store.save(&PoolState::new("web", ts(78))).expect("save goes around a FIFO left as the temporary file");
        assert!(store.load("web", ts(79)).expect("load").is_some());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let d = tmpdir("corrupt");
        let store = StateStore::open(&d).expect("open");
        let path = store.path_for("web");
        fs::write(&path, b"{\"version\": 1, \"polic").expect("write");
        let err = store.load("web", ts(1234)).expect_err("corrupt");
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(!path.exists());
        assert!(store.dir().join("web.json.corrupt-1234").exists());
        assert!(store.load("web", ts(1235)).expect("fresh").is_none());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_state_file_of_the_first_release_loads_with_its_cooldowns_and_intent() {
        use vmscaler_engine::Direction;
        // Written by the release before the format types existed (engine types serialized as
        // they were), through its own StateStore::save.
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/state/v1/web.json");
        let d = tmpdir("fixture");
        let store = StateStore::open(&d).expect("open");
        fs::copy(&fixture, store.path_for("web")).expect("copy");
        let st = store.load("web", ts(0)).expect("load").expect("some");
        let h = st.cycle.history();
        let at = |r: Option<&EvalRecord>| r.map(|r| r.at.to_string());
        assert_eq!(at(h.last_scaled(Direction::Up)), Some("2026-11-30T11:58:00Z".into()), "scale-up cooldown kept");
        assert_eq!(at(h.last_scaled(Direction::Down)), Some("2026-11-30T11:20:00Z".into()), "scale-down cooldown kept");
        assert_eq!((h.records().len(), h.samples()["cpu"].len(), h.samples()["queue"].len()), (4, 5, 1));
        let intent = st.intent.as_ref().expect("the intent");
        assert_eq!((intent.record.desired, intent.record.scaled), (9, Some(Direction::Up)));
        assert_eq!(intent.actions[1], Action::SetDesiredCapacity { group: "web-asg".into(), desired: 9 });
        assert_eq!(st.decisions.len(), 1);
        // Saved again, it is the same file, byte for byte: version 1 is still what is written.
        store.save(&st).expect("save");
        assert_eq!(fs::read(store.path_for("web")).expect("read"), fs::read(&fixture).expect("fixture"));
        let _ = fs::remove_dir_all(&d);
    }
}
