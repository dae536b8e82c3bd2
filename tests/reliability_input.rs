//! Bad input to the running daemon, driven tick by tick against moto: a policy directory that
//! disappears, turns into a file or becomes unreadable (the daemon keeps its last good
//! policies and keeps evaluating them), two policies that claim the same instances (rejected
//! with both files named, never two policies acting on one pool), an unknown time zone, a wall
//! clock stepping back an hour and forward a week (evaluated at once, no action twice), and a
//! pool with no instance at all.
//!
//! Not here: metric values, timestamps and clock jumps through the engine (see
//! `crates/engine/src/decide/bad_input_tests.rs`), and fuzzing (`fuzz/`).

use std::path::Path;

use jiff::ToSpan;
use vmscaler::daemon::Daemon;

use crate::daemon_loop::{FAST_SCALING, Scratch, base_time, daemon, put_cpu, tagged_policy};
use crate::support::Moto;

fn names(d: &Daemon) -> Vec<String> {
    d.policies().iter().map(|p| p.name.clone()).collect()
}

/// Runs one tick at `now` and returns the policies it evaluated.
async fn evaluated(d: &mut Daemon, now: jiff::Timestamp) -> Vec<String> {
    d.tick(now).await.evaluated
}

/// The policy directory is removed, then comes back: in between, every policy keeps running at
/// its last good version and the directory is reported; afterwards nothing is left reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_dir_removed_while_running_keeps_last_good_policies() {
    let moto = Moto::start();
    let web = moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 2, 0, None).await;
    let s = Scratch::new("rel-dir-gone");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    assert_eq!(evaluated(&mut d, t0).await, ["web"]);

    std::fs::remove_dir_all(s.policies()).expect("rm policies");
    let rep = d.reload(t0 + 10.seconds());
    assert_eq!(rep.rejected.len(), 1, "{rep:?}");
    assert_eq!(rep.rejected[0].0, s.policies());
    assert!(rep.rejected[0].1.contains("cannot read"), "{rep:?}");
    assert!(rep.removed.is_empty() && rep.added.is_empty() && rep.updated.is_empty(), "{rep:?}");
    assert_eq!(names(&d), ["web"], "last good policies kept");
    let board = d.board().snapshot();
    assert!(board.invalid_files.contains_key(&s.policies().display().to_string()), "{:?}", board.invalid_files);

    // Still evaluated, and still acting: high load starts a stopped member.
    put_cpu(&moto, &web.running, t0 + 60.seconds(), 3, 95.0).await;
    let r = d.tick(t0 + 60.seconds()).await;
    assert_eq!(r.evaluated, ["web"]);
    assert_eq!(r.decisions[0].desired, 2, "{r:?}");

    // A second reload while it is still gone changes nothing either.
    let rep = d.reload(t0 + 70.seconds());
    assert_eq!(rep.rejected.len(), 1);
    assert_eq!(names(&d), ["web"]);

    // Back: the same file is no change, and the directory is no longer reported.
    std::fs::create_dir_all(s.policies()).expect("mkdir");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let rep = d.reload(t0 + 80.seconds());
    assert_eq!(rep, vmscaler::daemon::ReloadReport::default(), "nothing changed");
    assert!(d.board().snapshot().invalid_files.is_empty());
    assert_eq!(names(&d), ["web"]);
}

