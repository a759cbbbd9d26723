#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Real traffic through the namespace lab (tools/lab/lab.sh), side by side in one run:
# wrk (HTTP keep-alive, and Connection: close) and a UDP request/response load from
# the client namespace, against the same three backends (Apache event MPM, one static
# page; a UDP echo), through:
#
#   direct     straight to one backend: the limit
#   floor      an XDP program on the LB that only rewrites MACs to backend 1 and
#              sends the frame back out (tools/bench/peers/forward_floor.bpf.c): what
#              the lab's extra hops cost any L2 DSR load balancer, stickylb's logic aside
#   native     stickylb, L2 DSR, native XDP        (stickylbd, attach_mode native)
#   generic    stickylb, L2 DSR, generic XDP       (attach_mode generic)
#   ipip       stickylb, IPIP, native XDP          (lab.sh up --mode ipip; backends decap)
#   haproxy    HAProxy 2.6, mode tcp, stick on src (in the LB namespace, on the VIP)
#   nginx      nginx stream, hash $remote_addr consistent (idem)
#
# Every run is bounded (--duration seconds) and repeated (--runs); each figure is the
# median of the runs. During the stickylb runs kernel.bpf_stats_enabled=1 gives the XDP
# program's own run time per packet (restored afterwards). Prints a markdown section on
# stdout (figures, ratios to direct, machine facts, the exact commands and configs);
# progress on stderr. Removes everything it started on exit, error or interrupt.
#
#   tools/bench/traffic.sh [--quick] [--runs N] [--duration S] [--build-dir DIR]
#                          [--cases LIST]
#
# --quick       CI smoke: 1 run of about 1 s per load; cases direct, floor, native,
#               haproxy, nginx (unless --cases says otherwise)
# --runs N      repetitions per load and case (default 3)
# --duration S  seconds per run (default 5)
# --build-dir   CMake build directory (default: build, or $STICKYLB_BUILD_DIR); the
#               targets it needs are built if missing
# --cases LIST  comma-separated subset of: direct,floor,native,generic,ipip,haproxy,nginx
#
# Needs root (network namespaces, XDP). Lab prefix: $STICKYLB_LAB_PREFIX (default
# "bench"), so a demo lab ("slb") keeps running.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
peers_dir=$repo/tools/bench/peers
build=${STICKYLB_BUILD_DIR:-$repo/build}
runs=3
duration=5
quick=0
cases=""
command_line="tools/bench/traffic.sh"
for arg in "$@"; do command_line="$command_line $arg"; done

usage() { sed -n '3,36p' "$0" | sed 's/^# \{0,1\}//'; }
die() {
    printf 'traffic: error: %s\n' "$*" >&2
    exit 1
}
progress() { printf 'traffic: %s\n' "$*" >&2; }

while (($#)); do
    case $1 in
    --quick) quick=1 ;;
    --runs | --duration | --build-dir | --cases)
        [[ $# -ge 2 ]] || die "$1 needs a value"
        case $1 in
        --runs) runs=$2 ;;
        --duration) duration=$2 ;;
        --build-dir) build=$2 ;;
        --cases) cases=$2 ;;
        esac
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done
if ((quick)); then
    # --quick sets the defaults; an explicit --runs/--duration/--cases still wins.
    [[ " $command_line " == *" --runs "* ]] || runs=1
    [[ " $command_line " == *" --duration "* ]] || duration=1
    [[ -n $cases ]] || cases=direct,floor,native,haproxy,nginx
