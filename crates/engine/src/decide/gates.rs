//! Gates: cooldowns, confirmations, the scale-down streak and its step and cooldown. Part of [`super::decide`].

use super::*;

pub(super) fn remaining(since: Timestamp, cooldown: Duration, now: Timestamp) -> Option<u64> {
    let elapsed = now.duration_since(since);
    let cd = i128::try_from(cooldown.as_millis()).unwrap_or(i128::MAX);
    let el = elapsed.as_millis();
    (el < cd).then(|| u64::try_from((cd - el).max(0) / 1000).unwrap_or(u64::MAX).max(1))
}

/// Scale-downs since the load last rose (an evaluation above the band, or a scale-up).
pub(super) fn descent_streak(history: &PoolHistory) -> i32 {
    let n = history
        .records
        .iter()
        .rev()
        .take_while(|r| !r.above_band && r.scaled != Some(Direction::Up))
        .filter(|r| r.scaled == Some(Direction::Down))
        .count();
    i32::try_from(n.min(30)).unwrap_or(30)
}

/// How far this scale-down may go: `max_step`, times `acceleration` for every scale-down of
/// the current descent.
pub(super) fn down_step_limit(policy: &Policy, streak: i32, current: u32) -> u32 {
    let down = &policy.scaling.scale_down;
    let base = down.max_step.limit(current);
    let limit = (f64::from(base) * down.acceleration.powi(streak)).min(f64::from(current));
    // Bounded by `current` (a u32) above.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let limit = limit as u32;
    limit.max(base)
}

/// The scale-down cooldown during a descent: divided by `acceleration` for every scale-down
/// of the current descent, so a confirmed descent speeds up in pace as well as step.
pub(super) fn down_cooldown(policy: &Policy, streak: i32) -> Duration {
    let down = &policy.scaling.scale_down;
    down.cooldown.div_f64(down.acceleration.powi(streak))
}

/// Consecutive previous evaluations above the band, each within two intervals of the next.
pub(super) fn confirming_records(history: &PoolHistory, interval: Duration, now: Timestamp) -> u32 {
    let gap = interval.saturating_mul(2).max(Duration::from_secs(1));
    let mut later = now;
    let mut n = 0;
    for r in history.records.iter().rev() {
        if r.at >= later || later.duration_since(r.at).unsigned_abs() > gap || !r.above_band {
            break;
        }
        n += 1;
        later = r.at;
    }
    n
}
