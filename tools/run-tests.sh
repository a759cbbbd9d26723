#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: installs dependencies, builds, and runs every test tier
# (unit, bpf, e2e) plus a benchmark smoke run. As root the privileged tiers
# must run: a skip there is a failure (STICKYLB_REQUIRE_PRIVILEGED=1).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${STICKYLB_BUILD_DIR:-$repo/build}

"$repo/tools/install-deps.sh"
echo "run-tests: configuring and building in $build"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"

if [ "$(id -u)" -eq 0 ] || [ "${CI:-}" = "true" ]; then
  export STICKYLB_REQUIRE_PRIVILEGED=1
else
  echo "run-tests: not root: the bpf and e2e tiers will be skipped (run as root to include them)"
fi
export STICKYLB_BUILD_DIR=$build

if [ -x "$repo/tools/bench/run.sh" ]; then
  echo "run-tests: benchmark smoke run"
  "$repo/tools/bench/run.sh" --quick
fi
echo "run-tests: all tiers (labels unit, bpf, e2e)"
cd "$build"
exec ctest --output-on-failure --timeout 900
