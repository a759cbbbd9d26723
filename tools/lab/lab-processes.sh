# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# tools/lab/lab.sh's processes, sourced by it: the settings of the lab that is up,
# its namespaces, what a PID is (by its command line), PID files, stopping, waiting.

# A setting of the lab that is up, from STATE_DIR ("" when absent: a lab built by an
# older script, or none).
lab_setting() {
    if [[ -f "${STATE_DIR}/$1" ]]; then
        cat "${STATE_DIR}/$1"
    fi
}

# Namespaces of this prefix that the lab creates (and nothing else of the prefix).
lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' |
        grep -E "^${PREFIX}-(bridge|client|lb[0-9]*|be[0-9]+|mc[0-9]+)\$" | sort -V || true
}

# What lab process PID is, from its command line: backend (the python server or an
# Apache with a lab config), agent, memcached; nothing for anything else. Guards
# against recycled PIDs and against strangers in a lab namespace.
lab_process_kind() {
    local pid="$1" cmdline
    [[ -r "/proc/${pid}/cmdline" ]] || return 0
    cmdline="$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null || true)"
    case "${cmdline}" in
    *http_backend.py*) printf 'backend' ;;
    *apache2\ -f\ */be[0-9]*/apache2.conf\ *) printf 'backend' ;;
    *stickylb-agent\ --backend\ *) printf 'agent' ;;
    */tools/bench/udp_echo\ *) printf 'benchmark' ;;  # tools/bench/traffic.sh's UDP responder
    memcached\ *\ -p\ "${MEMCACHED_PORT}"*) printf 'memcached' ;;
    bird\ -f\ -c\ */bird-lb*.conf\ * | bird\ -f\ -c\ */bird-router.conf\ *) printf 'bird' ;;
    esac
}

# The kind of process a PID file of STATE_DIR holds, from its name.
pidfile_kind() {
    case "$(basename "$1" .pid)" in
    be[0-9]*-agent) printf 'agent' ;;
    be[0-9]*) printf 'backend' ;;
    mc[0-9]*) printf 'memcached' ;;
    bird-*) printf 'bird' ;;
    esac
}

# Prints the PID in PIDFILE if it is a live lab process of KIND; fails otherwise.
pidfile_process() {
    local pidfile="$1" kind="$2" pid
    [[ -s "${pidfile}" ]] || return 1
    pid="$(tr -dc '0-9' <"${pidfile}")"
    [[ -n "${pid}" && "$(lab_process_kind "${pid}")" == "${kind}" ]] || return 1
    printf '%s' "${pid}"
}

# Ends the lab process of PIDFILE (if it still is one) by its process group.
stop_pidfile() {
    local pidfile="$1" what="$2" pid
    if pid="$(pidfile_process "${pidfile}" "$(pidfile_kind "${pidfile}")")"; then
        log "stopping ${what} (process group ${pid})"
        stop_group "${pid}"
    fi
    rm -f "${pidfile}"
}

# Lab processes in namespace NS that no PID file leads to (another state dir, a
# crash, Apache children whose parent died), recognised by their command line.
# Group leaders (everything this script starts leads its group) are ended with their
# group first: SIGNAL TERM politely (stop_group), KILL at once; then whatever is left
# one by one with SIGKILL.
stop_namespace_processes() {
    local ns="$1" signal="$2" pass pid pgid kind
    for pass in leaders rest; do
        for pid in $(ip netns pids "${ns}" 2>/dev/null || true); do
            kind="$(lab_process_kind "${pid}")"
            [[ -n "${kind}" ]] || continue
            pgid="$(ps -o pgid= -p "${pid}" 2>/dev/null | tr -dc '0-9')"
            if [[ "${pass}" == leaders ]]; then
                [[ -n "${pgid}" && "${pgid}" == "${pid}" ]] || continue
                log "stopping ${kind} in ${ns} (process group ${pid})"
                if [[ "${signal}" == KILL ]]; then
                    kill -KILL -- "-${pid}" 2>/dev/null || true
                else
                    stop_group "${pid}"
                fi
            else
                log "killing leftover ${kind} in ${ns} (pid ${pid})"
                kill -KILL "${pid}" 2>/dev/null || true
            fi
        done
    done
}

stop_lab_processes() {
    local pidfile ns
    if [[ -d "${STATE_DIR}" ]]; then
        for pidfile in "${STATE_DIR}"/*.pid; do
            [[ -e "${pidfile}" ]] || continue
            stop_pidfile "${pidfile}" "$(basename "${pidfile}" .pid)"
        done
    fi
    for ns in $(lab_namespaces); do
        stop_namespace_processes "${ns}" TERM
    done
}

# Waits until the process of PIDFILE (a lab process of KIND) passes CHECK...; shows
# LOGFILE and dies when the process ended or TENTHS tenths of a second passed.
wait_until_ready() {
    local what="$1" pidfile="$2" kind="$3" logfile="$4" tenths="$5" tries
    shift 5
    for ((tries = 0; tries < tenths; tries++)); do
        if [[ -s "${pidfile}" ]] && "$@"; then
            log "${what} ready (pid $(tr -dc '0-9' <"${pidfile}"))"
            return 0
        fi
        # The PID file is written just before the exec: give the exec a moment.
        if ((tries > 5)) && ! pidfile_process "${pidfile}" "${kind}" >/dev/null; then
            cat "${logfile}" >&2 || true
            die "${what} exited during startup (its output above, ${logfile})"
        fi
        sleep 0.1
    done
    cat "${logfile}" >&2 || true
    die "${what} not ready within $((tenths / 10)) s (its output above, ${logfile})"
}

# Does a memcached-protocol server answer `version` at HOST PORT inside NS?
answers_version() {
    local ns="$1" host="$2" port="$3"
    # shellcheck disable=SC2016 # the inner bash expands its own arguments
    in_ns "${ns}" timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "version\r\n" >&3 &&
        IFS= read -r line <&3 && [[ "${line}" == VERSION* ]]' "${host}" "${port}" 2>/dev/null
}

python_binary() {
    # The system interpreter: the lab needs nothing beyond the standard library.
    if [[ -x /usr/bin/python3 ]]; then
        printf '/usr/bin/python3'
    else
        command -v python3 || die "python3 not found"
    fi
}
