#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Needs root: loop devices, Debian's lvm2, and the QEMU VM for device-mapper.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== host: unit, property and lvm2-interop tests"
cargo test --workspace

echo "== host: systemd units (systemd-analyze verify)"
systemd/verify.sh

echo "== host: lvm2-written fixtures (raid1, thin, snapshot, cache) read by lvm2 without DM"
tests/fixtures/lvm2/check-on-host.sh

echo "== image: lvmd-csi's OCI image built from Debian packages and run with runc (packaging/build-image.sh, check-image.sh)"
image=$(packaging/build-image.sh)
packaging/check-image.sh "$image"

echo "== VM: device-mapper tests on a real kernel (tests/vm)"
tests/vm/run-in-vm.sh --setup
# Build on the host first, so the VM's timeout covers only the tests.
cargo test --test vm_smoke --test vm_activate --test vm_daemon --test vm_csi --test vm_crypt --no-run
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" VM_TIMEOUT=900 \
  cargo test --test vm_smoke

echo "== VM: native activation against lvm2, with udev and without (tests/vm_activate.rs)"
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" VM_TIMEOUT=900 \
  cargo test --test vm_activate
VM_NO_UDEV=1 CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" VM_TIMEOUT=900 \
  cargo test --test vm_activate

# vm_daemon takes 12 to 25 minutes under software emulation on 2 cores (its 32-client and
# kill -9 cases); the timeout leaves room for a shared machine.
echo "== VM: the lvmd daemon end to end, with udev and without: lvm2/dmsetup cross-checks, 32 clients, kill -9 (tests/vm_daemon.rs)"
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" VM_TIMEOUT=2400 \
  cargo test --test vm_daemon
# Without udev, only the cases where udev plays a part (device nodes, links, open counts
# at activation, mkfs/mount on the LV's node). Left out: the 32 clients' creates and
# removes (no device is activated) and the 1000-round mount path race (confinement of
# target paths; its one activation is also in the other cases): half of vm_daemon's time.
VM_NO_UDEV=1 CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" VM_TIMEOUT=2400 \
  cargo test --test vm_daemon -- --skip thirty_two_parallel_clients --skip path_swaps_never_take_a_mount_out_of_the_root

echo "== VM: the CSI suite against the real lvmd, plugin in its own mount namespace (HostToContainer), and with no propagation (tests/vm_csi.rs)"
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" VM_TIMEOUT=900 \
  cargo test --test vm_csi

echo "== VM: LUKS2 through libcryptsetup on dm-crypt, and Debian's cryptsetup both ways (tests/vm_crypt.rs)"
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/run-in-vm.sh" VM_TIMEOUT=900 \
  cargo test --test vm_crypt
