#!/usr/bin/env bash
# Runs every test: unit tests, then the emulator tests (real AWS SDK against moto
# server). Starts its own moto on port 4567 (so a running demo stack on 4566 is left
# alone) and stops it on exit. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MOTO_PORT="${MOTO_PORT:-4567}"
SERIAL_PORT="$((MOTO_PORT + 1))"
scripts/localstack.sh start
MOTO_PORT="$SERIAL_PORT" MOTO_SERIAL=1 scripts/localstack.sh start
trap 'scripts/localstack.sh stop; MOTO_PORT="$SERIAL_PORT" scripts/localstack.sh stop' EXIT
eval "$(scripts/localstack.sh env)"
# A moto that serialises requests, as DynamoDB serialises conditional writes (see
# scripts/localstack.sh): the audit chain's concurrency test runs against it.
export MLSEC_SERIAL_ENDPOINT="http://127.0.0.1:$SERIAL_PORT"
export RUST_LOG="${RUST_LOG:-warn}"
log="$(mktemp)"
status=0
cargo test --workspace --locked --features mlsec-tests/emulator "$@" 2>&1 | tee "$log" || status=$?
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
rm -f "$log"
echo "total: $passed passed, $failed failed"
exit "$status"
