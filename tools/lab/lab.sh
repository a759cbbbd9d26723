#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# stickylb lab: a client, a load balancer and N backends on one Ethernet segment,
# built from network namespaces only (nothing is added to the root namespace).
#
#   lab.sh up [--mode l2|ipip] [--backends N]   build the lab (removes an old one first)
#          [--app python|php] [--memcached N] [--sessions stock|agent]
#          [--php-ini NAME=VALUE]...
#   lab.sh down                                 remove everything of the prefix
#   lab.sh status                               show what exists
#   (see usage below for the commands that stop and start single pieces)
#
# Topology (PREFIX = $STICKYLB_LAB_PREFIX, default "slb"):
#
#   PREFIX-client  eth0 ──┐
#   PREFIX-lb      eth0 ──┤  PREFIX-bridge: Linux bridge br0 with ports
#   PREFIX-be1     eth0 ──┤  p-client, p-lb, p-be1, p-be2, ... (the veth peers)
#   PREFIX-be2     eth0 ──┤
#   PREFIX-mc1     eth0 ──┘  (only with memcached: --memcached N or --app php)
#
# The bridge lives in its own namespace (a bridge cannot run native XDP).
#
# Addresses (only inside the namespaces), IPv4 10.89.0.0/24 and IPv6 fd00:89::/64:
#   client     10.89.0.100  fd00:89::100    MAC 02:89:00:00:01:00
#              extra client addresses 10.89.0.101-.130 / fd00:89::101-::130 on the
#              same eth0, for stickiness tests (curl --interface ADDR)
#   lb         10.89.0.2    fd00:89::2      MAC 02:89:00:00:00:02
#   backend N  10.89.0.(20+N)  fd00:89::(20+N)  MAC 02:89:00:00:00:(20+N), N = 1..32
#   memcached M  10.89.0.(10+M)  fd00:89::(10+M)  MAC 02:89:00:00:00:(10+M), M = 1..9,
#              port 11211 (memcached -u nobody), MTU 1500
#   VIPs       10.89.0.250  fd00:89::250    (TCP port 80)
#
# Client: routes VIP/32 and VIP/128 via the LB (10.89.0.2 / fd00:89::2), MTU 1500.
# LB: IPv4 and IPv6 forwarding on (bpf_fib_lookup / bpf_redirect_neigh slow path),
#     eth0 MTU 1600. The XDP data plane is attached by whoever tests it (not here).
#     Its bridge-side peer p-lb runs xdp_pass.bpf.o, so XDP_TX frames reach it.
# Backends: VIPs on lo (/32, /128: no ARP/NDP answer for them), arp_ignore=1,
#     arp_announce=2, rp_filter off, eth0 MTU 1600; in ipip mode the tc ingress
#     program decap.bpf.o (section "tc") strips the outer header. Each runs
#     tools/lab/http_backend.py on port 80 (GET / -> "backend=beN").
#     With --app php each runs Apache 2.4 prefork + mod_php instead, from its own
#     generated config (tools/lab/apache2.conf.in -> STATE_DIR/beN/apache2.conf, which
#     includes the application's config STATE_DIR/beN/app.conf from
#     tools/provision/apache-app-conf.sh) and a copy of tools/provision/php/ as
#     document root: GET / -> "backend=beN", counter.php,
#     hold.php?ms=N (its worker's PID in STATE_DIR/beN/run/hold.pid), logout.php, ini.php?name=X.
#     PHP keeps its sessions in memcached (session.save_handler=memcached; every PHP
#     setting from tools/provision/php-settings.sh):
#       --sessions stock  save_path lists the memcached servers directly;
#       --sessions agent  each backend runs stickylb-agent on 127.0.0.1:11311 (metrics
#                         on 0.0.0.0:9479) and save_path is that agent.
# All eth0: TX checksum offload off; IPv6 DAD off.
#
# Environment:
#   STICKYLB_LAB_PREFIX   namespace prefix (default slb; [a-z0-9]{1,12})
#   STICKYLB_BUILD_DIR    build directory holding bpf/*.bpf.o (default <repo>/build)
#   STICKYLB_LAB_STATE    state directory: mode, PID files, logs
#                         (default /run/stickylb-lab, /run/stickylb-lab-PREFIX for
#                         another prefix)
#   STICKYLB_LAB_KEEP_ON_FAILURE=1  leave a half-built lab for debugging
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "${SCRIPT_DIR}/../.." && pwd)"
readonly PROVISION_DIR="${REPO_DIR}/tools/provision"
readonly SCRIPT_DIR REPO_DIR
readonly PREFIX="${STICKYLB_LAB_PREFIX:-slb}"
readonly BUILD_DIR="${STICKYLB_BUILD_DIR:-${REPO_DIR}/build}"
if [[ "${PREFIX}" == "slb" ]]; then
    readonly STATE_DIR="${STICKYLB_LAB_STATE:-/run/stickylb-lab}"
