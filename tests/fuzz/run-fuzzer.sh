#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run-fuzzer.sh FUZZER SEED_DIR WORK_DIR: one bounded libFuzzer run (ctest label
# fuzz). The fuzzer runs every seed first (a regression input that crashes
# again fails at once), then mutates for STICKYLB_FUZZ_SECONDS (default 30). New corpus entries go to WORK_DIR/corpus/<target> (kept between runs),
# crashes to WORK_DIR/artifacts/<target>/.
set -euo pipefail
fuzzer=$1 seeds=$2 work=$3
name=$(basename "$fuzzer")
seconds=${STICKYLB_FUZZ_SECONDS:-30}
corpus=$work/corpus/$name artifacts=$work/artifacts/$name
mkdir -p "$corpus" "$artifacts"
dict=()
[ -f "$seeds.dict" ] && dict=(-dict="$seeds.dict")

echo "run-fuzzer: $name: $(find "$seeds" -type f | wc -l) seeds, then ${seconds}s of fuzzing"
if ! "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" "${dict[@]}" "$corpus" "$seeds"; then
  echo "run-fuzzer: $name found a failing input; it is in $artifacts/" >&2
  echo "run-fuzzer: reproduce with: $fuzzer $artifacts/<file>" >&2
  exit 1
fi
