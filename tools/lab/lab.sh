#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# stickylb lab: a client, a load balancer and N backends on one Ethernet segment,
# built from network namespaces only (nothing is added to the root namespace).
#
#   lab.sh up [--mode l2|ipip] [--backends N]   build the lab (removes an old one first)
#   lab.sh down                                 remove everything of the prefix
#   lab.sh status                               show what exists
#
# Topology (PREFIX = $STICKYLB_LAB_PREFIX, default "slb"):
#
#   PREFIX-client  eth0 ──┐
#   PREFIX-lb      eth0 ──┤  PREFIX-bridge: Linux bridge br0 with ports
#   PREFIX-be1     eth0 ──┤  p-client, p-lb, p-be1, p-be2, ... (the veth peers)
#   PREFIX-be2     eth0 ──┘
#
# The bridge lives in its own namespace (a bridge cannot run native XDP).
#
# Addresses (only inside the namespaces), IPv4 10.89.0.0/24 and IPv6 fd00:89::/64:
#   client     10.89.0.100  fd00:89::100    MAC 02:89:00:00:01:00
#              extra client addresses 10.89.0.101-.130 / fd00:89::101-::130 on the
#              same eth0, for stickiness tests (curl --interface ADDR)
#   lb         10.89.0.2    fd00:89::2      MAC 02:89:00:00:00:02
#   backend N  10.89.0.(20+N)  fd00:89::(20+N)  MAC 02:89:00:00:00:(20+N), N = 1..32
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
readonly LAB_MTU=1600
readonly CLIENT_MTU=1500
readonly HTTP_WAIT_TENTHS=100 # 10 s per backend

log() { printf 'lab: %s\n' "$*"; }
die() {
    printf 'lab: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<EOF
usage: $0 up [--mode l2|ipip] [--backends N]
       $0 down
       $0 status
       $0 stop-backend N     stop backend N's HTTP server (its namespace stays: a dead server)
       $0 start-backend N    start it again
EOF
}

backend_ns() { printf '%s-be%d' "${PREFIX}" "$1"; }

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

# Namespaces of this prefix that the lab creates (and nothing else of the prefix).
lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' |
        grep -E "^${PREFIX}-(bridge|client|lb|be[0-9]+)\$" | sort -V || true
}

