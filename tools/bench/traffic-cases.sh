# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# tools/bench/traffic.sh's cases, sourced by it: each brings up its load balancer
# (none, the floor program, stickylbd, HAProxy, nginx) in the lab, measures every
# load against it with measure_all_loads, and takes it down again.
vip_on_lb() { # add|del: the VIP on the LB's lo, for the proxies to listen on
    ip -n "$ns_lb" addr "$1" "$vip/32" dev lo
}

wait_for_vip() { # NAME: until GET / of the VIP answers from the client (10 s)
    local tries
    for ((tries = 0; tries < 100; tries++)); do
        ip netns exec "$ns_client" curl -s --max-time 1 "http://$vip/" 2>/dev/null | grep -q '^backend=be' && return 0
        sleep 0.1
    done
    die "$1 does not answer on http://$vip/ (log: $state/$1.log)"
}

server_lines() { # FORMAT PORT: one line per backend
    local n
    for ((n = 1; n <= backends; n++)); do
        # shellcheck disable=SC2059 # the format is the caller's
        printf "$1\n" "$n" "$(backend_address "$n")" "$2"
    done
}

haproxy_config=$state/haproxy.cfg
nginx_config=$state/nginx-stream.conf

run_direct() {
    progress "case direct: to be1 ($(backend_address 1))"
    measure_all_loads direct "$(backend_address 1)" "$(backend_address 1):$udp_port"
}

run_haproxy() {
    progress "case haproxy: $(haproxy -v | head -1)"
    render "$peers_dir/haproxy.cfg.in" "THREADS=$cores" "VIP=$vip" \
        "SERVERS=$(server_lines '    server be%s %s:%s check inter 200ms rise 2 fall 2' "$http_port")" >"$haproxy_config"
    haproxy -c -f "$haproxy_config" >&2 || die "haproxy rejects $haproxy_config"
    vip_on_lb add
    spawn haproxy "$ns_lb" haproxy -db -f "$haproxy_config"
    wait_for_vip haproxy
    proxy_pgid=$(tr -dc '0-9' <"$state/haproxy.pid") proxy_name=haproxy
    measure_all_loads haproxy "$vip" "" # HAProxy 2.6 proxies no UDP
    proxy_pgid=""
    stop_spawned haproxy
    vip_on_lb del
}

run_nginx() {
    progress "case nginx: $(nginx -v 2>&1)"
    mkdir -p "$state/nginx"
    render "$peers_dir/nginx-stream.conf.in" "WORKERS=$cores" "DIR=$state/nginx" "VIP=$vip" "UDP_PORT=$udp_port" \
        "TCP_SERVERS=$(server_lines '        server %.0s%s:%s;' "$http_port")" \
        "UDP_SERVERS=$(server_lines '        server %.0s%s:%s;' "$udp_port")" >"$nginx_config"
    vip_on_lb add
    ip netns exec "$ns_lb" nginx -t -q -e "$state/nginx/error.log" -p "$state/nginx" -c "$nginx_config" >&2 ||
        die "nginx rejects $nginx_config"
    spawn nginx "$ns_lb" nginx -e "$state/nginx/error.log" -p "$state/nginx" -c "$nginx_config"
    wait_for_vip nginx
    proxy_pgid=$(tr -dc '0-9' <"$state/nginx.pid") proxy_name=nginx
    measure_all_loads nginx "$vip" "$vip:$udp_port"
    proxy_pgid=""
    stop_spawned nginx
    vip_on_lb del
}

write_daemon_config() { # ATTACH_MODE FORWARDING
    local members=() n
    for ((n = 1; n <= backends; n++)); do members+=(--backend "be$n=$(backend_address "$n")"); done
    "$repo/tools/provision/stickylbd-config.sh" --interface eth0 --vip "$vip" "${members[@]}" --name bench \
        --service "tcp:$http_port" --service "udp:$udp_port" --health-port "$http_port" \
        --attach-mode "$1" --forwarding "$2" --metrics-listen 127.0.0.1:19478 --pin-dir "$bpffs/stickylb" \
        --state-file "$state/state.json" --control-socket "$state/control.sock" >"$daemon_config"
}

lb_xdp() { # FIELD (id or mode) of the XDP program on the LB's eth0, or ""
    ip -n "$ns_lb" -j link show dev eth0 | python3 -c '
import json, sys
xdp = json.load(sys.stdin)[0].get("xdp", {})
print({"id": xdp.get("prog", {}).get("id", ""), "mode": xdp.get("mode", "")}[sys.argv[1]])' "$1"
}

# All loads against the VIP, the XDP program of the LB's eth0 timed by the kernel
# (kernel.bpf_stats_enabled=1 only meanwhile).
measure_with_xdp_stats() { # CASE
    xdp_prog_id=$(lb_xdp id)
    [[ -n $xdp_prog_id ]] || die "no XDP program on $ns_lb/eth0"
    progress "  XDP program id $xdp_prog_id on $ns_lb/eth0 (mode $(lb_xdp mode): 1 native, 2 generic)"
    stats_saved=$(sysctl -n kernel.bpf_stats_enabled)
    sysctl -qw kernel.bpf_stats_enabled=1
    measure_all_loads "$1" "$vip" "$vip:$udp_port"
    restore_bpf_stats
    xdp_prog_id=""
}

run_floor() {
    progress "case floor: forward_floor.bpf.o (MAC rewrite to be1 + XDP_TX) on $ns_lb/eth0, native"
    ip -n "$ns_lb" link set dev eth0 xdpdrv obj "$build/bpf/forward_floor.bpf.o" sec xdp
    wait_for_vip floor
    measure_with_xdp_stats floor
    ip -n "$ns_lb" link set dev eth0 xdpdrv off
}

run_stickylb() { # CASE ATTACH_MODE FORWARDING
    local case=$1 tries
    progress "case $case: stickylbd, attach_mode $2, forwarding $3"
    mountpoint -q "$bpffs" || mount -t bpf bpf "$bpffs"
    write_daemon_config "$2" "$3"
    "$daemon" --check-config "$daemon_config" >/dev/null || die "stickylbd rejects $daemon_config"
    spawn stickylbd "$ns_lb" "$daemon" --config "$daemon_config"
    for ((tries = 0; tries < 100; tries++)); do
        "$cli_binary" -j -s "$state/control.sock" backend show 2>/dev/null |
            python3 -c '
import json, sys
states = [b["state"] for b in json.load(sys.stdin)]
sys.exit(0 if states.count("up") == int(sys.argv[1]) else 1)' $((2 * backends)) 2>/dev/null && break
        sleep 0.1
    done
    ((tries < 100)) || die "stickylbd has not all backends up after 10 s (log: $state/stickylbd.log)"
    wait_for_vip stickylbd
    # The daemon's own CPU (health checks, metrics, map upkeep) counts as the LB's too.
    proxy_pgid=$(tr -dc '0-9' <"$state/stickylbd.pid") proxy_name=stickylbd
    measure_with_xdp_stats "$case"
    proxy_pgid=""
    cp "$daemon_config" "$state/stickylbd-$case.yaml"
    stop_spawned stickylbd
    detach_daemon
}

