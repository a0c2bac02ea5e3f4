#!/usr/bin/env bash
# Installs what building and testing lvmd needs on Debian/Ubuntu. Idempotent; run as root.
set -euo pipefail
packages=(
  # build: bindgen-based -sys crates, tonic code generation
  pkg-config libclang-dev libdevmapper-dev libcryptsetup-dev libudev-dev libblkid-dev protobuf-compiler
  # tests: real lvm2 to check compatibility against, loop devices, filesystems
  lvm2 dmsetup util-linux e2fsprogs xfsprogs thin-provisioning-tools cryptsetup-bin
  # tests: foreign signatures lvmd must refuse (btrfs; sfdisk for partition tables)
  btrfs-progs fdisk
  # systemd-analyze verify of the units, systemd-socket-activate (tests/ctl.rs); systemd
  # as the VM guest's PID 1 for the sandboxed daemon runs (tests/vm/sandboxed.sh)
  systemd
  # tests/packaging.rs: render-chart.py (PyYAML), the .deb (dpkg-deb), ldd
  python3 python3-yaml dpkg libc-bin
  # the plugin's image: built (packaging/build-image.sh: objcopy, apt-get download,
  # umoci) and run (packaging/check-image.sh: runc)
  binutils apt umoci runc
  # the VM harness (tests/vm)
  qemu-system-x86 busybox-static kmod cpio xz-utils iproute2
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
