//! Pools behind load balancers: drain before stop, register after start, serve once healthy.
//!
//! A tagged pool with `target_groups` (or a `scale_in.pre_stop` hook) never stops a member the
//! load balancer still routes to. The engine decides as always; here its actions are carried
//! out with the load balancer in mind, and the pool's members are kept in line with it:
//!
//! - **Observe** ([`observe`], every evaluation and every drain check): the target groups'
//!   type and deregistration delay (cached), the health of every running member in each group.
//!   Members of [`PoolState::draining`] that EC2 still shows running become
//!   [`MemberState::Draining`] (not capacity, never chosen twice); a running member not yet
//!   healthy in every group becomes [`MemberState::Warming`] (capacity, not serving: the
//!   engine's in-service count leaves it out). A target group that cannot be read fails the
//!   evaluation: the pool is degraded and nothing is stopped.
//! - **Scale-in** ([`act`]): each member to stop is deregistered from every group and recorded
//!   as draining (persisted); the stop comes later. If a deregistration fails, the member is
//!   registered again where it had left and nothing is stopped. A rise
//!   ([`Action::CancelDrain`]) registers draining members again instead of starting others.
//! - **Progress** ([`progress`], not blocking the loop: re-checked every [`DRAIN_CHECK`] by a
//!   drain-only pass that does not decide): a draining member that every group shows not
//!   registered any more is drained; one still draining at its deadline (`since` + the drain
//!   timeout) is stopped anyway and the outcome says so. Then its pre-stop hook (an HTTP POST,
//!   its answer or failure reported, never blocking the stop), then the fence, then
//!   `StopInstances` through the actuator. A draining member found registered again (a crash
//!   before its deregistration went out) is deregistered again; a running member outside a
//!   group (a start just made, a cancelled drain, a crash) is registered.
//! - **Crash safety**: the scale-in's write-ahead intent covers the deregistration. A daemon
//!   killed between the two finds at its next evaluation an intent whose stopped members are
//!   still running: [`adopt_intent`] takes them in as draining, and the new decision either
//!   cancels the drain (registers them again) or lets it finish. With the sweep above, no
//!   running member stays outside its target groups for longer than one check.
//!
//! Not here: deciding (the engine), the AWS calls themselves ([`crate::aws::elb`]), the stop
//! call and its screening ([`crate::aws::actuate`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vmscaler_engine::policy::{DRAIN_TIMEOUT_CAP, PreStop};
use vmscaler_engine::{Action, Decision, Fleet, Member, MemberState, Policy};

use crate::aws::Aws;
use crate::aws::actuate::{self, Outcome};
use crate::aws::elb::{self, Health, TargetGroup};
use crate::aws::lease::Fence;
use crate::state::{Drain, PoolState};

/// How often a pool with draining members is checked between its evaluations.
pub const DRAIN_CHECK: Duration = Duration::from_secs(5);
/// How long a target group's description (type, deregistration delay) is reused.
const GROUPS_TTL: Duration = Duration::from_secs(600);

/// What one pool remembers between evaluations, in memory only.
#[derive(Debug, Default)]
pub struct LbCache {
    groups: Option<(Timestamp, Vec<TargetGroup>)>,
    /// Private IPv4 addresses by instance id (they do not change across stop and start).
    ips: BTreeMap<String, String>,
}

/// The load balancer side of a pool at one instant.
#[derive(Debug, Default)]
pub struct Lb {
    pub groups: Vec<TargetGroup>,
    /// Per group (same order), health by instance id.
    health: Vec<BTreeMap<String, Health>>,
    /// How long a drain may take before the member is stopped anyway.
    pub timeout: Duration,
    ips: BTreeMap<String, String>,
    /// The fleet as EC2 shows it (before draining and warming members were marked).
    ec2: Vec<Member>,
    /// When the health above was read.
    at: Option<Timestamp>,
}

impl Lb {
    fn target(&self, group: &TargetGroup, id: &str) -> Option<String> {
        if group.ip_targets { self.ips.get(id).cloned() } else { Some(id.to_owned()) }
    }

    fn health(&self, i: usize, id: &str) -> Option<&Health> {
        self.health.get(i).and_then(|h| h.get(id))
    }

