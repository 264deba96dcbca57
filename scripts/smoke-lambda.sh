#!/usr/bin/env bash
# Runs the packaged ingest Lambda (target/lambda/ingest-lambda/bootstrap.zip, from
# scripts/package.sh) as Lambda would: the real `bootstrap` binary, unzipped with its
# contracts, polling a stub Runtime API, against the local AWS stack. It gets one SQS
# batch of two messages, a real S3 notification and a corrupt one, and must report
# exactly the corrupt one in batchItemFailures. Not run by CI (needs the release zips).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
zip="target/lambda/ingest-lambda/bootstrap.zip"
[ -f "$zip" ] || { echo "$zip missing: run scripts/package.sh first" >&2; exit 2; }
export MOTO_PORT="${MOTO_PORT:-4568}"
work="$(mktemp -d)"
cleanup() { [ -n "${fn_pid:-}" ] && kill "$fn_pid" 2>/dev/null; scripts/localstack.sh stop >/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cargo build --locked -q -p mlsec-cli --bin mlsec
scripts/localstack.sh start
eval "$(scripts/localstack.sh env)"
export MLSEC_PREFIX=smoke RUST_LOG=warn
target/debug/mlsec provision >/dev/null
target/debug/mlsec sample --kind training --rows 500 --out "$work/t.csv"
key="$(target/debug/mlsec drop "$work/t.csv" --dataset transactions_training | sed 's|^s3://[^/]*/||')"
python3 - "$work/event.json" "$key" <<'PY'
import json, sys
path, key = sys.argv[1], sys.argv[2]
s3 = {"version": "0", "id": "x", "detail-type": "Object Created", "source": "aws.s3", "time": "2026-11-28T00:00:00Z",
      "region": "us-east-1", "resources": [], "detail": {"bucket": {"name": "smoke-landing"}, "object": {"key": key}}}
def record(mid, body):
    return {"messageId": mid, "receiptHandle": "r-" + mid, "body": body, "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:smoke-ingest",
            "awsRegion": "us-east-1"}
json.dump({"Records": [record("good", json.dumps(s3)), record("corrupt", "{not an event")]}, open(path, "w"))
PY
(cd "$work" && python3 -m zipfile -e "$OLDPWD/$zip" fn)
chmod +x "$work/fn/bootstrap"
python3 scripts/lambda_runtime_stub.py 9009 "$work/event.json" >"$work/results.jsonl" &
stub_pid=$!
sleep 0.5
AWS_LAMBDA_RUNTIME_API=127.0.0.1:9009 AWS_LAMBDA_FUNCTION_NAME=smoke-ingest AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 \
  AWS_LAMBDA_FUNCTION_VERSION='$LATEST' AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/smoke-ingest AWS_LAMBDA_LOG_STREAM_NAME=smoke \
  MLSEC_CONTRACTS_DIR="$work/fn/contracts" "$work/fn/bootstrap" 2>"$work/fn.log" &
fn_pid=$!
wait "$stub_pid" || { echo "no response from the function; its log:" >&2; cat "$work/fn.log" >&2; exit 1; }
cat "$work/results.jsonl"
python3 - "$work/results.jsonl" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert r[0]["kind"] == "response", r
failed = [f["itemIdentifier"] for f in r[0]["body"]["batchItemFailures"]]
assert failed == ["corrupt"], failed
print("smoke: the packaged ingest Lambda reported exactly the corrupt message")
PY
