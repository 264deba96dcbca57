#!/usr/bin/env python3
"""A consumer of pipeline events in another language: Python, boto3 and fastavro, nothing of our crate.

Reads a subscription queue (one `mlsec subscribe --name NAME` created: `<prefix>-sub-NAME`), takes each
EventBridge message's envelope, decodes its Avro single-object payload with the schema the payload's
fingerprint names (schemas/events/released/<Schema>/v*.avsc, resolved to the current
schemas/events/<Schema>.avsc), prints one JSON line per event and only then deletes the message. A message it
cannot decode stays on the queue (after maxReceiveCount it is parked in the subscription's DLQ).

Delivery is at least once: deduplicate by `event_id`.

    python consume.py --queue-url URL [--schemas schemas/events] [--max N] [--wait SECONDS]

AWS settings come from the environment (AWS_ENDPOINT_URL for the local stack). Needs boto3 and fastavro.
"""
import argparse
import base64
import io
import json
import os
import pathlib
import sys

import boto3
import fastavro
from fastavro.schema import to_parsing_canonical_form

MARKER = b"\xc3\x01"
EMPTY = 0xC15D213AA4D7A795


def _table():
    out = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        out.append(fp)
    return out


TABLE = _table()


def fingerprint(schema):
    """The Avro spec's CRC-64-AVRO (Rabin) of the parsing canonical form, as the single-object header holds it."""
    fp = EMPTY
    for b in to_parsing_canonical_form(schema).encode():
        fp = (fp >> 8) ^ TABLE[(fp ^ b) & 0xFF]
    return fp.to_bytes(8, "little")


class Schemas:
    def __init__(self, root):
        root = pathlib.Path(root)
        self.current = {}
        self.writers = {}
        for path in root.glob("*.avsc"):
            schema = fastavro.parse_schema(json.loads(path.read_text()))
            self.current[path.stem] = schema
            for version in sorted((root / "released" / path.stem).glob("v*.avsc")):
                writer = fastavro.parse_schema(json.loads(version.read_text()))
                self.writers[(path.stem, fingerprint(writer))] = writer
            self.writers.setdefault((path.stem, fingerprint(schema)), schema)

    def decode(self, name, payload):
        if payload[:2] != MARKER or len(payload) < 10:
            raise ValueError("not an Avro single-object encoding")
        writer = self.writers.get((name, payload[2:10]))
        if writer is None:
            raise ValueError(f"{name}: unknown fingerprint {payload[2:10].hex()}")
        return fastavro.schemaless_reader(io.BytesIO(payload[10:]), writer, self.current[name])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queue-url", required=True)
    p.add_argument("--schemas", default=str(pathlib.Path(__file__).resolve().parents[3] / "schemas" / "events"))
    p.add_argument("--max", type=int, default=0, help="stop after this many events (0: run until interrupted)")
    p.add_argument("--wait", type=int, default=10, help="seconds to wait for messages; stop after an empty wait with --max")
    a = p.parse_args()
    schemas = Schemas(a.schemas)
    # As the mlsec CLI: the environment's region, else us-east-1.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    sqs = boto3.client("sqs", region_name=region)
    done = 0
    while not a.max or done < a.max:
        out = sqs.receive_message(QueueUrl=a.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=a.wait)
        messages = out.get("Messages", [])
        if not messages and a.max:
            break
        for m in messages:
            try:
                envelope = json.loads(m["Body"])["detail"]
                event = schemas.decode(envelope["schema"], base64.b64decode(envelope["payload"]))
            except (KeyError, ValueError, TypeError) as e:
                print(f"left on the queue: {e}", file=sys.stderr)
                continue
            line = {"schema": envelope["schema"], "event_id": envelope["event_id"], "event": event}
            print(json.dumps(line, default=str), flush=True)
            sqs.delete_message(QueueUrl=a.queue_url, ReceiptHandle=m["ReceiptHandle"])
            done += 1


if __name__ == "__main__":
    main()
