#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# stickylb lab: a client, a load balancer and N backends on one Ethernet segment,
# built from network namespaces only (nothing is added to the root namespace).
#
#   lab.sh up [--mode l2|ipip] [--backends N]   build the lab (removes an old one first)
#          [--app python|php] [--memcached N] [--sessions stock|agent]
#          [--php-ini NAME=VALUE]... [--bgp] [--lbs N]
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
# Addresses (tools/lib/address-plan.sh; only inside the namespaces):
#   client     10.89.0.100  fd00:89::100    MAC 02:89:00:00:01:00
#              extra client addresses 10.89.0.101-.240 / fd00:89::101-::240 on the
#              same eth0, for stickiness tests (curl --interface ADDR)
#   lb         10.89.0.2    fd00:89::2      MAC 02:89:00:00:00:02
#   lbK        10.89.0.(1+K)  fd00:89::(1+K)  MAC 02:89:00:00:00:0(1+K), K = 2..7 (--lbs N)
#   backend N  10.89.0.(20+N)  fd00:89::(20+N)  MAC 02:89:00:00:00:(20+N), N = 1..32
#   memcached M  10.89.0.(10+M)  fd00:89::(10+M)  MAC 02:89:00:00:00:(10+M), M = 1..9,
#              port 11211 (memcached -u nobody), MTU 1500
#   VIPs       10.89.0.250  fd00:89::250    (TCP port 80)
#
# Client: routes VIP/32 and VIP/128 via the LB (10.89.0.2 / fd00:89::2), MTU 1500.
#     With --bgp it is the router too: no static VIP route, but the one BIRD learns from
#     the LB's BIRD (BGP + BFD, ASN 65000 <-> 65089), which advertises what stickylbd
#     announces in the LB's routing table 89 (tools/lab/lab-bgp.sh). With --lbs N
#     (implies --bgp) there are N LB hosts, PREFIX-lb, PREFIX-lb2, ...: the router
#     peers with each and routes a VIP over every LB announcing it (one multipath
#     route, hash policy 1: addresses and ports, fixed seed).
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
LOG_TAG=lab
# shellcheck source=tools/lib/common.sh
source "${REPO_DIR}/tools/lib/common.sh"
# shellcheck source=tools/lab/lab-processes.sh
source "${SCRIPT_DIR}/lab-processes.sh"
# shellcheck source=tools/lab/lab-hosts.sh
source "${SCRIPT_DIR}/lab-hosts.sh"
# shellcheck source=tools/lab/lab-faults.sh
source "${SCRIPT_DIR}/lab-faults.sh"
# shellcheck source=tools/lab/lab-bgp.sh
source "${SCRIPT_DIR}/lab-bgp.sh"
# shellcheck source=tools/lab/lab-status.sh
source "${SCRIPT_DIR}/lab-status.sh"
readonly PREFIX="${STICKYLB_LAB_PREFIX:-slb}"
readonly BUILD_DIR="${STICKYLB_BUILD_DIR:-${REPO_DIR}/build}"
if [[ "${PREFIX}" == "slb" ]]; then
    readonly STATE_DIR="${STICKYLB_LAB_STATE:-/run/stickylb-lab}"
else
    readonly STATE_DIR="${STICKYLB_LAB_STATE:-/run/stickylb-lab-${PREFIX}}"
fi

readonly NS_BRIDGE="${PREFIX}-bridge"
readonly NS_CLIENT="${PREFIX}-client"
readonly NET4="${LAB_NET4}"
readonly NET6="${LAB_NET6}"
readonly VIP4="${LAB_VIP4}"
readonly VIP6="${LAB_VIP6}"
readonly LB4="${NET4}.${LAB_LB_HOST}"
readonly LB6="${NET6}:${LAB_LB_HOST}"
readonly CLIENT_FIRST="${LAB_CLIENT_HOST}"
readonly CLIENT_EXTRA_LAST="${LAB_CLIENT_EXTRA_LAST}"
readonly BACKEND_BASE="${LAB_BACKEND_BASE}"
readonly MAX_BACKENDS="${LAB_MAX_BACKENDS}"
readonly MEMCACHED_BASE="${LAB_MEMCACHED_BASE}"
readonly MAX_MEMCACHED="${LAB_MAX_MEMCACHED}"
readonly MEMCACHED_PORT="${LAB_MEMCACHED_PORT}"
readonly LAB_MTU=1600
readonly CLIENT_MTU=1500
readonly HTTP_WAIT_TENTHS=100    # 10 s per backend
readonly SERVICE_WAIT_TENTHS=100 # 10 s per memcached or agent

readonly APACHE_MODULES=/usr/lib/apache2/modules
readonly AGENT_BINARY="${BUILD_DIR}/userspace/agent/stickylb-agent"
readonly AGENT_LISTEN_HOST=127.0.0.1
readonly AGENT_LISTEN_PORT=11311
readonly AGENT_METRICS_LISTEN="0.0.0.0:${LAB_AGENT_METRICS_PORT}"
readonly AGENT_CLUSTER=web

