#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs (apt-get) everything stickylb's build, tests, benchmarks and lab need.
# Idempotent: installs only what is missing; safe to run again.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev
  # control plane (stickylbd, stickylb)
  libyaml-cpp-dev nlohmann-json3-dev libboost-dev libspdlog-dev libfmt-dev
  # tests and benchmarks (promtool comes with prometheus)
  libgtest-dev libgmock-dev libbenchmark-dev prometheus
  # lab (network namespaces, HTTP backends and client)
  iproute2 ethtool curl python3 procps
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
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
