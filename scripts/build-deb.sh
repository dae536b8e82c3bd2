#!/usr/bin/env bash
# Builds the vmscaler Debian package into target/debian/ with cargo-deb.
#
#   scripts/build-deb.sh                   release build, then the package (what you ship)
#   scripts/build-deb.sh --profile dev     package the debug binary `cargo test` already built,
#                                          into target/debian/dev/ (CI: checks the packaging
#                                          without a release build)
#   scripts/build-deb.sh --no-build        package whatever binary the profile dir holds
#
# cargo-deb is installed once, pinned, into target/tools (no global install). Generated inputs
# (completions, man pages, and the unit and config as installed: binary in /usr/bin, dry_run on
# by default) go to target/deb-assets/. Prints the package path on the last line.
set -euo pipefail

CARGO_DEB_VERSION=3.8.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile=release
build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
        --profile=*) profile="${1#--profile=}"; shift ;;
        --no-build) build=0; shift ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "build-deb: unknown argument $1" >&2; exit 64 ;;
    esac
done
case "$profile" in
    dev | debug) profile=dev; profile_dir=debug ;;
    *) profile_dir="$profile" ;;
esac
target_dir="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"

tools="$target_dir/tools"
if ! "$tools/bin/cargo-deb" --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION into $tools"
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" --root "$tools"
fi

if [[ $build -eq 1 ]]; then
    cargo build --locked --profile "$profile" --bin vmscaler
fi
bin="$target_dir/$profile_dir/vmscaler"
[[ -x "$bin" ]] || { echo "build-deb: $bin not built (drop --no-build)" >&2; exit 1; }

assets="$target_dir/deb-assets"
rm -rf "$assets"
mkdir -p "$assets"
"$bin" dist --out "$assets" >/dev/null
gzip -9n "$assets"/man/*.1
# The unit and config as the package installs them: the binary lives in /usr/bin, and a fresh
# install never changes a fleet until the operator turns dry_run off.
sed 's#/usr/local/bin/vmscaler#/usr/bin/vmscaler#g' systemd/vmscaler.service >"$assets/vmscaler.service"
sed -e 's/^dry_run: false\b.*/dry_run: true   # the package default: set false to go live/' \
    systemd/vmscaler.yaml >"$assets/vmscaler.yaml"
grep -q '^ExecStart=/usr/bin/vmscaler ' "$assets/vmscaler.service" ||
    { echo "build-deb: unit has no ExecStart=/usr/bin/vmscaler after rewriting" >&2; exit 1; }
grep -q '^dry_run: true' "$assets/vmscaler.yaml" ||
    { echo "build-deb: config has no dry_run line to default to true" >&2; exit 1; }

args=(--no-build --profile "$profile")
if [[ "$profile" == dev ]]; then
    # A test package: quick compression, and kept apart from a release package of the same
    # version; a release package gets cargo-deb's default (xz) in target/debian/.
    args+=(--fast --output "$target_dir/debian/dev/")
else
    args+=(--output "$target_dir/debian/")
fi
# cargo-deb strips the binary when it is not built with debug info it should keep.
deb="$("$tools/bin/cargo-deb" "${args[@]}" --strip | tail -n 1)"
echo "build-deb: $(du -h "$deb" | cut -f1) $(basename "$deb")"
echo "$deb"
