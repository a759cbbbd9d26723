#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The demo: on a fresh machine, installs what is needed, builds, brings up the
# namespace lab (a client, the LB, three Apache + PHP backends with stickylb-agent,
# two memcached servers, a bridge), runs stickylbd in the LB's namespace with a config
# from tools/provision/stickylbd-config.sh, then shows with live figures: stickiness, a backend
# crash whose users go on elsewhere with their sessions, its return (no failback), a
# drain. The lab stays up afterwards; `tools/demo.sh down` removes it.
#
#   sudo tools/demo.sh        (again: removes the previous demo first)
#   sudo tools/demo.sh down
#
# Environment: STICKYLB_BUILD_DIR (default <repo>/build).
set -Eeuo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=demo
# shellcheck source=tools/lib/common.sh
source "$repo/tools/lib/common.sh"
build=${STICKYLB_BUILD_DIR:-$repo/build}
lab="$repo/tools/lab/lab.sh"
state=/run/stickylb-demo # beside, not inside, the lab's state directory
bpffs=$state/bpffs
config=$state/stickylbd.yaml
socket=$state/control.sock
pidfile=$state/stickylbd.pid
daemon_log=$state/stickylbd.log
jars=$state/clients
daemon="$build/userspace/daemon/stickylbd"
cli_binary="$build/userspace/cli/stickylb"
vip=$LAB_VIP4
metrics_listen=$(lab_lb_address):$LAB_METRICS_PORT
metrics_url=http://$metrics_listen/metrics
backends=3
# The lab's namespaces: the demo always uses the default prefix.
unset STICKYLB_LAB_PREFIX STICKYLB_LAB_STATE
ns_lb=slb-lb
ns_client=slb-client
targets=(stickylbd stickylb stickylb-agent stickylb_bpf neigh_bpf decap_bpf xdp_pass_bpf)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '%s\n' "$*"; }
indent() { sed 's/^/    /'; }

fail() {
  printf '\n\033[1;31mdemo failed: %s\033[0m\n' "$*" >&2
  if [ -s "$daemon_log" ]; then
    printf 'last lines of stickylbd'"'"'s log (%s):\n' "$daemon_log" >&2
    tail -n 30 "$daemon_log" | indent >&2
  fi
  printf 'the lab is left as it is; remove it with: sudo %s down\n' "$0" >&2
  exit 1
}
trap 'fail "line $LINENO: \"$BASH_COMMAND\" exited with $?"' ERR

lab() { STICKYLB_BUILD_DIR=$build "$lab" "$@"; }
cli() { "$cli_binary" -s "$socket" "$@"; }
client() { ip netns exec "$ns_client" "$@"; }

# The PID in the PID file if it is this demo's stickylbd; fails otherwise.
daemon_pid() {
  local pid
  [ -s "$pidfile" ] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "stickylbd --config $config" || return 1
  printf '%s' "$pid"
}

