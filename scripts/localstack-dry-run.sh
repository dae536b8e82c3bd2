#!/usr/bin/env bash
# Dry-run vmscaler against LocalStack 4.14 community (EC2 + CloudWatch; it has no Auto Scaling).
#
# Installs LocalStack into .venv-localstack (Python 3.13: LocalStack 4.14's CloudWatch imports
# warnings.deprecated, new in 3.13), starts it on a free loopback port, creates a tagged pool
# with high CPU, runs one evaluation of `vmscaler run --dry-run`, and checks that it decided
# to scale up, checked permission with DryRun=true, and left DescribeInstances unchanged.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-localstack"
work="$(mktemp -d)"
ls_pid=""
cleanup() {
    [[ -n "$ls_pid" ]] && kill "$ls_pid" 2>/dev/null && wait "$ls_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

find_python() {
    local c
    for c in python3.13 python3.14; do
        if "$c" -c 'import sys' >/dev/null 2>&1; then command -v "$c"; return 0; fi
    done
    # pyenv's shims only answer for the selected version: look for an installed one directly.
    if command -v pyenv >/dev/null 2>&1; then
        for c in "$(pyenv root)"/versions/3.1[34]*/bin/python3; do
            if [[ -x "$c" ]]; then echo "$c"; return 0; fi
        done
    fi
    return 1
}
python="$(find_python)" || { echo "localstack-dry-run: Python 3.13 is required (LocalStack 4.14's CloudWatch uses warnings.deprecated)" >&2; exit 1; }
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import localstack' 2>/dev/null; then
    echo "localstack-dry-run: installing LocalStack 4.14.0 into $venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "localstack-core[runtime]==4.14.0" "cbor2<6" "cryptography<45" "pyopenssl<25" service_identity
fi

port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
endpoint="http://127.0.0.1:$port"
(cd "$work" && GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_VOLUME_DIR="$work/volume" \
    exec "$venv/bin/python" -m localstack.runtime.main >"$work/localstack.log" 2>&1) &
ls_pid=$!
for _ in $(seq 1 90); do
    curl -fs "$endpoint/_localstack/health" >/dev/null 2>&1 && break
    sleep 1
done
curl -fs "$endpoint/_localstack/health" >/dev/null || { tail -30 "$work/localstack.log" >&2; exit 1; }

cargo build --quiet --bin vmscaler --manifest-path "$root/Cargo.toml"
vmscaler="$root/target/debug/vmscaler"
"$venv/bin/python" "$root/scripts/localstack_pool.py" "$endpoint" create
before="$("$venv/bin/python" "$root/scripts/localstack_pool.py" "$endpoint" describe)"

mkdir -p "$work/policies"
cat >"$work/policies/ls-web.yaml" <<POLICY
name: ls-web
pool:
  tag: { key: "vmscaler:pool", value: ls-web }
min: 1
max: 5
interval: 1m
metrics:
  - { id: cpu, namespace: AWS/EC2, name: CPUUtilization, period: 1m, per_instance: avg, target: 50, ceiling: 90 }
scaling:
  scale_up: { confirmations: 1 }
POLICY
cat >"$work/vmscaler.yaml" <<CONFIG
policy_dir: policies
state_dir: state
listen: "off"
region: us-east-1
log_format: text
dry_run: true
CONFIG
AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test timeout 15 \
    "$vmscaler" run --config "$work/vmscaler.yaml" --dry-run --endpoint-url "$endpoint" >"$work/run.log" 2>&1 || true
after="$("$venv/bin/python" "$root/scripts/localstack_pool.py" "$endpoint" describe)"

grep -E 'evaluate' "$work/run.log" | head -3
fail=0
grep -q 'current=3 desired=5' "$work/run.log" || { echo "FAIL: expected a scale-up from 3 to 5" >&2; fail=1; }
[[ "$(grep -o 'would start i-[0-9a-f]* (permission checked)' "$work/run.log" | wc -l)" -eq 2 ]] \
    || { echo "FAIL: expected two permission-checked dry-run starts" >&2; fail=1; }
[[ "$before" == "$after" ]] || { echo "FAIL: the fleet changed in dry-run: $before -> $after" >&2; fail=1; }
if [[ $fail -ne 0 ]]; then cat "$work/run.log" >&2; exit 1; fi
echo "localstack-dry-run: ok (LocalStack 4.14 community: metrics read, 3 -> 5 planned, DryRun permission checked, fleet unchanged)"