# Is PID a lab HTTP backend (guards against a recycled PID)?
is_lab_backend() {
    local pid="$1"
    [[ -r "/proc/${pid}/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -q 'http_backend\.py'
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

stop_backends() {
    local pidfile pid ns
    if [[ -d "${STATE_DIR}" ]]; then
        for pidfile in "${STATE_DIR}"/*.pid; do
            [[ -e "${pidfile}" ]] || continue
            pid="$(tr -dc '0-9' <"${pidfile}")"
            if [[ -n "${pid}" ]] && is_lab_backend "${pid}"; then
                log "stopping $(basename "${pidfile}" .pid) (process group ${pid})"
                stop_group "${pid}"
            fi
            rm -f "${pidfile}"
        done
    fi
    # Backends whose PID file was lost (another state dir, a crash): they run in
    # namespaces only this script creates, and are recognised by their command line.
    for ns in $(lab_namespaces); do
        [[ "${ns}" == "${PREFIX}"-be* ]] || continue
        for pid in $(ip netns pids "${ns}" 2>/dev/null || true); do
            if is_lab_backend "${pid}"; then
                local pgid
                pgid="$(ps -o pgid= -p "${pid}" | tr -dc '0-9')"
                log "stopping stray backend in ${ns} (pid ${pid})"
                if [[ -n "${pgid}" && "${pgid}" == "${pid}" ]]; then
                    stop_group "${pid}"
                else
                    kill -KILL "${pid}" 2>/dev/null || true
                fi
            fi
        done
    done
}

cmd_down() {
    local ns
    stop_backends
    # Host namespaces first, the bridge last (deleting a namespace deletes its veths).
    for ns in $(lab_namespaces); do
        [[ "${ns}" == "${NS_BRIDGE}" ]] && continue
        log "deleting namespace ${ns}"
        ip netns del "${ns}"
    done
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "${NS_BRIDGE}"; then
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

start_backend() {
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
        if [[ -s "${pidfile}" ]] &&
            [[ "$(in_ns "${ns}" curl -sS --max-time 1 "http://127.0.0.1/" 2>/dev/null)" == "backend=${name}" ]] &&
            [[ "$(in_ns "${ns}" curl -sS --max-time 1 "http://[::1]/" 2>/dev/null)" == "backend=${name}" ]]; then
            log "backend ${name} answers HTTP in ${ns} (pid $(tr -dc '0-9' <"${pidfile}"))"
            return 0
        fi
        sleep 0.1
    done
    cat "${STATE_DIR}/${name}.log" >&2 || true
    die "backend ${name} did not answer HTTP within $((HTTP_WAIT_TENTHS / 10)) s"
}

cmd_up() {
    local mode="l2" backends=2
    while (($#)); do
        case "$1" in
        --mode)
            [[ $# -ge 2 ]] || die "--mode needs a value"
            mode="$2"
            shift 2
            ;;
        --backends)
            [[ $# -ge 2 ]] || die "--backends needs a value"
            backends="$2"
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

    local xdp_pass_object="${BUILD_DIR}/bpf/xdp_pass.bpf.o"
    local decap_object="${BUILD_DIR}/bpf/decap.bpf.o"
    [[ -f "${xdp_pass_object}" ]] || die "${xdp_pass_object} missing: build first (or set STICKYLB_BUILD_DIR)"
    if [[ "${mode}" == "ipip" ]]; then
        [[ -f "${decap_object}" ]] || die "${decap_object} missing: build first (or set STICKYLB_BUILD_DIR)"
    fi
    local tool
    for tool in ip tc ethtool curl sysctl setsid; do
        command -v "${tool}" >/dev/null || die "${tool} not found"
    done

    log "removing any previous lab of prefix ${PREFIX}"
    cmd_down >/dev/null

    if [[ "${STICKYLB_LAB_KEEP_ON_FAILURE:-0}" != "1" ]]; then
        trap 'status=$?; if ((status != 0)); then log "up failed: cleaning up"; cmd_down >/dev/null 2>&1 || true; fi' EXIT
    fi

    mkdir -p "${STATE_DIR}"
    printf '%s\n' "${mode}" >"${STATE_DIR}/mode"
    printf '%s\n' "${backends}" >"${STATE_DIR}/backends"

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

    local index ns
    for ((index = 1; index <= backends; index++)); do
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
    done

    for ((index = 1; index <= backends; index++)); do
        start_backend "${index}"
    done

    trap - EXIT
    log "up: mode ${mode}, ${backends} backends, VIPs ${VIP4} ${VIP6}"
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
    local namespaces ns pidfile pid name
    namespaces="$(lab_namespaces)"
    if [[ -z "${namespaces}" ]]; then
        log "no lab of prefix ${PREFIX}"
    else
        if [[ -f "${STATE_DIR}/mode" ]]; then
            log "mode $(cat "${STATE_DIR}/mode"), $(cat "${STATE_DIR}/backends" 2>/dev/null || echo '?') backends, state ${STATE_DIR}"
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
    fi
    if [[ -d "${STATE_DIR}" ]]; then
        for pidfile in "${STATE_DIR}"/*.pid; do
            [[ -e "${pidfile}" ]] || continue
            name="$(basename "${pidfile}" .pid)"
            pid="$(tr -dc '0-9' <"${pidfile}")"
            if [[ -n "${pid}" ]] && is_lab_backend "${pid}"; then
                log "backend ${name}: pid ${pid} running"
            else
                log "backend ${name}: pid ${pid:-?} not running"
            fi
        done
    fi
}

cmd_stop_backend() {
    local index="${1:-}" pidfile pid
    [[ "${index}" =~ ^[0-9]+$ ]] || die "stop-backend needs a backend number"
    pidfile="${STATE_DIR}/be${index}.pid"
    [[ -s "${pidfile}" ]] || die "backend be${index} is not running (no ${pidfile})"
    pid="$(tr -dc '0-9' <"${pidfile}")"
    is_lab_backend "${pid}" || die "pid ${pid} in ${pidfile} is not a lab backend"
    log "stopping be${index} (process group ${pid})"
    stop_group "${pid}"
    rm -f "${pidfile}"
}

cmd_start_backend() {
    local index="${1:-}"
    [[ "${index}" =~ ^[0-9]+$ ]] || die "start-backend needs a backend number"
    ip netns list | grep -qw "$(backend_ns "${index}")" || die "no namespace $(backend_ns "${index}"): is the lab up?"
    start_backend "${index}"
}

main() {
    [[ $# -ge 1 ]] || {
        usage >&2
        exit 2
    }
    local command="$1"
    shift
    case "${command}" in
    up | down | status | stop-backend | start-backend) ;;
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
    esac
}

main "$@"