fi
[[ -n $cases ]] || cases=direct,floor,native,generic,ipip,haproxy,nginx
[[ $runs =~ ^[1-9][0-9]?$ ]] || die "--runs must be 1-99"
[[ $duration =~ ^[1-9][0-9]?$ ]] || die "--duration must be 1-99 (seconds)"
case $build in /*) ;; *) build=$repo/$build ;; esac
all_cases=(direct floor native generic ipip haproxy nginx)
selected=()
for name in "${all_cases[@]}"; do
    [[ ",$cases," == *",$name,"* ]] && selected+=("$name")
done
for name in ${cases//,/ }; do
    [[ " ${all_cases[*]} " == *" $name "* ]] || die "unknown case '$name' (known: ${all_cases[*]})"
done
((${#selected[@]})) || die "--cases selects nothing"

[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, XDP, kernel.bpf_stats_enabled); try: sudo $command_line"
for tool in wrk haproxy nginx apache2 bpftool ip curl python3 cmake; do
    command -v "$tool" >/dev/null || die "$tool not found (tools/install-deps.sh installs it)"
done
[[ -f /usr/lib/nginx/modules/ngx_stream_module.so ]] || die "nginx stream module missing (apt-get install libnginx-mod-stream)"

# --- the lab and its numbers --------------------------------------------------------
export STICKYLB_LAB_PREFIX=${STICKYLB_LAB_PREFIX:-bench}
prefix=$STICKYLB_LAB_PREFIX
[[ $prefix =~ ^[a-z0-9]{1,12}$ ]] || die "STICKYLB_LAB_PREFIX must match [a-z0-9]{1,12}"
state=/run/stickylb-traffic-$prefix # beside, not inside, the lab's state directory
ns_client=$prefix-client
ns_lb=$prefix-lb
readonly vip=10.89.0.250 backends=3 http_port=80 udp_port=9000
backend_address() { printf '10.89.0.%d' $((20 + $1)); }
backend_ns() { printf '%s-be%d' "$prefix" "$1"; }
cores=$(nproc)
# One wrk thread per core; 64 connections keep every backend worker busy without
# queueing most of them. UDP: 32 flows, one request in flight each.
wrk_threads=$cores
wrk_connections=64
udp_flows=32

lab_script=$repo/tools/lab/lab.sh
daemon=$build/userspace/daemon/stickylbd
cli_binary=$build/userspace/cli/stickylb
udp_load=$build/tools/bench/udp_load
udp_echo=$build/tools/bench/udp_echo
bpffs=$state/bpffs
daemon_config=$state/stickylbd.yaml
lab_is_up=0
stats_saved=""

# --- processes this script starts: each leads its own session, PID in STATE/NAME.pid ---

# Starts COMMAND... in namespace NS as NAME (log STATE/NAME.log).
spawn() {
    local name=$1 ns=$2
    shift 2
    # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
    ip netns exec "$ns" setsid sh -c 'printf "%s\n" "$$" >"$0" && exec "$@"' "$state/$name.pid" "$@" \
        </dev/null >"$state/$name.log" 2>&1 &
    local tries
    for ((tries = 0; tries < 50; tries++)); do
        [[ -s $state/$name.pid ]] && return 0
        sleep 0.02
    done
    die "$name did not start (log: $state/$name.log)"
}

group_alive() {
    ps -e -o pgid=,stat= | awk -v pgid="$1" '$1 == pgid && $2 !~ /^Z/ {found = 1} END {exit !found}'
}

# Ends what spawn started as NAME: its process group, TERM then (after 5 s) KILL.
stop_spawned() {
    local name=$1 pid tries
    [[ -s $state/$name.pid ]] || return 0
    pid=$(tr -dc '0-9' <"$state/$name.pid")
    rm -f "$state/$name.pid"
    [[ -n $pid ]] || return 0
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    for ((tries = 0; tries < 50; tries++)); do
        group_alive "$pid" || return 0
        sleep 0.1
    done
    progress "$name (process group $pid) ignored SIGTERM: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || true
}

stop_all_spawned() {
    local pidfile
    for pidfile in "$state"/*.pid; do
        [[ -e $pidfile ]] || continue
        stop_spawned "$(basename "$pidfile" .pid)"
    done
}

lab() { STICKYLB_BUILD_DIR=$build "$lab_script" "$@" >&2; }

detach_daemon() {
    if [[ -f $daemon_config ]] && ip netns list | awk '{print $1}' | grep -qx "$ns_lb"; then
        ip netns exec "$ns_lb" "$daemon" --detach --config "$daemon_config" >&2 2>&1 || true
    fi
    rm -f "$daemon_config"
}

restore_bpf_stats() {
    if [[ -n $stats_saved ]]; then
        sysctl -qw "kernel.bpf_stats_enabled=$stats_saved"
        stats_saved=""
    fi
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    progress "cleaning up"
    if ((status != 0)); then
        local log
        for log in "$state"/*.log "$state"/*/error.log; do
            [[ -s $log ]] || continue
            progress "last lines of $log:"
            tail -n 15 "$log" | sed 's/^/    /' >&2
        done
    fi
    stop_all_spawned
    detach_daemon
    mountpoint -q "$bpffs" && umount "$bpffs"
    restore_bpf_stats
    ((lab_is_up)) && lab down
    rm -rf -- "$state"
    exit "$status"
}
# --- build ---------------------------------------------------------------------------
if [[ ! -f $build/CMakeCache.txt ]] || ! grep -q '^STICKYLB_BUILD_BENCH:BOOL=ON$' "$build/CMakeCache.txt"; then
    cmake -S "$repo" -B "$build" -DSTICKYLB_BUILD_BENCH=ON >&2
