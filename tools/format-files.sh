#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The C, C++ and BPF sources clang-format keeps in style: C++ by .clang-format, the BPF
# programs and ABI headers (bpf/, include/) by bpf/.clang-format. The small BPF
# programs of the lab and benchmarks (tools/**/*.bpf.c) are left as written.
#   tools/format-files.sh          list them
#   tools/format-files.sh --fix    reformat them in place
#   tools/format-files.sh --check  exit 1 (and show where) if any differs
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' | grep -v -e '^tests/fuzz/corpus/' -e '^tools/.*\.bpf\.c$')
case "${1:-}" in
  --fix) clang-format -i "${files[@]}" ;;
  --check) clang-format --dry-run -Werror "${files[@]}" ;;
  "") printf '%s\n' "${files[@]}" ;;
  *) echo "usage: $0 [--fix|--check]" >&2; exit 2 ;;
esac
