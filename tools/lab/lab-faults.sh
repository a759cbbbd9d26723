# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# tools/lab/lab.sh's commands on single pieces of a lab that is up, sourced by it:
# stop, start, crash and kill backends, agents and memcached servers.

# Prints the backend or memcached number argument VALUE of COMMAND, if it is one.
number_argument() {
    local command="$1" value="${2:-}"
    [[ "${value}" =~ ^[1-9][0-9]*$ ]] || die "${command} needs a number (1, 2, ...)"
    printf '%s' "${value}"
}

require_namespace() {
    namespace_exists "$1" || die "no namespace $1: is the lab up (and the host not killed)?"
}

cmd_stop_backend() {
    local index pidfile pid
    index="$(number_argument stop-backend "${1:-}")"
    pidfile="${STATE_DIR}/be${index}.pid"
    [[ -s "${pidfile}" ]] || die "backend be${index} is not running (no ${pidfile})"
    pid="$(pidfile_process "${pidfile}" backend)" || die "the pid in ${pidfile} is not a lab backend"
    log "stopping be${index} (process group ${pid})"
    stop_group "${pid}"
    rm -f "${pidfile}"
}

cmd_start_backend() {
    local index
    index="$(number_argument start-backend "${1:-}")"
    require_namespace "$(backend_ns "${index}")"
    start_backend "${index}"
}

# SIGKILL to backend N's agent, then to its HTTP server (their process groups). The
# agent is dead before the server's workers die, so it never sees their connections
# close and releases none of their session locks: a crash, not a stop.
kill_backend_services() {
    local index="$1" pidfile pid tries
    for pidfile in "${STATE_DIR}/be${index}-agent.pid" "${STATE_DIR}/be${index}.pid"; do
        if pid="$(pidfile_process "${pidfile}" "$(pidfile_kind "${pidfile}")")"; then
            log "SIGKILL to process group ${pid} ($(basename "${pidfile}" .pid))"
            kill -KILL -- "-${pid}" 2>/dev/null || true
            for ((tries = 0; tries < 100; tries++)); do
                group_alive "${pid}" || break
                sleep 0.01
            done
        fi
        rm -f "${pidfile}"
    done
}

cmd_crash_backend() {
    local index
    index="$(number_argument crash-backend "${1:-}")"
    require_namespace "$(backend_ns "${index}")"
    pidfile_process "${STATE_DIR}/be${index}.pid" backend >/dev/null || die "backend be${index} is not running"
    log "crash of be${index}: its HTTP server and agent die, the host stays up"
    kill_backend_services "${index}"
}

cmd_kill_host() {
    local index ns
    index="$(number_argument kill-host "${1:-}")"
    ns="$(backend_ns "${index}")"
    require_namespace "${ns}"
    # The link goes first, so the dying processes' sockets send nothing: a host that
    # lost power, not one that shut down.
    log "host death of be${index}: deleting its bridge port p-be${index}"
    ip -n "${NS_BRIDGE}" link del "p-be${index}" 2>/dev/null || true
    kill_backend_services "${index}"
    stop_namespace_processes "${ns}" KILL
    log "deleting namespace ${ns}"
    ip netns del "${ns}"
}

cmd_stop_agent() {
    local index pidfile
    index="$(number_argument stop-agent "${1:-}")"
    pidfile="${STATE_DIR}/be${index}-agent.pid"
    pidfile_process "${pidfile}" agent >/dev/null || die "the agent of be${index} is not running (${pidfile})"
    stop_pidfile "${pidfile}" "stickylb-agent of be${index}"
}

cmd_start_agent() {
    local index
    index="$(number_argument start-agent "${1:-}")"
    require_namespace "$(backend_ns "${index}")"
    [[ "$(lab_setting app)" == php ]] || die "the agent serves PHP sessions: up --app php"
    if pidfile_process "${STATE_DIR}/be${index}-agent.pid" agent >/dev/null; then
        die "the agent of be${index} is already running"
    fi
    start_agent "${index}"
}

# Prints memcached number argument VALUE of COMMAND, if this lab has that server.
memcached_argument() {
    local index
    index="$(number_argument "$1" "${2:-}")"
    ((index <= $(lab_setting memcached || true) + 0)) || die "no memcached server ${index} in this lab"
    require_namespace "$(memcached_ns "${index}")"
    printf '%s' "${index}"
}

cmd_stop_memcached() {
    local index
    index="$(memcached_argument stop-memcached "${1:-}")"
    pidfile_process "${STATE_DIR}/mc${index}.pid" memcached >/dev/null || die "memcached mc${index} is not running"
    stop_pidfile "${STATE_DIR}/mc${index}.pid" "memcached mc${index}"
}

cmd_start_memcached() {
    local index
    index="$(memcached_argument start-memcached "${1:-}")"
    if pidfile_process "${STATE_DIR}/mc${index}.pid" memcached >/dev/null; then
        die "memcached mc${index} is already running"
    fi
    start_memcached "${index}"
}

cmd_restart_memcached() {
    local index
    index="$(memcached_argument restart-memcached "${1:-}")"
    stop_pidfile "${STATE_DIR}/mc${index}.pid" "memcached mc${index}"
    start_memcached "${index}"
}
