"""Replays a real CPU trace into moto's CloudWatch in accelerated time, and shows the fleet.

The daemon runs with `time_scale` S and `time_origin` O: its clock reads O + (wall - O) * S.
This script computes the same clock and publishes trace point i (5-minute steps from --start)
when that clock reaches O + i * 5 min:
- per running member of the pool `demo-web`: CPUUtilization = load spread over the running
  members (load = trace % / 100 * --factor instances' worth of work, capped at 100 %), so the
  daemon's own scaling feeds back into what it reads next;
- Demo/QueueDepth{Queue=demo-jobs} = load * 100 jobs, for the Auto Scaling group.
Each line shows the daemon's clock, the trace value and the fleet; changes are marked.
"""
import argparse
import csv
import datetime as dt
import json
import time

import boto3

REGION = "us-east-1"
STEP = 300


def client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def read_trace(path, start, hours):
    t0 = dt.datetime.fromisoformat(start)
    t1 = t0 + dt.timedelta(hours=hours)
    points = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            t = dt.datetime.fromisoformat(row["timestamp"])
            if t0 <= t < t1:
                points.append((t, float(row["value"])))
    points.sort()
    return points


def pool_members(ec2):
    resp = ec2.describe_instances(Filters=[{"Name": "tag:vmscaler:pool", "Values": ["demo-web"]}])
    out = {}
    for r in resp["Reservations"]:
        for i in r["Instances"]:
            out[i["InstanceId"]] = i["State"]["Name"]
    return out


class DecisionLog:
    """Follows the daemon's JSON log and formats its scaling decisions."""

    def __init__(self, path):
        self.path, self.offset = path, 0

    def new_decisions(self):
        if not self.path:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return []
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        out = []
        for line in chunk[:end].splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("message") != "decision":
                continue
            policy = (ev.get("span") or {}).get("policy", "?")
            out.append(f"  >> vmscaler {policy}: {ev.get('current')} -> {ev.get('desired')}"
                       f" (score {ev.get('score')}): {ev.get('outcomes')}\n       because {ev.get('reason')}")
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--trace", required=True)
    ap.add_argument("--start", default="2014-02-17 02:00:00")
    ap.add_argument("--hours", type=float, default=10)
    ap.add_argument("--origin", type=float, required=True, help="unix seconds where both clocks agree")
    ap.add_argument("--scale", type=float, required=True)
    ap.add_argument("--factor", type=float, default=6.0)
    ap.add_argument("--tail", type=float, default=300, help="daemon-clock seconds to keep watching after the trace")
    ap.add_argument("--daemon-log", help="the daemon's JSON log, to show its decisions as they happen")
    a = ap.parse_args()

    ec2, asg, cw = client("ec2", a.endpoint), client("autoscaling", a.endpoint), client("cloudwatch", a.endpoint)
    points = read_trace(a.trace, a.start, a.hours)
    if not points:
        raise SystemExit(f"replay: no trace points from {a.start} in {a.trace}")
    print(f"replay: {len(points)} points of {a.trace.split('/')[-1]} from {points[0][0]} "
          f"at {a.scale:g}x ({STEP / a.scale:.2f}s per 5-minute step)", flush=True)

    def clock():
        return a.origin + (time.time() - a.origin) * a.scale

    decisions = DecisionLog(a.daemon_log)
    prev_running, prev_desired = None, None
    for i, (trace_t, value) in enumerate(points + [(None, None)] * int(a.tail // STEP)):
        at = a.origin + i * STEP
        while clock() < at:
            time.sleep(max(0.005, (at - clock()) / a.scale))
        for line in decisions.new_decisions():
            print(line, flush=True)
        members = pool_members(ec2)
        running = sorted(m for m, s in members.items() if s in ("running", "pending"))
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["demo-workers"])["AutoScalingGroups"][0]
        desired = group["DesiredCapacity"]
        if value is not None:
            load = value / 100.0 * a.factor
            per_member = min(100.0, load * 100.0 / max(1, len(running)))
            stamp = dt.datetime.fromtimestamp(at, dt.timezone.utc)
            data = [{"MetricName": "CPUUtilization", "Dimensions": [{"Name": "InstanceId", "Value": m}],
                     "Timestamp": stamp, "Value": per_member} for m in running]
            for k in range(0, len(data), 500):
                cw.put_metric_data(Namespace="AWS/EC2", MetricData=data[k:k + 500])
            cw.put_metric_data(Namespace="Demo", MetricData=[{
                "MetricName": "QueueDepth", "Dimensions": [{"Name": "Queue", "Value": "demo-jobs"}],
                "Timestamp": stamp, "Value": load * 100.0}])
        changed = []
        if prev_running is not None:
            started = sorted(set(running) - set(prev_running))
            stopped = sorted(set(prev_running) - set(running))
            changed += [f"+{m}" for m in started] + [f"-{m}" for m in stopped]
        if prev_desired is not None and desired != prev_desired:
            changed.append(f"workers {prev_desired}->{desired}")
        if changed or i % 6 == 0:
            now = dt.datetime.fromtimestamp(clock(), dt.timezone.utc).strftime("%H:%M")
            trace = f"{trace_t:%m-%d %H:%M} cpu {value:5.1f}%" if value is not None else "(trace over)      "
            bar = "#" * len(running) + "." * (len(members) - len(running))
            mark = ("  <- " + " ".join(changed)) if changed else ""
            print(f"[daemon {now}] trace {trace} | demo-web {bar} {len(running)} running | "
                  f"demo-workers desired {desired}{mark}", flush=True)
        prev_running, prev_desired = running, desired


if __name__ == "__main__":
    main()
