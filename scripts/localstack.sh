#!/usr/bin/env bash
# Local AWS stack: moto server in a project-local virtualenv, no Docker, no AWS account.
#
#   scripts/localstack.sh install   # create .venv and install the pinned moto[server]
#   scripts/localstack.sh start     # start on 127.0.0.1:$MOTO_PORT, wait until it answers
#   scripts/localstack.sh stop      # stop it by PID
#   scripts/localstack.sh status
#   scripts/localstack.sh env       # print the exports a shell needs to reach it
#
# MOTO_SERIAL=1 starts a moto that handles one request at a time. moto's threaded server
# does not isolate DynamoDB conditional writes and transactions from each other (it
# checks a condition, then writes, with other requests in between); DynamoDB does. The
# audit chain's concurrency test runs against a serial moto, where many concurrent
# clients meet the serialised conditional writes DynamoDB guarantees.
#
# The credentials below are moto's DUMMY credentials: moto accepts any value. They are not
# secrets and grant nothing on real AWS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOTO_VERSION="5.2.5"
# pyarrow: the emulator tests read the scored Parquet the way a user's notebook would.
PYARROW_VERSION="25.0.1"
# fastavro: the example consumer in another language (docs/examples/python-consumer) decodes events.
FASTAVRO_VERSION="1.12.1"
MOTO_PORT="${MOTO_PORT:-4566}"
STATE_DIR="$ROOT/.localstack"
VENV="$ROOT/.venv"
PID_FILE="$STATE_DIR/moto-$MOTO_PORT.pid"
LOG_FILE="$STATE_DIR/moto-$MOTO_PORT.log"

endpoint() { echo "http://127.0.0.1:$MOTO_PORT"; }

install() {
  if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c "import moto,pyarrow,fastavro,sys; sys.exit(moto.__version__ != '$MOTO_VERSION' or pyarrow.__version__ != '$PYARROW_VERSION' or fastavro.__version__ != '$FASTAVRO_VERSION')" 2>/dev/null; then
    return 0
  fi
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" "pyarrow==$PYARROW_VERSION" "fastavro==$FASTAVRO_VERSION"
}

answers() { python3 - "$(endpoint)" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=1)
    sys.exit(0)
except Exception:
    sys.exit(1)
PY
}

start() {
  install
  mkdir -p "$STATE_DIR"
  if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null && answers; then
    echo "moto already running on $(endpoint) (pid $(cat "$PID_FILE"))"
    return 0
  fi
  # Own process group so that stop can end moto's children too.
  if [ "${MOTO_SERIAL:-0}" = 1 ]; then
    setsid "$VENV/bin/python" - "$MOTO_PORT" >"$LOG_FILE" 2>&1 <<'PY' &
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
run_simple("127.0.0.1", int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False,
           request_handler=MotoRequestHandler)
PY
  else
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$LOG_FILE" 2>&1 &
  fi
  echo $! >"$PID_FILE"
  for _ in $(seq 1 100); do
    if answers; then echo "moto $MOTO_VERSION listening on $(endpoint) (pid $(cat "$PID_FILE"))"; return 0; fi
    if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "moto did not start; log follows:" >&2
  cat "$LOG_FILE" >&2
  return 1
}

stop() {
  if [ -f "$PID_FILE" ]; then
    pid="$(cat "$PID_FILE")"
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PID_FILE"
    echo "moto stopped"
  else
    echo "moto not running"
  fi
}

print_env() {
  cat <<ENV
export AWS_ENDPOINT_URL=$(endpoint)
export AWS_REGION=us-east-1
# moto's dummy credentials (not secrets):
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
# moto's fixed account id: the deployment's own account (\`allowedWriters: [self]\`).
export MLSEC_ACCOUNT_ID=123456789012
ENV
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if answers; then echo "up on $(endpoint)"; else echo "down"; exit 1; fi ;;
  env) print_env ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
