//! The only place vmscaler reads the system clock.
//!
//! Everything else receives `now` as an argument (the engine) or asks a [`Clock`], so tests and
//! the backtest can drive time themselves. [`later`] is the daemon's saturating `t + d`.

use jiff::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Monotonic instants for measuring elapsed time (timeouts, CPU budgets, benchmarks).
#[allow(clippy::disallowed_methods)]
pub fn monotonic() -> std::time::Instant {
    std::time::Instant::now()
}

/// `t + d` at full precision, saturating at the end of time (a due date or an expiry that far
/// away simply never comes).
pub fn later(t: Timestamp, d: std::time::Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}