    fn ec2_state(&self, id: &str) -> Option<MemberState> {
        self.ec2.iter().find(|m| m.id == id).map(|m| m.state)
    }
}

/// The drain timeout in force: the policy's, or the longest deregistration delay of its groups
/// capped at [`DRAIN_TIMEOUT_CAP`].
pub fn drain_timeout(policy: &Policy, groups: &[TargetGroup]) -> Duration {
    policy.scale_in.drain_timeout.unwrap_or_else(|| {
        groups.iter().map(|g| g.deregistration_delay).max().unwrap_or(Duration::ZERO).min(DRAIN_TIMEOUT_CAP)
    })
}

/// Takes an interrupted decision's members in: the ones it was stopping that still run are
/// draining (their deregistration may or may not have gone out; [`progress`] makes sure), the
/// ones whose drain it was cancelling are not (the sweep registers them).
pub fn adopt_intent(policy: &Policy, actions: &[Action], at: Timestamp, fleet: &Fleet, state: &mut PoolState) {
    if !policy.drains() && state.draining.is_empty() {
        return;
    }
    let Fleet::Instances { members } = fleet else { return };
    for action in actions {
        match action {
            Action::Stop { instance_ids } if policy.drains() => {
                for id in instance_ids {
                    let running = members.iter().any(|m| m.id == *id && m.state == MemberState::Running);
                    if running && !state.draining.contains_key(id) {
                        state.draining.insert(id.clone(), Drain { since: at, private_ip: None });
                    }
                }
            }
            Action::CancelDrain { instance_ids } => {
                for id in instance_ids {
                    state.draining.remove(id);
                }
            }
            _ => {}
        }
    }
}

/// Marks the members of [`PoolState::draining`] that EC2 shows running as draining, from the
/// state alone (before the metrics are read, so their series stay out of per-instance averages).
pub fn mark_draining(state: &PoolState, fleet: &mut Fleet) {
    if let Fleet::Instances { members } = fleet {
        for m in members.iter_mut().filter(|m| m.state == MemberState::Running && state.draining.contains_key(&m.id)) {
            m.state = MemberState::Draining;
        }
    }
}

/// Reads the pool's target groups and members' health, and marks draining and warming members
/// in `fleet`. Draining members EC2 no longer shows running are finished (stopped elsewhere or
/// by an earlier run) and forgotten. An error means the load balancer side is unknown: the
/// caller must not act.
pub async fn observe(
    aws: &Aws,
    policy: &Policy,
    cache: &mut LbCache,
    state: &mut PoolState,
    fleet: &mut Fleet,
    now: Timestamp,
) -> Result<Lb, String> {
    let Fleet::Instances { members } = fleet else { return Ok(Lb::default()) };
    // Back to what EC2 shows ([`mark_draining`] may have marked some already).
    for m in members.iter_mut().filter(|m| m.state == MemberState::Draining) {
        m.state = MemberState::Running;
    }
    if !policy.drains() && state.draining.is_empty() {
        return Ok(Lb::default());
    }
    let groups = match &cache.groups {
        Some((at, g))
            if now.duration_since(*at).unsigned_abs() < GROUPS_TTL
                && g.iter().map(|g| &g.arn).eq(policy.target_groups.iter()) =>
        {
            g.clone()
        }
        _ if policy.target_groups.is_empty() => vec![],
        _ => {
            let g = elb::describe_target_groups(aws, &policy.target_groups).await?;
            cache.groups = Some((now, g.clone()));
            g
        }
    };
    // Drains EC2 shows finished (stopping, stopped, gone) are over.
    state.draining.retain(|id, _| {
        members.iter().any(|m| m.id == *id && matches!(m.state, MemberState::Running | MemberState::Pending))
    });
    let running: Vec<String> =
        members.iter().filter(|m| m.state == MemberState::Running).map(|m| m.id.clone()).collect();
    let need_ips = groups.iter().any(|g| g.ip_targets) || policy.scale_in.pre_stop.is_some();
    if need_ips {
        let missing: Vec<String> = running.iter().filter(|id| !cache.ips.contains_key(*id)).cloned().collect();
        if !missing.is_empty() {
            cache.ips.extend(elb::private_ips(aws, &missing).await?);
        }
    }
    let mut lb = Lb {
        timeout: drain_timeout(policy, &groups),
        ips: cache.ips.clone(),
        ec2: members.clone(),
        groups,
        health: vec![],
        at: Some(now),
    };
    for g in &lb.groups {
        // Health by instance id, asked by target id.
        let by_target: BTreeMap<String, String> =
            running.iter().filter_map(|id| lb.target(g, id).map(|t| (t, id.clone()))).collect();
        let ids: Vec<String> = by_target.keys().cloned().collect();
        let health = elb::target_health(aws, g, &ids).await?;
        lb.health.push(health.into_iter().filter_map(|(t, h)| by_target.get(&t).map(|id| (id.clone(), h))).collect());
    }
    for m in members.iter_mut() {
        if state.draining.contains_key(&m.id) {
            m.state = MemberState::Draining;
        } else if m.state == MemberState::Running
            && (0..lb.groups.len()).any(|i| lb.health(i, &m.id) != Some(&Health::Healthy))
        {
            m.state = MemberState::Warming;
        }
    }
    for (id, d) in &mut state.draining {
        if d.private_ip.is_none() {
            d.private_ip = lb.ips.get(id).cloned();
        }
    }
    Ok(lb)
}

