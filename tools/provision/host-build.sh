#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Installs stickylb's dependencies and builds it on this host (as root), outside the
# source tree (a VM's synced folder may be read-only or shared with the host).
#
#   host-build.sh TARGET...     build the targets, install their programs to
#                               /usr/local/sbin (stickylb-agent, stickylbd, stickylb)
#   host-build.sh --all         build everything and `cmake --install` it to /usr/local
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${STICKYLB_HOST_BUILD_DIR:-/var/tmp/stickylb-build}"

"${repo}/tools/install-deps.sh"
echo "host-build: configuring ${build}"
cmake -S "${repo}" -B "${build}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if [[ "${1:-}" == --all ]]; then
    echo "host-build: building everything"
    cmake --build "${build}" -j "$(nproc)"
    cmake --install "${build}" --prefix /usr/local >/dev/null
    exit 0
fi
echo "host-build: building $*"
cmake --build "${build}" -j "$(nproc)" --target "$@"
for target in "$@"; do
    program="$(find "${build}/userspace" -type f -name "${target}" -perm -u+x | head -n 1)"
    [[ -n "${program}" ]] || { echo "host-build: no program ${target} in ${build}" >&2; exit 1; }
    install -m 0755 "${program}" "/usr/local/sbin/${target}"
    echo "host-build: installed /usr/local/sbin/${target}"
done