fi
progress "building in $build"
cmake --build "$build" -j "$cores" --target stickylbd stickylb stickylb_bpf neigh_bpf decap_bpf \
    xdp_pass_bpf forward_floor_bpf udp_load udp_echo >&2

# A run killed without its cleanup may have left its bpffs mounted in the state directory.
mountpoint -q "$bpffs" && umount "$bpffs"
rm -rf -- "$state"
mkdir -p "$state" "$bpffs"
# From here on, whatever the exit: cleanup ends what this run started (its PID files only).
trap cleanup EXIT
trap 'progress "interrupted"; exit 130' INT TERM

# --- backends: Apache (event MPM, static page) and the UDP echo, in each backend namespace ---

render() { # TEMPLATE NAME=VALUE...: the template with every @NAME@ replaced
    local text name_value
    text=$(<"$1")
    shift
    for name_value in "$@"; do
        text=${text//@${name_value%%=*}@/${name_value#*=}}
    done
    printf '%s\n' "$text"
}

start_backends() {
    local n dir tries
    for ((n = 1; n <= backends; n++)); do
        lab stop-backend "$n" # the lab's python server: it would saturate first
        dir=$state/be$n
        mkdir -p "$dir/htdocs" "$dir/runtime"
        printf 'backend=be%d\n' "$n" >"$dir/htdocs/index.html"
        chmod -R a+rX "$dir"
        render "$peers_dir/backend-apache.conf.in" "DIR=$dir" "NAME=be$n" >"$dir/apache2.conf"
        # Before Apache listens: listen() caps its backlog at somaxconn.
        ip netns exec "$(backend_ns "$n")" sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096
        spawn "be$n-apache" "$(backend_ns "$n")" apache2 -f "$dir/apache2.conf" -DFOREGROUND
        spawn "be$n-udp-echo" "$(backend_ns "$n")" "$udp_echo" --port "$udp_port"
    done
    for ((n = 1; n <= backends; n++)); do
        for ((tries = 0; tries < 100; tries++)); do
            ip netns exec "$ns_client" curl -s --max-time 1 "http://$(backend_address "$n")/" 2>/dev/null |
                grep -qx "backend=be$n" && break
            sleep 0.1
        done
        ((tries < 100)) || die "Apache of be$n does not answer (log: $state/be$n/error.log)"
        ip netns exec "$ns_client" "$udp_load" --target "$(backend_address "$n"):$udp_port" --flows 1 \
            --duration 0.2 | grep -q 'requests=[1-9]' || die "the UDP echo of be$n does not answer"
    done
}

stop_backends() {
    local n
    for ((n = 1; n <= backends; n++)); do
        stop_spawned "be$n-apache"
        stop_spawned "be$n-udp-echo"
    done
}

bring_up_lab() { # MODE
    stop_backends # a lab up deletes the namespaces: nothing of ours may live in them
    progress "lab up --mode $1 --backends $backends (prefix $prefix)"
    lab_is_up=1
    lab up --mode "$1" --backends "$backends"
    local ns
    # Connection: close opens tens of thousands of connections a run: reuse TIME_WAIT
    # ports on the connecting sides (the client; the LB for the proxies' upstreams).
    for ns in "$ns_client" "$ns_lb"; do
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_tw_reuse=1 "net.ipv4.ip_local_port_range=1024 65535"
    done
    start_backends
    lab_mode=$1
}

# --- one measurement -------------------------------------------------------------------

to_us() { # wrk's "1.23ms" / "456.00us" / "1.02s" -> microseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000
        else print n }'
}

# wrk from the client to http://HOST/ (LOAD keepalive or close): prints "RPS P50_US P99_US".
run_wrk() {
    local host=$1 load=$2 seconds=$3 output rps p50 p99 errors
    local command=(wrk -t"$wrk_threads" -c"$wrk_connections" -d"${seconds}s" --latency)
    [[ $load == close ]] && command+=(-H 'Connection: close')
    command+=("http://$host/")
    output=$(ip netns exec "$ns_client" "${command[@]}" 2>&1) || die "wrk failed: $output"
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$output")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$output")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$output")
    [[ -n $rps && -n $p50 && -n $p99 ]] || die "cannot read wrk's output: $output"
    errors=$(grep -E 'Socket errors|Non-2xx' <<<"$output" | tr -s ' ' || true)
    [[ -z $errors ]] || progress "  wrk $load $host: $errors"
    printf '%s %s %s\n' "$rps" "$(to_us "$p50")" "$(to_us "$p99")"
}

