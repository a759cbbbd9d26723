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

LOG_TAG=traffic LOG_FD=2
# shellcheck source=tools/lib/common.sh
source "$repo/tools/lib/common.sh"
usage() { sed -n '3,36p' "$0" | sed 's/^# \{0,1\}//'; }
progress() { log "$@"; }

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
readonly vip=$LAB_VIP4 backends=3 http_port=80 udp_port=9000
backend_address() { lab_backend_address "$1"; }
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
    local name=$1 ns=$2 tries
    shift 2
    spawn_in_ns "$ns" "$state/$name.pid" "$state/$name.log" "$@"
    for ((tries = 0; tries < 50; tries++)); do
        [[ -s $state/$name.pid ]] && return 0
        sleep 0.02
    done
    die "$name did not start (log: $state/$name.log)"
}

# Ends what spawn started as NAME: its process group, TERM then (after 5 s) KILL.
stop_spawned() {
    local name=$1 pid
    [[ -s $state/$name.pid ]] || return 0
    pid=$(tr -dc '0-9' <"$state/$name.pid")
    rm -f "$state/$name.pid"
    [[ -z $pid ]] || stop_group "$pid" 50
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

# shellcheck source=tools/bench/traffic-cases.sh
source "$repo/tools/bench/traffic-cases.sh"

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

# shellcheck source=tools/bench/traffic-report.sh
source "$repo/tools/bench/traffic-report.sh"
print_report
