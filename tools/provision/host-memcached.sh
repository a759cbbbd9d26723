#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# A memcached server for stickylb sessions (as root): Debian's memcached.service with
# /etc/memcached.conf from memcached-args.sh, the same settings the lab runs with.
#
#   host-memcached.sh [--port 11211]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

export DEBIAN_FRONTEND=noninteractive
dpkg-query -W -f='${Status}' memcached 2>/dev/null | grep -q "install ok installed" ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends memcached >/dev/null; }
"${here}/memcached-args.sh" --conf "$@" >/etc/memcached.conf
systemctl enable memcached.service
systemctl restart memcached.service
echo "host-memcached: memcached running with $(grep -c '^-' /etc/memcached.conf) options from /etc/memcached.conf"
