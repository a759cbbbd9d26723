#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The stickylb load balancer host (as root): builds and installs stickylb, writes
# /etc/stickylb/stickylbd.yaml (stickylbd-config.sh) for the NIC that holds
# --nic-address, turns forwarding on (bpf_fib_lookup needs it) and runs stickylbd
# as a systemd service (userspace/daemon/stickylbd.service).
#
#   host-lb.sh --nic-address 10.89.0.2 --vip ADDRESS... --backend NAME=ADDRESS...
#              [--memcached HOST:PORT]...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"

nic_address="" config_args=()
while (($#)); do
    [[ $# -ge 2 ]] || { echo "host-lb: $1 needs a value" >&2; exit 2; }
    case "$1" in
    --nic-address) nic_address="$2" ;;
    --vip | --backend | --memcached) config_args+=("$1" "$2") ;;
    *) echo "host-lb: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift 2
done
[[ -n "${nic_address}" ]] || { echo "host-lb: --nic-address is required" >&2; exit 2; }
nic="$(ip -o -4 addr show to "${nic_address}/32" | awk 'NR == 1 {print $2}')"
[[ -n "${nic}" ]] || { echo "host-lb: no interface has ${nic_address}" >&2; exit 1; }

"${here}/host-build.sh" --all
mkdir -p /etc/stickylb
"${here}/stickylbd-config.sh" --interface "${nic}" "${config_args[@]}" >/etc/stickylb/stickylbd.yaml
/usr/local/sbin/stickylbd --check-config /etc/stickylb/stickylbd.yaml
install -m 0644 "${repo}/userspace/daemon/stickylbd.service" /etc/systemd/system/stickylbd.service
systemctl daemon-reload
systemctl enable stickylbd.service
systemctl restart stickylbd.service
echo "host-lb: stickylbd running on ${nic} (config /etc/stickylb/stickylbd.yaml; try: stickylb status)"