/// Carries out `decision` on a pool that drains: starts and group resizes through the
/// actuator, stops as drains, cancelled drains as registrations. Returns the outcomes.
#[allow(clippy::too_many_arguments)]
pub async fn act(
    aws: &Aws,
    policy: &Policy,
    lb: &Lb,
    fleet: &Fleet,
    decision: &Decision,
    draining: &mut BTreeMap<String, Drain>,
    dry_run: bool,
    fence: Option<&dyn Fence>,
    now: Timestamp,
) -> Vec<Outcome> {
    let dry_run = dry_run || policy.dry_run;
    let mut out = Vec::new();
    let mut rest = decision.clone();
    rest.actions.retain(|a| matches!(a, Action::Start { .. } | Action::SetDesiredCapacity { .. }));
    let mut to_drain = Vec::new();
    let mut to_keep = Vec::new();
    for a in &decision.actions {
        match a {
            Action::Stop { instance_ids } => to_drain.extend(instance_ids.iter().cloned()),
            Action::CancelDrain { instance_ids } => to_keep.extend(instance_ids.iter().cloned()),
            _ => {}
        }
    }
    // Only running, unprotected members of this pool are drained; the rest goes to the
    // actuator, whose screen refuses it with a reason.
    let ec2 = Fleet::Instances { members: lb.ec2.clone() };
    let (ok, refused): (Vec<String>, Vec<String>) = to_drain
        .into_iter()
        .partition(|id| lb.ec2.iter().any(|m| m.id == *id && !m.protected && m.state == MemberState::Running));
    if !refused.is_empty() {
        rest.actions.push(Action::Stop { instance_ids: refused });
    }
    if dry_run {
        for id in &ok {
            out.push(Outcome::WouldDrain { id: id.clone(), groups: lb.groups.len() });
        }
        if !ok.is_empty() {
            // The stop that will follow the drain, permission-checked with DryRun=true.
            rest.actions.push(Action::Stop { instance_ids: ok.clone() });
        }
        out.extend(to_keep.iter().map(|id| Outcome::WouldCancelDrain { id: id.clone() }));
        out.extend(actuate::apply_fenced(aws, policy, &ec2, &rest, true, fence).await);
        return out;
    }
    out.extend(actuate::apply_fenced(aws, policy, fleet, &rest, false, fence).await);
    // Members just started: register them now if EC2 lets us (it may want them running
    // first; the next check's sweep registers them then).
    let started: Vec<String> =
        out.iter().filter_map(|o| if let Outcome::Started { id } = o { Some(id.clone()) } else { None }).collect();
    if !started.is_empty() {
        out.extend(register_all(aws, lb, &started, fence, true).await);
    }
    if !ok.is_empty() {
        out.extend(begin_drains(aws, lb, &ok, draining, fence, now).await);
    }
    for id in to_keep {
        if !draining.contains_key(&id) {
            continue;
        }
        if let Err(reason) = check(fence).await {
            out.push(Outcome::Fenced { what: format!("cancel the drain of {id}"), reason });
            continue;
        }
        let mut failed = None;
        for g in &lb.groups {
            let Some(t) = lb.target(g, &id) else { continue };
            if let Err(e) = elb::register(aws, g, &[t]).await {
                failed = Some(e);
            }
        }
        match failed {
            None => {
                draining.remove(&id);
                out.push(Outcome::DrainCancelled { id });
            }
            Some(error) => out.push(Outcome::Failed { what: format!("cancel the drain of {id}"), error }),
        }
    }
    out
}