# The UDP load from the client to HOST:PORT: prints "RPS P50_US P99_US".
run_udp() {
    local target=$1 seconds=$2 output lost figures
    output=$(ip netns exec "$ns_client" "$udp_load" --target "$target" --flows "$udp_flows" --duration "$seconds") ||
        die "udp_load failed: $output"
    lost=$(sed -n 's/.*lost=\([0-9]*\).*/\1/p' <<<"$output")
    [[ $lost == 0 ]] || progress "  udp $target: $lost requests lost (200 ms timeout)"
    figures=$(sed -n 's/.*rps=\([0-9.]*\) p50_us=\([0-9.]*\) p99_us=\([0-9.]*\).*/\1 \2 \3/p' <<<"$output")
    [[ -n $figures ]] || die "cannot read udp_load's output: $output"
    printf '%s\n' "$figures"
}

xdp_prog_id="" # set while an XDP case runs: its XDP program's counters are read
proxy_pgid=""  # set while a proxy (or stickylbd) runs: its processes' CPU time is read
proxy_name=""

clock_ticks=$(getconf CLK_TCK)
group_cpu_us() { # PGID: user + system CPU time of the group's live processes, in microseconds
    local pid ticks=0
    for pid in $(ps -e -o pid=,pgid= | awk -v g="$1" '$2 == g {print $1}'); do
        # Fields after the ")" that ends the command name: utime and stime are 12 and 13.
        ticks=$((ticks + $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)))
    done
    echo $((ticks * 1000000 / clock_ticks))
}

xdp_counters() { # "RUN_TIME_NS RUN_CNT" of the XDP program
    bpftool prog show id "$xdp_prog_id" -j |
        python3 -c 'import json, sys; p = json.load(sys.stdin); print(p.get("run_time_ns", 0), p.get("run_cnt", 0))'
}

