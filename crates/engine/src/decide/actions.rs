//! Actions: which members to start or stop (or the group's new desired capacity) for the
//! capacity decided, in the policy's scale-out and scale-in orders. Part of [`super::decide`].

use super::*;

pub(super) fn plan_actions(
    policy: &Policy,
    fleet: &Fleet,
    current: u32,
    desired: &mut u32,
    bounds: &mut Vec<Bound>,
) -> (Vec<Action>, u32) {
    match fleet {
        Fleet::Group(g) => {
            if *desired == g.desired {
                (vec![], 0)
            } else if g.activity_in_progress {
                bounds.push(Bound::ActivityInProgress);
                *desired = current;
                (vec![], 0)
            } else {
                (vec![Action::SetDesiredCapacity { group: g.name.clone(), desired: *desired }], 0)
            }
        }
        Fleet::Instances { members } if *desired > current => {
            let want = usize::try_from(*desired - current).unwrap_or(usize::MAX);
            // Members still draining come back first: they are running and need no boot.
            let mut draining: Vec<&Member> = members.iter().filter(|m| m.state == MemberState::Draining).collect();
            sort_for_start(&mut draining, policy.scale_out.order);
            let kept: Vec<String> = draining.iter().take(want).map(|m| m.id.clone()).collect();
            let mut stopped: Vec<&Member> = members.iter().filter(|m| m.state == MemberState::Stopped).collect();
            sort_for_start(&mut stopped, policy.scale_out.order);
            let ids: Vec<String> = stopped.iter().take(want - kept.len()).map(|m| m.id.clone()).collect();
            let got = u32::try_from(ids.len() + kept.len()).unwrap_or(u32::MAX);
            let shortfall = *desired - current - got;
            if shortfall > 0 {
                bounds.push(Bound::WarmPoolShort { shortfall });
            }
            let mut actions = Vec::new();
            if !kept.is_empty() {
                actions.push(Action::CancelDrain { instance_ids: kept });
            }
            if !ids.is_empty() {
                actions.push(Action::Start { instance_ids: ids });
            }
            (actions, shortfall)
        }
        Fleet::Instances { members } if *desired < current => {
            let mut running: Vec<&Member> = members
                .iter()
                .filter(|m| matches!(m.state, MemberState::Running | MemberState::Warming) && !m.protected)
                .collect();
            sort_for_stop(&mut running, policy.scale_in.order);
            let want = usize::try_from(current - *desired).unwrap_or(usize::MAX);
            let ids: Vec<String> = running.iter().take(want).map(|m| m.id.clone()).collect();
            let got = u32::try_from(ids.len()).unwrap_or(u32::MAX);
            if got < current - *desired {
                let kept = current - *desired - got;
                bounds.push(Bound::Protected { kept });
                *desired = current - got;
            }
            let actions = if ids.is_empty() { vec![] } else { vec![Action::Stop { instance_ids: ids }] };
            (actions, 0)
        }
        Fleet::Instances { .. } => (vec![], 0),
    }
}

/// Orders stopped members the way scale-out starts them (the actuator uses it too, to pick
/// replacements when AWS has no capacity for a chosen member).
pub fn sort_for_start(members: &mut [&Member], order: ScaleOutOrder) {
    match order {
        ScaleOutOrder::Oldest => members.sort_by(|a, b| (a.launched_at, &a.id).cmp(&(b.launched_at, &b.id))),
        ScaleOutOrder::Newest => members.sort_by(|a, b| (b.launched_at, &a.id).cmp(&(a.launched_at, &b.id))),
        ScaleOutOrder::Id => members.sort_by(|a, b| a.id.cmp(&b.id)),
    }
}

pub(super) fn sort_for_stop(members: &mut [&Member], order: ScaleInOrder) {
    match order {
        ScaleInOrder::Newest => members.sort_by(|a, b| (b.launched_at, &a.id).cmp(&(a.launched_at, &b.id))),
        ScaleInOrder::Oldest => members.sort_by(|a, b| (a.launched_at, &a.id).cmp(&(b.launched_at, &b.id))),
        ScaleInOrder::LowestCpu => members.sort_by(|a, b| {
            let ka = a.cpu.filter(|c| c.is_finite()).unwrap_or(f64::INFINITY);
            let kb = b.cpu.filter(|c| c.is_finite()).unwrap_or(f64::INFINITY);
            ka.total_cmp(&kb).then_with(|| a.id.cmp(&b.id))
        }),
    }
}
