//! Fleet description and actuation against a real moto server.

use jiff::Timestamp;
use vmscaler::aws::actuate::{Outcome, apply};
use vmscaler::aws::fleet::describe_fleets;
use vmscaler::aws::stats::Operation;
use vmscaler_engine::{Action, Decision, Fleet, GroupState, MemberState, Policy};

use crate::support::policy::{backlog_metric, group, tagged};
use crate::support::throttle::ThrottleProxy;
use crate::support::{Moto, TaggedPool};

const PROTECT: Option<(&str, &str)> = Some(("vmscaler:protect", "true"));

fn policy(name: &str) -> Policy {
    tagged(name, &backlog_metric("backlog", name), "scale_out:\n  order: id\n")
}

/// A decision carrying `actions` (the fields the adapters do not read are placeholders).
fn decision(policy: &Policy, current: u32, desired: u32, actions: Vec<Action>) -> Decision {
    Decision {
        policy: policy.name.clone(),
        at: Timestamp::UNIX_EPOCH,
        current,
        serving: current,
        desired,
        score: None,
        proposal: desired,
        readings: vec![],
        floor: None,
        bounds: vec![],
        actions,
        shortfall: 0,
        next_evaluation: Timestamp::UNIX_EPOCH,
    }
}

async fn make_pool(moto: &Moto, name: &str) -> TaggedPool {
    moto.create_tagged_pool(("vmscaler:pool", name), 2, 3, 1, PROTECT).await
}

async fn fleet_of(moto: &Moto, policy: &Policy) -> Fleet {
    let aws = moto.aws().await;
    describe_fleets(&aws, &[policy]).await.remove(&policy.name).expect("pool described").expect("describe ok")
}

#[tokio::test]
async fn tagged_pools_are_described_in_one_call_per_tag_key() {
    let moto = Moto::start();
    let web = make_pool(&moto, "web").await;
    let api = moto.create_tagged_pool(("vmscaler:pool", "api"), 1, 0, 0, None).await;
    let other = moto.create_tagged_pool(("team", "batch"), 1, 1, 0, None).await;
    let _stranger = moto.create_tagged_pool(("vmscaler:pool", "not-ours"), 2, 0, 0, None).await;
    let gone = moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 0, 0, None).await;
    moto.ec2()
        .await
        .terminate_instances()
        .set_instance_ids(Some(gone.running.clone()))
        .send()
        .await
        .expect("terminate");

    let batch = parse_batch_policy();
    let (pw, pa) = (policy("web"), policy("api"));
    let aws = moto.aws().await;
    let mut fleets = describe_fleets(&aws, &[&pw, &pa, &batch]).await;
    assert_eq!(aws.stats().calls(Operation::DescribeInstances), 2, "one per tag key");
    assert_eq!(aws.stats().calls(Operation::DescribeAutoScalingGroups), 0);

    let Fleet::Instances { members } = fleets.remove("web").expect("web").expect("ok") else { panic!("not a group") };
    let mut expect: Vec<(String, MemberState, bool)> = Vec::new();
    expect.extend(web.running.iter().map(|id| (id.clone(), MemberState::Running, false)));
    expect.extend(web.protected.iter().map(|id| (id.clone(), MemberState::Running, true)));
    expect.extend(web.stopped.iter().map(|id| (id.clone(), MemberState::Stopped, false)));
    expect.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<(String, MemberState, bool)> = members.iter().map(|m| (m.id.clone(), m.state, m.protected)).collect();
    assert_eq!(got, expect, "terminated and foreign instances are not members");
    assert!(members.iter().all(|m| m.launched_at.is_some() && m.cpu.is_none()));

    let Fleet::Instances { members } = fleets.remove("api").expect("api").expect("ok") else { panic!() };
    assert_eq!(members.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), api.running);
    let Fleet::Instances { members } = fleets.remove("batch").expect("batch").expect("ok") else { panic!() };
    assert_eq!(members.len(), 2);
    assert!(members.iter().any(|m| m.id == other.stopped[0] && m.state == MemberState::Stopped));
}

fn parse_batch_policy() -> Policy {
    crate::support::policy::parse(&format!(
        "name: batch\npool:\n  tag: {{ key: team, value: batch }}\nmin: 0\nmax: 5\nmetrics:\n{}",
        backlog_metric("backlog", "batch")
    ))
}