median() { # numbers on stdin -> their median
    sort -g | awk '{v[NR] = $1} END {
        if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A result # [case,load,metric] = median; metric rps p50 p99 xdp
declare -A run_values

# Runs LOAD (keepalive, close, udp) against CASE's target RUNS times; stores medians.
measure() {
    local case=$1 load=$2 http_host=$3 udp_target=$4 run figures before after metric rps p50 p99 t0 c0 t1 c1
    local cpu_before cpu_after requests
    for metric in rps p50 p99 xdp lbcpu; do run_values[$metric]=""; done
    for ((run = 1; run <= runs; run++)); do
        [[ -z $xdp_prog_id ]] || before=$(xdp_counters)
        [[ -z $proxy_pgid ]] || cpu_before=$(group_cpu_us "$proxy_pgid")
        if [[ $load == udp ]]; then
            figures=$(run_udp "$udp_target" "$duration")
        else
            figures=$(run_wrk "$http_host" "$load" "$duration")
        fi
        read -r rps p50 p99 <<<"$figures"
        run_values[rps]+="$rps"$'\n'
        run_values[p50]+="$p50"$'\n'
        run_values[p99]+="$p99"$'\n'
        local note="" lb_us=0
        requests=$(awk -v r="$rps" -v d="$duration" 'BEGIN {printf "%.0f\n", r * d}')
        if [[ -n $xdp_prog_id ]]; then
            after=$(xdp_counters)
            read -r t0 c0 <<<"$before"
            read -r t1 c1 <<<"$after"
            if ((c1 > c0)); then
                run_values[xdp]+="$(((t1 - t0) / (c1 - c0)))"$'\n'
                lb_us=$(((t1 - t0) / 1000))
                note=", XDP $(((t1 - t0) / (c1 - c0))) ns/packet over $((c1 - c0)) packets"
            fi
        fi
        if [[ -n $proxy_pgid ]]; then
            cpu_after=$(group_cpu_us "$proxy_pgid")
            lb_us=$((lb_us + cpu_after - cpu_before))
            note+=", $proxy_name CPU $(((cpu_after - cpu_before) / 1000)) ms"
        fi
        if [[ -n $xdp_prog_id || -n $proxy_pgid ]] && ((requests > 0)); then
            run_values[lbcpu]+="$(awk -v t="$lb_us" -v n="$requests" 'BEGIN {print t / n}')"$'\n'
        fi
        progress "  $case $load run $run/$runs: $rps req/s, p50 $p50 us, p99 $p99 us$note"
    done
    for metric in rps p50 p99 xdp lbcpu; do
        result[$case,$load,$metric]=$(printf '%s' "${run_values[$metric]}" | grep . | median || true)
    done
    # The spread of req/s over the runs: how far to trust the median on a busy machine.
    result[$case,$load,range]=$(printf '%s' "${run_values[rps]}" | grep . | sort -g |
        awk 'NR == 1 {low = $1} {high = $1} END {printf "%.0f-%.0f\n", low, high}')
}

warm_up() { # HOST: one short keep-alive run nobody reports (caches, Apache threads, flows)
    run_wrk "$1" keepalive 1 >/dev/null
}

measure_all_loads() { # CASE HTTP_HOST UDP_TARGET (UDP_TARGET "" = no UDP for this case)
    warm_up "$2"
    measure "$1" keepalive "$2" "$3"
    measure "$1" close "$2" "$3"
    [[ -z $3 ]] || measure "$1" udp "$2" "$3"
}

# --- the cases -------------------------------------------------------------------------

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
    local protocol port
    {
        cat <<YAML
# stickylbd config of tools/bench/traffic.sh
interface: eth0
attach_mode: $1
pin_dir: $bpffs/stickylb
state_file: $state/state.json
control_socket: $state/control.sock
metrics_listen: 127.0.0.1:19478
vips:
YAML
        for protocol in tcp udp; do
            port=$http_port
            [[ $protocol == udp ]] && port=$udp_port
            cat <<YAML
  - name: bench-$protocol
    address: "$vip"
    port: $port
    protocol: $protocol
    forwarding: $2
    persistence: {enabled: true, timeout_s: 300}
    health: {kind: http, port: $http_port, interval: 200ms, timeout: 100ms, rise: 2, fall: 2}
    backends:
YAML
            server_lines '      - {name: be%s, address: "%s"}%.0s' 0
        done
    } >"$daemon_config"
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

started=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for name in "${selected[@]}"; do
    case $name in
    ipip) continue ;; # last: it needs the lab in ipip mode
    esac
    [[ ${lab_mode:-} == l2 ]] || bring_up_lab l2
    case $name in
    direct) run_direct ;;
    floor) run_floor ;;
    native) run_stickylb native native l2 ;;
    generic) run_stickylb generic generic l2 ;;
    haproxy) run_haproxy ;;
    nginx) run_nginx ;;
    esac
done
if [[ " ${selected[*]} " == *" ipip "* ]]; then
    bring_up_lab ipip
    run_stickylb ipip native ipip
fi
elapsed=$(($(date +%s) - started))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
progress "measured in ${elapsed} s"

# --- the report ------------------------------------------------------------------------

declare -A case_title=(
    [direct]="direct to one backend (the limit)"
    [floor]="floor: XDP MAC rewrite + XDP_TX, no lookup"
    [native]="stickylb L2 DSR, native XDP"
    [generic]="stickylb L2 DSR, generic XDP"
    [ipip]="stickylb IPIP, native XDP"
    [haproxy]="HAProxy, mode tcp, stick on src"
    [nginx]="nginx stream, hash \$remote_addr consistent"
)

ratio() { # VALUE BASE -> "1.02x" or "–"
    awk -v v="$1" -v b="$2" 'BEGIN { if (v == "" || b == "" || b + 0 == 0) print "–"; else printf "%.2fx\n", v / b }'
}
fmt_rps() { awk -v v="$1" 'BEGIN { if (v == "") print "–"; else printf "%.0f\n", v }'; }
fmt_us() {
    awk -v v="$1" 'BEGIN { if (v == "") print "–"; else if (v >= 1000) printf "%.2f ms\n", v / 1000; else printf "%.0f µs\n", v }'
}

