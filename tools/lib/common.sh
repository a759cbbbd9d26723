# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# Sourced by the scripts under tools/: messages, process groups, namespaces and the
# lab's address plan. A script sets LOG_TAG first (its messages read "TAG: ..."), and
# LOG_FD=2 to send them to stderr.
# shellcheck source=tools/lib/address-plan.sh
source "$(dirname "${BASH_SOURCE[0]}")/address-plan.sh"

log() { printf '%s: %s\n' "${LOG_TAG:-stickylb}" "$*" >&"${LOG_FD:-1}"; }
die() {
    printf '%s: error: %s\n' "${LOG_TAG:-stickylb}" "$*" >&2
    exit 1
}

# The plan's addresses: backend N, memcached server M, client address N (100 is the
# client's own, 101-130 extra ones on the same interface), the LB.
lab_backend_address() { printf '%s.%d' "${LAB_NET4}" $((LAB_BACKEND_BASE + $1)); }
lab_backend_address6() { printf '%s:%d' "${LAB_NET6}" $((LAB_BACKEND_BASE + $1)); }
lab_memcached_address() { printf '%s.%d' "${LAB_NET4}" $((LAB_MEMCACHED_BASE + $1)); }
lab_client_address() { printf '%s.%d' "${LAB_NET4}" "$1"; }
lab_lb_address() { printf '%s.%d' "${LAB_NET4}" "${LAB_LB_HOST}"; }

in_ns() {
    local ns="$1"
    shift
    ip netns exec "${ns}" "$@"
}

namespace_exists() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"
}

# Does process group PGID still have a live (non-zombie) member? An ended process
# stays a zombie until init reaps it, and kill -0 still finds zombies.
group_alive() {
    ps -e -o pgid=,stat= | awk -v pgid="$1" '$1 == pgid && $2 !~ /^Z/ {found = 1} END {exit !found}'
}

# Ends the process group led by PID: TERM, up to TENTHS tenths of a second (default
# 30), then KILL.
stop_group() {
    local pid="$1" tenths="${2:-30}" tries
    kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || return 0
    for ((tries = 0; tries < tenths; tries++)); do
        group_alive "${pid}" || return 0
        sleep 0.1
    done
    log "process group ${pid} ignored SIGTERM: SIGKILL"
    kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
}

# Starts COMMAND... in namespace NS as the leader of a new session and process group
# (setsid: stop_group ends exactly it and its children), its PID written to PIDFILE
# before it runs, its output to LOGFILE.
spawn_in_ns() {
    local ns="$1" pidfile="$2" logfile="$3"
    shift 3
    rm -f "${pidfile}"
    # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
    ip netns exec "${ns}" setsid sh -c 'printf "%s\n" "$$" >"$0" && exec "$@"' "${pidfile}" "$@" \
        </dev/null >"${logfile}" 2>&1 &
}

# Numbers on stdin -> their median ("" for none).
median() {
    sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'
}

now_ms() { date +%s%3N; }
