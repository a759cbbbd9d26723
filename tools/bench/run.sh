#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# One command for the benchmarks: builds what is missing, runs xdp_bench (XDP
# per-packet cost as ratios to a MAC-swap + XDP_TX floor, BPF_PROG_TEST_RUN),
# traffic.sh (wrk and UDP through the namespace lab: direct, stickylb, HAProxy,
# nginx stream), maglev_bench (ring build time), control_plane_bench (ring updates,
# reconcile of 100 VIPs x 50 backends), failover.sh (kill to first successful request,
# stickylb vs HAProxy), memory_bench (kernel memory of the maps), session_bench (PHP
# session cycles through stickylb-agent vs memcached direct) and affinity_restore_bench
# (a new LB host restoring 1 million affinities from memcached), and writes
# docs/benchmarks.md with the tables, the machine facts, the date and the command that
# made them.
#
#   tools/bench/run.sh [--quick] [--build-dir DIR] [-- XDP_BENCH_ARGS...]
#
# --quick    CI smoke run: 5 rounds, small repeat, short Maglev runs, 100 session
#            cycles per client; writes a temporary file instead of
#            docs/benchmarks.md (path printed at the end).
# --build-dir  CMake build directory (default: build, or $STICKYLB_BUILD_DIR);
#            configured with STICKYLB_BUILD_BENCH=ON if it is not already.
# Needs root: BPF_PROG_TEST_RUN loads and runs the XDP program.
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${STICKYLB_BUILD_DIR:-$repo/build}
quick=0
command_line="tools/bench/run.sh"
for arg in "$@"; do command_line="$command_line $arg"; done