/// The policy path becomes a regular file (a botched deploy), then a directory without read
/// permission: both are unreadable directories, and both keep the last good policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_dir_unreadable_while_running_keeps_last_good_policies() {
    let moto = Moto::start();
    let _web = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 0, 0, None).await;
    let _api = moto.create_tagged_pool(("vmscaler:pool", "api"), 1, 0, 0, None).await;
    let s = Scratch::new("rel-dir-unreadable");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    s.write_policy("api.yaml", &tagged_policy("api", FAST_SCALING));
    let t0 = base_time();
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    assert_eq!(evaluated(&mut d, t0).await, ["api", "web"]);

    // A regular file where the directory was.
    std::fs::remove_dir_all(s.policies()).expect("rm policies");
    std::fs::write(s.policies(), "name: not-a-directory\n").expect("write file");
    let rep = d.reload(t0 + 10.seconds());
    assert_eq!(rep.rejected.len(), 1, "{rep:?}");
    assert_eq!(rep.rejected[0].0, s.policies());
    assert_eq!(names(&d), ["api", "web"]);
    assert_eq!(evaluated(&mut d, t0 + 60.seconds()).await, ["api", "web"]);
    std::fs::remove_file(s.policies()).expect("rm file");

    // A directory that cannot be listed. Root reads it anyway: then the check says so and
    // the daemon simply reloads (nothing changed).
    std::fs::create_dir_all(s.policies()).expect("mkdir");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    s.write_policy("api.yaml", &tagged_policy("api", FAST_SCALING));
    set_mode(&s.policies(), 0o000);
    let listable = std::fs::read_dir(s.policies()).is_ok();
    let rep = d.reload(t0 + 70.seconds());
    set_mode(&s.policies(), 0o755);
    if listable {
        assert!(rep.rejected.is_empty(), "root can list a mode-000 directory: {rep:?}");
    } else {
        assert_eq!(rep.rejected.len(), 1, "{rep:?}");
        assert!(rep.rejected[0].1.contains("ermission denied"), "{rep:?}");
    }
    assert_eq!(names(&d), ["api", "web"]);
    assert_eq!(evaluated(&mut d, t0 + 120.seconds()).await, ["api", "web"]);
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A second file claiming a running pool is rejected with both files named, whichever sorts
/// first, and the pool is never run by two policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_policies_claiming_the_same_instances_on_reload() {
    let moto = Moto::start();
    let _web = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 2, 0, None).await;
    let s = Scratch::new("rel-claim");
    let t0 = base_time();
    // The running policy's file sorts before the newcomer's...
    s.write_policy("a-web.yaml", &tagged_policy("web", FAST_SCALING));
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    assert_eq!(evaluated(&mut d, t0).await, ["web"]);
    let copy = tagged_policy("web", FAST_SCALING).replace("name: web", "name: web-copy");
    s.write_policy("z-copy.yaml", &copy);
    let rep = d.reload(t0 + 10.seconds());
    assert_eq!(rep.rejected.len(), 1, "{rep:?}");
    let (file, msg) = &rep.rejected[0];
    assert!(file.ends_with("z-copy.yaml"), "{rep:?}");
    assert!(
        msg.contains("z-copy.yaml:1:1: pool: instances tagged vmscaler:pool=web are already claimed by")
            && msg.contains("a-web.yaml"),
        "both files named: {msg}"
    );
    assert_eq!(names(&d), ["web"]);
    assert_eq!(evaluated(&mut d, t0 + 60.seconds()).await, ["web"]);

    // ...and after it: the newcomer sorts first, and is still the one rejected (issue 10,
    // finding 3): a new file never takes a running pool.
    std::fs::remove_file(s.policies().join("z-copy.yaml")).expect("rm");
    s.write_policy("0-copy.yaml", &copy);
    let rep = d.reload(t0 + 70.seconds());
    assert_eq!(rep.rejected.len(), 1, "{rep:?}");
    let (file, msg) = &rep.rejected[0];
    assert!(file.ends_with("0-copy.yaml"), "{rep:?}");
    assert!(msg.contains("already claimed by") && msg.contains("a-web.yaml"), "both files named: {msg}");
    assert!(rep.added.is_empty() && rep.removed.is_empty() && rep.kept.is_empty(), "{rep:?}");
    assert_eq!(names(&d), ["web"]);
    let claimants = d.policies().len();
    assert_eq!(claimants, 1, "one pool, one policy: {:?} ({rep:?})", names(&d));
    let r = d.tick(t0 + 120.seconds()).await;
    assert_eq!(r.evaluated.len(), 1, "{:?}", r.evaluated);
    assert_eq!(r.decisions.len(), 1, "{r:?}");
}

/// A policy with an unknown time zone, added while running, is rejected with its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_time_zone_on_reload_is_rejected_with_its_line() {
    let moto = Moto::start();
    let _web = moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 0, 0, None).await;
    let s = Scratch::new("rel-tz");
    let file = s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    let prewarm = "prewarm:
  - name: launch
    start: 2026-12-01T09:00
    duration: 2h
    time_zone: Europe/Atlantis
    capacity: 3
