#!/bin/bash
# run-in-vm.sh: run one command inside a throw-away QEMU VM that has a real
# device-mapper, and hand back its stdout, stderr and exit status.
#
# The guest boots Debian's stock kernel (linux-image-amd64, unpacked privately
# into a cache dir) and sees the host's root filesystem read-only over 9p, with
# a tmpfs overlay on top: host binaries (cargo test binaries, lvm2, dmsetup...)
# run unchanged at the same paths, and guest writes are thrown away.
# See tests/vm/README.md for usage, and the guest's layout.
#
#   run-in-vm.sh --setup                     install host packages, prepare the cache
#   run-in-vm.sh [OPTIONS] -- CMD [ARGS...]  run CMD in a fresh VM
#   run-in-vm.sh /path/to/test-binary ARGS   same (the form a cargo runner uses)
#
# Exit status: CMD's own; 124 if --timeout expired; 125 if the VM or the setup
# failed (then the end of the guest console log is printed to stderr).

# QEMU's option values are comma-separated lists; they are not array mistakes.
# shellcheck disable=SC2054
set -euo pipefail

# Snapshot of the caller's environment, taken before this script sets anything,
# so the guest can replay it. Our own variables below are never exported.
CALLER_ENV_NAMES=$(compgen -e)
CALLER_CWD=$PWD

readonly EXIT_TIMEOUT=124
readonly EXIT_VM_FAILED=125

VM_CACHE=${VM_CACHE:-/var/tmp/lvmd-vm}
# Bump when the cache layout or the initramfs changes: runs then redo the setup.
readonly CACHE_FORMAT=1

# Host packages: qemu and the initramfs tools, plus everything a test may run
# inside the guest (the guest runs the host's binaries, so they live here).
readonly HOST_PACKAGES=(
    qemu-system-x86 busybox-static kmod cpio xz-utils gzip util-linux iproute2
    lvm2 dmsetup cryptsetup-bin thin-provisioning-tools e2fsprogs xfsprogs
)

# Modules the initramfs needs before it can reach the host root over 9p.
readonly INITRAMFS_MODULES=(virtio_pci virtio_console virtio_blk 9pnet_virtio 9p overlay)

# Variables of the caller that must not be replayed in the guest: they describe
# the host session (terminal, ssh, shell state), not the command's environment.
is_host_only_var() {
    case $1 in
        PWD | OLDPWD | SHLVL | _ | SHELLOPTS | BASHOPTS | BASH* | TERM | TERMCAP | COLUMNS | LINES) return 0 ;;
        SSH_* | XDG_* | DISPLAY | WAYLAND_DISPLAY | DBUS_* | HOSTNAME | PS1 | PS2 | PS4 | PROMPT_COMMAND) return 0 ;;
        MAIL | MAILPATH | TMUX | TMUX_PANE | STY | WINDOWID | LS_COLORS) return 0 ;;
        # No VM inside the VM: a cargo run inside must not try to boot one.
        CARGO_TARGET_*_RUNNER) return 0 ;;
    esac
    return 1
}

log() { printf 'run-in-vm: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit "$EXIT_VM_FAILED"
}

