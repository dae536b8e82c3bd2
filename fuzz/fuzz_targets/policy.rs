//! Fuzzes the policy parser: any text, valid UTF-8 or not, must give a report, never a panic.
//! A text that validates is then evaluated through a `PoolCycle` against a few fleets, histories and
//! instants (epoch, now-ish, far future), so values validation accepts cannot make the engine
//! panic (overflowing durations, huge capacities, odd pre-warm rules).
#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use vmscaler_engine::policy::parse_policy;
use vmscaler_engine::{Achieved, Fleet, GroupState, Member, MemberState, PoolCycle, Sample};

fn fleets() -> Vec<Fleet> {
    let member = |i: u32, state| Member {
        id: format!("i-{i:02}"),
        state,
        launched_at: Timestamp::from_second(1_700_000_000 + i64::from(i)).ok(),
        protected: i % 3 == 0,
        cpu: Some(f64::from(i) * 10.0),
    };
    vec![
        Fleet::Instances { members: vec![] },
        Fleet::Instances {
            members: (0..6)
                .map(|i| member(i, if i < 3 { MemberState::Running } else { MemberState::Stopped }))
                .collect(),
        },
        Fleet::Group(GroupState {
            name: "g".into(),
            desired: 3,
            min: 5,
            max: 2,
            in_service: 3,
            activity_in_progress: false,
        }),
    ]
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let report = parse_policy("fuzz.yaml", &text);
    for d in &report.diagnostics {
        let _ = d.to_string();
    }
    let Some(policy) = report.policy else { return };
    let instants = [Timestamp::UNIX_EPOCH, Timestamp::constant(1_795_000_000, 0), Timestamp::MAX, Timestamp::MIN];
    for now in instants {
        let mut observed = PoolCycle::new();
        for m in &policy.metrics {
            for (back, value) in [(120, 10.0), (60, 95.0), (0, 1e308)] {
                if let Ok(at) = now.checked_sub(jiff::SignedDuration::from_secs(back)) {
                    observed.observe(&m.id, Sample { at, value });
                }
            }
        }
        for fleet in fleets() {
            let mut cycle = observed.clone();
            let d = cycle.evaluate(&policy, &fleet, now);
            let _ = d.reasons();
            cycle.complete(Achieved::AsDecided);
            let _ = cycle.evaluate(&policy, &fleet, d.next_evaluation);
            cycle.complete(Achieved::Capacity(fleet.current()));
        }
    }
});