else
    readonly STATE_DIR="${STICKYLB_LAB_STATE:-/run/stickylb-lab-${PREFIX}}"
fi

readonly NS_BRIDGE="${PREFIX}-bridge"
readonly NS_CLIENT="${PREFIX}-client"
readonly NS_LB="${PREFIX}-lb"
readonly NET4="10.89.0"
readonly NET6="fd00:89:"
readonly VIP4="10.89.0.250"
readonly VIP6="fd00:89::250"
readonly LB4="${NET4}.2"
readonly LB6="${NET6}:2"
readonly CLIENT_FIRST=100
readonly CLIENT_EXTRA_LAST=130
readonly BACKEND_BASE=20
readonly MAX_BACKENDS=32
readonly MEMCACHED_BASE=10
readonly MAX_MEMCACHED=9
readonly MEMCACHED_PORT=11211
readonly LAB_MTU=1600
readonly CLIENT_MTU=1500
readonly HTTP_WAIT_TENTHS=100    # 10 s per backend
readonly SERVICE_WAIT_TENTHS=100 # 10 s per memcached or agent

readonly APACHE_MODULES=/usr/lib/apache2/modules
readonly AGENT_BINARY="${BUILD_DIR}/userspace/agent/stickylb-agent"
readonly AGENT_LISTEN_HOST=127.0.0.1
readonly AGENT_LISTEN_PORT=11311
readonly AGENT_METRICS_LISTEN=0.0.0.0:9479
readonly AGENT_CLUSTER=web

# The php.ini settings (SESSION_LOCK_* and the rest), the Apache config of the PHP app,
# the agent's settings and memcached's command line come from tools/provision/, shared
# with the Vagrant VMs (vagrant/): the lab only places them in its namespaces.

log() { printf 'lab: %s\n' "$*"; }
die() {
    printf 'lab: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<USAGE
usage: $0 up [--mode l2|ipip] [--backends N] [--app python|php] [--memcached N]
             [--sessions stock|agent] [--php-ini NAME=VALUE]...
       $0 down
       $0 status
       $0 stop-backend N       stop backend N's HTTP server (its namespace stays: a dead server)
       $0 start-backend N      start it again
       $0 crash-backend N      backend N's HTTP server and agent die at once (SIGKILL, the
                               agent first: it releases no session lock); the host stays up
       $0 kill-host N          host death of backend N: its bridge port deleted, SIGKILL to
                               its agent and HTTP server, its namespace deleted
       $0 stop-agent N         stop backend N's stickylb-agent
       $0 start-agent N        start it again
       $0 stop-memcached M     stop memcached server M (its namespace stays)
       $0 start-memcached M    start a new, empty memcached server M
       $0 restart-memcached M  both: memcached M comes back empty

  --app php         Apache + mod_php backends with sessions in memcached
                    (default python: tools/lab/http_backend.py)
  --memcached N     N memcached servers, 0..${MAX_MEMCACHED} (default 2 with --app php, else 0)
  --sessions MODE   php only: stock = PHP talks to the memcached servers directly,
                    agent = through stickylb-agent on each backend (default agent when
                    ${AGENT_BINARY} exists, else stock)
  --php-ini N=V     php only: set or override a PHP setting (repeatable)
USAGE
}

backend_ns() { printf '%s-be%d' "${PREFIX}" "$1"; }
memcached_ns() { printf '%s-mc%d' "${PREFIX}" "$1"; }
backend_dir() { printf '%s/be%d' "${STATE_DIR}" "$1"; }
memcached_address() { printf '%s.%d' "${NET4}" $((MEMCACHED_BASE + $1)); }

# Runs a command inside a namespace.
in_ns() {
    local ns="$1"
    shift
    ip netns exec "${ns}" "$@"
}

sysctl_in() {
    local ns="$1"
    shift
    local setting
    for setting in "$@"; do
        in_ns "${ns}" sysctl -qw "${setting}" >/dev/null
    done
}

python_binary() {
    # The system interpreter: the lab needs nothing beyond the standard library.
    if [[ -x /usr/bin/python3 ]]; then
        printf '/usr/bin/python3'
    else
        command -v python3 || die "python3 not found"
    fi
}

