//! vmscaler's pure decision engine.
//!
//! Policy model and validation, scoring, the history window, pre-warm schedules, decisions
//! and the backtest simulator. **Architecture invariant:** nothing in this crate performs I/O,
//! awaits, or reads a clock: `now` is always an argument, files arrive as text, and outputs
//! are data that the caller acts on.

pub mod backtest;
pub mod calendar;
mod composite;
pub mod cycle;
pub mod decide;
pub mod duration;
pub mod fleet;
pub mod forecast;
pub mod history;
pub mod policy;
mod reasons;
pub mod schedule;

pub use cycle::{Achieved, PoolCycle};
pub use decide::{Action, AlertFloor, Bound, Decision, Reading, decide, decide_with};
pub use fleet::{Fleet, GroupState, Member, MemberState};
pub use forecast::Forecaster;
pub use history::{Direction, EvalRecord, FUTURE_TOLERANCE, PoolHistory, Sample};
pub use policy::Policy;
