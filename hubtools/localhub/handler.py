"""One connection: parse each request, hand it to :class:`Api`, write the reply.

Every refusal is JSON with the Hub's ``X-Error-Code``, including http.server's own (a bad
request line, a 414, a 431) through :meth:`Handler.send_error`. Errors the endpoints raise
on purpose (:class:`HubRequestError`) are 4xx replies; anything else is logged and answered
with a JSON 500, and the server keeps running. Any method reaches the router, so one it
does not take is a 405 with ``Allow``, not http.server's HTML 501.

A reply leaves in one send: ``wfile`` is buffered and flushed once per reply. Written in two
(headers, then body), the second small write waits for the ACK of the first (Nagle), which
the client delays by up to 40 ms; ``TCP_NODELAY`` is set as well for streamed files.

The request line and headers get ``head_timeout`` seconds and the header lines 64 KiB in all
(see :mod:`connection`); past them, a 408 or a 431. A client that goes away before its reply
is sent costs one log line.

Request logs show method, path (no query string) and status; never headers, so the token
is not logged.
"""

from __future__ import annotations

import hmac
import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from hubtools.errors import (
    HeadersTooLargeError,
    HubRequestError,
    RepoNotFoundError,
    RequestTimeoutError,
    URITooLongError,
)
from hubtools.localhub.bodies import BodyReader
from hubtools.localhub.connection import HeaderLines, HeadReader, ReplyWriter
from hubtools.localhub.messages import Reply, Request
from hubtools.localhub.routes import Route, match, split_target

if TYPE_CHECKING:
    from hubtools.localhub.server import Server

logger = logging.getLogger("hubtools.localhub")
DRAIN_LIMIT = 64 * 1024 * 1024  # unread request body we still read (and drop) to keep the connection
COPY_CHUNK = 1024 * 1024
# http.server's own refusals -> (our error class, what to say instead of http.server's words).
# Any other status is a plain 400; 505 too, since a wrong HTTP version is the client's fault.
PROTOCOL_ERRORS: dict[int, tuple[type[HubRequestError], str | None]] = {
    HTTPStatus.REQUEST_TIMEOUT: (RequestTimeoutError, None),
    HTTPStatus.REQUEST_URI_TOO_LONG: (URITooLongError, "The request line is over 64 KiB; shorten the URL."),
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: (
        HeadersTooLargeError,
        "The request headers are too large (at most 100 lines and 64 KiB in all); send fewer or shorter ones",
    ),
    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: (HubRequestError, "The local Hub speaks HTTP/1.1 only."),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubtools-localhub"
    # Error replies to a request line too broken to name a version still need a status line.
    default_request_version = "HTTP/1.0"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # socket timeout for every read and write
        super().setup()
        # The same buffered streams, over the socket streams of :mod:`connection`.
        self.head = HeadReader(self.rfile.detach(), self.connection, self.timeout, self.server.head_timeout)
        self.rfile = io.BufferedReader(self.head)
        self.wfile = io.BufferedWriter(ReplyWriter(self.wfile.detach()), self.wbufsize)

    def handle_one_request(self) -> None:
        self.head.start()
        super().handle_one_request()

    def __getattr__(self, name: str) -> Callable[[], None]:
        """``do_GET``, ``do_PATCH``, ``do_BREW``...: all methods go to the router."""
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def parse_request(self) -> bool:
        """http.server's parsing within the head's bounds, refusing also HTTP/0.9, malformed header
        lines and stalled headers."""
        try:
            with self._head_bounds():
                if not super().parse_request():
                    return False
        except TimeoutError:
            self.send_error(
                HTTPStatus.REQUEST_TIMEOUT,
                f"The request headers stopped arriving, or took over {self.server.head_timeout} s in all.",
            )
            return False
        if len(self.requestline.split()) == 2:
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 requests are not supported; send 'GET /path HTTP/1.1'.")
            return False
        if self.headers.defects:  # e.g. a line without a colon; the email parser drops the lines after it
            self.send_error(
                HTTPStatus.BAD_REQUEST,
                f"Malformed header line; send 'Name: value' lines ({type(self.headers.defects[0]).__name__}).",
            )
            return False
        return True

    @contextmanager
    def _head_bounds(self) -> Iterator[None]:
        """Header lines are read within :class:`HeaderLines`' budget; the head's deadline ends with the block."""
        rfile, self.rfile = self.rfile, HeaderLines(self.rfile)
        try:
            yield
        finally:
            self.rfile = rfile
            self.head.end()

    def handle_expect_100(self) -> bool:
        super().handle_expect_100()
        self.wfile.flush()  # the buffered wfile would hold the 100 Continue back
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals, as JSON with X-Error-Code like the API's; closes the connection."""
        error, text = PROTOCOL_ERRORS.get(code, (HubRequestError, None))
        text = text or message or HTTPStatus(code).phrase
        self.close_connection = True
        self._send(Reply.error(error(f"{text}: {explain}." if explain else text)))

    def _dispatch(self) -> None:
        body: BodyReader | None = None
        authorized = self._authorized()
        path = self.path
        try:
            path, query = split_target(self.path)
            body = BodyReader(self.rfile, self.headers)
            route = self._pick(match(path))
            request = Request(self.command, route, parse_qs(query), self.headers, body, self._base_url(), authorized)
            reply = self.server.api.handle(request)
        except HubRequestError as exc:
            # Like the Hub: an unknown or hidden repo is a 401 to anonymous callers.
            status = 401 if isinstance(exc, RepoNotFoundError) and not authorized else None
            reply = Reply.error(exc, status)
        except Exception:
            logger.exception("Unexpected error on %s %s", self.command, path[:200])
            reply = Reply.json(
                {"error": "Internal error in the local Hub; see the server log."},
                500,
                {"X-Error-Code": "InternalError"},
            )
        if body is None or not body.drain(DRAIN_LIMIT):
            self.close_connection = True
        self._send(reply)

    def _pick(self, routes: list[Route]) -> Route:
        """Of the readings of an ambiguous path, the one whose repo exists."""
        storage = self.server.api.storage
        for route in routes:
            if route.repo_id is None or storage.has_repo(route.repo_type, route.repo_id):
                return route
        return routes[0]

    def _authorized(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.server.token.encode())

    def _base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{self.headers.get('Host') or f'{host}:{port}'}"

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(reply.length))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self._write_body(reply)
            self.wfile.flush()
        except (ConnectionError, TimeoutError) as exc:  # the client went away or stopped reading
            self.close_connection = True
            logger.info("%s: reply not sent, the client is gone (%s)", self._target(), type(exc).__name__)

    def _write_body(self, reply: Reply) -> None:
        if reply.file is None:
            self.wfile.write(reply.body)
            return
        path, offset, length = reply.file
        with open(path, "rb") as source:
            source.seek(offset)
            while length > 0 and (chunk := source.read(min(COPY_CHUNK, length))):
                self.wfile.write(chunk)
                length -= len(chunk)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.info("%s %s", self._target(), code)

    def _target(self) -> str:
        """Method and path for the log (no query string); ``-`` for those unset by a refused request line."""
        path = (getattr(self, "path", None) or "-").split("?")[0]
        return f"{getattr(self, 'command', None) or '-'} {path[:200]}"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (base class signature)
        logger.debug(format, *args)