# A setting of the lab that is up, from STATE_DIR ("" when absent: a lab built by an
# older script, or none).
lab_setting() {
    if [[ -f "${STATE_DIR}/$1" ]]; then
        cat "${STATE_DIR}/$1"
    fi
}

namespace_exists() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"
}

# Namespaces of this prefix that the lab creates (and nothing else of the prefix).
lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' |
        grep -E "^${PREFIX}-(bridge|client|lb|be[0-9]+|mc[0-9]+)\$" | sort -V || true
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
    esac
}

# The kind of process a PID file of STATE_DIR holds, from its name.
pidfile_kind() {
    case "$(basename "$1" .pid)" in
    be[0-9]*-agent) printf 'agent' ;;
    be[0-9]*) printf 'backend' ;;
    mc[0-9]*) printf 'memcached' ;;
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

# Does process group PGID still have a live (non-zombie) member? An ended backend
# stays a zombie until init reaps it, and kill -0 still finds zombies.
group_alive() {
    ps -e -o pgid=,stat= | awk -v pgid="$1" '$1 == pgid && $2 !~ /^Z/ {found = 1} END {exit !found}'
}

# Ends the process group led by PID: TERM, up to 3 s, then KILL.
stop_group() {
    local pid="$1" tries
    kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || return 0
    for ((tries = 0; tries < 30; tries++)); do
        group_alive "${pid}" || return 0
        sleep 0.1
    done
    log "process group ${pid} ignored SIGTERM: SIGKILL"
    kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
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

cmd_down() {
    local ns
    stop_lab_processes
    # Host namespaces first, the bridge last (deleting a namespace deletes its veths).
    for ns in $(lab_namespaces); do
        [[ "${ns}" == "${NS_BRIDGE}" ]] && continue
        log "deleting namespace ${ns}"
        ip netns del "${ns}"
    done
    if namespace_exists "${NS_BRIDGE}"; then
        log "deleting namespace ${NS_BRIDGE}"
        ip netns del "${NS_BRIDGE}"
    fi
    if [[ -d "${STATE_DIR}" ]]; then
        [[ "${STATE_DIR}" == /* && "${STATE_DIR}" != "/" ]] || die "refusing to remove state dir '${STATE_DIR}'"
        log "removing ${STATE_DIR}"
        rm -rf -- "${STATE_DIR}"
    fi
    log "down"
}

new_namespace() {
    local ns="$1"
    ip netns add "${ns}"
    ip -n "${ns}" link set lo up
    # Before any interface exists, so eth0 inherits it: addresses usable at once.
    sysctl_in "${ns}" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
        net.ipv6.conf.default.accept_ra=0
}

# Connects a host namespace to the bridge: eth0 there, port p-ROLE on br0.
connect_host() {
    local ns="$1" role="$2" mac="$3" mtu="$4"
    ip -n "${ns}" link add eth0 address "${mac}" mtu "${mtu}" type veth \
        peer name "p-${role}" mtu "${mtu}" netns "${NS_BRIDGE}"
    ip -n "${NS_BRIDGE}" link set "p-${role}" master br0
    ip -n "${NS_BRIDGE}" link set "p-${role}" up
    sysctl_in "${ns}" net.ipv6.conf.eth0.accept_dad=0 net.ipv6.conf.eth0.accept_ra=0
    in_ns "${ns}" ethtool -K eth0 tx off >/dev/null
    ip -n "${ns}" link set eth0 up
}

add_host_addresses() {
    local ns="$1" host="$2"
    ip -n "${ns}" addr add "${NET4}.${host}/24" dev eth0
    ip -n "${ns}" -6 addr add "${NET6}:${host}/64" dev eth0 nodad
}

attach_xdp_pass() {
    local object="$1"
    if ip -n "${NS_BRIDGE}" link set dev p-lb xdpdrv obj "${object}" sec xdp 2>/dev/null; then
        log "xdp_pass attached to ${NS_BRIDGE}/p-lb (native)"
    else
        ip -n "${NS_BRIDGE}" link set dev p-lb xdpgeneric obj "${object}" sec xdp
        log "xdp_pass attached to ${NS_BRIDGE}/p-lb (generic: native failed)"
    fi
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

# Does a memcached-protocol server answer `version` at HOST PORT inside NS?
answers_version() {
    local ns="$1" host="$2" port="$3"
    # shellcheck disable=SC2016 # the inner bash expands its own arguments
    in_ns "${ns}" timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "version\r\n" >&3 &&
        IFS= read -r line <&3 && [[ "${line}" == VERSION* ]]' "${host}" "${port}" 2>/dev/null
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

memcached_answers() {
    answers_version "$1" 127.0.0.1 "${MEMCACHED_PORT}" && answers_version "$1" ::1 "${MEMCACHED_PORT}"
}

# A new memcached server M: empty, like one that restarted.
start_memcached() {
    local index="$1" ns pidfile logfile
    ns="$(memcached_ns "${index}")"
    pidfile="${STATE_DIR}/mc${index}.pid"
    logfile="${STATE_DIR}/mc${index}.log"
    local -a args
    mapfile -t args < <("${PROVISION_DIR}/memcached-args.sh" --port "${MEMCACHED_PORT}")
    spawn_in_ns "${ns}" "${pidfile}" "${logfile}" memcached "${args[@]}"
    wait_until_ready "memcached mc${index} in ${ns}" "${pidfile}" memcached "${logfile}" "${SERVICE_WAIT_TENTHS}" \
        memcached_answers "${ns}"
}

start_agent() {
    local index="$1" ns pidfile logfile memcached server upstreams=()
    ns="$(backend_ns "${index}")"
    pidfile="${STATE_DIR}/be${index}-agent.pid"
    logfile="${STATE_DIR}/be${index}-agent.log"
    [[ -x "${AGENT_BINARY}" ]] || die "${AGENT_BINARY} missing: build the agent first (or set STICKYLB_BUILD_DIR)"
    memcached="$(lab_setting memcached)"
    ((${memcached:-0} >= 1)) || die "the agent needs memcached servers: up --app php --memcached N"
    for ((server = 1; server <= memcached; server++)); do
        upstreams+=(--upstream "$(memcached_address "${server}"):${MEMCACHED_PORT}")
    done
    mkdir -p "$(backend_dir "${index}")"
    "${PROVISION_DIR}/agent-config.sh" --backend "be${index}" --cluster "${AGENT_CLUSTER}" \
        --listen "${AGENT_LISTEN_HOST}:${AGENT_LISTEN_PORT}" --metrics-listen "${AGENT_METRICS_LISTEN}" \
        "${upstreams[@]}" >"$(backend_dir "${index}")/agent.yaml"
    # --backend first as well: lab_process_kind knows the agent by "stickylb-agent --backend".
    spawn_in_ns "${ns}" "${pidfile}" "${logfile}" "${AGENT_BINARY}" --backend "be${index}" \
        --config "$(backend_dir "${index}")/agent.yaml"
    wait_until_ready "stickylb-agent of be${index} in ${ns}" "${pidfile}" agent "${logfile}" \
        "${SERVICE_WAIT_TENTHS}" answers_version "${ns}" "${AGENT_LISTEN_HOST}" "${AGENT_LISTEN_PORT}"
}

# Does backend NAME in namespace NS answer GET / with its name, on IPv4 and IPv6?
backend_answers() {
    local ns="$1" name="$2"
    [[ "$(in_ns "${ns}" curl -sS --max-time 1 "http://127.0.0.1/" 2>/dev/null)" == "backend=${name}" ]] &&
        [[ "$(in_ns "${ns}" curl -sS --max-time 1 "http://[::1]/" 2>/dev/null)" == "backend=${name}" ]]
}

start_python_backend() {
    local index="$1" ns name python pidfile tries
    ns="$(backend_ns "${index}")"
    name="be${index}"
    python="$(python_binary)"
    pidfile="${STATE_DIR}/${name}.pid"
    rm -f "${pidfile}"
    # setsid: the server leads its own process group, so `down` ends exactly it.
    ip netns exec "${ns}" setsid "${python}" "${SCRIPT_DIR}/http_backend.py" \
        --name "${name}" --port 80 --pidfile "${pidfile}" \
        </dev/null >"${STATE_DIR}/${name}.log" 2>&1 &
    for ((tries = 0; tries < HTTP_WAIT_TENTHS; tries++)); do
        if [[ -s "${pidfile}" ]] && backend_answers "${ns}" "${name}"; then
            log "backend ${name} answers HTTP in ${ns} (pid $(tr -dc '0-9' <"${pidfile}"))"
            return 0
        fi
        sleep 0.1
    done
    cat "${STATE_DIR}/${name}.log" >&2 || true
    die "backend ${name} did not answer HTTP within $((HTTP_WAIT_TENTHS / 10)) s"
}

# PHP's session.save_path for MODE (stock|agent): the agent, or the memcached servers.
session_save_path() {
    local mode="$1" save_path="" server memcached
    memcached="$(lab_setting memcached)"
    if [[ "${mode}" == agent ]]; then
        save_path="${AGENT_LISTEN_HOST}:${AGENT_LISTEN_PORT}"
    else
        for ((server = 1; server <= memcached; server++)); do
            save_path+="${save_path:+,}$(memcached_address "${server}"):${MEMCACHED_PORT}"
        done
    fi
    printf '%s' "${save_path}"
}

# STATE_DIR/beN/: apache2.conf (from apache2.conf.in), app.conf (the PHP app's config
# with the PHP settings of MODE and the NAME=VALUE overrides), www/ (a copy of
# tools/provision/php, readable by www-data), run/ (writable by www-data: hold.pid),
# runtime/, logs.
write_php_backend() {
    local index="$1" mode="$2" dir name template
    shift 2
    dir="$(backend_dir "${index}")"
    name="be${index}"
    mkdir -p "${dir}/www" "${dir}/run" "${dir}/runtime"
    cp "${PROVISION_DIR}"/php/*.php "${dir}/www/"
    chmod 0755 "${STATE_DIR}" "${dir}" "${dir}/www"
    chmod 0644 "${dir}"/www/*.php
    chown www-data:www-data "${dir}/run"
    local -a overrides=()
    local setting
    for setting in "$@"; do
        overrides+=(--php-ini "${setting}")
    done
    "${PROVISION_DIR}/apache-app-conf.sh" --name "${name}" --doc-root "${dir}/www" --run-dir "${dir}/run" \
        --access-log "${dir}/access.log" --save-path "$(session_save_path "${mode}")" "${overrides[@]}" \
        >"${dir}/app.conf"
    template="$(<"${SCRIPT_DIR}/apache2.conf.in")"
    template="${template//@DIR@/${dir}}"
    template="${template//@NAME@/${name}}"
    printf '%s\n' "${template}" >"${dir}/apache2.conf"
    # The workers run as www-data: a state dir it cannot reach would only show as 403s.
    setpriv --reuid=www-data --regid=www-data --clear-groups test -r "${dir}/www/index.php" ||
        die "www-data cannot read ${dir}/www/index.php: ${STATE_DIR} and its parents must be world-searchable"
}

start_php_backend() {
    local index="$1" ns name dir pidfile logfile apache check
    ns="$(backend_ns "${index}")"
    name="be${index}"
    dir="$(backend_dir "${index}")"
    pidfile="${STATE_DIR}/${name}.pid"
    logfile="${STATE_DIR}/${name}.log"
    apache="$(command -v apache2)" || die "apache2 not found (apt-get install apache2 libapache2-mod-php php-memcached)"
    [[ -f "${dir}/apache2.conf" ]] || die "${dir}/apache2.conf missing: was the lab built with --app php?"
    if ! check="$("${apache}" -t -f "${dir}/apache2.conf" 2>&1)"; then
        printf '%s\n' "${check}" >&2
        die "apache2 -t rejects ${dir}/apache2.conf (its complaint above)"
    fi
    rm -f "${dir}/run/hold.pid"
    # A crashed Apache (crash-backend) leaves its PidFile, and Apache refuses to start
    # while the PID in it exists (a zombie not yet reaped, or a recycled PID).
    rm -f "${dir}/apache2.pid"
    spawn_in_ns "${ns}" "${pidfile}" "${logfile}" "${apache}" -f "${dir}/apache2.conf" -DFOREGROUND
    # A subshell: its die must not skip the error log below.
    if ! (wait_until_ready "backend ${name} (Apache + mod_php) in ${ns}" "${pidfile}" backend "${logfile}" \
        "${HTTP_WAIT_TENTHS}" backend_answers "${ns}" "${name}"); then
        tail -n 20 "${dir}/error.log" >&2 2>/dev/null || true
        die "backend ${name} did not start (the end of Apache's error log above, ${dir}/error.log)"
    fi
}

start_backend() {
    if [[ "$(lab_setting app)" == php ]]; then
        start_php_backend "$1"
    else
        start_python_backend "$1"
    fi
}

create_backend_namespace() {
    local index="$1" mode="$2" decap_object="$3" ns host
    ns="$(backend_ns "${index}")"
    host=$((BACKEND_BASE + index))
    log "creating backend namespace ${ns} (${NET4}.${host}, ${NET6}:${host}, VIPs on lo, mode ${mode})"
    new_namespace "${ns}"
    sysctl_in "${ns}" net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.lo.rp_filter=0 \
        net.ipv4.conf.default.arp_ignore=1 net.ipv4.conf.default.arp_announce=2
    connect_host "${ns}" "be${index}" "$(printf '02:89:00:00:00:%02x' "${host}")" "${LAB_MTU}"
    sysctl_in "${ns}" net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2 \
        net.ipv4.conf.eth0.rp_filter=0
    add_host_addresses "${ns}" "${host}"
    ip -n "${ns}" addr add "${VIP4}/32" dev lo
    ip -n "${ns}" -6 addr add "${VIP6}/128" dev lo nodad
    if [[ "${mode}" == "ipip" ]]; then
        tc -n "${ns}" qdisc add dev eth0 clsact
        tc -n "${ns}" filter add dev eth0 ingress bpf direct-action obj "${decap_object}" sec tc
        log "decap attached to ${ns}/eth0 (tc ingress)"
    fi
}

create_memcached_namespace() {
    local index="$1" ns host
    ns="$(memcached_ns "${index}")"
    host=$((MEMCACHED_BASE + index))
    log "creating memcached namespace ${ns} (${NET4}.${host}, ${NET6}:${host})"
    new_namespace "${ns}"
    connect_host "${ns}" "mc${index}" "$(printf '02:89:00:00:00:%02x' "${host}")" "${CLIENT_MTU}"
    add_host_addresses "${ns}" "${host}"
}

cmd_up() {
    local mode="l2" backends=2 app=python memcached="" sessions="" php_ini=()
    while (($#)); do
        case "$1" in
        --mode | --backends | --app | --memcached | --sessions | --php-ini)
            [[ $# -ge 2 ]] || die "$1 needs a value"
            case "$1" in
            --mode) mode="$2" ;;
            --backends) backends="$2" ;;
            --app) app="$2" ;;
            --memcached) memcached="$2" ;;
            --sessions) sessions="$2" ;;
            --php-ini) php_ini+=("$2") ;;
            esac
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument '$1'"
            ;;
        esac
    done
    [[ "${mode}" == "l2" || "${mode}" == "ipip" ]] || die "--mode must be l2 or ipip"
    if ! [[ "${backends}" =~ ^[1-9][0-9]*$ ]] || ((backends < 1 || backends > MAX_BACKENDS)); then
        die "--backends must be 1..${MAX_BACKENDS}"
    fi
    [[ "${app}" == python || "${app}" == php ]] || die "--app must be python or php"
    if [[ -z "${memcached}" ]]; then
        memcached=0
        [[ "${app}" == php ]] && memcached=2
    fi
    [[ "${memcached}" =~ ^[0-9]$ ]] || die "--memcached must be 0..${MAX_MEMCACHED}"
    if [[ "${app}" == php ]]; then
        ((memcached >= 1)) || die "--app php keeps its sessions in memcached: --memcached must be 1..${MAX_MEMCACHED}"
        if [[ -z "${sessions}" ]]; then
            sessions=stock
            [[ -x "${AGENT_BINARY}" ]] && sessions=agent
        fi
        [[ "${sessions}" == stock || "${sessions}" == agent ]] || die "--sessions must be stock or agent"
        if [[ "${sessions}" == agent && ! -x "${AGENT_BINARY}" ]]; then
            die "${AGENT_BINARY} missing: build the agent first (or set STICKYLB_BUILD_DIR)"
        fi
        local setting
        for setting in "${php_ini[@]}"; do
            [[ "${setting}" =~ ^[A-Za-z0-9_.]+=[^\"\\[:cntrl:]]*$ ]] ||
                die "--php-ini wants NAME=VALUE (no quotes, backslashes or control characters): '${setting}'"
        done
    else
        [[ -z "${sessions}" ]] || die "--sessions needs --app php"
        ((${#php_ini[@]} == 0)) || die "--php-ini needs --app php"
    fi

    local xdp_pass_object="${BUILD_DIR}/bpf/xdp_pass.bpf.o"
    local decap_object="${BUILD_DIR}/bpf/decap.bpf.o"
    [[ -f "${xdp_pass_object}" ]] || die "${xdp_pass_object} missing: build first (or set STICKYLB_BUILD_DIR)"
    if [[ "${mode}" == "ipip" ]]; then
        [[ -f "${decap_object}" ]] || die "${decap_object} missing: build first (or set STICKYLB_BUILD_DIR)"
    fi
    local tool tools=(ip tc ethtool curl sysctl setsid)
    ((memcached == 0)) || tools+=(memcached timeout)
    [[ "${app}" == php ]] && tools+=(apache2 setpriv)
    for tool in "${tools[@]}"; do
        command -v "${tool}" >/dev/null || die "${tool} not found"
    done
    if [[ "${app}" == php && ! -f "${APACHE_MODULES}/libphp8.2.so" ]]; then
        die "${APACHE_MODULES}/libphp8.2.so missing (apt-get install libapache2-mod-php)"
    fi

    log "removing any previous lab of prefix ${PREFIX}"
    cmd_down >/dev/null

    if [[ "${STICKYLB_LAB_KEEP_ON_FAILURE:-0}" != "1" ]]; then
        trap 'status=$?; if ((status != 0)); then log "up failed: cleaning up"; cmd_down >/dev/null 2>&1 || true; fi' EXIT
    fi

    mkdir -p "${STATE_DIR}"
    printf '%s\n' "${mode}" >"${STATE_DIR}/mode"
    printf '%s\n' "${backends}" >"${STATE_DIR}/backends"
    printf '%s\n' "${app}" >"${STATE_DIR}/app"
    printf '%s\n' "${memcached}" >"${STATE_DIR}/memcached"
    [[ -z "${sessions}" ]] || printf '%s\n' "${sessions}" >"${STATE_DIR}/sessions"

    log "creating bridge namespace ${NS_BRIDGE}"
    new_namespace "${NS_BRIDGE}"
    ip -n "${NS_BRIDGE}" link add br0 type bridge mcast_snooping 0
    ip -n "${NS_BRIDGE}" link set br0 up

    log "creating client namespace ${NS_CLIENT} (${NET4}.${CLIENT_FIRST}, ${NET6}:${CLIENT_FIRST}, extra .$((CLIENT_FIRST + 1))-.${CLIENT_EXTRA_LAST})"
    new_namespace "${NS_CLIENT}"
    connect_host "${NS_CLIENT}" client "02:89:00:00:01:00" "${CLIENT_MTU}"
    add_host_addresses "${NS_CLIENT}" "${CLIENT_FIRST}"
    local host
    for ((host = CLIENT_FIRST + 1; host <= CLIENT_EXTRA_LAST; host++)); do
        add_host_addresses "${NS_CLIENT}" "${host}"
    done
    log "client routes ${VIP4} via ${LB4}, ${VIP6} via ${LB6}"
    ip -n "${NS_CLIENT}" route add "${VIP4}/32" via "${LB4}" dev eth0
    ip -n "${NS_CLIENT}" -6 route add "${VIP6}/128" via "${LB6}" dev eth0

    log "creating load balancer namespace ${NS_LB} (${LB4}, ${LB6}, MTU ${LAB_MTU}, forwarding on)"
    new_namespace "${NS_LB}"
    connect_host "${NS_LB}" lb "02:89:00:00:00:02" "${LAB_MTU}"
    add_host_addresses "${NS_LB}" 2
    sysctl_in "${NS_LB}" net.ipv4.ip_forward=1 net.ipv4.conf.all.forwarding=1 \
        net.ipv4.conf.eth0.forwarding=1 net.ipv6.conf.all.forwarding=1 net.ipv6.conf.eth0.forwarding=1
    attach_xdp_pass "${xdp_pass_object}"

    local index
    for ((index = 1; index <= memcached; index++)); do
        create_memcached_namespace "${index}"
    done
    for ((index = 1; index <= backends; index++)); do
        create_backend_namespace "${index}" "${mode}" "${decap_object}"
    done

    for ((index = 1; index <= memcached; index++)); do
        start_memcached "${index}"
    done
    for ((index = 1; index <= backends; index++)); do
        if [[ "${app}" == php ]]; then
            write_php_backend "${index}" "${sessions}" "${php_ini[@]}"
            if [[ "${sessions}" == agent ]]; then
                start_agent "${index}"
            fi
        fi
        start_backend "${index}"
    done

    trap - EXIT
    if [[ "${app}" == php ]]; then
        log "up: mode ${mode}, ${backends} PHP backends, ${memcached} memcached, sessions ${sessions}, VIPs ${VIP4} ${VIP6}"
    else
        log "up: mode ${mode}, ${backends} backends, VIPs ${VIP4} ${VIP6}"
    fi
}

# "eth0 10.89.0.2/24 fd00:89::2/64 mtu 1600 [xdp]" of a host namespace.
describe_eth0() {
    local ns="$1" v4 v6 link mtu
    v4="$(ip -n "${ns}" -o -4 addr show dev eth0 2>/dev/null | awk 'NR == 1 {print $4}')"
    v6="$(ip -n "${ns}" -o -6 addr show dev eth0 scope global 2>/dev/null | awk '{last = $4} END {print last}')"
    link="$(ip -n "${ns}" -o link show dev eth0 2>/dev/null || true)"
    mtu="$(sed -n 's/.* mtu \([0-9]*\).*/\1/p' <<<"${link}")"
    printf 'eth0 %s %s mtu %s' "${v4:-none}" "${v6:-none}" "${mtu:-?}"
    if grep -q 'prog/xdp' <<<"${link}"; then
        printf ' (XDP attached)'
    fi
    if [[ "${ns}" == "${PREFIX}"-be* ]] && tc -n "${ns}" filter show dev eth0 ingress 2>/dev/null | grep -q bpf; then
        printf ' (tc ingress bpf)'
    fi
}

cmd_status() {
    local namespaces ns pidfile pid name kind
    namespaces="$(lab_namespaces)"
    if [[ -z "${namespaces}" ]]; then
        log "no lab of prefix ${PREFIX}"
    else
        if [[ -f "${STATE_DIR}/mode" ]]; then
            log "mode $(cat "${STATE_DIR}/mode"), $(lab_setting backends) backends, state ${STATE_DIR}"
            if [[ "$(lab_setting app)" == php ]]; then
                log "app php (Apache + mod_php), $(lab_setting memcached) memcached, sessions $(lab_setting sessions)"
            elif [[ "$(lab_setting memcached)" =~ ^[1-9] ]]; then
                log "app python, $(lab_setting memcached) memcached"
            fi
        else
            log "no state in ${STATE_DIR} (half-built lab?)"
        fi
        for ns in ${namespaces}; do
            if [[ "${ns}" == "${NS_BRIDGE}" ]]; then
                log "${ns}: ports $(ip -n "${ns}" -o link show master br0 2>/dev/null |
                    awk -F': ' '{split($2, a, "@"); printf "%s ", a[1]}')"
                if ip -n "${ns}" -o link show dev p-lb 2>/dev/null | grep -q 'prog/xdp'; then
                    log "${ns}: p-lb has an XDP program"
                fi
                continue
            fi
            log "${ns}: $(describe_eth0 "${ns}")"
        done
        local index
        for ((index = 1; index <= $(lab_setting backends || true) + 0; index++)); do
            namespace_exists "$(backend_ns "${index}")" || log "$(backend_ns "${index}"): gone (kill-host ${index})"
        done
    fi
    if [[ -d "${STATE_DIR}" ]]; then
        for pidfile in "${STATE_DIR}"/*.pid; do
            [[ -e "${pidfile}" ]] || continue
            name="$(basename "${pidfile}" .pid)"
            name="${name%-agent}"
            kind="$(pidfile_kind "${pidfile}")"
            pid="$(tr -dc '0-9' <"${pidfile}")"
            if pidfile_process "${pidfile}" "${kind}" >/dev/null; then
                log "${kind} ${name}: pid ${pid} running ($(ps -o pid= -g "${pid}" 2>/dev/null | wc -l) processes in its group)"
            else
                log "${kind} ${name}: pid ${pid:-?} not running"
            fi
        done
    fi
}

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

main() {
    [[ $# -ge 1 ]] || {
        usage >&2
        exit 2
    }
    local command="$1"
    shift
    case "${command}" in
    up | down | status | stop-backend | start-backend | crash-backend | kill-host | stop-agent | \
        start-agent | stop-memcached | start-memcached | restart-memcached) ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
    [[ "${PREFIX}" =~ ^[a-z0-9]{1,12}$ ]] || die "STICKYLB_LAB_PREFIX must match [a-z0-9]{1,12}"
    [[ "$(id -u)" == "0" ]] || die "needs root (network namespaces)"
    case "${command}" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    stop-backend) cmd_stop_backend "$@" ;;
    start-backend) cmd_start_backend "$@" ;;
    crash-backend) cmd_crash_backend "$@" ;;
    kill-host) cmd_kill_host "$@" ;;
    stop-agent) cmd_stop_agent "$@" ;;
    start-agent) cmd_start_agent "$@" ;;
    stop-memcached) cmd_stop_memcached "$@" ;;
    start-memcached) cmd_start_memcached "$@" ;;
    restart-memcached) cmd_restart_memcached "$@" ;;
    esac
}

main "$@"
