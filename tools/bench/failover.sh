#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Failover as a user sees it: in the namespace lab (3 python backends), a client
# retries GET / on the VIP every ~10 ms (new connection each time, 200 ms deadline,
# like curl --max-time 0.2); its backend's server is killed (SIGKILL to its process group);
# the figure is the time from the kill to its first successful request (served by
# another backend). Distribution (min / p50 / p90 / max) over N runs, a new client
# address each run, for:
#   stickylb         stickylbd, HTTP checks every 200 ms, timeout 100 ms, fall 2 rise 2
#                    (tools/provision/stickylbd-config.sh), L2 DSR, persistence on;
#                    also, from stickylbd's log, kill -> down verdict and kill -> rings
#                    and backend states written (the reconcile).
#   haproxy          HAProxy 2.6 in the LB namespace on the VIP, mode tcp, stick on src,
#                    the same HTTP checks (inter 200ms fall 2 rise 2, timeout check 100ms),
#                    option redispatch 1, retries 2, timeout connect 100ms (HAProxy's
#                    failover settings: a failed connect to the stuck server is retried
#                    on another one after min(timeout connect, 1 s)).
#   haproxy-checks   the same without redispatch: HAProxy moves the client only once
#                    its checks say down, as stickylb does.
# Prints a markdown section on stdout, progress on stderr.
#
#   failover.sh [--quick] [--runs N] [--build-dir DIR] [--lbs stickylb,haproxy,haproxy-checks]
#
# --quick       CI smoke: 3 runs per load balancer.
# --runs N      runs per load balancer (default 20; at least 3).
# --build-dir   CMake build directory (default $STICKYLB_BUILD_DIR or build); the
#               targets it needs are built if missing.
# Needs root (namespaces, XDP). Lab prefix: $STICKYLB_LAB_PREFIX (default slbfo, so the
# demo's lab is never touched); the lab is brought up and removed by this script.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOG_TAG=failover.sh LOG_FD=2
# shellcheck source=tools/lib/common.sh
source "$repo/tools/lib/common.sh"
# shellcheck source=tools/bench/failover-haproxy.sh
source "$repo/tools/bench/failover-haproxy.sh"
progress() { log "$@"; }
build=${STICKYLB_BUILD_DIR:-$repo/build}
runs=20
quick=0
lbs=stickylb,haproxy,haproxy-checks
while (($#)); do
    case $1 in
    --quick) quick=1 ;;
    --runs | --build-dir | --lbs)
        [[ $# -ge 2 ]] || { echo "failover.sh: $1 needs a value" >&2; exit 2; }
        case $1 in
        --runs) runs=$2 ;;
        --build-dir) build=$2 ;;
        --lbs) lbs=$2 ;;
        esac
        shift ;;
    -h | --help) sed -n '3,29p' "$0"; exit 0 ;;
    *) echo "failover.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
((quick == 0)) || runs=3
if ! [[ $runs =~ ^[0-9]+$ ]] || ((runs < 3)); then
    echo "failover.sh: --runs must be a number, at least 3" >&2
    exit 2
