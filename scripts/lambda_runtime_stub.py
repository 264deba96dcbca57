#!/usr/bin/env python3
"""A minimal AWS Lambda Runtime API on 127.0.0.1, enough to run a packaged worker's
`bootstrap` outside AWS: it hands out the event files given on the command line, one per
invocation, prints each response (or error) as a JSON line, and exits after the last.

    lambda_runtime_stub.py PORT EVENT.json [EVENT.json ...]
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

port = int(sys.argv[1])
events = [open(p).read() for p in sys.argv[2:]]
results = []
done = threading.Event()
lock = threading.Lock()
next_index = [0]


class Runtime(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.endswith("/runtime/invocation/next"):
            self.send_error(404)
            return
        with lock:
            i = next_index[0]
            next_index[0] += 1
        if i >= len(events):
            done.wait(30)  # the function polls again; hold it until we shut down
            self.send_error(410)
            return
        body = events[i].encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", f"req-{i}")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:stub")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        payload = self.rfile.read(length).decode()
        kind = "response" if self.path.endswith("/response") else "error"
        self.send_response(202)
        self.end_headers()
        with lock:
            results.append({"kind": kind, "body": json.loads(payload) if payload else None})
            if len(results) == len(events):
                done.set()


server = HTTPServer(("127.0.0.1", port), Runtime)
threading.Thread(target=server.serve_forever, daemon=True).start()
finished = done.wait(120)
for r in results:
    print(json.dumps(r))
server.shutdown()
sys.exit(0 if finished else 1)
