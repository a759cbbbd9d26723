# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# tools/lab/lab.sh's BGP roles, sourced by it (`up --bgp`): the client's namespace
# doubles as the router, which learns the VIPs from the LB's BIRD instead of a static
# route; the LB's BIRD advertises what stickylbd puts into routing table 89. Both
# configs come from tools/provision/bird-config.sh, shared with the Vagrant VMs.

readonly ROUTER_ASN=65000
readonly LB_ASN=65089
readonly ANNOUNCE_TABLE=89

bird_ctl() { printf '%s/bird-%s.ctl' "${STATE_DIR}" "$1"; }

# Writes ROLE's config (lb or router) and starts BIRD in the foreground in NS.
start_bird() {
    local role="$1" ns="$2" conf pidfile logfile
    shift 2
    conf="${STATE_DIR}/bird-${role}.conf"
    pidfile="${STATE_DIR}/bird-${role}.pid"
    logfile="${STATE_DIR}/bird-${role}.log"
    "${PROVISION_DIR}/bird-config.sh" "${role}" "$@" --bfd >"${conf}"
    # -f: in the foreground, so the PID file holds BIRD's own PID (lab_process_kind
    # knows it by "bird -f -c STATE_DIR/bird-ROLE.conf").
    spawn_in_ns "${ns}" "${pidfile}" "${logfile}" bird -f -c "${conf}" -s "$(bird_ctl "${role}")"
    wait_until_ready "BIRD (${role}) in ${ns}" "${pidfile}" bird "${logfile}" "${SERVICE_WAIT_TENTHS}" \
        in_ns "${ns}" birdc -s "$(bird_ctl "${role}")" show status
}

start_lb_bird() {
    start_bird lb "${NS_LB}" --router-id "${LB4}" --asn "${LB_ASN}" --peer-asn "${ROUTER_ASN}" \
        --peer4 "${NET4}.${CLIENT_FIRST}" --peer6 "${NET6}:${CLIENT_FIRST}" --table "${ANNOUNCE_TABLE}"
}

start_router_bird() {
    start_bird router "${NS_CLIENT}" --router-id "${NET4}.${CLIENT_FIRST}" --asn "${ROUTER_ASN}" \
        --peer-asn "${LB_ASN}" --peer4 "${LB4}" --peer6 "${LB6}"
    # One flow, one path: the kernel hashes ports too, with a fixed seed.
    sysctl_in "${NS_CLIENT}" net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1
    sysctl_in "${NS_CLIENT}" net.ipv4.fib_multipath_hash_seed=89 2>/dev/null || true
}

require_bgp_lab() {
    [[ "$(lab_setting bgp)" == 1 ]] || die "the lab is not up with --bgp"
}

cmd_stop_lb_bgp() {
    require_bgp_lab
    stop_pidfile "${STATE_DIR}/bird-lb.pid" "BIRD of the LB"
}

cmd_start_lb_bgp() {
    require_bgp_lab
    start_lb_bird
}

# The LB host gone from the segment without a word (its link down on the bridge):
# the router notices through BFD, not through a closed BGP session.
cmd_cut_lb() {
    require_bgp_lab
    log "cutting ${NS_LB} off the segment (bridge port p-lb down)"
    ip -n "${NS_BRIDGE}" link set p-lb down
}

cmd_restore_lb() {
    require_bgp_lab
    log "reconnecting ${NS_LB} (bridge port p-lb up)"
    ip -n "${NS_BRIDGE}" link set p-lb up
}
