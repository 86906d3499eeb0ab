"""Network faults between the tool and a real server, on loopback.

`TcpProxy` forwards bytes and can reset connections, cut them after some bytes,
slow them down, or stall them (a server that stops answering mid-dump).
`HttpFaultProxy` speaks HTTP/1.1 to answer the first N requests with an S3 error
(503 SlowDown) and counts what it saw; it forwards requests unchanged, so S3
signatures stay valid.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _rst_close(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


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
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()
                proxy.requests.append((self.command, self.path, resp.status))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
