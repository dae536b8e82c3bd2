//! Crashes and restarts: `vmscaler run` killed with SIGKILL over and over against moto, beside
//! an identical pool whose daemon is never killed.
//!
//! Both daemons run on a clock 60 times faster than wall time (one policy minute per second)
//! over the same recorded backlog: high for 25 minutes (the pool climbs 1 → 6, one instance
//! per 3-minute cooldown), then low (back down to 1). Each daemon talks to moto through its
//! own fault proxy that delays every `StartInstances`/`StopInstances` request before moto
//! sees it and holds moto's answer back after it acted, which opens two windows a crash can
//! land in: decided but not yet done, and done but not yet heard. Half the kills aim at those
//! windows (after a start or stop request arrives), half land at a random moment (start-up,
//! metric reads, idle, state writes).
//!
//! After every kill the state file must parse; at the end the crashed pool must have done
//! exactly what the calm one did: the same instances started and stopped once each, no
//! start of a running instance or stop of a stopped one, every scaling action at least a
//! cooldown after the previous one in its direction, an evaluation record for each action, and
//! the same final fleet.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use vmscaler::clock::{Clock, SystemClock};
use vmscaler::formats::StateFileV1;
use vmscaler::state::{PoolState, StateStore};

use crate::daemon_loop::Scratch;
use crate::support::Moto;
use crate::support::faults::{Fault, FaultConfig, FaultProxy, Transition};

/// Policy minutes per wall second.
const SCALE: i64 = 60;
/// Policy minutes of high backlog, then of low backlog until the end.
const HIGH_MINUTES: i64 = 25;
const END_MINUTE: i64 = 58;
/// Cooldown of each direction, in policy minutes (= wall seconds).
const COOLDOWN_MIN: i64 = 3;
/// How long a start/stop waits before moto sees it, and how long moto's answer is held back.
const BEFORE: Duration = Duration::from_millis(300);
const AFTER: Duration = Duration::from_millis(300);

fn policy(name: &str) -> String {
    format!(
        r#"name: {name}
pool:
  tag: {{ key: "vmscaler:pool", value: {name} }}
min: 1
max: 8
interval: 1m
metrics:
  - id: backlog
    namespace: Custom/Crash
    name: Backlog
    dimensions:
      Queue: {name}
    statistic: Maximum
    period: 1m
    target_per_instance: 10
history:
  window: 2h
  max_age: 5m
scaling:
  tolerance: 0.1
  scale_up: {{ confirmations: 1, cooldown: {COOLDOWN_MIN}m, max_step: 1 }}
  scale_down: {{ stabilization: 3m, cooldown: {COOLDOWN_MIN}m, max_step: 1, acceleration: 1 }}
scale_in:
  order: newest
scale_out:
  order: id
"#
    )
}

/// Backlog at policy minute `m` after the origin: 6 instances' worth, then 1.
fn backlog(m: i64) -> f64 {
    if m < HIGH_MINUTES { 60.0 } else { 10.0 }
}

/// A little deterministic generator for kill timings (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }
}

struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(moto: &Moto, config: &Path, log: &Path) -> Proc {
        Proc { child: moto.spawn_daemon(config, log), log: log.to_owned() }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the state file looked like right after a kill.
#[derive(Debug, Default)]
struct KillLog {
    kills: u32,
    aimed: u32,
    /// Kills that left a decided-but-unconfirmed intent in the state file.
    with_intent: u32,
    /// Kills that left a temporary file behind (killed while writing state).
    mid_write: u32,
    /// Kills before the first state file existed.
    before_first_state: u32,
}

fn inspect_state(state_dir: &Path, policy: &str, kills: &mut KillLog) -> Result<(), String> {
    let store = StateStore::open(state_dir).map_err(|e| e.to_string())?;
    let path = store.path_for(policy);
    if store.temp_path_for(policy).exists() {
        kills.mid_write += 1;
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            kills.before_first_state += 1;
            return Ok(());
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let state: StateFileV1 =
        serde_json::from_slice(&bytes).map_err(|e| format!("{} does not parse after a kill: {e}", path.display()))?;
    if state.intent.is_some() {
        kills.with_intent += 1;
    }
    Ok(())
}

/// Instances of one pool as `(started, stopped)` ids in order of their transitions.
fn moves(transitions: &[Transition]) -> (Vec<String>, Vec<String>) {
    let pick = |op: &str| -> Vec<String> {
        transitions.iter().filter(|t| t.operation == op).map(|t| t.instance.clone()).collect()
    };
    (pick("StartInstances"), pick("StopInstances"))
}

/// The shortest gap between two consecutive calls that changed instances in one direction.
fn shortest_gap(transitions: &[Transition], op: &str) -> Option<Duration> {
    let mut at: Vec<Duration> = transitions.iter().filter(|t| t.operation == op).map(|t| t.at).collect();
    at.dedup();
    at.windows(2).map(|w| w[1].saturating_sub(w[0])).min()
}

fn proxy_config() -> FaultConfig {
    FaultConfig {
        seed: 7,
        per_mille: 1000,
        operations: vec!["StartInstances", "StopInstances"],
        kinds: vec![(Fault::Slow, 1)],
        hang: Duration::from_secs(30),
        slow: BEFORE,
    }
}

fn write_config(s: &Scratch, endpoint: &str, origin: Timestamp) -> PathBuf {
    let path = s.root.join("vmscaler.yaml");
    let text = format!(
        "policy_dir: policies\nstate_dir: state\nlisten: off\nregion: {}\nendpoint_url: {endpoint}\n\
         log_format: json\nreload_poll: 1h\ntime_scale: {SCALE}\ntime_origin: {origin}\n",
        crate::support::REGION
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_changes_nothing_but_the_timing() {
    let moto = Moto::start();
    let calm_pool = moto.create_tagged_pool(("vmscaler:pool", "calm"), 1, 7, 0, None).await;
    let crash_pool = moto.create_tagged_pool(("vmscaler:pool", "crashy"), 1, 7, 0, None).await;
    let calm_proxy = FaultProxy::start(&moto.endpoint, proxy_config()).await;
    let crash_proxy = FaultProxy::start(&moto.endpoint, proxy_config()).await;
    for p in [&calm_proxy, &crash_proxy] {
        p.hold_answers(&["StartInstances", "StopInstances"], AFTER);
    }

    // The daemons' clock: policy time = origin + (wall - origin) * SCALE. The backlog is
    // recorded ahead for the whole run, so a restarted daemon reads the same load.
    let origin = Timestamp::from_second(SystemClock.now().as_second() + 2).expect("origin");
    let points: Vec<(Timestamp, f64)> =
        (-10..END_MINUTE + 5).map(|m| (origin + (m * 60).seconds(), backlog(m))).collect();
    for q in ["calm", "crashy"] {
        moto.put_metric("Custom/Crash", "Backlog", &[("Queue", q)], &points).await;
    }
    let policy_time = |wall: Timestamp| {
        let ms = (wall.as_millisecond() - origin.as_millisecond()) * SCALE;
        origin + ms.milliseconds()
    };

    let calm = Scratch::new("crash-calm");
    calm.write_policy("calm.yaml", &policy("calm"));
    let crashy = Scratch::new("crash-crashy");
    crashy.write_policy("crashy.yaml", &policy("crashy"));
    let mut calm_daemon =
        Proc::spawn(&moto, &write_config(&calm, &calm_proxy.endpoint, origin), &calm.root.join("daemon.log"));
    let crash_config = write_config(&crashy, &crash_proxy.endpoint, origin);
    let crash_log = crashy.root.join("daemon.log");
    let mut crash_daemon = Proc::spawn(&moto, &crash_config, &crash_log);

    let mut rng = Rng(0x5EED_CAFE);
    let mut kills = KillLog::default();
    let mut problems = Vec::new();
    let kill_until = origin + (END_MINUTE - 6).minutes();
    while policy_time(SystemClock.now()) < kill_until {
        let aimed = rng.next().is_multiple_of(2);
        if aimed {
            // Wait for the next start or stop to reach the proxy, then kill somewhere in the
            // windows before moto acts, before the answer arrives, or just after.
            let seen = |p: &FaultProxy| p.arrivals("StartInstances").len() + p.arrivals("StopInstances").len();
            let before = seen(&crash_proxy);
            let mut waited = Duration::ZERO;
            while seen(&crash_proxy) == before && waited < Duration::from_secs(4) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                waited += Duration::from_millis(5);
            }
            tokio::time::sleep(rng.millis(0, 750)).await;
        } else {
            tokio::time::sleep(rng.millis(30, 1500)).await;
        }
        crash_daemon.kill();
        kills.kills += 1;
        kills.aimed += u32::from(aimed);
        if let Err(e) = inspect_state(&crashy.state(), "crashy", &mut kills) {
            problems.push(e);
        }
        tokio::time::sleep(rng.millis(0, 200)).await;
        crash_daemon = Proc::spawn(&moto, &crash_config, &crash_log);
    }
    // Let both finish the descent undisturbed.
    while policy_time(SystemClock.now()) < origin + END_MINUTE.minutes() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    calm_daemon.terminate();
    crash_daemon.terminate();
    let crash_text = crash_daemon.log_text();
    let panics = crash_text.lines().filter(|l| l.contains("panicked")).count();

    let calm_moves = calm_proxy.transitions();
    let crash_moves = crash_proxy.transitions();
    let (calm_started, calm_stopped) = moves(&calm_moves);
    let (crash_started, crash_stopped) = moves(&crash_moves);
    let states = moto.instance_states().await;
    let running = |ids: &[String]| ids.iter().filter(|i| states.get(*i).is_some_and(|s| s == "running")).count();
    let calm_all: Vec<String> = calm_pool.running.iter().chain(&calm_pool.stopped).cloned().collect();
    let crash_all: Vec<String> = crash_pool.running.iter().chain(&crash_pool.stopped).cloned().collect();
    let state = StateStore::open(&crashy.state()).expect("store").load("crashy", SystemClock.now()).expect("state");
    let state = state.expect("crashy has state");
    let scaled = |d| state.cycle.history().records().iter().filter(|r| r.scaled == Some(d)).count();
    let up_records = scaled(vmscaler_engine::Direction::Up);
    let down_records = scaled(vmscaler_engine::Direction::Down);
    let gap = |t: &[Transition], op| shortest_gap(t, op).map_or("-".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()));
    println!(
        "crash run: {} kills ({} aimed at a start/stop, {} left an intent, {} mid-write, {} before the first state), \
         {} start(s) and {} stop(s) (calm: {} and {}), shortest gaps up {} down {} (calm {} {}), records up {up_records} down {down_records}",
        kills.kills,
        kills.aimed,
        kills.with_intent,
        kills.mid_write,
        kills.before_first_state,
        crash_started.len(),
        crash_stopped.len(),
        calm_started.len(),
        calm_stopped.len(),
        gap(&crash_moves, "StartInstances"),
        gap(&crash_moves, "StopInstances"),
        gap(&calm_moves, "StartInstances"),
        gap(&calm_moves, "StopInstances"),
    );

    assert!(problems.is_empty(), "state problems after kills: {problems:#?}");
    assert_eq!(panics, 0, "the crashed daemon panicked:\n{crash_text}");
    assert!(kills.kills >= 25, "too few kills to mean anything: {kills:?}");
    assert!(kills.with_intent >= 3, "no kill landed between a decision and its outcome: {kills:?}");
    // The calm run is the reference: up to 6, back to 1, one instance per step.
    assert_eq!((calm_started.len(), calm_stopped.len()), (5, 5), "calm run: {calm_moves:#?}");
    assert_eq!(running(&calm_all), 1, "calm pool ends at min");
    // No action repeated, none lost for good.
    assert!(crash_proxy.noops().is_empty(), "repeated actions: {:#?}", crash_proxy.noops());
    assert!(calm_proxy.noops().is_empty(), "repeated actions in the calm run: {:#?}", calm_proxy.noops());
    assert_eq!(
        (crash_started.len(), crash_stopped.len()),
        (calm_started.len(), calm_stopped.len()),
        "the crashed pool moved differently: {crash_moves:#?}\nlog:\n{crash_text}"
    );
    assert_eq!(running(&crash_all), running(&calm_all), "the crashed pool ends elsewhere");
    // No cooldown forgotten: consecutive changes in one direction at least a cooldown apart
    // (in wall time; the request delays shift both ends alike, 0.5 s of slack for scheduling).
    let cooldown = Duration::from_secs(u64::try_from(COOLDOWN_MIN * 60 / SCALE).expect("positive"));
    for op in ["StartInstances", "StopInstances"] {
        for (who, t) in [("calm", &calm_moves), ("crashed", &crash_moves)] {
            if let Some(g) = shortest_gap(t, op) {
                assert!(
                    g + Duration::from_millis(500) >= cooldown,
                    "{who} pool: {op} only {g:?} after the previous one: {t:#?}"
                );
            }
        }
    }
    // Every action the cloud saw has its record (cooldowns start from records).
    assert_eq!(
        (up_records, down_records),
        (crash_started.len(), crash_stopped.len()),
        "{:#?}",
        state.cycle.history().records()
    );
    assert!(state.intent.is_none(), "an intent left after a clean stop: {:?}", state.intent);
}

/// Where [`state_writer_child`] writes; set by [`sigkill_during_state_writes_never_tears_the_file`].
const WRITER_DIR_ENV: &str = "VMSCALER_TEST_STATE_WRITER_DIR";

/// Saves a growing pool state in a tight loop, as the daemon does after every evaluation,
/// until killed.
#[test]
#[ignore = "run in a process of its own, and killed, by sigkill_during_state_writes_never_tears_the_file"]
fn state_writer_child() {
    let dir = PathBuf::from(std::env::var(WRITER_DIR_ENV).expect("state writer dir"));
    let store = StateStore::open(&dir).expect("store");
    let start = Timestamp::from_second(1_800_000_000).expect("ts");
    let mut state = store.load("pool", start).expect("load").unwrap_or_else(|| PoolState::new("pool", start));
    let mut now = state.saved_at;
    loop {
        now += 1.second();
        state.saved_at = now;
        state.cycle.observe("cpu", vmscaler_engine::Sample { at: now, value: 50.0 });
        state.cycle.prune(now, Duration::from_secs(3600));
        store.save(&state).expect("save");
    }
}

#[test]
fn sigkill_during_state_writes_never_tears_the_file() {
    let s = Scratch::new("crash-writes");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = Rng(0xD15C);
    let (mut kills, mut mid_write, mut last_saved) = (0u32, 0u32, None);
    for _ in 0..150 {
        let mut child = Command::new(&exe)
            .args(["reliability_crash::state_writer_child", "--exact", "--ignored", "--test-threads=1"])
            .env(WRITER_DIR_ENV, s.state())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the writer");
        std::thread::sleep(rng.millis(20, 120));
        let _ = child.kill();
        let _ = child.wait();
        kills += 1;
        let store = StateStore::open(&s.state()).expect("store");
        mid_write += u32::from(store.temp_path_for("pool").exists());
        // Parse the file as the daemon would at start-up; a corrupt one would be moved aside.
        let bytes = std::fs::read(store.path_for("pool"));
        if let Ok(bytes) = bytes {
            let state: StateFileV1 = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("state torn after kill {kills}: {e}: {}", String::from_utf8_lossy(&bytes)));
            assert!(last_saved.is_none_or(|t| state.saved_at >= t), "state went back in time after kill {kills}");
            last_saved = Some(state.saved_at);
        }
    }
    let saved = last_saved.expect("the writer saved at least once");
    println!("state writes: {kills} kills, {mid_write} during a write (temporary file left), last save {saved}");
    assert!(mid_write >= 10, "too few kills landed during a write to mean anything: {mid_write} of {kills}");
}
