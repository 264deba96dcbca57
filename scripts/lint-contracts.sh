#!/usr/bin/env bash
# Lints every data contract (the deployment's, the examples' and the ones `mlsec contract infer` writes, kept as
# golden files by cli/src/golden_tests.rs) with datacontract-cli (ODCS v3), pinned, in its own
# project-local virtualenv (.venv-contracts, separate from moto's). Also checks that
# the linter rejects a broken contract, so a silently passing linter is noticed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VERSION="1.2.8"
VENV=".venv-contracts"
if ! "$VENV/bin/datacontract" --version 2>/dev/null | grep -q "$VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "datacontract-cli==$VERSION"
fi
status=0
for contract in contracts/*.yaml docs/examples/*/contracts/*.yaml cli/tests/golden/infer-*.yaml; do
  if "$VENV/bin/datacontract" lint "$contract" >/dev/null 2>&1; then
    echo "ok      $contract"
  else
    echo "INVALID $contract"
    "$VENV/bin/datacontract" lint "$contract" || true
    status=1
  fi
done
broken="$(mktemp --suffix=.yaml)"
trap 'rm -f "$broken"' EXIT
sed 's/        required: true/        required: maybe/' contracts/transactions_training.yaml >"$broken"
if "$VENV/bin/datacontract" lint "$broken" >/dev/null 2>&1; then
  echo "the linter accepted a broken contract; the check is not working" >&2
  status=1
fi
sed 's/metric: rowCount/metric: rowCounts/' contracts/transactions_training.yaml >"$broken"
if "$VENV/bin/datacontract" lint "$broken" >/dev/null 2>&1; then
  echo "the linter accepted an unknown quality metric; quality rules are not being checked" >&2
  status=1
fi
exit "$status"