usage() {
    sed -n '2,16s/^# \{0,1\}//p' "$0"
    cat <<'EOF'
Options:
  --setup         install host packages (apt-get) and prepare $VM_CACHE, then exit
  --no-udev       do not start systemd-udevd in the guest (lvm2 is told not to wait for it)
  --systemd       boot systemd as the guest's PID 1 and run CMD as its unit, so that CMD can
                  start services with systemd-run (lvmd under its unit's sandbox)
  --mem MB        guest memory (default 2048)
  --disk SIZE     add a sparse virtio disk of SIZE (truncate syntax: 1G, 512M); repeatable;
                  they appear as /dev/vda, /dev/vdb, ... in order
  --rw DIR        share host DIR read-write at the same path (default: guest writes are
                  discarded); repeatable
  --timeout S     kill the VM after S seconds, exit 124 (env VM_TIMEOUT, default 1800)
  --console       stream the guest kernel console to stderr
  --kvm           force KVM (default: only if kvm_intel or kvm_amd is loaded)
Environment: VM_CACHE, VM_TIMEOUT, VM_CONSOLE_LOG=FILE (keep the console log),
  VM_TIMING=1 (print boot timings), VM_KVM_CPU (CPU model under KVM), VM_KEEP_RUN=1,
  VM_NO_UDEV=1 (same as --no-udev: for cargo runs, where the runner takes no options),
  VM_SYSTEMD=1 (same as --systemd).
EOF
}

# ---------------------------------------------------------------------------
# Setup: host packages, and the private kernel + udev in $VM_CACHE
# ---------------------------------------------------------------------------

apt_quiet() {
    DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Use-Pty=0 -o APT::Sandbox::User=root "$@"
}

ensure_host_packages() {
    local missing=() pkg
    local -A status=()
    # One dpkg-query for all: this runs on every --setup and should be cheap.
    while read -r pkg state; do
        status[$pkg]=$state
    done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${HOST_PACKAGES[@]}" 2>/dev/null || true)
    for pkg in "${HOST_PACKAGES[@]}"; do
        [[ ${status[$pkg]:-} == installed ]] || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing host packages: ${missing[*]}"
        apt_quiet update >&2
        apt_quiet install -y --no-install-recommends "${missing[@]}" >&2
    fi
}

# The versioned image package that linux-image-amd64 currently points to.
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

# Debian ships the kernel as a bzImage (xz inside). QEMU can boot the plain ELF
# vmlinux through its PVH entry point, which skips ~3 s of decompression under
# TCG, so cut the xz stream out of the bzImage and decompress it here once.
extract_vmlinux() {
    local bzimage=$1 out=$2 offset
    while read -r offset; do
        # xz complains about the trailing data after the stream; that is expected.
        tail -c "+$((offset + 1))" "$bzimage" | xz -dc >"$out.tmp" 2>/dev/null || true
        if [[ $(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' ') == 7f454c46 ]]; then
            mv "$out.tmp" "$out"
            return 0
        fi
    done < <(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bzimage" | cut -d: -f1)
    rm -f "$out.tmp"
    return 1
}

# /init of the initramfs: a busybox script that assembles the guest root
# (host / over 9p, read-only, under a tmpfs overlay) and hands over to stage2.
write_init_script() {
    cat >"$1" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "init: $*" >&2
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod "/modules/$m" || fail "insmod $m"; done

run=$(sed -n 's/.*lvmd.run=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$run" ] || fail "no lvmd.run= on the kernel command line"
opts=trans=virtio,version=9p2000.L,msize=512000

# The layer (kernel modules, udev) is its own 9p export: overlayfs refuses a
# lower dir nested inside another lower dir of the same filesystem.
mkdir -p /lower /layer /rw /newroot
mount -t 9p -o ro,$opts,cache=loose hostroot /lower || fail "mount hostroot"
mount -t 9p -o ro,$opts,cache=loose layer /layer || fail "mount layer"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/layer:/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
    fail "mount overlay"

# The run dir (stage2, env, exit status) and --rw dirs: read-write 9p shares,
# mounted at their host paths. No cache, so the host sees writes at once.
mount -t 9p -o $opts run "/newroot$run" || fail "mount run dir"
while read -r tag dir; do
    [ -n "$tag" ] || continue
    mount -t 9p -o $opts "$tag" "/newroot$dir" || fail "mount --rw $dir"
done <"/newroot$run/rw-shares"

mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
exec switch_root /newroot /bin/bash "$run/stage2.sh"
INIT
    chmod 755 "$1"
}

build_initramfs() {
    local kver=$1 moddir=$2 out=$3 tree line path name
    tree=$(mktemp -d "$VM_CACHE/initramfs.XXXXXX")
    mkdir -p "$tree"/{bin,proc,sys,dev,modules}
    cp /bin/busybox "$tree/bin/busybox"
    write_init_script "$tree/init"
    # --show-depends prints "insmod /path.ko" lines in load order (or "builtin
    # NAME" for the ones compiled in), so the load order is the print order.
    : >"$tree/modules.order"
    while read -r line; do
        [[ $line == insmod* ]] || continue
        path=${line#insmod }
        path=${path%% *}
        name=$(basename "$path")
        name=${name%.xz}
        name=${name%.zst}
        grep -qx "$name" "$tree/modules.order" && continue
        case $path in
            *.xz) xz -dc "$path" >"$tree/modules/$name" ;;
            *.zst) zstd -qdc "$path" >"$tree/modules/$name" ;;
            *) cp "$path" "$tree/modules/$name" ;;
        esac
        echo "$name" >>"$tree/modules.order"
    done < <(modprobe -d "$moddir" -S "$kver" --show-depends -a "${INITRAMFS_MODULES[@]}")
    [[ -s $tree/modules.order ]] || {
        rm -rf "$tree"
        return 1
    }
    (cd "$tree" && find . -print0 | cpio --null -o -H newc --quiet) >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$tree"
}

# Unpack a .deb into the layer, moving /bin, /sbin, /lib to /usr: the layer sits
# above the host's merged-/usr root, and a real lib/ dir in it would hide the
# host's /lib -> usr/lib symlink.
unpack_into_layer() {
    local deb=$1 layer=$2 tmp d
    tmp=$(mktemp -d "$VM_CACHE/unpack.XXXXXX")
    dpkg-deb -x "$deb" "$tmp"
    mkdir -p "$tmp/usr"
    for d in bin sbin lib; do
        if [[ -d $tmp/$d ]]; then
            mkdir -p "$tmp/usr/$d"
            cp -a "$tmp/$d/." "$tmp/usr/$d/"
            rm -rf "${tmp:?}/$d"
        fi
    done
    cp -a "$tmp/." "$layer/"
    rm -rf "$tmp"
}

# Build everything under $VM_CACHE. Called with the setup lock held.
prepare_cache() {
    local kpkg=$1 udev_version kver layer debs
    kver=${kpkg#linux-image-}
    udev_version=$(apt-cache policy udev | awk '/Candidate:/ { print $2 }')
    local want="format=$CACHE_FORMAT kernel=$kpkg udev=$udev_version"
    if [[ -f $VM_CACHE/ready && $(<"$VM_CACHE/ready") == "$want" ]]; then
        return 0
    fi
    log "preparing $VM_CACHE ($want)"
    rm -rf "${VM_CACHE:?}"/{ready,layer,debs,vmlinux,initramfs.cpio,kver} "$VM_CACHE"/unpack.* "$VM_CACHE"/initramfs.*
    debs=$VM_CACHE/debs
    layer=$VM_CACHE/layer
    mkdir -p "$debs" "$layer"
    (cd "$debs" && apt_quiet download "$kpkg" udev >&2) || {
        # The package lists may name a version the mirror no longer has.
        apt_quiet update >&2
        (cd "$debs" && apt_quiet download "$kpkg" udev >&2)
    }
    unpack_into_layer "$debs/$kpkg"_*.deb "$layer"
    unpack_into_layer "$debs"/udev_*.deb "$layer"
    # The hwdb sources are big and useless without a compiled hwdb.bin.
    rm -rf "${layer:?}/usr/lib/udev/hwdb.d" "${layer:?}/usr/share"
    # Debian's kernel packages ship no modules.dep (the postinst makes it).
    depmod -b "$layer/usr" "$kver"
    extract_vmlinux "$layer/boot/vmlinuz-$kver" "$VM_CACHE/vmlinux" ||
        die "cannot extract vmlinux from the $kpkg bzImage"
    rm -rf "${layer:?}/boot" "$debs"
    build_initramfs "$kver" "$layer/usr" "$VM_CACHE/initramfs.cpio" ||
        die "cannot build the initramfs"
    echo "$kver" >"$VM_CACHE/kver"
    echo "$want" >"$VM_CACHE/ready"
}

# The lock lives on fd 9 for the whole life of this script: exclusive while
# (re)building the cache, shared while a VM uses it, so a setup never pulls the
# kernel from under a running VM and two setups never collide.
open_lock() {
    mkdir -p "$VM_CACHE"
    exec 9>>"$VM_CACHE/lock"
}

do_setup() {
    open_lock
    flock -x 9
    ensure_host_packages
    local kpkg
    kpkg=$(kernel_package)
    if [[ -z $kpkg ]]; then
        apt_quiet update >&2
        kpkg=$(kernel_package)
    fi
    [[ -n $kpkg ]] || die "apt knows no linux-image-amd64"
    prepare_cache "$kpkg"
    flock -u 9
}

# Before a run: a cheap check that setup has been done; if not, do it.
ensure_setup() {
    open_lock
    flock -s 9
    if [[ -f $VM_CACHE/ready && $(<"$VM_CACHE/ready") == "format=$CACHE_FORMAT "* ]] &&
        command -v qemu-system-x86_64 >/dev/null; then
        return 0
    fi
    flock -u 9
    log "no usable setup in $VM_CACHE; running --setup first"
    do_setup
    flock -s 9
}

# ---------------------------------------------------------------------------
# One VM run
# ---------------------------------------------------------------------------

# Guest script run by the host's bash after switch_root. Written per run, with
# the command, cwd and udev choice baked in.
write_stage2() {
    local run=$1 use_udev=$2 use_systemd=$3
    shift 3
    {
        echo '#!/bin/bash'
        printf 'RUN=%q\nUSE_UDEV=%q\nUSE_SYSTEMD=%q\nCWD=%q\n' "$run" "$use_udev" "$use_systemd" "$CALLER_CWD"
        printf 'CMD=('
        printf '%q ' "$@"
        printf ')\n'
        cat <<'STAGE2'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
stamp() { read -r up _ </proc/uptime; echo "$1 $up" >>"$RUN/timing"; }
finish() {
    echo "$1" >"$RUN/rc"
    sync
    # Under systemd, -ff is the reboot(2) call itself, as -f is for a PID 1 shell.
    [[ $USE_SYSTEMD != 1 ]] || systemctl poweroff -ff
    poweroff -f
    sleep 1
    reboot -f
}
if [[ ${1:-} != --under-systemd ]]; then
stamp stage2-start

# Like systemd: a shared root makes mount-propagation tests meaningful.
mount --make-rshared /
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=755 run /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t configfs configfs /sys/kernel/config 2>/dev/null
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
echo lvmd-vm >/proc/sys/kernel/hostname
ip link set lo up 2>/dev/null || busybox ip link set lo up
modprobe -a loop dm_mod
stamp modprobe-done

if [[ $USE_SYSTEMD == 1 ]]; then
    # systemd becomes PID 1 (it keeps the mounts above) and runs the rest of
    # this script as its only unit: what the command starts with systemd-run
    # gets the sandbox of a real unit. No default dependencies: nothing else
    # of the host's configuration is started.
    mkdir -p /run/systemd/system
    cat >/run/systemd/system/vm-command.service <<UNIT
[Unit]
DefaultDependencies=no
[Service]
Type=oneshot
ExecStart=/bin/bash $RUN/stage2.sh --under-systemd
StandardInput=null
StandardOutput=kmsg
StandardError=kmsg
UNIT
    stamp systemd-exec
    exec /lib/systemd/systemd --unit=vm-command.service --log-target=kmsg --show-status=no
fi
fi

if [[ $USE_UDEV == 1 ]]; then
    # Only block and misc devices are triggered: a full coldplug costs ~10 s
    # under TCG, and these are the ones lvm2 and libdm care about.
    /usr/lib/systemd/systemd-udevd --daemon
    udevadm trigger --action=add --subsystem-match=block --subsystem-match=misc
    udevadm settle --timeout=60
else
    # Without udev lvm2 would wait for nodes that never come ("device not
    # cleared"); make libdm create /dev/mapper nodes itself.
    printf '\nactivation {\n\tudev_sync = 0\n\tudev_rules = 0\n}\n' >>/etc/lvm/lvmlocal.conf
fi
stamp udev-done

# The virtio consoles are ttys: without raw mode they would turn \n into \r\n.
# Keep them open here, since a tty forgets its settings on its last close.
exec 3>/dev/hvc0 4>/dev/hvc1
stty raw -echo <&3
stty raw -echo <&4

. "$RUN/env.sh"
export LVMD_VM=1
if [[ $USE_SYSTEMD == 1 ]]; then
    # The tests start lvmd through tests/vm/sandboxed.sh, as a service under its
    # unit's sandbox.
    export LVMD_VM_SYSTEMD=1
fi
if ! cd "$CWD"; then
    echo "run-in-vm: cannot cd to $CWD in the guest" >&4
    finish 125
fi
# The command gets pipes, not the ttys: on a tty, test harnesses and tools
# switch to colours and interactive behaviour the caller did not ask for.
mkfifo /run/vm-stdout /run/vm-stderr
cat /run/vm-stdout >&3 &
out_pid=$!
cat /run/vm-stderr >&4 &
err_pid=$!
"${CMD[@]}" </dev/null >/run/vm-stdout 2>/run/vm-stderr 3>&- 4>&-
rc=$?
# Background children the command left behind may hold the pipes open:
# give the copies a few seconds to drain, then stop waiting for them.
# (`read -t` on an idle FIFO is a sleep without forking, which is slow here.)
mkfifo /run/vm-idle
exec 5<>/run/vm-idle
for _ in {1..30}; do
    kill -0 "$out_pid" 2>/dev/null || kill -0 "$err_pid" 2>/dev/null || break
    read -r -t 0.1 -u 5 _
done
kill "$out_pid" "$err_pid" 2>/dev/null
wait "$out_pid" "$err_pid" 2>/dev/null
exec 3>&- 4>&-
stamp cmd-done
finish "$rc"
STAGE2
    } >"$run/stage2.sh"
    chmod 755 "$run/stage2.sh"
}

# The caller's environment, as `export NAME=VALUE` lines the guest sources.
write_env() {
    local name
    for name in $CALLER_ENV_NAMES; do
        is_host_only_var "$name" && continue
        [[ -v $name ]] || continue
        printf 'export %s=%q\n' "$name" "${!name}"
    done >"$1"
}

choose_accel() {
    if ((FORCE_KVM)) || [[ -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ]]; then
        # Real VMX/SVM. /dev/kvm from kvm_pvm (seen on the dev machines) cannot
        # run a stock kernel and pauses the VM on errors, hence not by default.
        QEMU_ACCEL=(-accel kvm -cpu "${VM_KVM_CPU:-host}")
    else
        # qemu64 is ~30% faster than -cpu max under TCG. It lacks SSE4/AVX:
        # binaries built with target-cpu=native die with SIGILL in the guest.
        QEMU_ACCEL=(-accel tcg,tb-size=512 -cpu qemu64)
    fi
}

print_console_tail() {
    local console=$1
    if [[ ! -s $console ]]; then
        log "the guest console is empty: the kernel did not start"
        return 0
    fi
    log "last lines of the guest console:"
    tail -n 40 "$console" | sed 's/^/  | /' >&2 || true
}

run_vm() {
    ensure_setup
    local kver run started
    kver=$(<"$VM_CACHE/kver")
    mkdir -p "$VM_CACHE/runs"
    run=$(mktemp -d "$VM_CACHE/runs/run.XXXXXX")
    RUN_DIR=$run
    trap cleanup_run EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    write_stage2 "$run" "$USE_UDEV" "$USE_SYSTEMD" "${COMMAND[@]}"
    write_env "$run/env.sh"
    : >"$run/timing"

    local qemu=(
        qemu-system-x86_64 -machine pc "${QEMU_ACCEL[@]}" -smp 1 -m "$MEM_MB"
        -nodefaults -no-reboot -display none -no-user-config
        -kernel "$VM_CACHE/vmlinux" -initrd "$VM_CACHE/initramfs.cpio"
        -append "console=ttyS0 panic=-1 rdinit=/init lvmd.run=$run"
        -chardev "file,id=console,path=$run/console.fifo" -serial chardev:console
        -device virtio-serial-pci
        -chardev "file,id=out,path=$run/stdout.fifo" -device virtconsole,chardev=out
        -chardev "file,id=err,path=$run/stderr.fifo" -device virtconsole,chardev=err
        -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
        -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
        -fsdev "local,id=layer,path=$VM_CACHE/layer,security_model=none,readonly=on,multidevs=remap"
        -device virtio-9p-pci,fsdev=layer,mount_tag=layer
        -fsdev "local,id=run,path=$run,security_model=passthrough"
        -device virtio-9p-pci,fsdev=run,mount_tag=run
    )
    local i dir
    : >"$run/rw-shares"
    for i in "${!RW_DIRS[@]}"; do
        dir=$(realpath -e "${RW_DIRS[i]}") || die "--rw ${RW_DIRS[i]}: no such directory"
        [[ $dir != *[[:space:]]* ]] || die "--rw $dir: paths with spaces are not supported"
        qemu+=(-fsdev "local,id=rw$i,path=$dir,security_model=passthrough,multidevs=remap"
            -device "virtio-9p-pci,fsdev=rw$i,mount_tag=rw$i")
        echo "rw$i $dir" >>"$run/rw-shares"
    done
    for i in "${!DISKS[@]}"; do
        truncate -s "${DISKS[i]}" "$run/disk$i.img" || die "--disk ${DISKS[i]}: bad size"
        qemu+=(-drive "file=$run/disk$i.img,format=raw,if=virtio,cache=unsafe")
    done

    # QEMU writes the consoles into FIFOs; cat copies them to our stdout/stderr
    # as they come, so long-running tests stream their output.
    mkfifo "$run/stdout.fifo" "$run/stderr.fifo" "$run/console.fifo"
    cat "$run/stdout.fifo" &
    READERS=($!)
    cat "$run/stderr.fifo" >&2 &
    READERS+=($!)
    if ((STREAM_CONSOLE)); then
        tee "$run/console.log" <"$run/console.fifo" >&2 &
    else
        cat "$run/console.fifo" >"$run/console.log" &
    fi
    READERS+=($!)

    started=$(date +%s.%N)
    local qemu_rc=0
    # In the background so that our INT/TERM traps run at once (bash delays
    # traps until a foreground child exits); cleanup_run then stops QEMU.
    timeout --kill-after=10 "$TIMEOUT_S" "${qemu[@]}" </dev/null 2>"$run/qemu.err" &
    QEMU_PID=$!
    wait "$QEMU_PID" || qemu_rc=$?
    QEMU_PID=
    close_readers "$run"
    local wall
    wall=$(echo "$(date +%s.%N) $started" | awk '{ printf "%.2f", $1 - $2 }')

    [[ -z ${VM_CONSOLE_LOG:-} ]] || cp "$run/console.log" "$VM_CONSOLE_LOG"
    if [[ ${VM_TIMING:-0} == 1 ]]; then
        log "qemu wall ${wall}s; guest uptime: $(tr '\n' ' ' <"$run/timing")"
    fi

    if ((qemu_rc == 124 || qemu_rc == 137)); then
        log "timeout: the VM ran longer than ${TIMEOUT_S}s"
        print_console_tail "$run/console.log"
        exit "$EXIT_TIMEOUT"
    fi
    if [[ ! -s $run/rc ]]; then
        log "VM failed: no exit status came back (qemu exit $qemu_rc)"
        [[ ! -s $run/qemu.err ]] || sed 's/^/run-in-vm: qemu: /' "$run/qemu.err" >&2
        print_console_tail "$run/console.log"
        exit "$EXIT_VM_FAILED"
    fi
    exit "$(<"$run/rc")"
}

# The readers are blocked in open() if QEMU died before opening the FIFOs.
# Opening a FIFO read-write never blocks and releases them; they then see EOF.
close_readers() {
    local run=$1 f
    for f in stdout stderr console; do
        exec 7<>"$run/$f.fifo"
        exec 7>&-
    done
    wait "${READERS[@]}" 2>/dev/null || true
    READERS=()
}

# shellcheck disable=SC2317 # called through trap
cleanup_run() {
    local pid
    if [[ -n ${QEMU_PID:-} ]]; then
        kill "$QEMU_PID" 2>/dev/null || true # timeout passes it on to QEMU
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    for pid in "${READERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [[ -n ${RUN_DIR:-} && ${VM_KEEP_RUN:-0} != 1 ]]; then
        rm -rf "$RUN_DIR"
    fi
}

# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

main() {
    SETUP_ONLY=0
    USE_UDEV=1
    # Cargo calls a runner without our options: the environment can ask for no udev.
    [[ ${VM_NO_UDEV:-0} != 1 ]] || USE_UDEV=0
    USE_SYSTEMD=0
    [[ ${VM_SYSTEMD:-0} != 1 ]] || USE_SYSTEMD=1
    MEM_MB=2048
    DISKS=()
    RW_DIRS=()
    TIMEOUT_S=${VM_TIMEOUT:-1800}
    STREAM_CONSOLE=0
    FORCE_KVM=0
    COMMAND=()
    READERS=()
    QEMU_PID=

    while (($#)); do
        case $1 in
            --setup) SETUP_ONLY=1 ;;
            --no-udev) USE_UDEV=0 ;;
            --systemd) USE_SYSTEMD=1 ;;
            --mem) MEM_MB=${2:?--mem needs a value}; shift ;;
            --disk) DISKS+=("${2:?--disk needs a size}"); shift ;;
            --rw) RW_DIRS+=("${2:?--rw needs a directory}"); shift ;;
            --timeout) TIMEOUT_S=${2:?--timeout needs seconds}; shift ;;
            --console) STREAM_CONSOLE=1 ;;
            --kvm) FORCE_KVM=1 ;;
            -h | --help) usage; exit 0 ;;
            --) shift; COMMAND=("$@"); break ;;
            -*) die "unknown option $1 (see --help)" ;;
            *)
                # Cargo runner form: `run-in-vm.sh /path/to/test-binary ARGS...`.
                COMMAND=("$@")
                break
                ;;
        esac
        shift
    done
    [[ $MEM_MB =~ ^[0-9]+$ ]] || die "--mem wants megabytes, got $MEM_MB"
    [[ $TIMEOUT_S =~ ^[0-9]+$ ]] || die "--timeout wants seconds, got $TIMEOUT_S"

    if ((SETUP_ONLY)); then
        do_setup
        ((${#COMMAND[@]})) || exit 0
    fi
    ((${#COMMAND[@]})) || die "no command given (see --help)"
    choose_accel
    run_vm
}

main "$@"
