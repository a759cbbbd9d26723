#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs (apt-get) everything stickylb's build, tests, benchmarks and lab need.
# Idempotent: installs only what is missing; safe to run again.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev
  # control plane (stickylbd, stickylb)
  libyaml-cpp-dev nlohmann-json3-dev libboost-dev libspdlog-dev libfmt-dev libssl-dev
  # tests and benchmarks (promtool comes with prometheus)
  libgtest-dev libgmock-dev libbenchmark-dev prometheus
  # sessions: stickylb-agent and stickylbd talk to memcached (libmemcached for the daemon)
  libmemcached-dev memcached
  # lab (network namespaces, HTTP backends and client; Apache + mod_php + php-memcached)
  iproute2 ethtool curl python3 procps apache2 libapache2-mod-php php-cli php-memcached
  # fleet lab: the router's and every LB host's BGP and BFD speaker
  bird2
  # peers the benchmarks compare against (tools/bench/traffic), and their load generator
  haproxy nginx-light libnginx-mod-stream wrk
  # robustness tier: libFuzzer targets (clang), static analysis
  libfuzzer-14-dev clang-tidy clang-format cppcheck
  # Vagrant lab (vagrant/; `vagrant validate` is a unit test)
  vagrant vagrant-libvirt
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Error: missing packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Servers we install (apache2, memcached) must not start in the root namespace:
# the lab starts its own inside namespaces. policy-rc.d 101 = "do not start".
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi
trap '[ "$own_policy" -eq 0 ] || rm -f "$policy"' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