# The php.ini settings (SESSION_LOCK_* and the rest), the Apache config of the PHP app,
# the agent's settings and memcached's command line come from tools/provision/, shared
# with the Vagrant VMs (vagrant/): the lab only places them in its namespaces.

usage() {
    cat <<USAGE
usage: $0 up [--mode l2|ipip] [--backends N] [--app python|php] [--memcached N]
             [--sessions stock|agent] [--php-ini NAME=VALUE]... [--bgp] [--lbs N]
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
       $0 stop-lb-bgp [K]      (--bgp) stop LB K's BIRD (default 1): its BGP sessions close
       $0 start-lb-bgp [K]     start it again
       $0 cut-lb [K]           (--bgp) LB K's bridge port down: gone without a word
       $0 restore-lb [K]       its port up again
       $0 kill-lb [K]          (--bgp) LB K's death: link, BIRD and namespace deleted
       $0 blind-lb K N         (--bgp) LB K's own checks of backend N fail (prohibit routes
                               in LB K; its XDP forwarding is untouched)
       $0 unblind-lb K N       the routes removed

  --app php         Apache + mod_php backends with sessions in memcached
                    (default python: tools/lab/http_backend.py)
  --memcached N     N memcached servers, 0..${MAX_MEMCACHED} (default 2 with --app php, else 0)
  --sessions MODE   php only: stock = PHP talks to the memcached servers directly,
                    agent = through stickylb-agent on each backend (default agent when
                    ${AGENT_BINARY} exists, else stock)
  --php-ini N=V     php only: set or override a PHP setting (repeatable)
  --bgp             the client routes the VIPs as BIRD learns them from the LB's BIRD
  --lbs N           N LB hosts, 1..${LAB_MAX_LBS} (default 1; more than 1 implies --bgp)
USAGE
}

backend_ns() { printf '%s-be%d' "${PREFIX}" "$1"; }
memcached_ns() { printf '%s-mc%d' "${PREFIX}" "$1"; }
backend_dir() { printf '%s/be%d' "${STATE_DIR}" "$1"; }
memcached_address() { lab_memcached_address "$1"; }

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

cmd_up() {
    local mode="l2" backends=2 app=python memcached="" sessions="" php_ini=() bgp=0 lbs=1
    while (($#)); do
        case "$1" in
        --bgp)
            bgp=1
            shift
            continue
            ;;
        --mode | --backends | --app | --memcached | --sessions | --php-ini | --lbs)
            [[ $# -ge 2 ]] || die "$1 needs a value"
            case "$1" in
            --lbs) lbs="$2" ;;
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
    if ! [[ "${lbs}" =~ ^[1-9]$ ]] || ((lbs > LAB_MAX_LBS)); then
        die "--lbs must be 1..${LAB_MAX_LBS}"
    fi
    ((lbs == 1)) || bgp=1
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
    ((bgp == 0)) || tools+=(bird birdc)
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
    printf '%s\n' "${bgp}" >"${STATE_DIR}/bgp"
    printf '%s\n' "${lbs}" >"${STATE_DIR}/lbs"

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
        printf 'addr add %s/24 dev eth0\naddr add %s/64 dev eth0 nodad\n' "${NET4}.${host}" "${NET6}:${host}"
    done | ip -n "${NS_CLIENT}" -batch -
    if ((bgp == 0)); then
        log "client routes ${VIP4} via ${LB4}, ${VIP6} via ${LB6}"
        ip -n "${NS_CLIENT}" route add "${VIP4}/32" via "${LB4}" dev eth0
        ip -n "${NS_CLIENT}" -6 route add "${VIP6}/128" via "${LB6}" dev eth0
    fi

    local lb
    for ((lb = 1; lb <= lbs; lb++)); do
        create_lb_namespace "${lb}" "${xdp_pass_object}"
    done
    if ((bgp)); then
        start_router_bird "${lbs}"
        for ((lb = 1; lb <= lbs; lb++)); do
            start_lb_bird "${lb}"
        done
    fi

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
    ((bgp == 0)) || log "BGP: the client's BIRD (router, ASN ${ROUTER_ASN}) peers with ${lbs} LB hosts' (ASN ${LB_ASN})"
    if [[ "${app}" == php ]]; then
        log "up: mode ${mode}, ${backends} PHP backends, ${memcached} memcached, sessions ${sessions}, VIPs ${VIP4} ${VIP6}"
    else
        log "up: mode ${mode}, ${backends} backends, VIPs ${VIP4} ${VIP6}"
    fi
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
        start-agent | stop-memcached | start-memcached | restart-memcached | stop-lb-bgp | start-lb-bgp | \
        cut-lb | restore-lb | kill-lb | blind-lb | unblind-lb) ;;
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
    stop-lb-bgp) cmd_stop_lb_bgp "$@" ;;
    start-lb-bgp) cmd_start_lb_bgp "$@" ;;
    cut-lb) cmd_cut_lb "$@" ;;
    restore-lb) cmd_restore_lb "$@" ;;
    kill-lb) cmd_kill_lb "$@" ;;
    blind-lb) cmd_blind_lb "$@" ;;
    unblind-lb) cmd_unblind_lb "$@" ;;
    esac
}

main "$@"
