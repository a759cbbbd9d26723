# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# tools/bench/failover.sh's HAProxy, sourced by it: its config (checks as stickylbd's),
# start, stop, and whether it sees every backend up.
stop_haproxy() {
    [[ -n $haproxy_pid ]] || return 0
    stop_pid "$haproxy_pid" haproxy
    haproxy_pid=""
    ip -n "$ns_lb" addr del "$vip/32" dev lo 2>/dev/null || true
}

haproxy_all_up() {
    python3 - "$state/haproxy.sock" "$backends" <<'PY' 2>/dev/null
import csv, io, socket, sys
conn = socket.socket(socket.AF_UNIX)
conn.connect(sys.argv[1])
conn.sendall(b"show stat\n")
data = b""
while chunk := conn.recv(65536):
    data += chunk
rows = [r for r in csv.DictReader(io.StringIO(data.decode().lstrip("# "))) if r["pxname"] == "web" and r["svname"].startswith("be")]
sys.exit(0 if len(rows) == int(sys.argv[2]) and all(r["status"] == "UP" for r in rows) else 1)
PY
}

start_haproxy() { # redispatch: 1 or 0
    local retry_lines=""
    # Redispatch on every retry, and a connect timeout as short as the check timeout:
    # HAProxy waits min(timeout connect, 1 s) before a retry.
    local connect_timeout=2s
    ((${1})) && retry_lines=$'    option redispatch 1\n    retries 2' && connect_timeout=100ms
    cat >"$state/haproxy.cfg" <<CFG
# HAProxy 2.6 for tools/bench/failover.sh: tools/bench/peers/haproxy.cfg.in's settings
# that matter for one client (no maxconn: it needs a file limit a container may not
# allow), health checks as stickylbd's, a stats socket to see their verdicts.
global
    stats socket $state/haproxy.sock mode 600 level admin

defaults
    mode tcp
    timeout connect ${connect_timeout}
    timeout client 30s
    timeout server 30s
    option dontlognull
${retry_lines}

frontend vip
    bind $vip:80
    default_backend web

backend web
    balance roundrobin
    stick-table type ip size 1m expire 30m
    stick on src
    option httpchk GET /
    timeout check 100ms
$(for n in $(seq 1 "$backends"); do printf '    server be%d %s:80 check inter 200ms rise 2 fall 2\n' "$n" "$(lab_backend_address "$n")"; done)
CFG
    haproxy -c -f "$state/haproxy.cfg" >&2 || die "haproxy rejects $state/haproxy.cfg"
    ip -n "$ns_lb" addr add "$vip/32" dev lo
    spawn_in_ns "$ns_lb" "$state/haproxy.pid" "$state/haproxy-$2.log" haproxy -db -f "$state/haproxy.cfg"
    local tries
    for ((tries = 0; tries < 50; tries++)); do
        [[ -s $state/haproxy.pid ]] && break
        sleep 0.02
    done
    haproxy_pid=$(tr -dc '0-9' <"$state/haproxy.pid")
    rm -f "$state/haproxy.pid"
    [[ -n $haproxy_pid ]] || die "haproxy did not start (log $state/haproxy-$2.log)"
}
