#!/usr/bin/env bash
# Static checks of terraform/ (the Terraform binary and providers cannot be downloaded
# on our build machines): every .tf parses, the topology and the modules agree, worker
# policies are least-privilege (pytest, tests/terraform/), and checkov reports no failed
# check (every skip is inline with its reason). Tools are pinned, in .venv-tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=".venv-tools"
REQS="checkov==3.3.30 python-hcl2==8.1.4 pytest==9.1.1"
if [ ! -f "$VENV/.installed" ] || [ "$(cat "$VENV/.installed")" != "$REQS" ]; then
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQS
  echo "$REQS" >"$VENV/.installed"
fi
"$VENV/bin/python" -m pytest -q tests/terraform
# --skip-download: no calls to the vendor's API (our machines reach only package registries).
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
rc=0
"$VENV/bin/checkov" -d terraform --framework terraform --compact --skip-download >"$out" 2>&1 || rc=$?
grep -B1 "FAILED for resource" "$out" || true
echo "checkov: $(grep -E "Passed checks" "$out" | head -1)"
exit "$rc"
