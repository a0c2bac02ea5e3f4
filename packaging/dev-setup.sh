#!/usr/bin/env bash
# The README's first command: installs what is needed, builds lvmd, and walks one
# volume through the daemon (packaging/demo.sh: create, activate, mount, write, read
# back, unmount, remove). The demo needs device-mapper; where this kernel has none, it
# runs inside the project's throw-away QEMU VM (tests/vm/run-in-vm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/install-deps.sh
cargo build --release --bins
modprobe -q dm_mod 2>/dev/null || true
# /proc/misc lists device-mapper only when the kernel has it (a /dev/mapper/control node
# alone proves nothing, see tests/vm/README.md).
if grep -qw device-mapper /proc/misc && dmsetup version >/dev/null 2>&1; then
  exec packaging/demo.sh
fi
echo "dev-setup: this kernel has no device-mapper; running the demo in the test VM" >&2
exec tests/vm/run-in-vm.sh -- packaging/demo.sh
