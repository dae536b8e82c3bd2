//! The systemd unit and the example configuration shipped in `systemd/`.

use vmscaler::config::Config;

use crate::support::repo_path;

#[test]
fn unit_is_notify_with_watchdog_reload_and_state_directory() {
    let unit = std::fs::read_to_string(repo_path("systemd/vmscaler.service")).expect("unit file");
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=vmscaler",
        "WatchdogSec=",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "missing {line:?}");
    }
}

#[test]
fn unit_hardening_exposure_is_at_most_2() {
    let unit = repo_path("systemd/vmscaler.service");
    let Some(exposure) = crate::support::systemd::exposure(&unit) else {
        eprintln!("skipped: systemd-analyze is not available; install systemd to run this check");
        return;
    };
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0");
}

#[test]
fn example_config_is_valid() {
    let cfg = Config::load(&repo_path("systemd/vmscaler.yaml")).expect("example config parses");
    assert_eq!(cfg.state_dir, std::path::PathBuf::from("/var/lib/vmscaler"));
    assert_eq!(cfg.listen, Some("127.0.0.1:9464".parse().expect("addr")));
    assert!(!cfg.dry_run);
}
