#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The test command: installs dependencies, builds, and runs every test tier
# (unit, bpf, e2e) plus a benchmark smoke run, static analysis, the unit tier
# under ASan + UBSan (in <build>-asan) and the fuzz tier (in <build>-fuzz). As
# root the privileged tiers must run: a skip there is a failure
# (STICKYLB_REQUIRE_PRIVILEGED=1).
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
# Robustness stages, each timed; a failure is remembered, the next
# stage still runs, and the main tiers run last so that their ctest summary is
# the closing output.
failed=()
stage() {
  local name=$1 start=$SECONDS
  shift
  echo "run-tests: stage $name"
  if "$@"; then
    echo "run-tests: stage $name passed ($((SECONDS - start)) s)"
  else
    echo "run-tests: stage $name FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}
unit_tests() {  # the unit tier's GoogleTest binaries (ctest names = target names)
  (cd "$1" && ctest -N -L unit | sed -n 's/^ *Test *#[0-9]*: //p' | grep -vx vagrant_validate)
}
sanitizer_tier() {  # GCC, ASan + UBSan, the unit tier (vagrant_validate is no C++)
  local dir=${build}-asan
  cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTICKYLB_SANITIZE=ON \
    -DSTICKYLB_BUILD_BENCH=OFF >/dev/null &&
    cmake --build "$dir" -j"$(nproc)" --target stickylb $(unit_tests "$dir") >/dev/null &&
    (cd "$dir" && ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=1 \
      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 STICKYLB_BUILD_DIR=$dir \
      ctest -L unit -E '^vagrant_validate$' --output-on-failure --timeout 900 -j"$(nproc)")
}
fuzz_tier() {  # clang, libFuzzer targets of the parsers, STICKYLB_FUZZ_SECONDS each (default 30)
  local dir=${build}-fuzz
  cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTICKYLB_FUZZ=ON -DSTICKYLB_BUILD_TESTS=OFF \
    -DSTICKYLB_BUILD_BENCH=OFF -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null &&
    cmake --build "$dir" -j"$(nproc)" --target stickylb_fuzzers >/dev/null &&
    (cd "$dir" && ctest -L fuzz --output-on-failure -j"$(nproc)")
}
agent_only_build() {  # stickylb-agent as a backend host builds it: no BPF toolchain looked for or linked
  local dir=${build}-agent
  rm -rf "$dir"
  cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTICKYLB_AGENT_ONLY=ON -DSTICKYLB_BUILD_BENCH=OFF \
    >/dev/null &&
    cmake --build "$dir" -j"$(nproc)" >/dev/null || return 1
  if grep -Eiq '^(CLANG|BPFTOOL|LIBBPF[A-Z_]*)(:[A-Z]+)?=' "$dir/CMakeCache.txt"; then
    echo "agent-only build: CMake looked for the BPF toolchain:"
    grep -Ei '^(CLANG|BPFTOOL|LIBBPF[A-Z_]*)(:[A-Z]+)?=' "$dir/CMakeCache.txt"
    return 1
  fi
  if ldd "$dir/userspace/agent/stickylb-agent" | grep -q libbpf; then
    echo "agent-only build: stickylb-agent links libbpf"
    return 1
  fi
  echo "agent-only build: stickylb-agent: $(ldd "$dir/userspace/agent/stickylb-agent" | awk '{print $1}' | tr '\n' ' ')"
  (cd "$dir" && ctest -L unit -E '^vagrant_validate$' --output-on-failure -j"$(nproc)")
}
stage "format (clang-format, tools/format-files.sh --check)" "$repo/tools/format-files.sh" --check
stage "agent-only build, no BPF toolchain (STICKYLB_AGENT_ONLY)" agent_only_build
stage "static analysis (clang-tidy, cppcheck)" "$repo/tools/static-analysis.sh" "$build"
stage "sanitizer build, unit tier (ASan + UBSan)" sanitizer_tier
stage "fuzz build, fuzz tier (libFuzzer)" fuzz_tier

echo "run-tests: all tiers (labels unit, bpf, e2e)"
cd "$build"
if [ ${#failed[@]} -eq 0 ]; then
  exec ctest --output-on-failure --timeout 900
fi
ctest --output-on-failure --timeout 900 || true
echo "run-tests: FAILED robustness stages: ${failed[*]}"
exit 1
