#!/usr/bin/env bash
# Checks the unit files with systemd-analyze verify. The units name /usr/bin/lvmd, which
# verify insists exists; the copies checked here point at a built binary instead.
# Usage: systemd/verify.sh [path/to/lvmd]   (default: target/debug/lvmd, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null; then
  echo "verify.sh: systemd-analyze not found (apt-get install systemd)" >&2
  exit 1
fi
bin=${1:-${CARGO_TARGET_DIR:-target}/debug/lvmd}
[[ -x $bin ]] || cargo build --quiet --bin lvmd
bin=$(realpath "$bin")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/bin/lvmd|$bin|" systemd/lvmd.service >"$tmp/lvmd.service"
cp systemd/lvmd.socket "$tmp/lvmd.socket"
# verify prints problems on stderr but exits 0 for some of them: fail on any output.
out=$(cd "$tmp" && systemd-analyze verify --man=no ./lvmd.socket ./lvmd.service 2>&1) || {
  echo "$out" >&2
  exit 1
}
if [[ -n $out ]]; then
  echo "$out" >&2
  exit 1
fi
echo "systemd units: ok"
