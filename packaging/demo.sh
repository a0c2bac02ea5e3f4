#!/usr/bin/env bash
# One volume through the lvmd daemon, step by step: start lvmd on a file-backed demo
# device class (a sparse file on a loop device), create a volume with lvmd-ctl, mount it
# (activated through device-mapper, mkfs.ext4 on first use), write a file, unmount, mount
# again and read the file back, unmount, remove; lvm2's `lvs` reads along. (It is mounted
# before anything activates it alone: a volume a client activated raw is its to fill,
# and lvmd never formats it after that.)
#
# Needs root and a kernel with device-mapper. packaging/dev-setup.sh builds lvmd and runs
# this, inside the project's test VM (tests/vm/run-in-vm.sh) when this kernel has no
# device-mapper. Binaries: $LVMD_BIN_DIR, default target/release (or $CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LVMD_BIN_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/release}
for b in lvmd lvmd-ctl; do
  [[ -x $bin/$b ]] || { echo "demo: $bin/$b not found: run cargo build --release --bins" >&2; exit 1; }
done
if [[ $(id -u) != 0 ]]; then echo "demo: run as root (loop devices, device-mapper, mount)" >&2; exit 1; fi

dir=$(mktemp -d /tmp/lvmd-demo.XXXXXX)
vg=lvmd_demo
socket=$dir/lvmd.sock
mnt=$dir/kubelet/pods/demo/volume
pid=
cleanup() {
  set +e
  umount "$mnt" 2>/dev/null
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  dmsetup remove "$vg-demo" 2>/dev/null
  for dev in $(losetup -j "$dir/demo.img" -O NAME -n 2>/dev/null); do losetup -d "$dev"; done
  rm -rf "$dir"
}
trap cleanup EXIT

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold= plain=; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
show() { printf '+ %s\n' "$*"; "$@"; }
ctl() { show "$bin/lvmd-ctl" --socket "$socket" "$@"; }

cat >"$dir/lvmd.toml" <<TOML
socket = "$socket"
mount_roots = ["$dir/kubelet"]
backup_dir = "$dir/backup"
archive_dir = "$dir/archive"

[device_classes.demo]
volume_group = "$vg"
default = true
loop_file = { path = "$dir/demo.img", size = "512MiB" }
TOML

step "start lvmd (config: a 512 MiB sparse file as the demo device class)"
sed 's/^/    /' "$dir/lvmd.toml"
"$bin/lvmd" --config "$dir/lvmd.toml" 2>"$dir/lvmd.log" &
pid=$!
for _ in $(seq 100); do
  "$bin/lvmd-ctl" --socket "$socket" health >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/lvmd.log" >&2; exit 1; }
  sleep 0.2
done
ctl health
ctl capacity

step "create a 128 MiB volume"
ctl lv create demo 128MiB --tag pvc=demo

step "mount it (activated with device-mapper ioctls, no lvm2; no filesystem yet: lvmd makes ext4)"
ctl lv mount demo "$mnt"
show dmsetup table "$vg-demo"
show df -h "$mnt"

step "write a file, unmount"
show sh -c "echo 'hello from lvmd' > '$mnt/hello.txt'"
ctl lv unmount "$mnt"

step "mount again and read it back"
ctl lv mount demo "$mnt"
show cat "$mnt/hello.txt"
[[ $(cat "$mnt/hello.txt") == "hello from lvmd" ]]
ctl lv unmount "$mnt" --remove-target

step "what lvm2 reads from the same disk"
show lvs --config "devices { filter=[\"a|$(losetup -j "$dir/demo.img" -O NAME -n)|\", \"r|.*|\"] use_devicesfile=0 }" \
  -o lv_name,lv_size,lv_attr,lv_tags "$vg" || true

step "remove it (deactivates first)"
ctl lv remove demo
ctl lv list

step "stop lvmd"
kill "$pid"
wait "$pid"
pid=
echo "done: lvmd's log was:"
sed 's/^/    /' "$dir/lvmd.log"
