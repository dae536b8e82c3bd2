//! The formats vmscaler writes for its future self and for other hosts, versioned and kept
//! apart from the engine's types: the per-pool state file (version 1) and the lease handover
//! (version 1). The engine's `PoolHistory`, `EvalRecord` and `Action` are converted at this
//! edge, so a change to the engine is never silently a change of format: a new field or
//! meaning here is a new version, and the old one keeps loading (its files are kept as
//! fixtures in `tests/data/state/`).
//!
//! Not here: where files live and how they are written (see [`crate::state`]).

use std::collections::{BTreeMap, VecDeque};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use vmscaler_engine::{Action, Direction, EvalRecord, Forecaster, PoolCycle, PoolHistory, Sample};

use crate::state::{DecisionEntry, Drain, Intent, PoolState};

/// The state file's format version this release writes (and the only one it reads: the first).
pub const STATE_VERSION: u32 = 1;

/// The lease handover's format version this release writes.
pub const HANDOVER_VERSION: u32 = 1;

/// Just enough of any state file to tell its version and owner.
#[derive(Debug, Deserialize)]
pub struct StateProbe {
    pub version: u32,
    pub policy: String,
}

/// `<state_dir>/pools/<policy>.json`, version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFileV1 {
    pub version: u32,
    pub policy: String,
    pub saved_at: Timestamp,
    pub history: HistoryV1,
    /// Oldest first.
    pub decisions: VecDeque<DecisionEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<IntentV1>,
    /// The pool's demand in 5-minute slots and its fitted forecast model (`predictive:`), so a
    /// restart keeps what was learned. The model's own serde form (`vmscaler_engine::forecast`
    /// keeps it stable; an unreadable model sets the file aside like any corrupt field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<Forecaster>,
    /// Members on their way to being stopped, by instance id (see `crate::daemon::drain`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub draining: BTreeMap<String, Drain>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryV1 {
    /// Metric samples by metric id, oldest first.
    pub samples: BTreeMap<String, VecDeque<SampleV1>>,
    /// Evaluation records, oldest first.
    pub records: VecDeque<RecordV1>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleV1 {
    pub at: Timestamp,
    pub value: f64,
}

/// An evaluation record (see `vmscaler_engine::EvalRecord`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecordV1 {
    pub at: Timestamp,
    pub score: Option<f64>,
    pub above_band: bool,
    pub proposal: u32,
    pub current: u32,
    pub desired: u32,
    /// Absent from files written before it existed: 0.
    #[serde(default)]
    pub serving: u32,
    pub scaled: Option<DirectionV1>,
    /// Made in dry-run (absent: false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectionV1 {
    Up,
    Down,
}

/// A pending intent (see [`Intent`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntentV1 {
    pub record: RecordV1,
    pub actions: Vec<ActionV1>,
    pub entry: DecisionEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum ActionV1 {
    Start { instance_ids: Vec<String> },
    Stop { instance_ids: Vec<String> },
    SetDesiredCapacity { group: String, desired: u32 },
    CancelDrain { instance_ids: Vec<String> },
}

/// What a lease holder leaves the next one, in the lease item's `handover` attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverV1 {
    /// Absent from handovers written before versions existed: 1.
    #[serde(default = "handover_v1")]
    pub version: u32,
    /// The newest scaling record of each direction, oldest first.
    pub records: Vec<RecordV1>,
}

fn handover_v1() -> u32 {
    1
}

impl From<&EvalRecord> for RecordV1 {
    fn from(r: &EvalRecord) -> RecordV1 {
        RecordV1 {
            at: r.at,
            score: r.score,
            above_band: r.above_band,
            proposal: r.proposal,
            current: r.current,
            desired: r.desired,
            serving: r.serving,
            scaled: r.scaled.map(|d| match d {
                Direction::Up => DirectionV1::Up,
                Direction::Down => DirectionV1::Down,
            }),
            dry_run: r.dry_run,
        }
    }
}

