#!/usr/bin/env bash
# The README's first command: installs what is needed, builds lvmd, and runs the demo
# (a volume group on two file-backed loop devices, made and changed by lvmd's own code,
# then read back by lvmd-ctl inspect and by lvm2).
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/install-deps.sh
cargo build --release --bins --examples
exec target/release/examples/demo
