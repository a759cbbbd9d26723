#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Static analysis of userspace/ and include/: clang-tidy (.clang-tidy) and
# cppcheck (tools/cppcheck-suppressions.txt, tools/cppcheck-libbpf.cfg), from a
# configured build directory's compile_commands.json (its generated BPF skeleton
# headers must exist: build it first). Exit 0 only if neither reports anything.
#
#   tools/static-analysis.sh [BUILD_DIR]     default: $STICKYLB_BUILD_DIR or build/
#   STICKYLB_ANALYSIS_JOBS: parallel jobs (default: nproc)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-${STICKYLB_BUILD_DIR:-$repo/build}}" && pwd)
jobs=${STICKYLB_ANALYSIS_JOBS:-$(nproc)}
database=$build/compile_commands.json
[ -f "$database" ] || { echo "static-analysis: no $database (configure $build first)" >&2; exit 1; }

# The translation units of userspace/ (include/ holds headers only; they are
# checked through these, see HeaderFilterRegex).
mapfile -t sources < <(python3 -c '
import json, sys
seen = set()
for entry in json.load(open(sys.argv[1])):
    path = entry["file"]
    if path.startswith(sys.argv[2] + "/userspace/") and path not in seen:
        seen.add(path)
        print(path)
' "$database" "$repo" | sort)
echo "static-analysis: ${#sources[@]} translation units, $jobs jobs"

status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "static-analysis: clang-tidy"
# The database may come from GCC: options clang does not know are not findings.
# Boost 1.74 enables co_await for clang only with <experimental/coroutine>
# (libc++); with libstdc++'s <coroutine> it must be told.
if ! printf '%s\n' "${sources[@]}" |
     xargs -P "$jobs" -n 4 clang-tidy -p "$build" --quiet --extra-arg=-Wno-unknown-warning-option \
       --extra-arg=-DBOOST_ASIO_HAS_CO_AWAIT=1 \
       --extra-arg=-Wno-unused-command-line-argument >"$log" 2>&1; then
  status=1
fi
# clang-tidy prints "N warnings generated" for suppressed diagnostics in system
# headers; only lines with a check name in brackets are findings.
if grep -E '(warning|error):.*\[[a-z0-9.,-]+\]$' "$log" >/dev/null; then
  grep -E -A3 '(warning|error):' "$log" | grep -v 'warnings\? generated' || true
  status=1
elif [ "$status" -ne 0 ]; then
  cat "$log"
fi

echo "static-analysis: cppcheck"
# (with an absolute --project path, cppcheck matches the filter against absolute paths)
if ! (cd "$repo" && cppcheck --project="$database" --file-filter="$repo/userspace/*" -j "$jobs" --quiet \
       --std=c++20 --enable=warning,performance,portability --inline-suppr \
       --library=posix --library="$repo/tools/cppcheck-libbpf.cfg" \
       --suppressions-list="$repo/tools/cppcheck-suppressions.txt" \
       --error-exitcode=1 --template="{file}:{line}: {severity}: {message} [{id}]") 2>"$log"; then
  status=1
fi
if [ -s "$log" ]; then
  cat "$log"
  status=1
fi

if [ "$status" -eq 0 ]; then
  echo "static-analysis: no findings"
else
  echo "static-analysis: findings above" >&2
fi
exit "$status"
