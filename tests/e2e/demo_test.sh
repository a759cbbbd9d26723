#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's first command, end to end: tools/demo.sh on this build tree runs
# every step of its narration (its own checks fail it if users are not sticky,
# lose their sessions or fail back), leaves the lab and stickylbd running, and
# `tools/demo.sh down` then leaves no namespace, process, pin or state behind.
#
#   demo_test.sh REPO BUILD_DIR
set -uo pipefail

repo=$1
build=$2
state=/run/stickylb-demo

if [ "$(id -u)" -ne 0 ]; then
  if [ "${STICKYLB_REQUIRE_PRIVILEGED:-0}" = 1 ]; then
    echo "FAILED: the demo needs root (namespaces, XDP) and STICKYLB_REQUIRE_PRIVILEGED=1 forbids skipping it"
    exit 1
  fi
  echo "[  SKIPPED ] the demo needs root (namespaces, XDP): run the e2e tier as root"
  exit 0
fi

failures=0
check() { # description, then the command that must succeed
  local what=$1
  shift
  if "$@"; then
    echo "ok: $what"
  else
    echo "FAILED: $what"
    failures=$((failures + 1))
  fi
}

demo_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^slb-' || true; }
demo_daemon_alive() { [ -s "$state/stickylbd.pid" ] && kill -0 "$(cat "$state/stickylbd.pid")" 2>/dev/null; }

if [ -n "$(demo_namespaces)" ] || [ -e "$state" ]; then
  echo "FAILED: a demo or a lab with the default prefix is already up here; remove it first (tools/demo.sh down)"
  exit 1
fi

log=$(mktemp)
started=$(date +%s)
STICKYLB_BUILD_DIR=$build "$repo/tools/demo.sh" >"$log" 2>&1
status=$?
echo "demo: exit $status after $(($(date +%s) - started)) s"
check "the demo succeeds" [ "$status" -eq 0 ]
for step in "1/6 dependencies" "2/6 build" "4/6 lab" "5/6 stickylbd" "6/6 what users see" \
  "A backend dies" "comes back" "Draining" "The lab is still running"; do
  check "the demo shows \"$step\"" grep -q -- "$step" "$log"
done
check "the lab stays up after the demo" [ -n "$(demo_namespaces)" ]
check "stickylbd stays up after the demo" demo_daemon_alive
[ "$status" -eq 0 ] || tail -n 60 "$log"

daemon_pid=$(cat "$state/stickylbd.pid" 2>/dev/null || true)
"$repo/tools/demo.sh" down >"$log.down" 2>&1
check "tools/demo.sh down succeeds" [ $? -eq 0 ]
if [ -n "$daemon_pid" ]; then
  check "the demo's stickylbd (pid $daemon_pid) is gone" [ ! -e "/proc/$daemon_pid" ]
fi
check "no namespace is left" [ -z "$(demo_namespaces)" ]
check "no demo state or bpffs is left" [ ! -e "$state" ]
rm -f "$log" "$log.down"

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "demo: every step ran and nothing is left"