stop_daemon() {
  local pid tries
  pid=$(daemon_pid) || { rm -f "$pidfile"; return 0; }
  note "stopping stickylbd (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((tries = 0; tries < 100; tries++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    note "stickylbd ignored SIGTERM for 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

teardown() {
  # The demo that is up may have been built elsewhere (STICKYLB_BUILD_DIR then).
  local up_daemon=$daemon
  [ ! -s "$state/build_dir" ] || up_daemon="$(cat "$state/build_dir")/userspace/daemon/stickylbd"
  stop_daemon
  if [ -f "$config" ] && namespace_exists "$ns_lb" && [ -x "$up_daemon" ]; then
    note "detaching the data plane (stickylbd --detach)"
    ip netns exec "$ns_lb" "$up_daemon" --detach --config "$config" 2>&1 | indent || true
  fi
  if mountpoint -q "$bpffs"; then
    note "unmounting $bpffs"
    umount "$bpffs"
  fi
  rm -rf "$state"
  lab down
}

if [ "${1:-}" = "down" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "Error: run as root (sudo $0 down)" >&2; exit 1; }
  trap - ERR
  teardown
  exit 0
fi
[ $# -eq 0 ] || { echo "usage: $0 [down]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "Error: the demo builds network namespaces and attaches XDP: run it as root" >&2; exit 1; }

# Runs COMMAND... and prints every line of its progress that matches PATTERN, with the
# seconds since the step began; the whole output goes to LOG (its tail on failure).
with_progress() {
  local pattern="$1" log="$2" started status
  shift 2
  started=$(date +%s)
  trap - ERR
  set +e
  "$@" 2>&1 | tee "$log" | while IFS= read -r line; do
    if [[ "$line" =~ $pattern ]]; then
      printf '  [%4ds] %s\n' $(($(date +%s) - started)) "$line"
    fi
  done
  status=${PIPESTATUS[0]}
  set -e
  trap 'fail "line $LINENO: \"$BASH_COMMAND\" exited with $?"' ERR
  if [ "$status" -ne 0 ]; then
    tail -n 30 "$log" | indent >&2
    fail "$* exited with $status (whole output: $log)"
  fi
}

say "1/6 dependencies (tools/install-deps.sh: apt-get, only what is missing)"
"$repo/tools/install-deps.sh"

say "2/6 build in $build (cmake; clang -target bpf, bpftool skeletons, C++20)"
mkdir -p "$build"
with_progress '^-- (Configuring|Generating|Build files)' "$build/demo-configure.log" \
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
with_progress '^\[ *[0-9]+%\]' "$build/demo-build.log" \
  cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

say "3/6 removing any previous demo"
teardown 2>&1 | indent

say "4/6 lab: client, LB, $backends backends (Apache + mod_php + stickylb-agent), 2 memcached, bridge"
with_progress '^lab: (creating|up:|.*(ready|answers))' "$build/demo-lab.log" \
  lab up --mode l2 --backends "$backends" --app php --memcached 2 --sessions agent

say "5/6 stickylbd in the LB namespace ($ns_lb): XDP on eth0, health checks, membership view"
mkdir -p "$state" "$bpffs" "$jars"
printf '%s\n' "$build" >"$state/build_dir"
mountpoint -q "$bpffs" || mount -t bpf bpf "$bpffs"
# The same generator as a real LB host's (tools/provision/host-lb.sh), with the
# lab's paths: the daemon's pins, state and socket stay under $state.
members=()
for n in $(seq 1 "$backends"); do members+=(--backend "be$n=$(lab_backend_address "$n")"); done
for m in 1 2; do members+=(--memcached "$(lab_memcached_address "$m"):$LAB_MEMCACHED_PORT"); done
"$repo/tools/provision/stickylbd-config.sh" --interface eth0 --vip "$vip" "${members[@]}" \
  --metrics-listen "$metrics_listen" \
  --pin-dir "$bpffs/stickylb" --state-file "$state/state.json" --control-socket "$state/control.sock" >"$config"
"$daemon" --check-config "$config" >/dev/null
note "config: $config"
sed -n '/^memcached_servers:/,$p' "$config" | grep -v '^ *#' | indent
# The daemon leads its own session (Ctrl-C on the demo leaves it running); its PID is
# written before it execs, so `down` finds exactly it.
# shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
ip netns exec "$ns_lb" setsid sh -c 'printf "%s\n" "$$" >"$0" && exec "$@"' "$pidfile" \
  "$daemon" --config "$config" </dev/null >>"$daemon_log" 2>&1 &
ready=0
for ((tries = 0; tries < 100; tries++)); do # 10 s
  daemon_pid >/dev/null || { sleep 0.1; continue; }
  if cli -j backend show 2>/dev/null | python3 -c '
import json, sys
states = [b["state"] for b in json.load(sys.stdin)]
sys.exit(0 if len(states) == int(sys.argv[1]) and set(states) == {"up"} else 1)' "$backends" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
[ "$ready" -eq 1 ] || fail "stickylbd did not report $backends backends up within 10 s"
note "stickylbd pid $(daemon_pid), log $daemon_log"
for n in $(seq 1 "$backends"); do # every agent follows the view before users arrive
  for ((tries = 0; tries < 100; tries++)); do
    client curl -sS --max-time 1 "http://$(lab_backend_address "$n"):$LAB_AGENT_METRICS_PORT/metrics" 2>/dev/null |
      grep -qx 'stickylb_agent_view_present 1' && break
    sleep 0.1
  done
  [ "$tries" -lt 100 ] || fail "the agent of be$n has no membership view after 10 s"
done
note "the agents of be1..be$backends follow stickylbd's membership view"
echo
note "\$ stickylb backend show"
cli backend show | indent

# --- the narration -----------------------------------------------------------------
say "6/6 what users see"

declare -A at    # client -> backend it was last served by
declare -A count # client -> its session counter
clients=(101 102 103 104 105 106 107 108 109)

# One visit of client $LAB_NET4.$1 to /counter.php with its own cookie jar: sets
# at[$1], count[$1] and seen ("beN n=K"). Retries refused connections (a dead backend
# before the health checks notice) for up to $2 seconds (default 5). Not in a
# subshell: it sets the arrays.
seen=""
visit() {
  local c="$1" limit_ms=$((${2:-5} * 1000)) started body
  started=$(now_ms)
  while true; do
    if body=$(client curl -sS --connect-timeout 0.3 --max-time 10 --interface "$LAB_NET4.$c" \
      -b "$jars/$c" -c "$jars/$c" "http://$vip/counter.php" 2>&1) && [[ "$body" =~ backend=(be[0-9]+)\ n=([0-9]+) ]]; then
      at[$c]=${BASH_REMATCH[1]}
      count[$c]=${BASH_REMATCH[2]}
      seen="${at[$c]} n=${count[$c]}"
      return 0
    fi
    (($(now_ms) - started < limit_ms)) || fail "client $LAB_NET4.$c got no answer from the VIP: $body"
    sleep 0.05
  done
}

clients_of() { # backend -> its clients (last served by it), space separated
  local c out=""
  for c in "${clients[@]}"; do [ "${at[$c]:-}" = "$1" ] && out="$out $c"; done
  printf '%s' "${out# }"
}

backend_state() { # backend -> up|down|draining as stickylbd reports it
  cli -j backend show | python3 -c '
import json, sys
for b in json.load(sys.stdin):
    if b["name"] == sys.argv[1]:
        print(b["state"])' "$1"
}

wait_state() { # backend state: until stickylbd reports it (10 s at most); sets state_at (ms)
  local started
  started=$(now_ms)
  until [ "$(backend_state "$1")" = "$2" ]; do
    (($(now_ms) - started < 10000)) || fail "$1 is not $2 after 10 s (stickylbd says $(backend_state "$1"))"
    sleep 0.05
  done
  state_at=$(now_ms)
}

metrics() { # the lines of stickylbd's /metrics that match the pattern
  client curl -sS --max-time 3 "$metrics_url" | grep -E "$1" | grep -v '^#' | indent || true
}

note "Each client address (curl --interface from $ns_client) opens a PHP session and"
note "makes 3 requests through the VIP $vip; each prints the backend and its counter:"
for c in "${clients[@]}"; do
  line=""
  for _ in 1 2 3; do
    visit "$c"
    line="$line  $seen"
  done
  printf '  client '"$LAB_NET4"'.%s ->%s\n' "$c" "$line"
done
for n in $(seq 1 "$backends"); do
  printf '  be%s serves: %s\n' "$n" "$(clients_of "be$n" | sed 's/\([0-9]\+\)/.\1/g')"
done
echo
note "\$ stickylb session show    (the membership view the agents follow)"
cli session show | indent
note "/metrics ($metrics_url):"
metrics '^stickylb_(vip_new_flows_total|vip_affinity_hits_total|membership_view_writes_total)'

# The victim: the backend with the most clients.
victim=be1
for n in $(seq 1 "$backends"); do
  [ "$(clients_of "be$n" | wc -w)" -gt "$(clients_of "$victim" | wc -w)" ] && victim=be$n
done
victim_n=${victim#be}
moved=$(clients_of "$victim")
say "A backend dies: $victim (Apache and its agent SIGKILLed: lab.sh crash-backend $victim_n)"
killed=$(now_ms)
lab crash-backend "$victim_n" | indent
wait_state "$victim" down
note "stickylbd marked $victim down $((state_at - killed)) ms after the kill command started (2 failed checks, 200 ms apart)"
note "Its users' next requests land elsewhere; their session counters go on:"
for c in $moved; do
  before="${at[$c]} n=${count[$c]}"
  visit "$c"
  printf '  client '"$LAB_NET4"'.%s: %s -> %s\n' "$c" "$before" "$seen"
  [ "${at[$c]}" != "$victim" ] || fail "client $LAB_NET4.$c is still served by the dead $victim"
done
note "Everybody else stays where they were:"
for c in "${clients[@]}"; do
  [[ " $moved " == *" $c "* ]] && continue
  before="${at[$c]} n=${count[$c]}"
  visit "$c"
  printf '  client '"$LAB_NET4"'.%s: %s -> %s\n' "$c" "$before" "$seen"
done
echo
note "\$ stickylb backend show"
cli backend show | indent
note "\$ stickylb session show | grep -A1 clusters:    (the view: $victim down, a new epoch)"
cli session show | grep -A1 '^clusters:' | indent
note "/metrics (stickylb_backend_state: 0 up, 1 draining, 2 down):"
metrics "^stickylb_(backend_state\\{.*backend=\"$victim\"|affinity_clients_moved_total|failover_view_written_seconds_(sum|count)|backend_state_transitions_total\\{.*backend=\"$victim\")"

say "$victim comes back (lab.sh start-agent $victim_n, start-backend $victim_n)"
lab start-agent "$victim_n" | indent
lab start-backend "$victim_n" | indent
started=$(now_ms)
wait_state "$victim" up
note "stickylbd marked $victim up after $((state_at - started)) ms (2 good checks). No failback: its former users stay where they moved:"
for c in $moved; do
  before="${at[$c]} n=${count[$c]}"
  visit "$c"
  printf '  client '"$LAB_NET4"'.%s: %s -> %s\n' "$c" "$before" "$seen"
  [ "${at[$c]}" = "${before% *}" ] || fail "client $LAB_NET4.$c moved back from ${before% *} to ${at[$c]}"
done
note "New clients are spread over all three again (the ring includes $victim):"
for c in 121 122 123 124 125 126; do
  clients+=("$c")
  visit "$c"
  printf '  client '"$LAB_NET4"'.%s -> %s\n' "$c" "$seen"
done

# The drain target: the backend with the most clients now.
drained=be1
for n in $(seq 1 "$backends"); do
  [ "$(clients_of "be$n" | wc -w)" -gt "$(clients_of "$drained" | wc -w)" ] && drained=be$n
done
kept=$(clients_of "$drained")
say "Draining $drained (stickylb backend drain web $drained): out of the ring, its users stay"
cli backend drain web "$drained" | indent
wait_state "$drained" draining
for c in $kept; do
  before="${at[$c]} n=${count[$c]}"
  visit "$c"
  printf '  client '"$LAB_NET4"'.%s: %s -> %s\n' "$c" "$before" "$seen"
  [ "${at[$c]}" = "$drained" ] || fail "client $LAB_NET4.$c left the draining $drained"
done
note "New clients no longer get $drained:"
for c in 111 112 113 114 115 116; do
  visit "$c"
  printf '  client '"$LAB_NET4"'.%s -> %s\n' "$c" "$seen"
  [ "${at[$c]}" != "$drained" ] || fail "new client $LAB_NET4.$c was sent to the draining $drained"
done
echo
note "\$ stickylb backend drain web $drained force    (its users move now, sessions intact)"
cli backend drain web "$drained" force | indent
for c in $kept; do
  before="${at[$c]} n=${count[$c]}"
  visit "$c"
  printf '  client '"$LAB_NET4"'.%s: %s -> %s\n' "$c" "$before" "$seen"
  [ "${at[$c]}" != "$drained" ] || fail "client $LAB_NET4.$c is still on $drained after drain force"
done
note "\$ stickylb backend show"
cli backend show | indent
note "\$ stickylb backend enable web $drained    (back in the ring for new clients)"
cli backend enable web "$drained" | indent
wait_state "$drained" up
note "/metrics:"
metrics '^stickylb_(backend_state\{|affinity_clients_moved_total|vip_new_flows_total)'

trap - ERR
lab_command=$lab
[ "$build" = "$repo/build" ] || lab_command="STICKYLB_BUILD_DIR=$build $lab"
cat <<TXT

$(printf '\033[1m== The lab is still running. Try:\033[0m')
  $cli_binary -s $socket backend show
  $cli_binary -s $socket session show       # also: affinity show, flow show, stats show, health show
  $cli_binary -s $socket backend drain web be2 force
  $cli_binary -s $socket backend enable web be2
  ip netns exec $ns_client curl -b /tmp/jar -c /tmp/jar --interface $LAB_NET4.$LAB_CLIENT_EXTRA_LAST http://$vip/counter.php
  ip netns exec $ns_client curl $metrics_url                # stickylbd
  ip netns exec $ns_client curl http://$(lab_backend_address 1):$LAB_AGENT_METRICS_PORT/metrics      # be1's stickylb-agent
  $lab_command crash-backend 2    # then: start-agent 2, start-backend 2
  $lab_command kill-host 3        # the whole host goes; status shows what is left
stickylbd's log: $daemon_log
Tear it down with:
  sudo $0 down
TXT
