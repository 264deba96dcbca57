#!/usr/bin/env bash
# Builds the Lambda zip of every worker with cargo-lambda (PyPI, with zig for glibc
# targeting), the data contracts included, into target/lambda/<worker>-lambda/bootstrap.zip
# — the paths terraform/envs/dev expects. ARCH=arm64 builds for Graviton.
# Not run by CI (five release builds); see docs/deploy.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ARCH="${ARCH:-x86_64}"
case "$ARCH" in x86_64 | arm64) ;; *) echo "ARCH must be x86_64 or arm64" >&2; exit 2 ;; esac
VENV=".venv-lambda"
REQS="cargo-lambda==1.9.2 ziglang==0.13.0"
if [ ! -f "$VENV/.installed" ] || [ "$(cat "$VENV/.installed")" != "$REQS" ]; then
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQS
  echo "$REQS" >"$VENV/.installed"
fi
export PATH="$PWD/$VENV/bin:$PATH"
arch_flag="--${ARCH//_/-}"
for worker in ingest curate train govern score; do
  cargo lambda build --release --locked "$arch_flag" --output-format zip --include contracts --bin "$worker-lambda"
done
ls -l target/lambda/*-lambda/bootstrap.zip
