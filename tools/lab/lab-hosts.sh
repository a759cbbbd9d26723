# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# tools/lab/lab.sh's hosts, sourced by it: namespaces joined to the bridge, and the
# services they run (memcached, stickylb-agent, the python or Apache + mod_php backends).

sysctl_in() {
    local ns="$1"
    shift
    local setting
    for setting in "$@"; do
        in_ns "${ns}" sysctl -qw "${setting}" >/dev/null
    done
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

# LB K (1..): namespace PREFIX-lb (K = 1) or PREFIX-lbK, bridge port p-lb / p-lbK, host 1+K.
lb_role() { if (($1 == 1)); then printf 'lb'; else printf 'lb%d' "$1"; fi; }
lb_ns() { printf '%s-%s' "${PREFIX}" "$(lb_role "$1")"; }
lb_host() { printf '%d' $((LAB_LB_HOST + $1 - 1)); }

# Its bridge-side peer runs xdp_pass, so the frames its XDP program sends (XDP_TX) reach the bridge.
attach_xdp_pass() {
    local object="$1" port="$2"
    if ip -n "${NS_BRIDGE}" link set dev "${port}" xdpdrv obj "${object}" sec xdp 2>/dev/null; then
        log "xdp_pass attached to ${NS_BRIDGE}/${port} (native)"
    else
        ip -n "${NS_BRIDGE}" link set dev "${port}" xdpgeneric obj "${object}" sec xdp
        log "xdp_pass attached to ${NS_BRIDGE}/${port} (generic: native failed)"
    fi
}

create_lb_namespace() {
    local lb="$1" xdp_pass_object="$2" ns role host
    ns="$(lb_ns "${lb}")" role="$(lb_role "${lb}")" host="$(lb_host "${lb}")"
    log "creating load balancer namespace ${ns} (${NET4}.${host}, ${NET6}:${host}, MTU ${LAB_MTU}, forwarding on)"
    new_namespace "${ns}"
    connect_host "${ns}" "${role}" "$(printf '02:89:00:00:00:%02x' "${host}")" "${LAB_MTU}"
    add_host_addresses "${ns}" "${host}"
    sysctl_in "${ns}" net.ipv4.ip_forward=1 net.ipv4.conf.all.forwarding=1 \
        net.ipv4.conf.eth0.forwarding=1 net.ipv6.conf.all.forwarding=1 net.ipv6.conf.eth0.forwarding=1
    attach_xdp_pass "${xdp_pass_object}" "p-${role}"
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