async fn check(fence: Option<&dyn Fence>) -> Result<(), String> {
    match fence {
        Some(f) => f.check().await,
        None => Ok(()),
    }
}

/// Deregisters `ids` from every group and records them as draining. A member whose
/// deregistration fails in any group is registered again where it had left, and not drained.
async fn begin_drains(
    aws: &Aws,
    lb: &Lb,
    ids: &[String],
    draining: &mut BTreeMap<String, Drain>,
    fence: Option<&dyn Fence>,
    now: Timestamp,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    if let Err(reason) = check(fence).await {
        out.push(Outcome::Fenced { what: format!("deregister {}", ids.join(", ")), reason });
        return out;
    }
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut left: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (gi, g) in lb.groups.iter().enumerate() {
        let targets: Vec<(String, String)> =
            ids.iter().filter_map(|id| lb.target(g, id).map(|t| (id.clone(), t))).collect();
        // An `ip` member whose address is unknown cannot be deregistered: not drained.
        for id in ids.iter().filter(|id| !targets.iter().any(|(i, _)| i == *id)) {
            failed.insert(id.clone(), format!("no private address known for the ip target group {}", g.name()));
        }
        if targets.is_empty() {
            continue;
        }
        let ts: Vec<String> = targets.iter().map(|(_, t)| t.clone()).collect();
        match elb::deregister(aws, g, &ts).await {
            Ok(()) => {
                for (id, _) in &targets {
                    left.entry(id.clone()).or_default().push(gi);
                }
            }
            Err(e) => {
                for (id, _) in &targets {
                    failed.insert(id.clone(), e.clone());
                }
            }
        }
    }
    for id in ids {
        match failed.get(id) {
            None => {
                draining.insert(id.clone(), Drain { since: now, private_ip: lb.ips.get(id).cloned() });
                out.push(Outcome::Draining { id: id.clone(), groups: lb.groups.len() });
            }
            Some(error) => {
                // Back where it had left: a member is never half out of its load balancer.
                for gi in left.get(id).into_iter().flatten() {
                    if let (Some(g), Some(t)) = (lb.groups.get(*gi), lb.groups.get(*gi).and_then(|g| lb.target(g, id)))
                        && let Err(e) = elb::register(aws, g, &[t]).await
                    {
                        out.push(Outcome::Failed { what: format!("register {id} again in {}", g.name()), error: e });
                    }
                }
                out.push(Outcome::Failed {
                    what: format!("deregister {id} before stopping it"),
                    error: format!("{error}; not stopped"),
                });
            }
        }
    }
    out
}

/// Registers `ids` in every group they are missing from. `quiet`: failures (a member still
/// pending) are left to the next sweep instead of reported.
async fn register_all(aws: &Aws, lb: &Lb, ids: &[String], fence: Option<&dyn Fence>, quiet: bool) -> Vec<Outcome> {
    let mut out = Vec::new();
    if ids.is_empty() || lb.groups.is_empty() {
        return out;
    }
    if let Err(reason) = check(fence).await {
        out.push(Outcome::Fenced { what: format!("register {}", ids.join(", ")), reason });
        return out;
    }
    for g in &lb.groups {
        for id in ids {
            let Some(t) = lb.target(g, id) else { continue };
            match elb::register(aws, g, &[t]).await {
                Ok(()) => out.push(Outcome::Registered { id: id.clone(), group: g.name().to_owned() }),
                Err(e) if quiet => {
                    tracing::debug!(instance = %id, error = %e, "not registered yet: the next check retries")
                }
                Err(error) => out.push(Outcome::Failed { what: format!("register {id} in {}", g.name()), error }),
            }
        }
    }
    out
}

