#!/usr/bin/env python3
"""A seeded fault-injecting HTTP proxy between the workers and the emulator (mlsec faults).

Every request is forwarded to the upstream (moto) unless the proxy, with probability
--rate, injects one fault instead or on top:

  500       HTTP 500 InternalError (the request is not forwarded)
  503       HTTP 503 ServiceUnavailable / S3 SlowDown (not forwarded)
  throttle  HTTP 400 ThrottlingException (JSON protocols) or 503 SlowDown (S3) (not forwarded)
  reset     the connection is closed without an answer (not forwarded)
  reset-after  forwarded, then the connection is closed before the answer: the effect
            happened, the caller does not know
  latency   forwarded after 50-400 ms

The kinds are drawn uniformly from --kinds with a random.Random(--seed), one draw per
request in the order requests arrive: the sequence of draws repeats with the seed, but which
concurrent request meets which draw depends on timing, so a run is repeatable in its
statistics, not call for call. Counts by kind: GET /__faultproxy__/stats;
POST /__faultproxy__/off (stop injecting) and /__faultproxy__/on. A request the upstream
fails to answer gets a 502 and is counted (upstream_errors). Bodies are read by
Content-Length or chunked transfer encoding and forwarded unchanged.

With --port 0 the system picks a free port; the first line on stdout is "listening PORT".
"""

import argparse
import http.client
import json
import random
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class State:
    def __init__(self, rate, kinds, seed):
        self.rate = rate
        self.kinds = kinds
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.on = True
        self.requests = 0
        self.injected = {k: 0 for k in kinds}
        self.upstream_errors = 0

    def draw(self):
        with self.lock:
            self.requests += 1
            if not self.on or self.rng.random() >= self.rate:
                return None, 0.0
            kind = self.rng.choice(self.kinds)
            self.injected[kind] += 1
            return kind, self.rng.uniform(0.05, 0.4)


def read_body(handler):
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        raw = b""
        while True:
            line = handler.rfile.readline()
            raw += line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # trailers until an empty line
                while True:
                    t = handler.rfile.readline()
                    raw += t
                    if t in (b"\r\n", b"\n", b""):
                        return raw, True
            chunk = handler.rfile.read(size + 2)
            raw += chunk
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b"", False


def make_handler(state, upstream_host, upstream_port):
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reset(self):
            # RST instead of FIN: what a dropped connection looks like to the SDK.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _answer(self, status, body, headers):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _relay(self, status, body, headers, head=False):
            # The upstream's own headers (its Date and Server included), not ours on top.
            self.send_response_only(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if not head:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _upstream_failed(self, e):
            with state.lock:
                state.upstream_errors += 1
            print(f"upstream error on {self.command} {self.path}: {e!r}", file=sys.stderr, flush=True)
            self.close_connection = True
            body = b"upstream error"
            self.send_response(502)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, kind):
            s3 = "x-amz-target" not in {k.lower() for k in self.headers.keys()}
            if kind == "500":
                code, status = "InternalError", 500
            elif kind == "503" or s3:
                code, status = ("SlowDown" if s3 else "ServiceUnavailable"), 503
            else:
                code, status = "ThrottlingException", 400
            if s3:
                body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                self._answer(status, body, {"Content-Type": "application/xml"})
            else:
                body = json.dumps({"__type": code, "message": "injected"}).encode()
                self._answer(status, body, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code, "x-amzn-query-error": f"{code};Sender"})

        def _control(self):
            if self.path.endswith("/off"):
                state.on = False
            elif self.path.endswith("/on"):
                state.on = True
            with state.lock:
                body = json.dumps(
                    {"requests": state.requests, "injected": state.injected, "upstream_errors": state.upstream_errors, "on": state.on}
                ).encode()
            self._answer(200, body, {"Content-Type": "application/json"})

        def _forward(self, body, chunked):
            conn = http.client.HTTPConnection(upstream_host, upstream_port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            if chunked:
                headers["Transfer-Encoding"] = "chunked"
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
            if body:
                conn.send(body)
            resp = conn.getresponse()
            data = resp.read()
            # A HEAD answer keeps the upstream's Content-Length (the object's size).
            drop = HOP if self.command == "HEAD" else HOP | {"content-length"}
            out = {k: v for k, v in resp.getheaders() if k.lower() not in drop}
            conn.close()
            return resp.status, data, out

        def _handle(self):
            if self.path.startswith("/__faultproxy__/"):
                return self._control()
            body, chunked = read_body(self)
            kind, latency = state.draw()
            if kind in ("500", "503", "throttle"):
                return self._error(kind)
            if kind == "reset":
                return self._reset()
            if kind == "latency":
                time.sleep(latency)
            try:
                status, data, headers = self._forward(body, chunked)
            except (OSError, http.client.HTTPException) as e:
                return self._upstream_failed(e)
            if kind == "reset-after":
                return self._reset()
            self._relay(status, data, headers)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        def do_HEAD(self):  # noqa: F811 - a HEAD answer has no body
            if self.path.startswith("/__faultproxy__/"):
                return self._control()
            body, chunked = read_body(self)
            kind, latency = state.draw()
            if kind in ("500", "503", "throttle"):
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if kind == "reset":
                return self._reset()
            if kind == "latency":
                time.sleep(latency)
            try:
                status, data, headers = self._forward(body, chunked)
            except (OSError, http.client.HTTPException) as e:
                return self._upstream_failed(e)
            if kind == "reset-after":
                return self._reset()
            self._relay(status, data, headers, head=True)

    return Proxy


class Server(ThreadingHTTPServer):
    # The workers open many connections at once (5 workers, pooled clients): the default
    # listen backlog of 5 would refuse some of them, a fault nobody asked for.
    request_queue_size = 128
    daemon_threads = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True, help="0: pick a free port (printed on stdout)")
    p.add_argument("--upstream", required=True, help="host:port of the emulator")
    p.add_argument("--rate", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kinds", default="500,503,throttle,reset,reset-after,latency")
    a = p.parse_args()
    host, port = a.upstream.rsplit(":", 1)
    state = State(a.rate, a.kinds.split(","), a.seed)
    server = Server(("127.0.0.1", a.port), make_handler(state, host, int(port)))
    bound = server.server_address[1]
    print(f"listening {bound}", flush=True)
    print(f"faultproxy on 127.0.0.1:{bound} -> {a.upstream}, rate {a.rate}, seed {a.seed}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
