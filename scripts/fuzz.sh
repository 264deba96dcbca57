#!/usr/bin/env bash
# Fuzzes the ingestion gate (fuzz/fuzz_targets/gate.rs) for N seconds (default 60),
# seeded with the hostile corpus. Uses cargo-fuzz on the stable toolchain without a
# sanitizer (`-s none`: coverage-guided libFuzzer; Rust's own bounds and overflow checks
# catch memory errors, and the target has no unsafe code). A crash leaves its input in
# fuzz/artifacts/gate/ and fails the script.
#   scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-60}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz@0.13.2
fi
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
find tests/corpus -type f ! -name '*.py' ! -name '*.tsv' -exec cp {} "$seeds"/ \;
cargo fuzz run -s none --release gate "$seeds" -- \
  -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
