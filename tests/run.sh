#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Needs root: loop devices, Debian's lvm2, and the QEMU VM for device-mapper.
#
# Everything is built first. Then two lanes run side by side, because each VM is one
# software-emulated CPU (one host core) and CI has two: lane A runs the longest VM
# binary (vm_daemon under the unit's sandbox) and vm_crypt; lane B runs the host tests,
# the image, and the other VM passes. Each line of output carries its lane; every step
# runs even when an earlier one failed, and the summary at the end lists each step's
# time and result (the exit status is non-zero if any failed).
set -euo pipefail
cd "$(dirname "$0")/.."

status=$(mktemp -d)
trap 'rm -rf "$status"' EXIT

# step NAME COMMAND...: runs one step, records its time and result, never stops the lane.
step() {
    local name=$1 start=$SECONDS rc=0
    shift
    echo "== $name"
    ("$@") || rc=$?
    local took=$((SECONDS - start))
    echo "== $name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)") in ${took}s"
    printf '%6ss  %-6s %s\n' "$took" "$([[ $rc == 0 ]] && echo ok || echo FAILED)" "$name" >>"$status/steps"
    [[ $rc == 0 ]] || touch "$status/failed"
}

echo "== build: host tests and the VM test binaries (the VM's timeouts then cover only tests)"
cargo test --workspace --no-run
tests/vm/run-in-vm.sh --setup
declare -A bin
while read -r name path; do bin[$name]=$path; done < <(
    cargo test --test vm_smoke --test vm_activate --test vm_daemon --test vm_csi --test vm_crypt \
        --no-run --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
for b in vm_smoke vm_activate vm_daemon vm_csi vm_crypt; do
    [[ -n ${bin[$b]:-} ]] || { echo "run.sh: no test binary built for $b" >&2; exit 1; }
done

# in_vm BINARY TIMEOUT [TEST ARGS...]: one test binary in a fresh VM (tests/vm/README.md).
# The environment may add VM_NO_UDEV=1 or VM_SYSTEMD=1. Per-case times are printed
# (--report-time is unstable: RUSTC_BOOTSTRAP is set for the test binary only, never
# for cargo, which would rebuild everything).
in_vm() {
    local b=$1 timeout=$2
    shift 2
    RUSTC_BOOTSTRAP=1 VM_TIMEOUT=$timeout tests/vm/run-in-vm.sh "${bin[$b]}" "$@" \
        -Z unstable-options --report-time
}

lane_a() {
    # vm_daemon with udev took 26 minutes on this 2-core host while it was shared (load
    # 2-6), under software emulation; the path race, the 32 clients, the wipe, kill -9 and
    # the mirror cases are most of it. lvmd runs under its unit's sandbox here
    # (systemd/lvmd.service's [Service] settings, through systemd-run in a guest booted
    # with systemd: tests/vm/README.md).
    VM_SYSTEMD=1 step "VM: the lvmd daemon end to end with udev, under lvmd.service's sandbox: lvm2/dmsetup cross-checks, 32 clients, kill -9 (tests/vm_daemon.rs)" \
        in_vm vm_daemon 3600
    step "VM: LUKS2 through libcryptsetup on dm-crypt, and Debian's cryptsetup both ways (tests/vm_crypt.rs)" \
        in_vm vm_crypt 900
}

lane_b() {
    step "host: unit, property and lvm2-interop tests" cargo test --workspace
    step "host: systemd units (systemd-analyze verify)" systemd/verify.sh
    step "host: lvm2-written fixtures (raid1, thin, snapshot, cache) read by lvm2 without DM" \
        tests/fixtures/lvm2/check-on-host.sh
    step "image: lvmd-csi's OCI image built from Debian packages and run with runc (packaging/build-image.sh, check-image.sh)" \
        bash -c 'image=$(packaging/build-image.sh) && packaging/check-image.sh "$image"'
    step "VM: smoke (tests/vm_smoke.rs)" in_vm vm_smoke 900
    step "VM: native activation against lvm2, with udev (tests/vm_activate.rs)" in_vm vm_activate 900
    VM_NO_UDEV=1 step "VM: native activation against lvm2, without udev (tests/vm_activate.rs)" \
        in_vm vm_activate 900
    # Without udev, the cases where udev plays a part: lvmd making the nodes and links
    # itself at activation and start-up reconciliation (end to end, kill -9 at every step,
    # lvm2's raid1/thin devices left alone, the read-only loop over a device, lvm2 changing
    # the VG, a mirror's leg gone, a mirror's legs added and removed (its leg devices
    # renamed, their nodes moved), encrypted volumes killed at each LUKS step: the only
    # case where libcryptsetup makes its mappings' nodes without udev). Left out, because what they check does not depend on
    # who makes the nodes and lane A runs them: the 32 clients' metadata-only
    # creates/removes, the 1000-round mount path race, zeroing on the PVs, the formatting
    # rules, the mirror grow and the thin pool grow (table reloads), the integrity
    # mirror (its damage, its repair, and its repair killed at each step) and the mirror's crash points (a conversion's too) (their devices are
    # made as any mirror's; kill -9 without udev is the end-to-end case's), peer checks on
    # the socket, encryption over thin, striped and raid1 (the crypt layer is the same on
    # each; its nodes without udev are the kill -9 case's), the group snapshot (suspends and
# messages, no node made). Together those
    # are ~70% of vm_daemon's time.
    VM_NO_UDEV=1 step "VM: the lvmd daemon end to end without udev (tests/vm_daemon.rs, the udev-relevant cases)" \
        in_vm vm_daemon 2400 --skip thirty_two_parallel_clients \
        --skip path_swaps_never_take_a_mount_out_of_the_root \
        --skip a_new_volume_never_shows_a_removed_volumes_bytes \
        --skip staging_never_formats_what_lvmd_did_not_create_blank \
        --skip a_mirror_grows_online_with_data_intact_and_no_old_bytes \
        --skip an_integrity_mirror_serves_the_good_copy_of_a_damaged_block \
        --skip a_mirror_killed_at_each_step_leaves_no_sub_lv_behind \
        --skip an_integrity_mirror_with_a_leg_pv_gone_is_repaired_whole \
        --skip an_integrity_mirror_repair_killed_at_each_step_finishes_whole \
        --skip a_mirror_conversion_killed_after_its_commit_converges \
        --skip socket_peers_are_checked_by_uid \
        --skip a_thin_pool_grows_online_under_a_writer_and_through_a_kill \
        --skip encrypted_thin_striped_and_raid1_volumes_keep_their_data \
        --skip a_group_snapshot_is_one_instant_and_snapshots_survive_kill_9 \
        --skip a_cow_snapshot_of_an_active_volume_restores_its_bytes_through_a_kill
    VM_SYSTEMD=1 step "VM: the CSI suite against the real lvmd under its unit's sandbox, plugin in its own mount namespace (HostToContainer), and with no propagation (tests/vm_csi.rs)" \
        in_vm vm_csi 1500
}

# Each lane's lines carry its name; sed -u keeps them whole and in time.
(lane_a 2>&1 | sed -u 's/^/[lane A] /') &
lane_a_pid=$!
lane_b 2>&1 | sed -u 's/^/[lane B] /'
wait "$lane_a_pid"

echo "== summary (lane steps ran side by side; total ${SECONDS}s)"
cat "$status/steps"
if [[ -e $status/failed ]]; then
    echo "== some steps FAILED (see above)"
    exit 1
fi
echo "== all steps passed"
