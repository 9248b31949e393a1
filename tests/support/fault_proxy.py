"""A fault-injecting HTTP reverse proxy on loopback, for the chaos tests.

Real object stores and BigQuery fail in ways the local servers never do: 500 InternalError,
503 SlowDown, connections dropped mid-request, slow answers. :class:`FaultProxy` sits between our
code and an upstream (moto's S3 server, the BigQuery emulator) and injects those faults at chosen
rates, deterministically for a given ``seed``, so the tests can show that the retry and recovery
paths really work::

    with FaultProxy(moto_endpoint, error_rate=0.3, seed=7) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.endpoint, ...)
        ...
        assert proxy.injected_errors > 0

Requests are forwarded unchanged (the ``Host`` header too: SigV4 clients sign for the proxy's
host:port, and moto does not check signatures). ``Transfer-Encoding: chunked`` request bodies are
decoded and forwarded with a ``Content-Length``; the ``aws-chunked`` framing inside them (pyarrow's
UploadPart: ``Content-Encoding: aws-chunked`` with a checksum trailer) is payload and passes through
as is. Faults are decided before the upstream is contacted: an injected error or drop never reaches
it (this proxy does not simulate "done upstream, answer lost").
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# hop-by-hop headers (RFC 9110 §7.6.1) plus Expect: the proxy answers 100-continue itself
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "proxy-authorization",
    "proxy-authenticate",
}
_ERRORS = ("500 InternalError", "503 SlowDown")
_RATES = ("error_rate", "slow_rate", "slow_seconds", "drop_rate")


class FaultProxy:
    """Reverse proxy to ``upstream`` ("http://host:port") that injects faults per request.

    Per request, one draw decides: an error answer (probability ``error_rate``, 500 InternalError or
    503 SlowDown, upstream not contacted), a dropped connection (``drop_rate``, closed without any
    answer after the request was read) or forwarding; a second draw delays forwarded requests by
    ``slow_seconds`` (``slow_rate``). ``methods`` limits faults to those HTTP methods.
    Counters (``requests``, ``injected_errors``, ``dropped``, ``slowed``) are updated under a lock.
    """

    def __init__(
        self,
        upstream: str,
        error_rate: float = 0.0,
        slow_rate: float = 0.0,
        slow_seconds: float = 0.5,
        drop_rate: float = 0.0,
        seed: int | None = None,
        methods: set[str] | None = None,
    ):
        url = urllib.parse.urlsplit(upstream)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"upstream must be http://host[:port], got {upstream!r}")
        self.upstream = (url.hostname, url.port or 80)
        self.error_rate, self.slow_rate, self.slow_seconds, self.drop_rate = (
            error_rate,
            slow_rate,
            slow_seconds,
            drop_rate,
        )
        self.methods = {m.upper() for m in methods} if methods else None
        self.requests = self.injected_errors = self.dropped = self.slowed = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._outage_until = 0.0
        self._outage_drop = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    # ---- runtime control --------------------------------------------------------------------

    def set(self, **rates: float) -> None:
        """Change ``error_rate``, ``slow_rate``, ``slow_seconds`` and/or ``drop_rate`` now."""
        unknown = set(rates) - set(_RATES)
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        with self._lock:
            for name, value in rates.items():
                setattr(self, name, value)

    def outage(self, seconds: float, drop: bool = False) -> None:
        """Fail every (matching) request for the next ``seconds``: error answers, or dropped
        connections if ``drop``. Returns at once; the outage ends by itself."""
        with self._lock:
            self._outage_until = time.monotonic() + seconds
            self._outage_drop = drop

    def _decide(self, method: str) -> tuple[str | None, float]:
        """(fault, delay) for one request, fault being "<status> <S3 code>", "drop" or None;
        counts it."""
        with self._lock:
            self.requests += 1
            if self.methods is not None and method not in self.methods:
                return None, 0.0
            if time.monotonic() < self._outage_until:
                fault = "drop" if self._outage_drop else "error"
            else:
                draw = self._rng.random()
                fault = (
                    "error"
                    if draw < self.error_rate
                    else "drop"
                    if draw < self.error_rate + self.drop_rate
                    else None
                )
            if fault == "error":
                self.injected_errors += 1
                fault = self._rng.choice(_ERRORS)
            elif fault == "drop":
                self.dropped += 1
            elif self._rng.random() < self.slow_rate:
                self.slowed += 1
                return None, self.slow_seconds
            return fault, 0.0

    # ---- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # stop accepting
        server.server_close()  # and end the connections and their threads
        self._thread.join()


class _Server(ThreadingHTTPServer):
    """Tracks its connections and their daemon threads (which ThreadingMixIn does not join), so that
    server_close can end idle keep-alive connections and wait for every handler."""

    daemon_threads = True
    proxy: FaultProxy

    def __init__(self, *args, **kwargs):
        self._open: dict[socket.socket, threading.Thread] = {}
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        t = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        with self._open_lock:
            self._open[request] = t
        t.start()

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.pop(request, None)

    def handle_error(self, request, client_address):
        pass  # clients hanging up mid-answer are routine here (timeouts, injected drops)

    def server_close(self):
        super().server_close()
        with self._open_lock:
            open_ = list(self._open.items())
        for sock, thread in open_:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a handler waiting for the next request
            thread.join()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive (and 100-continue answered by the base class)
    server: _Server

    def log_message(self, format, *args):  # quiet
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after the chunk
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _proxy(self) -> None:
        body = self._read_body()
        fault, delay = self.server.proxy._decide(self.command)
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif fault:
            status, code = fault.split()
            payload = (
                f"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code>"
                "<Message>injected</Message></Error>"
            ).encode()
            self.close_connection = True
            self.send_response(int(status))
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        else:
            time.sleep(delay)
            self._forward(body)

    def _forward(self, body: bytes) -> None:
        upstream = http.client.HTTPConnection(*self.server.proxy.upstream, timeout=60)
        try:
            try:
                # as received (repeated headers too), Host included; a decoded chunked body gets a
                # Content-Length
                upstream.putrequest(
                    self.command, self.path, skip_host="Host" in self.headers, skip_accept_encoding=True
                )
                for k, v in self.headers.items():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        upstream.putheader(k, v)
                if body or "Content-Length" in self.headers or self.command in ("POST", "PUT", "PATCH"):
                    upstream.putheader("Content-Length", str(len(body)))
                upstream.endheaders(body or None)
                resp = upstream.getresponse()
            except (OSError, http.client.HTTPException) as e:
                self.close_connection = True
                self.send_error(502, f"upstream: {e}")
                return
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP:
                    self.send_header(k, v)
            no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
            chunked = not no_body and resp.getheader("Content-Length") is None
            if chunked:  # upstream sent chunked or read-until-close: re-chunk for the client
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while not no_body and (chunk := resp.read(65536)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _proxy
