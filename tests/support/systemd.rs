//! `systemd-analyze security --offline=yes` on a unit file, for the hardening checks.

use std::path::Path;
use std::process::Command;

/// The unit's overall exposure level, or `None` when `systemd-analyze` is not installed.
/// Panics with the tool's output when it ran but printed no figure.
pub fn exposure(unit: &Path) -> Option<f64> {
    let out = Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(unit).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let figure = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for vmscaler.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
    Some(figure.unwrap_or_else(|| panic!("no exposure figure in:\n{text}\n{}", String::from_utf8_lossy(&out.stderr))))
}