#[tokio::test]
async fn start_and_stop_act_on_exactly_the_decided_members() {
    let moto = Moto::start();
    let pool = make_pool(&moto, "web").await;
    let p = policy("web");
    let aws = moto.aws().await;
    let fleet = fleet_of(&moto, &p).await;
    let before = moto.instance_states().await;

    let start = vec![pool.stopped[2].clone(), pool.stopped[0].clone()];
    let out =
        apply(&aws, &p, &fleet, &decision(&p, 3, 5, vec![Action::Start { instance_ids: start.clone() }]), false).await;
    assert_eq!(out, start.iter().map(|id| Outcome::Started { id: id.clone() }).collect::<Vec<_>>());
    let out = apply(
        &aws,
        &p,
        &fleet,
        &decision(&p, 5, 4, vec![Action::Stop { instance_ids: vec![pool.running[1].clone()] }]),
        false,
    )
    .await;
    assert_eq!(out, vec![Outcome::Stopped { id: pool.running[1].clone() }]);

    let after = moto.instance_states().await;
    for (id, state) in &before {
        let expected = if start.contains(id) {
            "running"
        } else if *id == pool.running[1] {
            "stopped"
        } else {
            state.as_str()
        };
        assert_eq!(after[id], expected, "{id}");
    }
    assert_eq!(aws.stats().calls(Operation::StartInstances), 1, "one batched call");
    assert_eq!(aws.stats().calls(Operation::StopInstances), 1);
}

#[tokio::test]
async fn protected_and_foreign_instances_are_never_stopped() {
    let moto = Moto::start();
    let pool = make_pool(&moto, "web").await;
    let stranger = moto.create_tagged_pool(("vmscaler:pool", "other"), 1, 0, 0, None).await;
    let p = policy("web");
    let aws = moto.aws().await;
    let fleet = fleet_of(&moto, &p).await;
    let ids = vec![pool.protected[0].clone(), stranger.running[0].clone()];
    let out = apply(&aws, &p, &fleet, &decision(&p, 3, 1, vec![Action::Stop { instance_ids: ids }]), false).await;
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|o| matches!(o, Outcome::Failed { .. })), "{out:?}");
    assert_eq!(aws.stats().calls(Operation::StopInstances), 0, "no call at all");
    let states = moto.instance_states().await;
    assert_eq!(states[&pool.protected[0]], "running");
    assert_eq!(states[&stranger.running[0]], "running");
}

#[tokio::test]
async fn dry_run_checks_permission_and_changes_nothing() {
    let moto = Moto::start();
    let pool = make_pool(&moto, "web").await;
    let p = policy("web");
    let aws = moto.aws().await;
    let fleet = fleet_of(&moto, &p).await;
    let ec2 = moto.ec2().await;
    let before = format!("{:?}", ec2.describe_instances().send().await.expect("describe").reservations());

    let actions = vec![
        Action::Start { instance_ids: pool.stopped.clone() },
        Action::Stop { instance_ids: vec![pool.running[0].clone()] },
    ];
    let out = apply(&aws, &p, &fleet, &decision(&p, 3, 5, actions), true).await;
    let mut expect: Vec<Outcome> =
        pool.stopped.iter().map(|id| Outcome::WouldStart { id: id.clone(), permitted: true }).collect();
    expect.push(Outcome::WouldStop { id: pool.running[0].clone(), permitted: true });
    assert_eq!(out, expect);
    assert_eq!(out[0].to_string(), format!("would start {} (permission checked)", pool.stopped[0]));

    let after = format!("{:?}", ec2.describe_instances().send().await.expect("describe").reservations());
    assert_eq!(before, after, "DescribeInstances output identical after a dry run");
    let s = aws.stats().get(Operation::StartInstances);
    assert_eq!((s.calls, s.errors), (1, 0), "DryRunOperation is the expected answer, not an error");
}

#[tokio::test]
async fn dry_run_reports_a_call_the_credentials_would_not_be_allowed() {
    // Six unauthenticated setup actions (two RunInstances, one StopInstances, three IAM
    // calls), then moto enforces IAM: the user may describe and stop, not start.
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "6")]);
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 1, 0, None).await;
    let (key, secret) = moto.create_user("operator", &["ec2:Describe*", "ec2:StopInstances"]);
    let aws = vmscaler::aws::Aws::from_sdk_config(&moto.sdk_config_as(&key, &secret).await);
    let p = policy("web");
    let fleet = describe_fleets(&aws, &[&p]).await.remove("web").expect("web").expect("describe is allowed");
    let actions =
        vec![Action::Start { instance_ids: pool.stopped.clone() }, Action::Stop { instance_ids: pool.running.clone() }];
    let out = apply(&aws, &p, &fleet, &decision(&p, 1, 1, actions), true).await;
    assert_eq!(
        out,
        vec![
            Outcome::WouldStart { id: pool.stopped[0].clone(), permitted: false },
            Outcome::WouldStop { id: pool.running[0].clone(), permitted: true },
        ]
    );
    assert_eq!(out[0].to_string(), format!("would start {} (NOT permitted)", pool.stopped[0]));
}

