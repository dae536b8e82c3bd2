#!/usr/bin/env bash
# The demo: vmscaler against a local AWS emulator, on a real CPU trace, in about two minutes.
#
# 1. creates .venv with the pinned moto server (scripts/setup-venv.sh) and builds vmscaler;
# 2. starts moto on a free loopback port and creates a tagged pool (2 running members, one
#    protected member, 6 stopped ones) and an Auto Scaling group;
# 3. runs `vmscaler run` against it with demo/policies, its clock 600x faster than wall time;
# 4. replays 10 hours of a real CloudWatch CPU trace (demo/data) into moto's CloudWatch, one
#    5-minute point every 0.5 s, and prints the fleet as it changes next to the daemon's
#    decisions; then `vmscaler status`, and stops everything.
# Everything it writes goes to demo-out/ (git-ignored). Usage: scripts/demo.sh   (or make demo)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/demo-out"
scale="${DEMO_SCALE:-600}"
hours="${DEMO_HOURS:-10}"

"$root/scripts/setup-venv.sh"
py="$root/.venv/bin/python"
# The release binary when one is already built (kept current: an incremental build), else debug.
if [ -x "$root/target/release/vmscaler" ]; then
  echo "demo: using the release build (target/release/vmscaler)"
  cargo build --quiet --release --bin vmscaler
  bin="$root/target/release/vmscaler"
else
  echo "demo: building vmscaler"
  cargo build --quiet --bin vmscaler
  bin="$root/target/debug/vmscaler"
fi

rm -rf "$out"
mkdir -p "$out/policies" "$out/state"

fetch() { "$py" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode(), end="")' "$1"; }
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

moto_port="$(free_port)"
"$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$out/moto.log" 2>&1 &
pids+=($!)
endpoint="http://127.0.0.1:$moto_port"
for _ in $(seq 1 200); do
    fetch "$endpoint/moto-api/data.json" >/dev/null 2>&1 && break
    sleep 0.1
done
fetch "$endpoint/moto-api/data.json" >/dev/null 2>&1 || { echo "demo: moto did not start (see $out/moto.log)" >&2; exit 1; }
echo "demo: moto server on $endpoint"

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
    AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
"$py" "$root/demo/fleet.py" "$endpoint"

# The daemon's clock and the replayer's agree at `origin` and run `scale` times faster.
origin="$(date -u +%s)"
prewarm_start="$(date -u -d "@$((origin + 3 * 3600))" +%Y-%m-%dT%H:%M)"
sed "s/PREWARM_START/$prewarm_start/" demo/policies/demo-web.yaml >"$out/policies/demo-web.yaml"
cp demo/policies/demo-workers.yaml "$out/policies/"
"$bin" validate "$out/policies"

http_port="$(free_port)"
cat >"$out/vmscaler.yaml" <<CONF
policy_dir: policies
state_dir: state
listen: 127.0.0.1:$http_port
region: us-east-1
endpoint_url: $endpoint
log_format: json
metric_offset: 1m
time_scale: $scale
time_origin: $(date -u -d "@$origin" +%Y-%m-%dT%H:%M:%SZ)
CONF

VMSCALER_LOG=info "$bin" run --config "$out/vmscaler.yaml" 2>"$out/daemon.log" &
daemon_pid=$!
pids+=("$daemon_pid")
for _ in $(seq 1 100); do
    fetch "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "demo: vmscaler running (pid $daemon_pid, http://127.0.0.1:$http_port), clock ${scale}x"
echo "demo: the daemon's scaling decisions (from its JSON log) are marked '>>'"

"$py" "$root/demo/replay.py" --endpoint "$endpoint" --trace demo/data/ec2_cpu_utilization_fe7f93.csv \
    --start "2014-02-17 02:00:00" --hours "$hours" --origin "$origin" --scale "$scale" \
    --daemon-log "$out/daemon.log"

echo
"$bin" status --url "http://127.0.0.1:$http_port" --last 3
echo
echo "demo: metrics excerpt"
fetch "http://127.0.0.1:$http_port/metrics" | grep -E '^vmscaler_(actions_total|api_calls_total\{operation="GetMetricData"|evaluations_total)' || true

if [[ -r "/proc/$daemon_pid/status" ]]; then
    rss="$(awk '/^VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$daemon_pid/status")"
    cpu="$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f s", ($14 + $15) / hz}' "/proc/$daemon_pid/stat")"
    evals="$(fetch "http://127.0.0.1:$http_port/metrics" | awk '/^vmscaler_evaluations_total/ {n += $2} END {print n}')"
    echo "demo: daemon used $cpu of CPU for $evals evaluations, peak RSS $rss"
fi
kill -TERM "$daemon_pid"
if wait "$daemon_pid"; then
    echo "demo: vmscaler stopped cleanly (exit 0); logs and state in $out"
else
    echo "demo: vmscaler exited with status $?" >&2
    exit 1
fi
