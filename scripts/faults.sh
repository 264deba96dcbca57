#!/usr/bin/env bash
# The fault-injection suite (issue 14): its own moto on port 4569, a seeded fault proxy
# between the workers and moto (scripts/faultproxy.py), SIGKILLs of the workers' process,
# then an account of every object dropped. Exits 1 unless 0 lost and 0 duplicate effects.
# Extra arguments go to `mlsec faults` (CI: the defaults, 50 objects, 5 kills, 5% faults;
# the bench: --objects 1000 --kills 20). Build in release for the bench: FAULTS_RELEASE=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export MOTO_PORT="${MOTO_PORT:-4569}"
profile=debug
if [ "${FAULTS_RELEASE:-}" = 1 ]; then
  cargo build --locked -q --release -p mlsec-cli --bin mlsec
  profile=release
else
  cargo build --locked -q -p mlsec-cli --bin mlsec
fi
scripts/localstack.sh start
trap 'scripts/localstack.sh stop' EXIT
eval "$(scripts/localstack.sh env)"
export RUST_LOG="${RUST_LOG:-warn}"
export MLSEC_PREFIX="${MLSEC_PREFIX:-faults}"
"target/$profile/mlsec" faults "$@"