/// What [`progress`] finished: drains that ended in a stop, for the histogram.
#[derive(Debug, Default)]
pub struct Finished {
    pub outcomes: Vec<Outcome>,
    /// Seconds each finished drain took.
    pub durations: Vec<f64>,
}

/// Moves every drain on and keeps running members registered (see the module documentation).
/// Members in `acted_on` were just acted on by this evaluation (the health read before does not
/// show it yet): left for the next check. Makes no change in a dry run.
#[allow(clippy::too_many_arguments)]
pub async fn progress(
    aws: &Aws,
    policy: &Policy,
    lb: &Lb,
    state: &mut PoolState,
    acted_on: &BTreeSet<String>,
    dry_run: bool,
    fence: Option<&dyn Fence>,
    now: Timestamp,
) -> Finished {
    let mut done = Finished::default();
    if dry_run || policy.dry_run || lb.at.is_none() {
        return done;
    }
    // Running members outside a group they belong in.
    let outside: Vec<String> = lb
        .ec2
        .iter()
        .filter(|m| m.state == MemberState::Running && !state.draining.contains_key(&m.id))
        .filter(|m| !acted_on.contains(&m.id))
        .filter(|m| (0..lb.groups.len()).any(|i| !lb.health(i, &m.id).is_some_and(Health::registered)))
        .map(|m| m.id.clone())
        .collect();
    done.outcomes.extend(register_all(aws, lb, &outside, fence, false).await);

    let mut ready: Vec<(String, bool)> = Vec::new();
    for (id, d) in &state.draining {
        if lb.ec2_state(id) != Some(MemberState::Running) || acted_on.contains(id) {
            continue;
        }
        let health: Vec<Option<&Health>> = (0..lb.groups.len()).map(|i| lb.health(i, id)).collect();
        match step(&health, d.since, lb.timeout, now) {
            Step::Wait => {}
            Step::Stop { timed_out } => ready.push((id.clone(), timed_out)),
            Step::DeregisterAgain(groups) => {
                if let Err(reason) = check(fence).await {
                    done.outcomes.push(Outcome::Fenced { what: format!("deregister {id}"), reason });
                    continue;
                }
                for g in groups.iter().filter_map(|i| lb.groups.get(*i)) {
                    let result = match lb.target(g, id) {
                        Some(t) => elb::deregister(aws, g, &[t]).await,
                        None => Err("no private address known".to_owned()),
                    };
                    match result {
                        Ok(()) => {
                            tracing::info!(instance = %id, group = %g.name(), "draining member was still registered: deregistered again")
                        }
                        Err(error) => done
                            .outcomes
                            .push(Outcome::Failed { what: format!("deregister {id} from {}", g.name()), error }),
                    }
                }
            }
        }
    }
    // A member tagged protected while draining is kept: registered again, not stopped.
    let protected: Vec<String> = ready
        .iter()
        .filter(|(id, _)| lb.ec2.iter().any(|m| m.id == *id && m.protected))
        .map(|(id, _)| id.clone())
        .collect();
    if !protected.is_empty() {
        ready.retain(|(id, _)| !protected.contains(id));
        for o in register_all(aws, lb, &protected, fence, false).await {
            if let Outcome::Registered { id, .. } = &o
                && state.draining.remove(id).is_some()
            {
                done.outcomes.push(Outcome::DrainCancelled { id: id.clone() });
            }
            done.outcomes.push(o);
        }
        if lb.groups.is_empty() {
            for id in &protected {
                state.draining.remove(id);
                done.outcomes.push(Outcome::DrainCancelled { id: id.clone() });
            }
        }
    }
    if ready.is_empty() {
        return done;
    }
    // Pre-stop hooks, all at once, each within its timeout.
    let mut hooks: BTreeMap<String, String> = BTreeMap::new();
    if let Some(hook) = &policy.scale_in.pre_stop {
        let mut set = tokio::task::JoinSet::new();
        for (id, _) in &ready {
            let ip = state.draining.get(id).and_then(|d| d.private_ip.clone()).or_else(|| lb.ips.get(id).cloned());
            let hook = hook.clone();
            let id = id.clone();
            set.spawn(async move {
                let answer = match ip {
                    Some(ip) => post(&hook, &ip).await,
                    None => "not called: no private address known".to_owned(),
                };
                (id, answer)
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok((id, answer)) = r {
                hooks.insert(id, answer);
            }
        }
    }
    let ids: Vec<String> = ready.iter().map(|(id, _)| id.clone()).collect();
    let stop = Decision { actions: vec![Action::Stop { instance_ids: ids.clone() }], ..empty_decision(policy, now) };
    let ec2 = Fleet::Instances { members: lb.ec2.clone() };
    let outcomes = actuate::apply_fenced(aws, policy, &ec2, &stop, false, fence).await;
    let stopped: BTreeSet<&str> = outcomes
        .iter()
        .filter_map(|o| if let Outcome::Stopped { id } = o { Some(id.as_str()) } else { None })
        .collect();
    for (id, timed_out) in &ready {
        if !stopped.contains(id.as_str()) {
            continue;
        }
        let waited = state.draining.remove(id).map_or(0, |d| now.duration_since(d.since).as_secs().max(0));
        let waited_secs = u64::try_from(waited).unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        done.durations.push(waited_secs as f64);
        done.outcomes.push(Outcome::StoppedAfterDrain {
            id: id.clone(),
            waited_secs,
            timed_out: *timed_out,
            hook: hooks.remove(id),
        });
    }
    done.outcomes.extend(outcomes.into_iter().filter(|o| !matches!(o, Outcome::Stopped { .. })));
    done
}

/// A decision with no actions, to hand the actuator the stop that ends a drain.
fn empty_decision(policy: &Policy, now: Timestamp) -> Decision {
    let mut d = vmscaler_engine::decide(
        policy,
        &vmscaler_engine::PoolHistory::default(),
        &Fleet::Instances { members: vec![] },
        now,
    );
    d.actions.clear();
    d
}

/// The pre-stop hook: `POST` to the member's URL, within the hook's timeout. Returns what to
/// report: the status line's code, or why there was none. Never an error: the stop goes on.
pub async fn post(hook: &PreStop, private_ip: &str) -> String {
    let url = hook.url_for(private_ip);
    match tokio::time::timeout(hook.timeout, post_once(&url)).await {
        Ok(Ok(status)) if (200..300).contains(&status) => format!("HTTP {status}"),
        Ok(Ok(status)) => format!("HTTP {status} from {url}: stopping anyway"),
        Ok(Err(e)) => format!("{url} failed: {e}; stopping anyway"),
        Err(_) => format!("{url} did not answer within {:?}; stopping anyway", hook.timeout),
    }
}

/// One HTTP/1.1 POST with an empty body over a fresh connection; the status code.
async fn post_once(url: &str) -> Result<u16, String> {
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h, p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
        _ => (authority, 80),
    };
    let mut stream = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: vmscaler/{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
    match (line.starts_with("HTTP/"), status) {
        (true, Some(s)) => Ok(s),
        _ => Err(format!("not an HTTP answer: {:?}", line.lines().next().unwrap_or(""))),
    }
}

/// What to do with one draining member at a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Its target groups still drain its connections, and the deadline has not come.
    Wait,
    /// Registered (and not deregistering) in these groups (by index): its deregistration never
    /// went out (a crash between the intent and the call) or someone registered it again. It is
    /// deregistered again and never stopped while registered, deadline or not.
    DeregisterAgain(Vec<usize>),
    /// Out of every group (`timed_out: false`), or still draining at its deadline.
    Stop { timed_out: bool },
}

/// The verdict for a draining member deregistered at `since`, from its health in each group
/// (`None`: the answer left it out, as good as not registered).
pub fn step(health: &[Option<&Health>], since: Timestamp, timeout: Duration, now: Timestamp) -> Step {
    let back: Vec<usize> = health
        .iter()
        .enumerate()
        .filter(|(_, h)| {
            matches!(h, Some(Health::Healthy | Health::NotServing(_) | Health::Unused { registered: true }))
        })
        .map(|(i, _)| i)
        .collect();
    if !back.is_empty() {
        return Step::DeregisterAgain(back);
    }
    let drained = health.iter().all(|h| !h.is_some_and(Health::registered));
    if drained {
        Step::Stop { timed_out: false }
    } else if now >= crate::clock::later(since, timeout) {
        Step::Stop { timed_out: true }
    } else {
        Step::Wait
    }
}

/// Instance ids a decision's actions name.
pub fn acted_on(actions: &[Action]) -> BTreeSet<String> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Start { instance_ids } | Action::Stop { instance_ids } | Action::CancelDrain { instance_ids } => {
                instance_ids.clone()
            }
            Action::SetDesiredCapacity { .. } => vec![],
        })
        .collect()
}

