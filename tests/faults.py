"""Network faults between the tool and a real server, on loopback.

`TcpProxy` forwards bytes and can reset connections, cut them after some bytes,
slow them down, or stall them (a server that stops answering mid-dump).
`HttpFaultProxy` speaks HTTP/1.1 to answer the first N requests with an S3 error
(503 SlowDown) and counts what it saw; it forwards requests unchanged, so S3
signatures stay valid.
`S3FaultProxy` fails chosen requests (by index, or by method, key pattern and query)
with 503 SlowDown, 403 AccessDenied, a TCP reset or a delay, and records every request,
so a test can record a run and then replay it failing each request in turn.
"""

from __future__ import annotations

import fnmatch
import html
import http.client
import re
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _rst_close(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, int]:
    """An HTTP server on a free loopback port, answering in threads of its own."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _relay(handler: BaseHTTPRequestHandler, resp: http.client.HTTPResponse, data: bytes) -> None:
    """Send the upstream answer back to the client as it came (hop-by-hop headers aside)."""
    handler.send_response(resp.status)
    for k, v in resp.getheaders():
        if k.lower() not in ("transfer-encoding", "content-length", "connection"):
            handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)


class TcpProxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.reset_connections = 0          # reset this many new connections once they send data
        self.cut_after: int | None = None   # reset every connection after this many upstream bytes
        self.delay = 0.0                    # seconds of delay per forwarded chunk
        # hold a connection's answers once the server sent it this many bytes: a query that
        # never returns (connections with small answers, like a driver's heartbeats, go on)
        self.stall_after: int | None = None
        self.answered = 0                   # bytes the server sent, all connections
        self.connections = 0
        self.resets = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                reset = self.reset_connections > 0
                if reset:
                    self.reset_connections -= 1
            threading.Thread(target=self._serve, args=(client, reset), daemon=True).start()

    def _serve(self, client: socket.socket, reset: bool) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            _rst_close(client)
            return
        if reset:
            client.recv(1)
            with self._lock:
                self.resets += 1
            _rst_close(client)
            upstream.close()
            return
        sent, answered = [0], [0]

        def pump(src: socket.socket, dst: socket.socket, counted: bool) -> None:
            try:
                while data := src.recv(65536):
                    if self.delay:
                        time.sleep(self.delay)
                    if not counted:
                        answered[0] += len(data)
                        with self._lock:
                            self.answered += len(data)
                        while self.stall_after is not None and answered[0] > self.stall_after and not self._closed:
                            time.sleep(0.05)
                    if counted and self.cut_after is not None and sent[0] + len(data) > self.cut_after:
                        with self._lock:
                            self.resets += 1
                        _rst_close(client)
                        _rst_close(upstream)
                        return
                    sent[0] += len(data) if counted else 0
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pump, args=(upstream, client, False), daemon=True)
        t.start()
        pump(client, upstream, True)
        t.join(timeout=30)
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()


class HttpFaultProxy:
    """Answers the first `fail_first` requests with `status` (an S3 error document), forwards the rest."""

    def __init__(self, target_port: int, fail_first: int = 0, status: int = 503, code: str = "SlowDown"):
        self.target_port = target_port
        self.fail_first = fail_first
        self.status, self.code = status, code
        self.requests: list[tuple[str, str, int]] = []     # (method, path, status answered)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                with lock:
                    fail = proxy.fail_first > 0
                    if fail:
                        proxy.fail_first -= 1
                if fail:
                    err = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{proxy.code}</Code>'
                           f"<Message>injected by the test</Message></Error>").encode()
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(err)))
                    self.end_headers()
                    self.wfile.write(err)
                    proxy.requests.append((self.command, self.path, proxy.status))
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=120)
                headers = {k: v for k, v in self.headers.items()}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                _relay(self, resp, data)
                conn.close()
                proxy.requests.append((self.command, self.path, resp.status))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        lock = threading.Lock()
        self.server, self.port = _serve(Handler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------ S3 faults on chosen requests

class Fault:
    """What to do to a request a rule matched."""

    def __init__(self, kind: str, status: int = 0, code: str = "", delay: float = 0.0):
        self.kind, self.status, self.code, self.delay = kind, status, code, delay

    def __repr__(self) -> str:
        return f"Fault({self.kind} {self.status or ''}{self.code or ''}{self.delay or ''})"


SLOWDOWN = Fault("error", 503, "SlowDown")
ACCESS_DENIED = Fault("error", 403, "AccessDenied")
RESET = Fault("reset")


def slow(seconds: float) -> Fault:
    """Hold the request this long, then forward it."""
    return Fault("delay", delay=seconds)


class Rule:
    """Which requests a fault hits. `index`: the Nth request the proxy sees (0-based), and,
    with `sticky`, every later request that repeats it (same method, path and query: the
    client's retries), so a 503 outlasts every retry. Otherwise `method`, `path` (an
    fnmatch pattern on the path without the query, e.g. "*/manifest.json") and `query`
    (a substring of the query, e.g. "uploads", "partNumber", "delete"). `times`: how many
    requests it hits (None: all that match)."""

    def __init__(self, fault: Fault, *, index: int | None = None, method: str | None = None,
                 path: str | None = None, query: str | None = None, agent: str | None = None,
                 times: int | None = None, sticky: bool = True):
        self.fault, self.index, self.method, self.path, self.query = fault, index, method, path, query
        self.agent, self.times, self.sticky = agent, times, sticky
        self.hits = 0
        self._repeat: tuple[str, str, str] | None = None   # the request `index` named, once seen

    def matches(self, i: int, method: str, path: str, query: str, agent: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.index is not None:
            if i == self.index:
                self._repeat = (method, path, query)
                return True
            return self.sticky and self._repeat == (method, path, query)
        return ((self.method is None or method == self.method)
                and (self.path is None or fnmatch.fnmatchcase(path, self.path))
                and (self.query is None or self.query in query)
                and (self.agent is None or self.agent in agent))


@dataclass
class Seen:
    """One request as the proxy saw it, and what it answered."""
    index: int
    method: str
    path: str
    query: str
    agent: str               # the User-Agent: AWS_SDK_UA_APP_ID=<name> puts app/<name> in it
    status: int = 0          # 0: reset, or not answered yet
    fault: str = ""
    upload_id: str = ""      # the UploadId a CreateMultipartUpload answered, or that a request names
    arrived: float = 0.0
    body_bytes: int = 0
    deleted: tuple[str, ...] = ()     # the keys a DeleteObjects (POST ?delete) names

    @property
    def app(self) -> str:
        m = re.search(r"app/(\S+)", self.agent)
        return m.group(1) if m else ""

    def key(self, bucket: str) -> str:
        """The object key (path-style addressing), '' for a bucket-level request."""
        p = urllib.parse.unquote(self.path)
        head = f"/{bucket}/"
        return p[len(head):] if p.startswith(head) else ""


class S3FaultProxy:
    """An HTTP proxy in front of an S3 server (MinIO) on 127.0.0.1 that forwards requests
    unchanged (so their signatures stay valid) and records every one (`requests`, in the
    order they arrived), failing the ones a rule matches: an S3 error (503 SlowDown, 403
    AccessDenied), a TCP reset, or a delay. `add(rule)` while a run goes on; `wait_for`
    polls for an event (say, the k-th request) instead of sleeping."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.rules: list[Rule] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else None

            def _handle(self):
                body = self._body()
                path, _, query = self.path.partition("?")
                agent = self.headers.get("User-Agent", "")
                with proxy._lock:
                    seen = Seen(len(proxy.requests), self.command, path, query, agent,
                                arrived=time.monotonic(), body_bytes=len(body or b""))
                    m = re.search(r"(?:^|&)uploadId=([^&]+)", query)
                    seen.upload_id = urllib.parse.unquote(m.group(1)) if m else ""
                    if self.command == "POST" and re.search(r"(?:^|&)delete(?:=|&|$)", query) and body:
                        seen.deleted = tuple(html.unescape(k.decode()) for k in re.findall(rb"<Key>([^<]*)</Key>", body))
                    proxy.requests.append(seen)
                    rule = next((r for r in proxy.rules
                                 if r.matches(seen.index, self.command, path, query, agent)), None)
                    if rule:
                        rule.hits += 1
                        seen.fault = rule.fault.kind
                fault = rule.fault if rule else None
                if fault and fault.kind == "delay":
                    time.sleep(fault.delay)
                elif fault and fault.kind == "reset":
                    self.close_connection = True
                    _rst_close(self.connection)
                    return
                elif fault:
                    err = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{fault.code}</Code>'
                           f"<Message>injected by the test</Message></Error>").encode()
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(err)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(err)
                    seen.status = fault.status
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if self.command == "POST" and re.search(r"(?:^|&)uploads(?:=|&|$)", query):
                    m = re.search(rb"<UploadId>([^<]+)</UploadId>", data)
                    seen.upload_id = m.group(1).decode() if m else ""
                seen.status = resp.status     # before the answer: the client may read the record at once
                _relay(self, resp, data)

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except (OSError, ValueError):    # the client went away (killed, or reset by us)
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server, self.port = _serve(Handler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset(self) -> None:
        """Forget the rules and the requests seen: the next request is index 0 again."""
        with self._lock:
            self.rules.clear()
            self.requests.clear()

    @property
    def count(self) -> int:
        return len(self.requests)

    def matching(self, method: str | None = None, path: str | None = None, query: str | None = None,
                 agent: str | None = None) -> list[Seen]:
        probe = Rule(SLOWDOWN, method=method, path=path, query=query, agent=agent)
        with self._lock:
            return [s for s in self.requests if probe.matches(s.index, s.method, s.path, s.query, s.agent)]

    def wait_for(self, cond, proc=None, what: str = "an event", timeout: float = 60) -> None:
        """Poll `cond(self)` until true; fails if `proc` ends first or on timeout."""
        deadline = time.monotonic() + timeout
        while not cond(self):
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the tool ended (exit {proc.returncode}) before {what}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.005)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
