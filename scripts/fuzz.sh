#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each, starting from its seeds
# (fuzz/seeds/<target>) and the corpus earlier runs grew (fuzz/corpus/<target>, not in git).
# Prints each target's executions and exits non-zero at the first crash, whose input libFuzzer
# leaves in fuzz/artifacts/<target>/.
#   scripts/fuzz.sh            60 seconds per target
#   scripts/fuzz.sh 10         10 seconds per target (what CI runs)
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them. No
# sanitizer: marina forbids unsafe code, so coverage is what the fuzzer needs, not ASan.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH" RUSTC_BOOTSTRAP=1
seconds=${1:-60}
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;; esac

cargo fuzz build -s none -O
total=0
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  log=$(mktemp)
  if ! cargo fuzz run -s none -O "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz.sh: $target crashed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rm -f "$log"
  echo "fuzz: $target: ${runs:-?} executions in ${seconds} s, no crash"
  total=$((total + ${runs:-0}))
done
echo "fuzz: $total executions in all"