while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1 ;;
    --build-dir)
        [ $# -ge 2 ] || { echo "run.sh: --build-dir needs a directory" >&2; exit 2; }
        build=$2
        shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case $build in /*) ;; *) build=$repo/$build ;; esac

if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: needs root (BPF_PROG_TEST_RUN); try: sudo $command_line" >&2
    exit 1
fi

# Configure if needed; never touch the other settings of an existing build directory.
if [ ! -f "$build/CMakeCache.txt" ] || ! grep -q '^STICKYLB_BUILD_BENCH:BOOL=ON$' "$build/CMakeCache.txt"; then
    cmake -S "$repo" -B "$build" -DSTICKYLB_BUILD_BENCH=ON >&2
fi
cmake --build "$build" --target xdp_bench maglev_bench session_bench stickylb-agent affinity_restore_bench \
    control_plane_bench memory_bench stickylbd stickylb \
    -j "$(nproc)" >&2

scratch=$(mktemp -d "${TMPDIR:-/tmp}/stickylb-bench.XXXXXX")
memcached_pid=""
trap '[ -z "$memcached_pid" ] || kill "$memcached_pid" 2>/dev/null; rm -rf "$scratch"' EXIT

if [ "$quick" -eq 1 ]; then
    output=$(mktemp "${TMPDIR:-/tmp}/stickylb-benchmarks.XXXXXX.md")
    xdp_args="--quick"
    maglev_args="--benchmark_min_time=0.01"
    session_args="--quick"
    affinity_args="--entries 100000 --rounds 1"
    lab_args="--quick"
else
    output=$repo/docs/benchmarks.md
    xdp_args=""
    maglev_args="--benchmark_repetitions=5 --benchmark_report_aggregates_only=true"
    session_args=""
    affinity_args="--entries 1000000 --rounds 3"
    lab_args=""
fi
json=$build/xdp_bench.json

echo "run.sh: xdp_bench $xdp_args $*" >&2
# shellcheck disable=SC2086 # word splitting of the argument lists is intended
"$build/tools/bench/xdp_bench" $xdp_args --json "$json" "$@" >"$scratch/xdp.md"
echo "run.sh: maglev_bench $maglev_args" >&2
# shellcheck disable=SC2086
"$build/tools/bench/maglev_bench" $maglev_args >"$scratch/maglev.txt" 2>"$scratch/maglev.err"
echo "run.sh: traffic.sh $lab_args" >&2
# shellcheck disable=SC2086
"$repo/tools/bench/traffic.sh" $lab_args --build-dir "$build" >"$scratch/traffic.md"
echo "run.sh: control_plane_bench $lab_args" >&2
# shellcheck disable=SC2086
"$build/tools/bench/control_plane_bench" $lab_args >"$scratch/control_plane.md"
echo "run.sh: failover.sh $lab_args" >&2
# shellcheck disable=SC2086
"$repo/tools/bench/failover.sh" $lab_args --build-dir "$build" >"$scratch/failover.md"
echo "run.sh: memory_bench $lab_args" >&2
# shellcheck disable=SC2086
"$build/tools/bench/memory_bench" $lab_args >"$scratch/memory.md"
echo "run.sh: session_bench $session_args" >&2
# shellcheck disable=SC2086
"$build/tools/bench/session_bench" $session_args --agent "$build/userspace/agent/stickylb-agent" >"$scratch/session.md"

# The affinity snapshot goes through a memcached of our own on a free loopback port.
memcached_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
memcached -u nobody -l 127.0.0.1 -p "$memcached_port" -m 256 -U 0 &
memcached_pid=$!
tries=0
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $memcached_port), 0.2)" 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 50 ] || { echo "run.sh: memcached did not start on port $memcached_port" >&2; exit 1; }
    sleep 0.1
done
echo "run.sh: affinity_restore_bench $affinity_args" >&2
# shellcheck disable=SC2086
"$build/tools/bench/affinity_restore_bench" $affinity_args --memcached "127.0.0.1:$memcached_port" >"$scratch/affinity.txt"

{
    echo "# Benchmarks"
    echo
    echo "Generated by \`$command_line\` on $(date -u '+%Y-%m-%d %H:%M:%S UTC') (git $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD -- . ':!docs/benchmarks.md' 2>/dev/null || echo ', with uncommitted changes'))."
    echo "Do not edit by hand: run the script again. Raw rows: \`$(basename "$build")/xdp_bench.json\`."
    echo
    echo "How to read it: every XDP figure is a ratio to the floor (swap MACs + XDP_TX), timed in the same"
    echo "round right before the case, so the ratios carry over between machines better than nanoseconds do."
    echo "The floor itself is mostly BPF_PROG_TEST_RUN's own per-run cost (an empty XDP program costs about"
    echo "0.9x of it). For scale, Katran measured the same way on this kind of machine: floor 31-42 ns,"
    echo "established flow (IPIP) 161-226 ns, SYN 332-480 ns."
    echo
    sed '1s/^# xdp_bench: .*/## XDP data plane: xdp_bench/' "$scratch/xdp.md"
    echo
    cat "$scratch/traffic.md"
    echo
    echo "## Maglev ring build: maglev_bench"
    echo
    echo "\`maglev_bench $maglev_args\` (Google Benchmark): time to build one effective ring"
    echo "(stable Maglev, weight 1 each), by backends, ring slots and backends out of service."
    [ "$quick" -eq 1 ] || echo "Medians of 5 repetitions (mean, stddev and cv: run the command)."
    echo
    echo '```'
    # Google Benchmark prints the machine context on stderr and the table on stdout.
    cat "$scratch/maglev.err" "$scratch/maglev.txt" |
        grep -v -e '^\*\*\*WARNING\*\*\* Library was built as DEBUG' -e '_mean ' -e '_stddev ' -e '_cv ' || true
    echo '```'
    echo
    cat "$scratch/control_plane.md"
    echo
    cat "$scratch/failover.md"
    echo
    cat "$scratch/memory.md"
    echo
    cat "$scratch/session.md"
    echo
    echo "## Affinity restore on a new LB host: affinity_restore_bench"
    echo
    echo "\`affinity_restore_bench $affinity_args\`: what stickylbd does when it starts without pinned"
    echo "maps, step by step (median of the rounds): load the snapshot from memcached, decode, plan (names"
    echo "to this host's indexes, expiry, clocks), fill the LRU affinity map; and the save side (snapshot,"
    echo "encode, save). The restore is load + decode + plan + fill."
    echo
    echo '```'
    cat "$scratch/affinity.txt"
    echo '```'
} >"$output"

if [ "$quick" -eq 1 ]; then
    echo "run.sh: quick run written to $output (docs/benchmarks.md untouched)" >&2
else
    echo "run.sh: wrote $output" >&2
fi