";
    std::fs::write(&file, tagged_policy("web", &format!("{FAST_SCALING}{prewarm}"))).expect("write");
    let rep = d.reload(t0 + 10.seconds());
    assert_eq!(rep.kept, ["web"], "{rep:?}");
    let msg = &rep.rejected[0].1;
    assert!(msg.contains("web.yaml:") && msg.contains("time_zone"), "{msg}");
    assert!(msg.contains("\"Europe/Atlantis\" is not an IANA time zone"), "{msg}");
    assert!(d.policy("web").is_some_and(|p| p.prewarm.is_empty()), "the last good version runs");
}

/// The wall clock steps back an hour (an NTP step after a suspend), then forward a week: the
/// pool is evaluated at once each time (not an hour later, when the clock catches up with the
/// schedule), and the scale-up made before the step back is not made again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_steps_back_and_forward_keep_evaluating_without_acting_twice() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 6, 0, None).await;
    let s = Scratch::new("rel-clock");
    // Target 20 %: 90 % CPU asks for more than max at any time, so only guards hold it.
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING).replace("target: 50", "target: 20"));
    let t0 = base_time();
    let back = t0 - 1.hour();
    put_cpu(&moto, &pool.running, t0, 5, 90.0).await;
    put_cpu(&moto, &pool.running, back, 5, 90.0).await;
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    let running =
        |states: &std::collections::BTreeMap<String, String>| states.values().filter(|s| *s == "running").count();
    let r = d.tick(t0).await;
    assert_eq!((r.decisions[0].current, r.decisions[0].desired), (2, 4), "step limit 100 %: {r:?}");
    assert_eq!(running(&moto.instance_states().await), 4);

    // An hour back, the load as high: evaluated now, held by the cooldown of the scale-up made
    // "later", no second start.
    let r = d.tick(back).await;
    assert_eq!(r.evaluated, ["web"], "a clock stepped back must not stall the pool: {r:?}");
    let e = &r.decisions[0];
    assert_eq!((e.current, e.desired), (4, 4), "{e:?}");
    assert!(e.reasons.iter().any(|r| r.contains("scale-up cooldown")), "{:?}", e.reasons);
    assert_eq!(r.next_due, Some(back + 60.seconds()), "the schedule restarts from the new time");
    let r = d.tick(back + 60.seconds()).await;
    assert_eq!(r.evaluated, ["web"]);
    assert_eq!(r.decisions[0].desired, 4, "{r:?}");
    assert_eq!(running(&moto.instance_states().await), 4, "nothing started twice");

    // A week forward: no datapoint that recent, so missing data holds (never scales in).
    let week = t0 + 168.hours();
    let r = d.tick(week).await;
    assert_eq!(r.evaluated, ["web"]);
    assert_eq!((r.decisions[0].current, r.decisions[0].desired), (4, 4), "{r:?}");
    assert!(r.decisions[0].reasons.iter().any(|r| r.contains("no data")), "{:?}", r.decisions[0].reasons);
    assert_eq!(r.next_due, Some(week + 60.seconds()));
    assert_eq!(running(&moto.instance_states().await), 4);
}

/// A policy whose tag matches no instance at all: evaluated, min reported as a shortfall of
/// the warm pool, nothing started, and degraded (issue 10, finding 9: a wrong tag or region
/// must not look healthy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_pool_is_evaluated_and_reports_the_shortfall() {
    let moto = Moto::start();
    let _other = moto.create_tagged_pool(("vmscaler:pool", "other"), 1, 1, 0, None).await;
    let s = Scratch::new("rel-empty");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    let before = moto.instance_states().await;
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    for k in 0..3 {
        let r = d.tick(t0 + (60 * k).seconds()).await;
        assert_eq!(r.evaluated, ["web"]);
        let e = &r.decisions[0];
        assert_eq!((e.current, e.desired, e.shortfall), (0, 1, 1), "min 1, nothing to start: {e:?}");
        assert!(e.outcomes.is_empty(), "{:?}", e.outcomes);
    }
    let board = d.board().snapshot();
    assert_eq!(board.degraded_pools(), ["web"]);
    assert!(board.pools["web"].warnings.iter().any(|w| w.contains("no instance carries the pool's tag")), "{board:?}");
    assert_eq!(moto.instance_states().await, before, "no instance touched");
}