print_table() { # LOAD TITLE
    local load=$1 name base_rps base_p50 base_p99 xdp
    printf '### %s\n\n' "$2"
    printf '| configuration | req/s | vs direct | req/s of the runs | p50 | vs direct | p99 | vs direct | XDP ns/packet | LB CPU µs/request |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
    base_rps=${result[direct,$load,rps]:-}
    base_p50=${result[direct,$load,p50]:-}
    base_p99=${result[direct,$load,p99]:-}
    for name in "${all_cases[@]}"; do
        [[ " ${selected[*]} " == *" $name "* ]] || continue
        if [[ -z ${result[$name,$load,rps]:-} ]]; then
            [[ $name == haproxy ]] && printf '| %s | n/a (HAProxy 2.6 has no UDP proxy) | | | | | | | | |\n' "${case_title[$name]}"
            continue
        fi
        xdp=${result[$name,$load,xdp]:-}
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${case_title[$name]}" \
            "$(fmt_rps "${result[$name,$load,rps]}")" "$(ratio "${result[$name,$load,rps]}" "$base_rps")" \
            "${result[$name,$load,range]}" \
            "$(fmt_us "${result[$name,$load,p50]}")" "$(ratio "${result[$name,$load,p50]}" "$base_p50")" \
            "$(fmt_us "${result[$name,$load,p99]}")" "$(ratio "${result[$name,$load,p99]}" "$base_p99")" \
            "${xdp:-–}" "$(awk -v v="${result[$name,$load,lbcpu]:-}" 'BEGIN { if (v == "") print "–"; else printf "%.2f\n", v }')"
    done
    printf '\n'
}

# "met" / "missed" / "–" for a ratio A/B compared with LIMIT by OP (ge|le).
verdict() {
    awk -v a="$1" -v b="$2" -v limit="$3" -v op="$4" 'BEGIN {
        if (a == "" || b == "" || b + 0 == 0) { print "–"; exit }
        r = a / b; ok = (op == "ge") ? r >= limit : r <= limit
        printf "%.2fx (%s)\n", r, ok ? "met" : "missed" }'
}

print_targets() {
    local load label
    [[ " ${selected[*]} " == *" native "* ]] || return 0
    printf '### Targets, stickylb L2 DSR native XDP\n\n'
    printf '| load | req/s vs direct (>= 0.95x) | vs HAProxy (>= 1.5x) | vs nginx (>= 1.5x) | p99 vs direct (<= 1.10x) | req/s vs floor | LB CPU per request of HAProxy, nginx over stickylb |\n'
    printf '|---|---|---|---|---|---|---|\n'
    for load in keepalive close udp; do
        case $load in keepalive) label="HTTP keep-alive" ;; close) label="HTTP Connection: close" ;; udp) label="UDP request/response" ;; esac
        [[ -n ${result[native,$load,rps]:-} ]] || continue
        printf '| %s | %s | %s | %s | %s | %s | %s, %s |\n' "$label" \
            "$(verdict "${result[native,$load,rps]}" "${result[direct,$load,rps]:-}" 0.95 ge)" \
            "$(verdict "${result[native,$load,rps]}" "${result[haproxy,$load,rps]:-}" 1.5 ge)" \
            "$(verdict "${result[native,$load,rps]}" "${result[nginx,$load,rps]:-}" 1.5 ge)" \
            "$(verdict "${result[native,$load,p99]}" "${result[direct,$load,p99]:-}" 1.10 le)" \
            "$(ratio "${result[native,$load,rps]}" "${result[floor,$load,rps]:-}")" \
            "$(ratio "${result[haproxy,$load,lbcpu]:-}" "${result[native,$load,lbcpu]:-}")" \
            "$(ratio "${result[nginx,$load,lbcpu]:-}" "${result[native,$load,lbcpu]:-}")"
    done
    printf '\n'
}

code_block() { # TITLE FILE
    printf '<details><summary>%s</summary>\n\n```\n' "$1"
    grep -v -e '^ *#' -e '^$' "$2"
    printf '```\n\n</details>\n\n'
}

