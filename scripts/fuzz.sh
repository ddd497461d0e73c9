#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for SECONDS (default
# 30) from its committed seed corpus. A crash fails the script and leaves
# the input in fuzz/artifacts/<target>/ (replay: cargo fuzz run <target> <file>).
#
# Stable Rust: no sanitizer (the code under test has no unsafe; what is
# looked for is panics, overflows and hangs), so nothing needs nightly;
# RUSTC_BOOTSTRAP=1 covers any unstable flag cargo-fuzz passes anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/wharf-target}"
export RUSTC_BOOTSTRAP=1
targets=(json_decode cluster_query filter_pattern)

started=$(date +%s)
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz build --sanitizer none
echo "fuzz: built in $(($(date +%s) - started)) s"

for t in "${targets[@]}"; do
  # A scratch corpus: what a run finds is not committed, the seeds are.
  work="$CARGO_TARGET_DIR/fuzz-corpus/$t"
  mkdir -p "$work" "fuzz/artifacts/$t"
  log="$CARGO_TARGET_DIR/fuzz-$t.log"
  # -timeout: one input taking longer is a hang; -rss_limit_mb bounds memory.
  if ! cargo fuzz run --sanitizer none "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "fuzz: $t: $runs inputs in ${seconds} s, no crash"
done
echo "fuzz: done in $(($(date +%s) - started)) s"