/// Whether the pool needs a check before its next evaluation: a drain under way, or a member
/// to register (just started, still pending, or running outside a target group).
pub fn needs_check(lb: &Lb, state: &PoolState, started: bool) -> bool {
    !state.draining.is_empty()
        || (!lb.groups.is_empty()
            && (started
                || lb.ec2.iter().any(|m| {
                    // Pending: registered as soon as EC2 shows it running.
                    m.state == MemberState::Pending
                        || (m.state == MemberState::Running
                            && (0..lb.groups.len()).any(|i| !lb.health(i, &m.id).is_some_and(Health::registered)))
                })))
}

/// The pool's draining members as `status`, `/v1/decisions` and `/metrics` show them.
pub fn board(state: &PoolState, timeout: Duration) -> Vec<super::board::DrainBoard> {
    state
        .draining
        .iter()
        .map(|(id, d)| super::board::DrainBoard {
            id: id.clone(),
            since: d.since,
            deadline: crate::clock::later(d.since, timeout),
        })
        .collect()
}

impl super::Daemon {
    /// Between evaluations: moves the drains of `names` on (and registers members outside their
    /// target groups) without deciding anything. Each pool is checked again after
    /// [`DRAIN_CHECK`] while it still needs it.
    pub(super) async fn drain_checks(
        &mut self,
        names: &[String],
        guards: &BTreeMap<String, crate::lease::LeaseGuard>,
        now: Timestamp,
    ) {
        let cloud = std::sync::Arc::clone(&self.cloud);
        // Only a cloud with load balancers has drains to check.
        let Some(aws) = cloud.load_balancers() else { return };
        let policies: Vec<&Policy> = names.iter().filter_map(|n| self.pools.get(n)).map(|p| &p.policy).collect();
        let claims: Vec<&vmscaler_engine::policy::PoolTarget> = self.pools.values().map(|p| &p.policy.pool).collect();
        let mut fleets = cloud.fleets(&policies, &claims).await;
        drop((policies, claims));
        for name in names {
            let dry_run = self.cfg.dry_run;
            let Some(pool) = self.pools.get_mut(name) else { continue };
            let dry_run = pool.dry_run(dry_run);
            let mut fleet = match fleets.remove(name) {
                Some(Ok(d)) => d.fleet,
                Some(Err(e)) => {
                    tracing::warn!(policy = %name, error = %format!("{e:#}"), "drain check: cannot read the fleet; retried");
                    pool.drain_due = Some(crate::clock::later(now, DRAIN_CHECK));
                    continue;
                }
                None => continue,
            };
            let lb = match observe(aws, &pool.policy, &mut pool.lb, &mut pool.state, &mut fleet, now).await {
                Ok(lb) => lb,
                Err(e) => {
                    tracing::warn!(policy = %name, error = %e, "drain check: cannot read the target groups; nothing stopped");
                    pool.drain_due = Some(crate::clock::later(now, DRAIN_CHECK));
                    continue;
                }
            };
            let fence = guards.get(name).map(|g| g as &dyn Fence);
            let finished =
                progress(aws, &pool.policy, &lb, &mut pool.state, &BTreeSet::new(), dry_run, fence, now).await;
            pool.drain_due = needs_check(&lb, &pool.state, false).then(|| crate::clock::later(now, DRAIN_CHECK));
            for o in &finished.outcomes {
                tracing::info!(policy = %name, outcome = %o, "drain check");
            }
            pool.state.saved_at = now;
            let save = self.store.save(&pool.state);
            if let Err(e) = &save {
                tracing::error!(policy = %name, error = %e, "cannot persist state");
            }
            let mut b = self.board.lock();
            b.counters.drain_seconds.extend(finished.durations.iter().copied());
            for o in &finished.outcomes {
                *b.counters.actions.entry((name.clone(), o.kind().to_owned())).or_default() += 1;
            }
            if save.is_err() {
                b.counters.state_errors += 1;
            }
            drop(b);
            pool.view.draining = board(&pool.state, lb.timeout);
            self.publish_pool(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hook_posts_and_reports_without_failing_the_stop() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in ["HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 503 Busy\r\n\r\n"] {
                let Ok((mut s, _)) = listener.accept().await else { break };
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                seen.push(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned());
                let _ = s.write_all(answer.as_bytes()).await;
            }
            // A third connection that never answers.
            let _held = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            seen
        });
        let hook =
            PreStop { url: format!("http://{{private_ip}}:{port}/drain?now=1"), timeout: Duration::from_millis(300) };
        assert_eq!(post(&hook, "127.0.0.1").await, "HTTP 204");
        assert!(post(&hook, "127.0.0.1").await.starts_with("HTTP 503 from http://127.0.0.1:"));
        let slow = post(&hook, "127.0.0.1").await;
        assert!(slow.ends_with("did not answer within 300ms; stopping anyway"), "{slow}");
        let seen = server.await.unwrap_or_default();
        assert_eq!(seen, ["POST /drain?now=1 HTTP/1.1", "POST /drain?now=1 HTTP/1.1"]);
        let refused = PreStop { url: "http://127.0.0.1:1/x".into(), timeout: Duration::from_secs(1) };
        assert!(post(&refused, "ignored").await.contains("failed"), "connection refused is reported");
    }