#[tokio::test]
async fn a_policy_in_dry_run_mode_changes_nothing_either() {
    let moto = Moto::start();
    let pool = make_pool(&moto, "web").await;
    let p = tagged("web", &backlog_metric("backlog", "web"), "dry_run: true\n");
    let aws = moto.aws().await;
    let fleet = fleet_of(&moto, &p).await;
    let out = apply(
        &aws,
        &p,
        &fleet,
        &decision(&p, 3, 4, vec![Action::Start { instance_ids: vec![pool.stopped[0].clone()] }]),
        false,
    )
    .await;
    assert_eq!(out, vec![Outcome::WouldStart { id: pool.stopped[0].clone(), permitted: true }]);
    assert_eq!(moto.instance_states().await[&pool.stopped[0]], "stopped");
}

#[tokio::test]
async fn auto_scaling_group_desired_capacity_follows_within_bounds() {
    let moto = Moto::start();
    moto.create_asg("workers", 1, 5, 1).await;
    moto.create_asg("spare", 0, 3, 0).await;
    let p = group("queue", "workers");
    let spare = group("spare-pool", "spare");
    let missing = group("ghost", "no-such-group");
    let aws = moto.aws().await;
    let mut fleets = describe_fleets(&aws, &[&p, &spare, &missing]).await;
    assert_eq!(aws.stats().calls(Operation::DescribeAutoScalingGroups), 1, "all groups in one call");
    assert_eq!(aws.stats().calls(Operation::DescribeScalingActivities), 0, "settled groups need no activity check");
    let fleet = fleets.remove("queue").expect("queue").expect("ok");
    assert_eq!(
        fleet,
        Fleet::Group(GroupState {
            name: "workers".into(),
            desired: 1,
            min: 1,
            max: 5,
            in_service: 1,
            activity_in_progress: false
        })
    );
    let err = fleets.remove("ghost").expect("ghost").expect_err("missing group");
    assert!(err.to_string().contains("not found"), "{err}");

    let set = |d| vec![Action::SetDesiredCapacity { group: "workers".into(), desired: d }];
    let out = apply(&aws, &p, &fleet, &decision(&p, 1, 3, set(3)), true).await;
    assert_eq!(out, vec![Outcome::WouldSetDesired { group: "workers".into(), desired: 3 }]);
    assert_eq!(moto.asg_desired("workers").await, 1, "dry run");

    let out = apply(&aws, &p, &fleet, &decision(&p, 1, 3, set(3)), false).await;
    assert_eq!(out, vec![Outcome::DesiredSet { group: "workers".into(), desired: 3 }]);
    assert_eq!(moto.asg_desired("workers").await, 3);

    let out = apply(&aws, &p, &fleet, &decision(&p, 3, 9, set(9)), false).await;
    assert_eq!(out, vec![Outcome::DesiredSet { group: "workers".into(), desired: 5 }], "the group's max");
    let Fleet::Group(g) = fleet_of(&moto, &p).await else { panic!("group") };
    assert_eq!((g.desired, g.in_service), (5, 5));
}

#[tokio::test]
async fn throttled_calls_are_retried_and_counted() {
    let moto = Moto::start();
    let pool = make_pool(&moto, "web").await;
    let proxy = ThrottleProxy::start(&moto.endpoint, 2).await;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(crate::support::REGION))
        .endpoint_url(&proxy.endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let aws = vmscaler::aws::Aws::from_sdk_config(&config);
    let p = policy("web");
    let mut fleets = describe_fleets(&aws, &[&p]).await;
    let Fleet::Instances { members } = fleets.remove("web").expect("web").expect("retried to success") else {
        panic!("group")
    };
    assert_eq!(members.len(), pool.running.len() + pool.stopped.len() + pool.protected.len());
    assert_eq!(proxy.throttled(), 2);
    let s = aws.stats().get(Operation::DescribeInstances);
    assert_eq!((s.calls, s.throttled, s.retries, s.errors), (1, 2, 2, 0));
}
