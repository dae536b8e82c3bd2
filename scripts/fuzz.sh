#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the policy parser and the trace reader.
#
# Targets (fuzz/fuzz_targets/):
#   policy  vmscaler_engine::policy::parse_policy on any bytes; a policy that validates is then
#           evaluated by decide() on empty, mixed and min>max fleets at 1970, 2026 and the ends
#           of Timestamp's range.
#   trace   vmscaler_engine::backtest::trace::read_trace on any bytes (first byte: options:
#           value column, step, start, fill); a trace that comes back must be time-ordered.
# Corpora live in fuzz/corpus/<target>/ (seeded from policies/*.yaml, tests/data/policies and
# the heads of tests/data/traces behind one options byte, minimised with cmin); crashes land in
# fuzz/artifacts/<target>/ (ignored by git: turn each into a test and a corpus seed).
#
# Only a stable toolchain is needed: cargo-fuzz passes nightly-only flags (-Zsanitizer...), so
# RUSTC_BOOTSTRAP=1 is set. The sanitizer is off (-s none): the engine forbids unsafe code,
# the bugs sought are panics (overflow checks are on: cargo-fuzz builds with debug assertions)
# and hangs; without ASan it runs about twice as fast.
#
# Usage:
#   scripts/fuzz.sh install                 cargo-fuzz into target/tools (once)
#   scripts/fuzz.sh run <policy|trace> [S]  fuzz one target for S seconds (default 600), niced
#   scripts/fuzz.sh check                   replay both corpora once (fast; a regression check)
#   scripts/fuzz.sh cmin <policy|trace>     minimise a corpus after a long run
#   scripts/fuzz.sh repro <target> <file>   rerun one input (e.g. a crash artifact)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/target/tools/bin:$PATH"
export RUSTC_BOOTSTRAP=1
cd "$root/fuzz"

need_cargo_fuzz() {
    if ! command -v cargo-fuzz >/dev/null 2>&1; then
        echo "cargo-fuzz not found: run scripts/fuzz.sh install" >&2
        exit 1
    fi
}

case "${1:-}" in
install)
    cargo install cargo-fuzz --locked --version 0.13.2 --root "$root/target/tools"
    ;;
run)
    need_cargo_fuzz
    target="${2:?target: policy or trace}"
    secs="${3:-600}"
    # -timeout: an input taking over 10 s is a hang; -print_final_stats: executions and time.
    nice -n 15 cargo fuzz run -s none "$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
    ;;
check)
    need_cargo_fuzz
    for target in policy trace; do
        cargo fuzz run -s none "$target" "corpus/$target" -- -runs=0
    done
    ;;
cmin)
    need_cargo_fuzz
    nice -n 15 cargo fuzz cmin -s none "${2:?target: policy or trace}"
    ;;
repro)
    need_cargo_fuzz
    cargo fuzz run -s none "${2:?target}" "${3:?input file}"
    ;;
*)
    sed -n '2,/^set -euo/p' "$root/scripts/fuzz.sh" | sed '$d'
    exit 2
    ;;
esac
