#!/usr/bin/env bash
# Installs Prometheus (with promtool) and Alertmanager from the distribution's packages where
# they are missing: the integration tests start their own instances of both on free loopback
# ports with temporary data directories, so the packages' systemd services play no part (they
# are stopped and disabled where systemd runs, so that they do not hold ports 9090/9093).
# Idempotent: with all three binaries on PATH it only reports their versions.
# Usage: scripts/setup-prometheus.sh      (as root, or with passwordless sudo)
set -euo pipefail

have_all() {
    command -v prometheus >/dev/null 2>&1 &&
        command -v promtool >/dev/null 2>&1 &&
        { command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1; }
}

if have_all; then
    echo "setup-prometheus: $(prometheus --version 2>&1 | head -1)"
    exit 0
fi

sudo=""
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        echo "setup-prometheus: prometheus, promtool and alertmanager are missing and this user cannot install packages;" >&2
        echo "  install them with: apt-get install prometheus prometheus-alertmanager" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-prometheus: no apt-get here; install Prometheus 2.x (with promtool) and Alertmanager 0.25+ and put them on PATH" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Installing must not start the packages' services (no init runs in containers, and on a host
# they would take ports 9090/9093): policy-rc.d refuses every start while we install.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    own_policy=1
fi
cleanup() { if [[ -n "$own_policy" ]]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT

if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $sudo apt-get update -qq
fi
$sudo apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    $sudo systemctl disable --now prometheus prometheus-alertmanager prometheus-node-exporter 2>/dev/null || true
fi
have_all || { echo "setup-prometheus: installed, but prometheus/promtool/alertmanager are still not on PATH" >&2; exit 1; }
echo "setup-prometheus: ready ($(prometheus --version 2>&1 | head -1))"