    #[test]
    fn a_drain_waits_for_every_group_stops_at_its_deadline_and_never_while_registered() {
        let t = |secs: i64| Timestamp::from_second(1_800_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH);
        let timeout = Duration::from_secs(120);
        let (draining, gone, healthy) = (Health::Draining, Health::Unused { registered: false }, Health::Healthy);
        let check = |h: &[Option<&Health>], at| step(h, t(0), timeout, t(at));
        // Both groups still draining: wait, up to the deadline, then stop anyway.
        assert_eq!(check(&[Some(&draining), Some(&draining)], 60), Step::Wait);
        assert_eq!(check(&[Some(&draining), Some(&draining)], 119), Step::Wait);
        assert_eq!(check(&[Some(&draining), Some(&draining)], 120), Step::Stop { timed_out: true });
        // One group done, the other not: still waiting.
        assert_eq!(check(&[Some(&gone), Some(&draining)], 30), Step::Wait);
        // Out of every group (or left out of the answer): drained.
        assert_eq!(check(&[Some(&gone), None], 30), Step::Stop { timed_out: false });
        assert_eq!(check(&[], 0), Step::Stop { timed_out: false }, "no group: only a hook to wait for");
        // Registered in one group (a crash before the call): deregistered again, even late.
        assert_eq!(check(&[Some(&gone), Some(&healthy)], 30), Step::DeregisterAgain(vec![1]));
        assert_eq!(check(&[Some(&healthy), Some(&draining)], 500), Step::DeregisterAgain(vec![0]));
        let initial = Health::NotServing("initial".into());
        assert_eq!(check(&[Some(&initial)], 10), Step::DeregisterAgain(vec![0]));
    }

    #[test]
    fn the_drain_timeout_is_the_policy_s_or_the_groups_capped() {
        let text = "name: w\npool: { tag: { key: k, value: v }, target_groups: [arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/1] }\nmin: 1\nmax: 4\nmetrics:\n  - { id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50 }\n";
        let p = vmscaler_engine::policy::parse_policy("w.yaml", text).policy.unwrap_or_else(|| panic!("invalid"));
        let g =
            |secs| TargetGroup { arn: "a".into(), ip_targets: false, deregistration_delay: Duration::from_secs(secs) };
        assert_eq!(drain_timeout(&p, &[g(30), g(120)]), Duration::from_secs(120));
        assert_eq!(drain_timeout(&p, &[g(3600)]), DRAIN_TIMEOUT_CAP);
        let with = format!("{text}scale_in: {{ drain_timeout: 45s }}\n");
        let p = vmscaler_engine::policy::parse_policy("w.yaml", &with).policy.unwrap_or_else(|| panic!("invalid"));
        assert_eq!(drain_timeout(&p, &[g(3600)]), Duration::from_secs(45));
    }
}