impl From<RecordV1> for EvalRecord {
    fn from(r: RecordV1) -> EvalRecord {
        EvalRecord {
            at: r.at,
            score: r.score,
            above_band: r.above_band,
            proposal: r.proposal,
            current: r.current,
            desired: r.desired,
            serving: r.serving,
            scaled: r.scaled.map(|d| match d {
                DirectionV1::Up => Direction::Up,
                DirectionV1::Down => Direction::Down,
            }),
            dry_run: r.dry_run,
        }
    }
}

impl From<&Action> for ActionV1 {
    fn from(a: &Action) -> ActionV1 {
        match a {
            Action::Start { instance_ids } => ActionV1::Start { instance_ids: instance_ids.clone() },
            Action::Stop { instance_ids } => ActionV1::Stop { instance_ids: instance_ids.clone() },
            Action::SetDesiredCapacity { group, desired } => {
                ActionV1::SetDesiredCapacity { group: group.clone(), desired: *desired }
            }
            Action::CancelDrain { instance_ids } => ActionV1::CancelDrain { instance_ids: instance_ids.clone() },
        }
    }
}

impl From<ActionV1> for Action {
    fn from(a: ActionV1) -> Action {
        match a {
            ActionV1::Start { instance_ids } => Action::Start { instance_ids },
            ActionV1::Stop { instance_ids } => Action::Stop { instance_ids },
            ActionV1::SetDesiredCapacity { group, desired } => Action::SetDesiredCapacity { group, desired },
            ActionV1::CancelDrain { instance_ids } => Action::CancelDrain { instance_ids },
        }
    }
}

impl From<&PoolHistory> for HistoryV1 {
    fn from(h: &PoolHistory) -> HistoryV1 {
        HistoryV1 {
            samples: h
                .samples()
                .iter()
                .map(|(id, s)| (id.clone(), s.iter().map(|s| SampleV1 { at: s.at, value: s.value }).collect()))
                .collect(),
            records: h.records().iter().map(RecordV1::from).collect(),
        }
    }
}

impl From<HistoryV1> for PoolHistory {
    fn from(h: HistoryV1) -> PoolHistory {
        PoolHistory::from_parts(
            h.samples
                .into_iter()
                .map(|(id, s)| (id, s.into_iter().map(|s| Sample { at: s.at, value: s.value }).collect())),
            h.records.into_iter().map(EvalRecord::from),
        )
    }
}

impl From<&PoolState> for StateFileV1 {
    fn from(s: &PoolState) -> StateFileV1 {
        StateFileV1 {
            version: STATE_VERSION,
            policy: s.policy.clone(),
            saved_at: s.saved_at,
            history: HistoryV1::from(s.cycle.history()),
            decisions: s.decisions.clone(),
            intent: s.intent.as_ref().map(|i| IntentV1 {
                record: RecordV1::from(&i.record),
                actions: i.actions.iter().map(ActionV1::from).collect(),
                entry: i.entry.clone(),
            }),
            forecast: s.cycle.forecaster().cloned(),
            draining: s.draining.clone(),
        }
    }
}

impl From<StateFileV1> for PoolState {
    fn from(f: StateFileV1) -> PoolState {
        PoolState {
            policy: f.policy,
            saved_at: f.saved_at,
            cycle: PoolCycle::restore(f.history.into(), f.forecast),
            decisions: f.decisions,
            intent: f.intent.map(|i| Intent {
                record: i.record.into(),
                actions: i.actions.into_iter().map(Action::from).collect(),
                entry: i.entry,
            }),
            draining: f.draining,
        }
    }
}

impl HandoverV1 {
    /// The handover of `records` (see `PoolCycle::handover`) as the lease item carries it.
    pub fn text(records: &[EvalRecord]) -> String {
        let h = HandoverV1 { version: HANDOVER_VERSION, records: records.iter().map(RecordV1::from).collect() };
        serde_json::to_string(&h).unwrap_or_default()
    }

    /// The records a handover carries; an error names what is wrong with it.
    pub fn parse(text: &str) -> Result<Vec<EvalRecord>, String> {
        let h: HandoverV1 = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if h.version != HANDOVER_VERSION {
            return Err(format!("handover version {} is not {HANDOVER_VERSION}", h.version));
        }
        Ok(h.records.into_iter().map(EvalRecord::from).collect())
    }
}