fi
case $build in /*) ;; *) build=$repo/$build ;; esac
if [[ $(id -u) -ne 0 ]]; then
    echo "failover.sh: needs root (network namespaces, XDP); try: sudo $0 $*" >&2
    exit 1
fi
for tool in haproxy python3 ip cmake; do
    command -v "$tool" >/dev/null || { echo "failover.sh: $tool is missing (tools/install-deps.sh installs it)" >&2; exit 1; }
done

export STICKYLB_LAB_PREFIX=${STICKYLB_LAB_PREFIX:-slbfo}
export STICKYLB_BUILD_DIR=$build
readonly prefix=$STICKYLB_LAB_PREFIX
readonly ns_lb=$prefix-lb ns_client=$prefix-client
readonly vip=$LAB_VIP4 backends=3
readonly lab=$repo/tools/lab/lab.sh
readonly daemon=$build/userspace/daemon/stickylbd cli_binary=$build/userspace/cli/stickylb

now() { date +%s.%N; }

if [[ ! -f $build/CMakeCache.txt ]]; then
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
progress "building stickylbd, stickylb and the BPF objects in $build"
cmake --build "$build" -j "$(nproc)" --target stickylbd stickylb stickylb_bpf neigh_bpf decap_bpf xdp_pass_bpf >&2

state=$(mktemp -d "${TMPDIR:-/tmp}/stickylb-failover.XXXXXX")
readonly state config=$state/stickylbd.yaml socket=$state/control.sock bpffs=$state/bpffs
export STICKYLB_LAB_STATE=$state/lab # the lab's PID files, where one_run finds the server to kill
client_pid="" daemon_pid="" haproxy_pid="" lab_up=0

# Ends what this script started, by PID: the client loop, stickylbd (then its data
# plane), HAProxy, the lab (lab.sh down ends the lab's own processes by their PID files).
cleanup() {
    local status=$?
    set +e
    [[ -z $client_pid ]] || kill "$client_pid" 2>/dev/null
    stop_daemon
    stop_haproxy
    if ((lab_up)); then
        STICKYLB_LAB_PREFIX=$prefix "$lab" down >"$state/lab-down.log" 2>&1 || cat "$state/lab-down.log" >&2
    fi
    mountpoint -q "$bpffs" 2>/dev/null && umount "$bpffs"
    rm -rf "$state"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the client ---------------------------------------------------------------------
# One line per attempt: start, end (epoch seconds) and the backend that answered, "-"
# for a failure (refused, reset, no answer within 200 ms, no backend in the body).
cat >"$state/client.py" <<'PY'
import re, socket, sys, time
vip, source, path = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path, "w", buffering=1) as log:
    while True:
        started = time.time()
        deadline = started + 0.2
        backend = "-"
        try:
            with socket.create_connection((vip, 80), timeout=0.2, source_address=(source, 0)) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
                reply = b""
                while True:
                    conn.settimeout(max(0.001, deadline - time.time()))
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
            found = re.search(rb"backend=(be[0-9]+)", reply)
            if found and reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]:
                backend = found.group(1).decode()
        except OSError:
            pass
        ended = time.time()
        log.write(f"{started:.6f} {ended:.6f} {backend}\n")
        time.sleep(0.01)
PY

# Timestamps each line of stickylbd's log (its own lines carry none).
cat >"$state/stamp.py" <<'PY'
import sys, time
for line in sys.stdin:
    sys.stdout.write(f"{time.time():.6f} {line}")
    sys.stdout.flush()
PY

# --- helpers --------------------------------------------------------------------------
lab_cmd() { "$lab" "$@" >>"$state/lab.log" 2>&1 || { tail -n 20 "$state/lab.log" >&2; die "lab.sh $* failed"; }; }

stop_pid() { # PID NAME: SIGTERM, then SIGKILL after 10 s
    local pid=$1 tries
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((tries = 0; tries < 100; tries++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    progress "$2 (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

stop_daemon() {
    [[ -n $daemon_pid ]] || return 0
    stop_pid "$daemon_pid" stickylbd
    daemon_pid=""
    ip netns exec "$ns_lb" "$daemon" --detach --config "$config" >>"$state/stickylbd-detach.log" 2>&1 ||
        progress "stickylbd --detach failed (log $state/stickylbd-detach.log)"
}

stickylbd_all_up() {
    "$cli_binary" -s "$socket" -j backend show 2>/dev/null | python3 -c '
import json, sys
states = [b["state"] for b in json.load(sys.stdin)]
sys.exit(0 if len(states) == int(sys.argv[1]) and set(states) == {"up"} else 1)' "$backends" 2>/dev/null
}

wait_all_up() { # LB: until the load balancer says every backend is up (15 s)
    local tries
    for ((tries = 0; tries < 150; tries++)); do
        case $1 in
        stickylb) stickylbd_all_up && return 0 ;;
        *) haproxy_all_up && return 0 ;;
        esac
        kill -0 "${daemon_pid:-$haproxy_pid}" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$state/$([[ $1 == stickylb ]] && echo stickylbd || echo "haproxy-$1").log" >&2
    die "$1 is not running or does not see all $backends backends up after 15 s"
}

# Successful attempts in the client log: "end backend" lines.
successes() { awk '$3 != "-" { print $2, $3 }' "$1"; }

# --- one run ----------------------------------------------------------------------------
# Sets run_ms (kill -> first success elsewhere, ms; empty when none within 10 s),
# killed_at (epoch seconds) and victim (beN).
one_run() {
    local lb=$1 source=$2 log=$state/client-$1-$3.log tries victim_count
    : >"$log"
    ip netns exec "$ns_client" python3 "$state/client.py" "$vip" "$source" "$log" &
    client_pid=$!
    for ((tries = 0; tries < 500; tries++)); do # 5 s: the client is served a few times
        (($(successes "$log" | wc -l) >= 5)) && break
        sleep 0.01
    done
    (($(successes "$log" | wc -l) >= 5)) || die "$lb: client $source is not served (log $log)"
    victim=$(successes "$log" | tail -n 1 | awk '{print $2}')
    victim_count=$(successes "$log" | awk '{print $2}' | sort -u | wc -l)
    ((victim_count == 1)) || progress "$lb: client $source was served by $victim_count backends before the kill (not sticky?)"
    # SIGKILL to the victim's server (its own process group, started by lab.sh for this
    # script), sent here so the clock starts at the kill itself: what `lab.sh
    # crash-backend` does, without its start-up time.
    local server_pid
    server_pid=$(tr -dc '0-9' <"$STICKYLB_LAB_STATE/$victim.pid")
    tr '\0' ' ' <"/proc/$server_pid/cmdline" | grep -q "http_backend.py --name $victim " ||
        die "pid $server_pid (from $STICKYLB_LAB_STATE/$victim.pid) is not the lab's server of $victim"
    killed_at=$(now)
    kill -KILL -- "-$server_pid"
    run_ms=""
    for ((tries = 0; tries < 1000; tries++)); do # 10 s
        run_ms=$(awk -v killed="$killed_at" -v victim="$victim" \
            '$3 != "-" && $3 != victim && $2 > killed { printf "%.0f", ($2 - killed) * 1000; exit }' "$log")
        [[ -z $run_ms ]] || break
        sleep 0.01
    done
    kill "$client_pid" 2>/dev/null || true
    wait "$client_pid" 2>/dev/null || true
    client_pid=""
    lab_cmd start-backend "${victim#be}"
}

# stickylbd's log: first line matching PATTERN after the kill, as ms after it.
daemon_ms() {
    awk -v killed="$1" -v pattern="$2" '$1 > killed && index($0, pattern) { printf "%.0f", ($1 - killed) * 1000; exit }' \
        "$state/stickylbd.log"
}

declare -A results # lb -> space-separated ms (or "timeout")
declare -A detail  # stickylb,down / stickylb,rings -> ms lists

run_series() {
    local lb=$1 run source
    wait_all_up "$lb"
    for ((run = 1; run <= runs; run++)); do
        source=$LAB_NET4.$((LAB_CLIENT_HOST + 1 + (run - 1) % 30))
        one_run "$lb" "$source" "$run"
        results[$lb]+="${run_ms:-timeout} "
        if [[ $lb == stickylb ]]; then
            detail[stickylb,down]+="$(daemon_ms "$killed_at" "web/$victim: health up -> down") "
            detail[stickylb,rings]+="$(daemon_ms "$killed_at" "reconcile (health web/$victim)") "
        fi
        progress "$lb run $run/$runs: client $source, $victim killed, first success after ${run_ms:-no success in 10 s} ms"
        wait_all_up "$lb"
    done
}

start_stickylb() {
    mkdir -p "$bpffs"
    mountpoint -q "$bpffs" || mount -t bpf bpf "$bpffs"
    local members=() n
    for ((n = 1; n <= backends; n++)); do members+=(--backend "be$n=$(lab_backend_address "$n")"); done
    "$repo/tools/provision/stickylbd-config.sh" --interface eth0 --vip "$vip" "${members[@]}" \
        --metrics-listen "$(lab_lb_address):$LAB_METRICS_PORT" --pin-dir "$bpffs/stickylb" --state-file "$state/state.json" \
        --control-socket "$socket" >"$config"
    "$daemon" --check-config "$config" >/dev/null
    # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
    ip netns exec "$ns_lb" setsid sh -c 'printf "%s\n" "$$" >"$0" && exec "$@" 2>&1' "$state/stickylbd.pid" \
        "$daemon" --config "$config" </dev/null | python3 -u "$state/stamp.py" >"$state/stickylbd.log" &
    local tries
    for ((tries = 0; tries < 50; tries++)); do
        [[ -s $state/stickylbd.pid ]] && break
        sleep 0.02
    done
    daemon_pid=$(tr -dc '0-9' <"$state/stickylbd.pid")
    [[ -n $daemon_pid ]] || die "stickylbd did not start (log $state/stickylbd.log)"
}

# --- the runs ---------------------------------------------------------------------------
progress "lab up (prefix $prefix, $backends python backends)"
lab_up=1
lab_cmd up --mode l2 --backends "$backends"

IFS=, read -r -a lb_list <<<"$lbs"
for lb in "${lb_list[@]}"; do
    case $lb in
    stickylb)
        progress "stickylb: stickylbd in $ns_lb"
        start_stickylb
        run_series stickylb
        stop_daemon
        ;;
    haproxy | haproxy-checks)
        progress "$lb: $(haproxy -v | head -n 1)"
        start_haproxy "$([[ $lb == haproxy ]] && echo 1 || echo 0)" "$lb"
        run_series "$lb"
        stop_haproxy
        ;;
    *) die "unknown load balancer '$lb' (stickylb, haproxy, haproxy-checks)" ;;
    esac
done

# --- the report -------------------------------------------------------------------------
# min / p50 / p90 / max of a list of ms ("timeout" counts as missing, reported apart).
distribution() {
    python3 - "$@" <<'PY'
import statistics, sys
values = sorted(float(v) for v in sys.argv[1:] if v not in ("timeout", ""))
missed = sum(1 for v in sys.argv[1:] if v == "timeout")
if not values:
    print("| - | - | - | - |" + (f" {missed} without success in 10 s |" if missed else " |"))
    sys.exit()
def pct(p):  # nearest rank
    return values[max(0, min(len(values) - 1, round(p / 100 * len(values) + 0.5) - 1))]
print(f"| {values[0]:.0f} | {statistics.median(values):.0f} | {pct(90):.0f} | {values[-1]:.0f} |"
      + (f" {missed} without success in 10 s |" if missed else " |"))
PY
}

declare -A label=(
    [stickylb]="stickylb (stickylbd, XDP L2 DSR)"
    [haproxy]="HAProxy, mode tcp, stick on src, redispatch 1, retries 2, timeout connect 100ms"
    [haproxy-checks]="HAProxy, mode tcp, stick on src, checks only"
)
echo "## Failover as a user sees it: failover.sh"
echo
echo "\`tools/bench/failover.sh$( ((quick)) && echo ' --quick')\` on $(uname -r), $(haproxy -v | head -n 1 | awk '{print "HAProxy " $3}'),"
echo "$(date -u '+%Y-%m-%d %H:%M UTC'). In the namespace lab (3 python backends), a client retries GET / on the VIP every"
echo "~10 ms (a new connection each time, 200 ms deadline); its backend's server is killed (SIGKILL, the host"
echo "stays up: new connections to it are refused). Figure: ms from the SIGKILL to the client's first"
echo "successful request, over $runs runs per load balancer (a new client address each"
echo "run). Both load balancers check every backend with GET / every 200 ms, 100 ms timeout, down after 2"
echo "failures, up after 2 successes."
echo
echo "| load balancer | min ms | p50 ms | p90 ms | max ms | |"
echo "|---|---:|---:|---:|---:|---|"
for lb in "${lb_list[@]}"; do
    # shellcheck disable=SC2086 # one argument per run
    echo "| ${label[$lb]} $(distribution ${results[$lb]})"
done
if [[ -n ${results[haproxy]:-} ]]; then
    echo
    echo "HAProxy is in the connection: when its connect to the client's server is refused it tries another"
    echo "server after min(timeout connect, 1 s) (redispatch), before any check has failed. An XDP load balancer"
    echo "with direct server return never sees the refusal (the backend's RST goes straight to the client), so"
    echo "stickylb moves a client when its checks say down, like HAProxy without redispatch (\"checks only\")."
fi
if [[ -n ${results[stickylb]:-} ]]; then
    echo
    echo "stickylbd's own steps in the same runs (its log, timestamped as it is written): from the kill to"
    echo "its down verdict (2 failed checks), and to the end of the reconcile that wrote the backend's state and"
    echo "the VIP's ring (time from a backend's death to the rings updated)."
    echo
    echo "| step | min ms | p50 ms | p90 ms | max ms | |"
    echo "|---|---:|---:|---:|---:|---|"
    # shellcheck disable=SC2086
    echo "| kill -> health down $(distribution ${detail[stickylb,down]})"
    # shellcheck disable=SC2086
    echo "| kill -> rings and backend state written $(distribution ${detail[stickylb,rings]})"
fi
echo
echo "Target: median under 1 s (stickylb). Raw runs (ms): $(for lb in "${lb_list[@]}"; do printf '%s: %s; ' "$lb" "${results[$lb]% }"; done)"
