# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# tools/lab/lab.sh's BGP roles, sourced by it (`up --bgp`, `up --lbs N`): the client's
# namespace doubles as the router, which learns the VIPs from every LB's BIRD instead
# of a static route and routes each over all the LBs announcing it; each LB's BIRD
# advertises what its stickylbd puts into routing table 89. Both configs come from
# tools/provision/bird-config.sh, shared with the Vagrant VMs.

readonly ROUTER_ASN=65000
readonly LB_ASN=65089
readonly ANNOUNCE_TABLE=89
readonly MULTIPATH_HASH_SEED=89

bird_ctl() { printf '%s/bird-%s.ctl' "${STATE_DIR}" "$1"; }

# Writes ROLE's config (router, lb, lb2, ...) and starts BIRD in the foreground in NS.
start_bird() {
    local role="$1" ns="$2" conf pidfile logfile
    shift 2
    conf="${STATE_DIR}/bird-${role}.conf"
    pidfile="${STATE_DIR}/bird-${role}.pid"
    logfile="${STATE_DIR}/bird-${role}.log"
    "${PROVISION_DIR}/bird-config.sh" "${role%%[0-9]*}" "$@" --bfd >"${conf}"
    # -f: in the foreground, so the PID file holds BIRD's own PID (lab_process_kind
    # knows it by "bird -f -c STATE_DIR/bird-ROLE.conf").
    spawn_in_ns "${ns}" "${pidfile}" "${logfile}" bird -f -c "${conf}" -s "$(bird_ctl "${role}")"
    wait_until_ready "BIRD (${role}) in ${ns}" "${pidfile}" bird "${logfile}" "${SERVICE_WAIT_TENTHS}" \
        in_ns "${ns}" birdc -s "$(bird_ctl "${role}")" show status
}

start_lb_bird() {
    local lb="$1" host
    host="$(lb_host "${lb}")"
    start_bird "$(lb_role "${lb}")" "$(lb_ns "${lb}")" --router-id "${NET4}.${host}" --asn "${LB_ASN}" \
        --peer-asn "${ROUTER_ASN}" --peer4 "${NET4}.${CLIENT_FIRST}" --peer6 "${NET6}:${CLIENT_FIRST}" \
        --table "${ANNOUNCE_TABLE}"
}

start_router_bird() {
    local lbs="$1" lb peers=()
    for ((lb = 1; lb <= lbs; lb++)); do
        peers+=(--peer4 "${NET4}.$(lb_host "${lb}")" --peer6 "${NET6}:$(lb_host "${lb}")")
    done
    # One flow, one path: the kernel hashes ports too (policy 1), with a fixed seed.
    sysctl_in "${NS_CLIENT}" net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1 \
        net.ipv4.fib_multipath_hash_seed="${MULTIPATH_HASH_SEED}"
    start_bird router "${NS_CLIENT}" --router-id "${NET4}.${CLIENT_FIRST}" --asn "${ROUTER_ASN}" \
        --peer-asn "${LB_ASN}" "${peers[@]}"
}

# The LB number of a command's optional argument (default 1), checked against the lab.
lb_argument() {
    local lb="${1:-1}"
    [[ "$(lab_setting bgp)" == 1 ]] || die "the lab is not up with --bgp"
    [[ "${lb}" =~ ^[1-9]$ ]] && ((lb <= $(lab_setting lbs))) || die "no LB ${lb} in this lab"
    printf '%s' "${lb}"
}

cmd_stop_lb_bgp() {
    local lb
    lb="$(lb_argument "$@")"
    stop_pidfile "${STATE_DIR}/bird-$(lb_role "${lb}").pid" "BIRD of LB ${lb}"
}

cmd_start_lb_bgp() {
    local lb
    lb="$(lb_argument "$@")"
    start_lb_bird "${lb}"
}

# The LB host gone from the segment without a word (its link down on the bridge):
# the router notices through BFD, not through a closed BGP session.
cmd_cut_lb() {
    local lb
    lb="$(lb_argument "$@")"
    log "cutting $(lb_ns "${lb}") off the segment (bridge port p-$(lb_role "${lb}") down)"
    ip -n "${NS_BRIDGE}" link set "p-$(lb_role "${lb}")" down
}

cmd_restore_lb() {
    local lb
    lb="$(lb_argument "$@")"
    log "reconnecting $(lb_ns "${lb}") (bridge port p-$(lb_role "${lb}") up)"
    ip -n "${NS_BRIDGE}" link set "p-$(lb_role "${lb}")" up
}

# The LB host's death: its link goes first (nothing more is said on the segment),
# then the lab's processes in it (BIRD) and the namespace. Whoever started stickylbd
# there ends it; its announce guard exits after the hold, and the namespace with it.
cmd_kill_lb() {
    local lb ns
    lb="$(lb_argument "$@")"
    ns="$(lb_ns "${lb}")"
    require_namespace "${ns}"
    log "host death of ${ns}: deleting its bridge port p-$(lb_role "${lb}")"
    ip -n "${NS_BRIDGE}" link del "p-$(lb_role "${lb}")" 2>/dev/null || true
    stop_namespace_processes "${ns}" KILL
    rm -f "${STATE_DIR}/bird-$(lb_role "${lb}").pid"
    log "deleting namespace ${ns}"
    ip netns del "${ns}"
}

# LB K's own checks of backend N fail while the backend serves everyone: a prohibit
# route in LB K refuses what its own stack sends the backend, and the XDP program,
# which forwards at layer 2, takes no route. The LBs' shared checks keep the backend
# in every ring while the other LBs find it up.
backend_routes() {
    local lb="$1" index="$2" action="$3"
    ip -n "$(lb_ns "${lb}")" route "${action}" prohibit "$(lab_backend_address "${index}")/32"
    ip -n "$(lb_ns "${lb}")" -6 route "${action}" prohibit "$(lab_backend_address6 "${index}")/128"
}

# blind (routes added) or unblind (removed): LB K, backend N.
blinding() {
    local action="$1" command="$2" lb index
    lb="$(lb_argument "${3:-}")"
    index="$(number_argument "${command}" "${4:-}")"
    require_namespace "$(lb_ns "${lb}")"
    log "LB ${lb}, its own traffic to be${index}: prohibit routes ${action}"
    backend_routes "${lb}" "${index}" "${action}"
}

cmd_blind_lb() { blinding add blind-lb "$@"; }
cmd_unblind_lb() { blinding del unblind-lb "$@"; }
