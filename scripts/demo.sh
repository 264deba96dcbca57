#!/usr/bin/env bash
# The demo: starts the local AWS stack, provisions it, runs every worker, drops the
# sample training file (and a hostile one), waits for the model to be promoted, drops
# the scoring file, waits for RecordsScored, prints a summary, stops the stack.
# Extra arguments go to `mlsec demo` (e.g. --training-rows 50000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MOTO_PORT="${MOTO_PORT:-4566}"
cargo build --locked -q -p mlsec-cli --bin mlsec
scripts/localstack.sh start
trap 'scripts/localstack.sh stop' EXIT
eval "$(scripts/localstack.sh env)"
export RUST_LOG="${RUST_LOG:-warn}"
export MLSEC_PREFIX="${MLSEC_PREFIX:-mlsec}"
target/debug/mlsec demo "$@"