wrk_version=$(wrk -v 2>&1 | head -1 | awk '{print $2}' || true)
# shellcheck disable=SC2016 # backquotes in the report are markdown, not command substitution
{
    printf '## Real traffic: namespace lab, wrk and UDP request/response\n\n'
    printf 'Generated by `%s` on %s (git %s%s).\n' "$command_line" "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
        "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$(git -C "$repo" diff --quiet HEAD -- tools/bench bpf userspace 2>/dev/null || echo ', with uncommitted changes')"
    printf 'Machine: Linux %s, %s CPUs (%s); %s; nginx %s; wrk %s; %s.\n\n' "$(uname -r)" "$cores" \
        "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" "$(haproxy -v | head -1 | awk '{print "HAProxy " $3}')" \
        "$(nginx -v 2>&1 | sed 's|.*nginx/||')" "$wrk_version" "$(apache2 -v | awk -F': ' '/version/ {print $2}' | awk '{print $1}')"
    printf 'Every figure is the median of %s run(s) of %s s per load and configuration, from this run.\n' "$runs" "$duration"
    printf 'Load average (1, 5, 15 min) before the runs: %s; after: %s.\n' "$load_before" "$load_after"
    printf 'Client, load balancer and %s backends are network namespaces on one bridge (tools/lab/lab.sh,\n' "$backends"
    printf 'veth pairs) sharing the same %s CPUs: the client, the LB path and the backends compete for them, so\n' "$cores"
    printf 'a configuration that spends more CPU per request shows it as fewer requests per second. There is\n'
    printf 'one client address, and every configuration keeps a client on one backend (affinity, stick table,\n'
    printf 'consistent hash), so each serves from one backend, like "direct". Backends: Apache 2.4 event MPM\n'
    printf 'serving a 13-byte static page (tools/bench/peers/backend-apache.conf.in) and a UDP echo\n'
    printf '(tools/bench/peers/udp_echo.cpp). "floor" is the same path as stickylb L2 DSR with the least\n'
    printf 'possible XDP program (MAC rewrite + XDP_TX, tools/bench/peers/forward_floor.bpf.c): the gap from\n'
    printf 'direct to floor is the lab'"'"'s extra hops (client -> LB -> backend), the gap from floor to stickylb\n'
    printf 'is stickylb'"'"'s program. "XDP ns/packet": run_time_ns / run_cnt of the LB'"'"'s XDP program over each\n'
    printf 'run (kernel.bpf_stats_enabled=1 during the XDP runs only; it adds two clock reads per packet).\n'
    printf '"LB CPU µs/request": what the load balancer itself spent per request: the XDP program'"'"'s run time\n'
    printf '(floor; stickylb, plus stickylbd'"'"'s user + system CPU time: health checks, metrics), or the user +\n'
    printf 'system CPU time of the proxy'"'"'s processes (HAProxy, nginx; the softirq work of their sockets is\n'
    printf 'partly charged elsewhere, so it is a lower bound). It depends far less than req/s on who else\n'
    printf 'wants the CPUs.\n\n'
    print_table keepalive "HTTP keep-alive: \`wrk -t$wrk_threads -c$wrk_connections -d${duration}s --latency http://TARGET/\`"
    print_table close "HTTP Connection: close: \`wrk -t$wrk_threads -c$wrk_connections -d${duration}s --latency -H 'Connection: close' http://TARGET/\`"
    print_table udp "UDP request/response: \`udp_load --target TARGET:$udp_port --flows $udp_flows --duration $duration\` (64-byte datagrams, one in flight per flow)"
    print_targets
    printf 'TARGET: %s (be1) for direct, the VIP %s for the others (the proxies listen on it on the LB'"'"'s\n' "$(backend_address 1)" "$vip"
    printf 'lo; stickylb'"'"'s XDP program answers for it on the LB'"'"'s eth0). Lab: `lab.sh up --mode l2 --backends %s`\n' "$backends"
    printf '(`--mode ipip` for the IPIP row), then per namespace `tcp_tw_reuse=1` and a wide port range on the\n'
    printf 'client and the LB, the lab'"'"'s python backends replaced by the Apache above. Measured in %s s.\n\n' "$elapsed"
    [[ ! -f $state/stickylbd-native.yaml ]] || code_block "stickylbd config (native; generic: attach_mode generic; IPIP: forwarding ipip)" "$state/stickylbd-native.yaml"
    for name in generic ipip; do
        [[ -f $state/stickylbd-native.yaml || ! -f $state/stickylbd-$name.yaml ]] || code_block "stickylbd config ($name)" "$state/stickylbd-$name.yaml"
    done
    [[ ! -f $haproxy_config ]] || code_block "haproxy.cfg (tools/bench/peers/haproxy.cfg.in)" "$haproxy_config"
    [[ ! -f $nginx_config ]] || code_block "nginx.conf (tools/bench/peers/nginx-stream.conf.in)" "$nginx_config"
    code_block "backend apache2.conf (tools/bench/peers/backend-apache.conf.in)" "$state/be1/apache2.conf"
}
