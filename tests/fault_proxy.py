"""A fault-injecting HTTP proxy in front of the tests' local Hub, for the network tests of push and verify.

:class:`FaultProxy` listens on 127.0.0.1 and forwards every request to ``upstream`` (the
``local_hub`` fixture), except the ones a rule picks, which get a fault instead:

* :data:`ERROR_500` / :func:`busy` (503 or 429 with ``Retry-After``): answered by the proxy; the
  request never reaches the Hub (``after=True``: it does, and only the reply is replaced, as
  when a reply is lost on the way back);
* :data:`DROP`: the connection is closed without a reply;
* :data:`HANG`: no reply, until the client gives up (logged as ``"hang"``), or the proxy stops
  or :data:`HANG_LIMIT` passes (logged as ``"hang-unabandoned"``: the client would have waited on).

Rules are matched in order: ``Rule(fault, method="POST", path=r"/commit/", times=2)``, or
``Rule(fault, fraction=0.3, seed=7)`` for a seeded random share of the requests. Whether a
request is hit is a function of the seed, its method and path and how many times that method
and path were seen: the same requests fail on every run, whatever the order of the threads.
The ``Host`` header is passed on, so URLs in the Hub's replies (a repo's, a commit's, an LFS
upload's) name the proxy. huggingface_hub 0.36 parses a commit's URL against
``constants.ENDPOINT`` (``CommitInfo``), so a client that commits through the proxy needs that
set to ``proxy.url`` (tests: ``monkeypatch.setattr(constants, "ENDPOINT", proxy.url)``).
``proxy.log`` lists ``(method, path, status)`` per request, ``proxy.hit`` the ones that got a
fault (status ``"drop"``/``"hang"`` for those).

>>> with FaultProxy(hub.url, [Rule(ERROR_500, fraction=0.3, seed=1)]) as proxy:   # doctest: +SKIP
...     verify_repo(repo_id, endpoint=proxy.url)
"""

from __future__ import annotations

import http.client
import random
import re
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HANG_LIMIT = 30.0  # seconds a hung request waits for its client to give up
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade"}


@dataclass(frozen=True)
class Fault:
    """What a hit request gets: ``status`` (with ``headers``), or ``"drop"`` / ``"hang"``."""

    status: int | str
    headers: dict[str, str] = field(default_factory=dict)


ERROR_500 = Fault(500)
DROP = Fault("drop")
HANG = Fault("hang")


def busy(status: int = 503, retry_after: str = "7") -> Fault:
    return Fault(status, {"Retry-After": retry_after})


@dataclass
class Rule:
    fault: Fault
    method: str = ".*"  # regexes, matched from the start (method) and anywhere (path)
    path: str = ""
    times: int | None = None  # hit the first ``times`` matching requests; None: every one (or ``fraction``)
    fraction: float = 1.0  # hit this share of the matching requests, drawn with ``seed``
    seed: int = 0
    after: bool = False  # forward the request first; the reply is lost
    hits: int = 0

    def picks(self, method: str, path: str, seen: int) -> bool:
        """Whether the ``seen``-th request with this ``method`` and ``path`` is hit."""
        if not re.match(self.method, method) or not re.search(self.path, path):
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        if self.fraction < 1.0 and random.Random(f"{self.seed}:{method}:{path}:{seen}").random() >= self.fraction:
            return False
        self.hits += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args) -> None:  # quiet: the proxy keeps its own log
        pass

    def _any(self) -> None:
        body = self._body()
        rule = self.server.proxy.pick(self.command, self.path)
        if rule is None or rule.after:
            status, headers, reply = self._forward(body)
        if rule is not None:
            return self._fail(rule.fault)
        self.server.proxy.record(self.command, self.path, status)
        self._reply(status, headers, reply)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _any

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = urlsplit(self.server.proxy.upstream)
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            reply = response.read()
            return response.status, response.getheaders(), reply
        finally:
            conn.close()

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _fail(self, fault: Fault) -> None:
        proxy = self.server.proxy
        if fault.status == "hang":
            with proxy.hanging():
                proxy.record(self.command, self.path, self._hang(), hit=True)
        elif fault.status == "drop":
            proxy.record(self.command, self.path, "drop", hit=True)
        else:
            proxy.record(self.command, self.path, fault.status, hit=True)
            body = b'{"error": "injected by the test proxy"}'
            self._reply(int(fault.status), [("Content-Type", "application/json"), *fault.headers.items()], body)
            return
        self.close_connection = True

    def _hang(self) -> str:
        """Answer nothing; ``"hang"`` once the client closes the connection (it timed out),
        ``"hang-unabandoned"`` if the proxy stops or :data:`HANG_LIMIT` passes first."""
        deadline = time.monotonic() + HANG_LIMIT
        while True:
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable and self._client_closed():
                return "hang"
            if self.server.proxy.stopped.is_set() or time.monotonic() > deadline:
                return "hang-unabandoned"

    def _client_closed(self) -> bool:
        try:
            return not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:  # reset by the client
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an idle keep-alive connection must not keep close() waiting

    def __init__(self, proxy: FaultProxy):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy


class FaultProxy:
    """A context manager serving in a thread; ``url`` is what clients use as their endpoint."""

    def __init__(self, upstream: str, rules: list[Rule] | None = None):
        self.upstream = upstream
        self.rules = list(rules or [])
        self.log: list[tuple[str, str, int | str]] = []
        self.hit: list[tuple[str, str, int | str]] = []
        self.stopped = threading.Event()
        self._hangs = 0  # hung requests in flight, which close() waits for
        self._idle = threading.Condition()
        self._seen: Counter = Counter()
        self._lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def pick(self, method: str, path: str) -> Rule | None:
        with self._lock:
            self._seen[method, path] += 1
            seen = self._seen[method, path]
            return next((r for r in self.rules if r.picks(method, path, seen)), None)

    def record(self, method: str, path: str, status: int | str, hit: bool = False) -> None:
        with self._lock:
            self.log.append((method, path, status))
            if hit:
                self.hit.append((method, path, status))

    @contextmanager
    def hanging(self) -> Iterator[None]:
        """Count a hung request in flight, for :meth:`close`."""
        with self._idle:
            self._hangs += 1
        try:
            yield
        finally:
            with self._idle:
                self._hangs -= 1
                self._idle.notify_all()

    def close(self) -> None:
        """Stop serving; once the hung requests are logged, ``log`` and ``hit`` are final (a
        forwarded or refused request is logged before its reply is sent)."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        with self._idle:
            self._idle.wait_for(lambda: self._hangs == 0)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def closed_port_url() -> str:
    """An endpoint on 127.0.0.1 where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"
