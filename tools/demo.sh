#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The demo: on a fresh machine, installs what is needed, builds, brings up the
# namespace lab (client, LB, three HTTP backends, a bridge) and runs the XDP
# data plane on the LB, then shows stickiness and a failover with live figures.
# The lab stays up afterwards; `tools/demo.sh down` removes it.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${STICKYLB_BUILD_DIR:-$repo/build}
bpffs=/run/stickylb-demo/bpffs   # beside, not inside, the lab's state directory
pins=$bpffs/stickylb
vip4=10.89.0.250
vip6=fd00:89::250
backends=3

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
lab_lb() { ip netns exec slb-lb "$build/tools/stickylb-lab-lb" "$@"; }
client() { ip netns exec slb-client "$@"; }

teardown() {
  if ip netns list | grep -qw slb-lb && [ -d "$pins" ]; then
    lab_lb detach --interface eth0 --pin-dir "$pins" || true
  fi
  if mountpoint -q "$bpffs"; then umount "$bpffs"; fi
  rm -rf "$(dirname "$bpffs")"
  STICKYLB_BUILD_DIR=$build "$repo/tools/lab/lab.sh" down
}

if [ "${1:-}" = "down" ]; then
  teardown
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "Error: the demo builds network namespaces and attaches XDP: run it as root" >&2; exit 1; }

say "1/5 dependencies"
"$repo/tools/install-deps.sh"
say "2/5 build (cmake, clang -target bpf, bpftool skeletons)"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" 2>&1 | grep -E '^\[ *[0-9]+%\] (Built target|BPF)' || true
say "3/5 lab: client, LB, $backends backends, bridge (network namespaces only)"
STICKYLB_BUILD_DIR=$build "$repo/tools/lab/lab.sh" up --mode l2 --backends "$backends"

say "4/5 XDP data plane on the LB's eth0 (L2 direct server return, persistent VIP, 300 s affinity)"
mkdir -p "$bpffs"
mountpoint -q "$bpffs" || mount -t bpf bpf "$bpffs"
backend_args() {  # $1: name of a backend to mark down (optional)
  for n in $(seq 1 "$backends"); do
    mac=$(ip netns exec "slb-be$n" cat /sys/class/net/eth0/address)
    backend_state=up
    [ "be$n" = "${1:-}" ] && backend_state=down
    printf -- '--backend be%d=10.89.0.%d,%s,%s ' "$n" $((20 + n)) "$mac" "$backend_state"
  done
}
apply() {
  # shellcheck disable=SC2046
  lab_lb apply --interface eth0 --pin-dir "$pins" --mode l2 --persistent 300 \
    --vip "$vip4:80" --vip "[$vip6]:80" $(backend_args "${1:-}")
}
apply

declare -A served_by
survey() {  # one request from each of 12 client addresses, 3 times each
  for n in $(seq 101 112); do
    line=""
    for _ in 1 2 3; do
      b=$(client curl -sS --max-time 3 --interface "10.89.0.$n" "http://$vip4/" | sed 's/backend=//')
      line="$line $b"
    done
    served_by[$n]=${b}
    printf '  client 10.89.0.%s ->%s\n' "$n" "$line"
  done
}

say "5/5 what users see"
echo "Each client address makes 3 requests through the VIP; each stays on one backend:"
survey
declare -A before
for n in "${!served_by[@]}"; do before[$n]=${served_by[$n]}; done
echo "IPv6: $(client curl -sS --max-time 3 "http://[$vip6]/")"
echo "A 2 MB download through the VIP; the reply bypasses the LB (direct server return):"
rx_before=$(ip netns exec slb-lb cat /sys/class/net/eth0/statistics/rx_bytes)
client curl -sS --max-time 10 -o /dev/null -w '  client received %{size_download} bytes\n' "http://$vip4/bytes?n=2000000"
rx_after=$(ip netns exec slb-lb cat /sys/class/net/eth0/statistics/rx_bytes)
echo "  LB eth0 received $((rx_after - rx_before)) bytes meanwhile"

echo
echo "Backend be1 goes down (the daemon will do this from health checks):"
apply be1 | sed 's/^/  /'
survey
moved=0; stayed=0
for n in "${!before[@]}"; do
  if [ "${before[$n]}" = be1 ]; then moved=$((moved + 1)); elif [ "${before[$n]}" = "${served_by[$n]}" ]; then stayed=$((stayed + 1)); fi
done
echo "  $moved clients of be1 moved; $stayed of the others stayed where they were"

echo
echo "be1 comes back; clients stay where they moved (no failback):"
apply | sed 's/^/  /'
survey

echo
echo "Data plane counters:"
lab_lb stats --pin-dir "$pins" | sed 's/^/  /'

cat <<TXT

The lab is still running. Try:
  ip netns exec slb-client curl --interface 10.89.0.120 http://$vip4/
  ip netns exec slb-client curl "http://[$vip6]/"
  ip netns exec slb-lb $build/tools/stickylb-lab-lb stats --pin-dir $pins
  ip netns exec slb-lb ip -d link show eth0        # xdp attached
Tear it down with:
  tools/demo.sh down
TXT
