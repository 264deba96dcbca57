#!/usr/bin/env bash
# How fast `mlsec dlq replay` moves messages: parks N messages in the score DLQ (bodies the
# score worker fails permanently, so each has a failure record), then replays them at the
# default rate and again (re-parked) at --rate 500, and prints the moved/s of each run.
# For comparison it then moves the same N parked messages with a plain boto3 loop (receive
# 10, send batch, delete batch: what a user would script instead), on the same moto, so the
# figures say how much of the time is the emulator's.
# Its own moto on port 4571. Usage: scripts/bench-replay.sh [N] (default 1000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-1000}"
export MOTO_PORT="${MOTO_PORT:-4571}"
cargo build --locked -q --release -p mlsec-cli --bin mlsec
scripts/localstack.sh start
trap 'kill "${worker:-0}" 2>/dev/null || true; scripts/localstack.sh stop' EXIT
eval "$(scripts/localstack.sh env)"
export RUST_LOG="${RUST_LOG:-error}" MLSEC_PREFIX=replaybench
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}"
mlsec=target/release/mlsec
$mlsec provision >/dev/null
depth() {
  .venv/bin/python - "$1" <<'PY'
import boto3, sys
q = boto3.client("sqs").get_queue_url(QueueName=sys.argv[1])["QueueUrl"]
a = boto3.client("sqs").get_queue_attributes(QueueUrl=q, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
print(int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]))
PY
}
park() {
  $mlsec run score >/dev/null 2>&1 & worker=$!
  local waited=0
  until [ "$(depth replaybench-score-dlq)" -ge "$N" ]; do
    sleep 1; waited=$((waited + 1))
    if [ "$waited" -ge 900 ]; then echo "bench-replay: $N messages not parked within 900 s" >&2; exit 1; fi
  done
  kill "$worker"; wait "$worker" 2>/dev/null || true
}
.venv/bin/python - "$N" <<'PY'
import boto3, sys
sqs = boto3.client("sqs")
q = sqs.get_queue_url(QueueName="replaybench-score")["QueueUrl"]
n = int(sys.argv[1])
for i in range(0, n, 10):
    sqs.send_message_batch(QueueUrl=q, Entries=[{"Id": str(j), "MessageBody": f"not an event {i + j}"} for j in range(min(10, n - i))])
PY
park
echo "default rate: $($mlsec dlq replay score --max "$N" --wait 0 --json | .venv/bin/python -c 'import json,sys; r=json.load(sys.stdin); print(r["moved"], "moved,", round(r["moved_per_second"], 1), "msg/s")')"
park
echo "--rate 500:   $($mlsec dlq replay score --rate 500 --max "$N" --wait 0 --json | .venv/bin/python -c 'import json,sys; r=json.load(sys.stdin); print(r["moved"], "moved,", round(r["moved_per_second"], 1), "msg/s")')"
park
echo "boto3 loop:   $(.venv/bin/python - "$N" <<'PY'
import boto3, sys, time
sqs = boto3.client("sqs")
dlq = sqs.get_queue_url(QueueName="replaybench-score-dlq")["QueueUrl"]
target = sqs.get_queue_url(QueueName="replaybench-score")["QueueUrl"]
n, moved, start = int(sys.argv[1]), 0, time.monotonic()
while moved < n and time.monotonic() - start < 900:
    msgs = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
    if not msgs:
        continue
    sqs.send_message_batch(QueueUrl=target, Entries=[{"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(msgs)])
    sqs.delete_message_batch(QueueUrl=dlq, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    moved += len(msgs)
print(moved, "moved,", round(moved / (time.monotonic() - start), 1), "msg/s (no origin check, no audit)")
PY
)"
