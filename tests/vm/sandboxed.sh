#!/bin/bash
# sandboxed.sh PROGRAM [ARGS...]: runs PROGRAM (lvmd) as a transient systemd service
# with the [Service] settings of systemd/lvmd.service (its sandbox: capability bounding
# set, NoNewPrivileges, the system call filter...), and
# stands in for it as the caller's child: the caller's stdout and stderr are the
# service's, SIGTERM and SIGINT are passed on to it, and this script ends as it ended
# (its exit status, or killed by its signal).
#
# For the VM tests in a guest booted with systemd as PID 1 (run-in-vm.sh --systemd,
# where LVMD_VM_SYSTEMD=1): the tests start lvmd through this script, and kill it with
# `systemctl kill --signal=KILL lvmd-sandboxed-<this script's pid>.service` (SIGKILL
# cannot be passed on). The unit is lvmd-sandboxed-$$.service.
set -euo pipefail

here=$(dirname "$(realpath "$0")")
unit_file=${LVMD_UNIT_FILE:-$here/../../systemd/lvmd.service}
unit=lvmd-sandboxed-$$.service

# The unit's [Service] settings, except how it is started and restarted: ExecStart is
# this command line and a test decides about restarts. Type=notify stays: systemd-run
# returns once lvmd said READY=1 (or failed to start).
props=()
section=
while IFS= read -r line || [[ -n $line ]]; do
    line=${line%%#*}
    line=${line%"${line##*[![:space:]]}"}
    [[ -n $line ]] || continue
    if [[ $line == \[*\] ]]; then
        section=$line
        continue
    fi
    [[ $section == "[Service]" ]] || continue
    case ${line%%=*} in
        ExecStart | ExecStop | ExecReload | Restart | RestartSec | TimeoutStartSec | TimeoutStopSec) ;;
        *) props+=(-p "$line") ;;
    esac
done <"$unit_file"
((${#props[@]})) || {
    echo "sandboxed.sh: no [Service] settings in $unit_file" >&2
    exit 125
}

# lvmd's own variables (crash points, test holds) and Rust's reach the service.
envs=()
while IFS= read -r name; do
    case $name in
        LVMD_* | RUST_*) envs+=(--setenv="$name=${!name}") ;;
    esac
done < <(compgen -e)

# A stop asked for before the service is up is passed on once it is (bash runs traps
# between commands, and `wait` returns for them).
forward() { systemctl kill --kill-whom=main --signal="$1" "$unit" 2>/dev/null || true; }
asked=
trap 'asked=TERM; forward TERM' TERM
trap 'asked=INT; forward INT' INT

# No default dependencies: they would start the guest's whole sysinit.target (the
# host's configuration), which a node has long reached when lvmd starts. How it ended
# is written by ExecStopPost (which runs however it ended, a failed start included):
# an ended transient unit is unloaded, and its exit status with it. The service writes
# where this script's stdout/stderr go (a log file, a pipe, /dev/null): systemd opens
# them through /proc, before the sandbox applies.
ended=/run/sandboxed-$$.ended
rm -f "$ended"
systemd-run --quiet --unit="$unit" \
    -p DefaultDependencies=no \
    -p StandardInput=null \
    -p "StandardOutput=append:/proc/$$/fd/1" \
    -p "StandardError=append:/proc/$$/fd/2" \
    -p "ExecStopPost=/bin/sh -c 'echo \${EXIT_CODE} \${EXIT_STATUS} >$ended.new && mv $ended.new $ended'" \
    "${props[@]}" "${envs[@]}" -- "$@" &
wait $! || true
[[ -z $asked ]] || forward "$asked"

# An idle FIFO read with a timeout is a sleep that forks nothing (forks are slow under
# emulation): this script waits for the whole life of the daemon.
idle=$(mktemp -u "/run/sandboxed-$$.XXXXXX")
mkfifo "$idle"
exec 5<>"$idle"
rm -f "$idle"
until [[ -s $ended ]]; do read -r -t 0.1 -u 5 _ || true; done
read -r code status <"$ended"
rm -f "$ended"
systemctl reset-failed "$unit" 2>/dev/null || true

trap - TERM INT
case $code in
    exited) exit "$status" ;;
    killed | dumped)
        # End by the same signal (a name such as KILL, or a number).
        trap - "$status" 2>/dev/null || true
        kill -s "$status" $$ 2>/dev/null || kill -"$status" $$
        exit 128
        ;;
    *)
        echo "sandboxed.sh: $unit ended in an unknown way: $code $status" >&2
        exit 125
        ;;
esac
