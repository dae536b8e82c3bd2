#!/usr/bin/env bash
# Reproduces the README's frontier table: `vmscaler backtest --sweep cpu.target=...` on every
# public trace in ../shared/traces that fits, the same policy and defaults for all of them.
#
# - Request-like traces (Twitter volume, NYC taxi): the shipped web policy, each trace's values
#   scaled so that its 99th percentile needs 48 instances at 100 % CPU
#   (see `scaled` below).
# - World Cup 98: the shipped web policy at --capacity-per-instance 2727.27 (1500 / 0.55: the
#   instance the policy's two metrics describe).
# - NAB CloudWatch CPU series: tests/data/policies/cpu-api.yaml with --cpu-fleet 10.
# Boot 90 s, metric lag 60 s. Reports go to ${OUT:-target/frontier}; PROFILE=release for speed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
traces="${TRACES:-$root/../shared/traces}"
out="${OUT:-$root/target/frontier}"
sweep="${SWEEP:-cpu.target=35,40,45,50,55,60,65}"
profile="${PROFILE:-debug}"
cd "$root"
if [ "$profile" = release ]; then cargo build --quiet --release --bin vmscaler; else cargo build --quiet --bin vmscaler; fi
bin="$root/target/$profile/vmscaler"
mkdir -p "$out"
# A request trace with a step of S seconds, rescaled so that its 99th percentile needs 48
# instances of 2727.27 requests per minute: values x (2727.27 x S / 60) x 48 / p99, with
# --capacity-per-instance 2727.27 x S / 60 (the simulated RequestCountPerTarget counts arrivals
# per step, so this keeps the web policy's request metric on the same scale as its CPU metric).
scaled() { # trace step-seconds -> writes $out/traces/<name>, prints its capacity per instance
    mkdir -p "$out/traces"
    python3 - "$1" "$2" "$out/traces/$(basename "$1")" <<'PY'
import csv, sys
src, step, dst = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rows = list(csv.reader(open(src)))
vals = sorted(float(r[1]) for r in rows[1:] if r[1])
cap = 2727.27 * step / 60
k = cap * 48 / vals[int(0.99 * len(vals))]
with open(dst, "w") as f:
    f.write(",".join(rows[0]) + "\n")
    for r in rows[1:]:
        f.write(f"{r[0]},{float(r[1]) * k if r[1] else ''}\n")
print(cap)
PY
}
run() { # name policy trace unit-flag unit-value
    "$bin" backtest --policy "$2" --trace "$3" "$4" "$5" --sweep "$sweep" --out "$out/$1" >/dev/null
    echo "$1" >>"$out/names"
}
: >"$out/names"
for t in CRM CVS IBM KO PFE UPS; do
    cap="$(scaled "$traces/nab-twitter-volume/Twitter_volume_$t.csv" 300)"
    run "twitter_$t" policies/web-storefront.yaml "$out/traces/Twitter_volume_$t.csv" --capacity-per-instance "$cap"
done
cap="$(scaled "$traces/nab-nyc-taxi/nyc_taxi.csv" 1800)"
run nyc_taxi policies/web-storefront.yaml "$out/traces/nyc_taxi.csv" --capacity-per-instance "$cap"
run wc98 policies/web-storefront.yaml "$traces/worldcup98/wc98_requests_per_minute.csv" --capacity-per-instance 2727.27
for f in ec2_cpu_utilization_ac20cd ec2_cpu_utilization_fe7f93 cpu_utilization_asg_misconfiguration ec2_cpu_utilization_5f5533 ec2_cpu_utilization_77c1ca ec2_cpu_utilization_825cc2 rds_cpu_utilization_e47b3b; do
    run "$f" tests/data/policies/cpu-api.yaml "$traces/nab-aws-cloudwatch/$f.csv" --cpu-fleet 10
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
names = [n.strip() for n in open(f"{out}/names") if n.strip()]
print("| trace | policy inst-h @55 | policy under-prov. min | policy reversals | hpa inst-h | hpa under-prov. min | hpa reversals | tt inst-h | tt under-prov. min | tt reversals | vs hpa at equal cost (mean ratio) | vs tt at equal cost (mean ratio) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
means = {"hpa": [], "target-tracking": []}
for n in names:
    f = json.load(open(f"{out}/{n}/frontier.json"))
    at = {(p["strategy"], p["value"]): p for p in f["points"]}
    p, h, t = at[("policy", 55.0)], at[("hpa", 55.0)], at[("target-tracking", 55.0)]
    r = {}
    for ref in means:
        xs = [c["ratio"] for c in f["comparisons"] if c["reference"] == ref and c["ratio"] is not None]
        r[ref] = sum(xs) / len(xs) if xs else None
        if r[ref] is not None:
            means[ref].append(r[ref])
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"
    print(f"| {n} | {p['instance_hours']:.1f} | {p['under_provisioned_minutes']:.1f} | {p['reversals']} | "
          f"{h['instance_hours']:.1f} | {h['under_provisioned_minutes']:.1f} | {h['reversals']} | "
          f"{t['instance_hours']:.1f} | {t['under_provisioned_minutes']:.1f} | {t['reversals']} | {fmt(r['hpa'])} | {fmt(r['target-tracking'])} |")
for ref, xs in means.items():
    if xs:
        print(f"\nmean over traces of the equal-cost ratio vs {ref}: {sum(xs)/len(xs):.2f} ({len(xs)} traces with an overlap)")
PY
