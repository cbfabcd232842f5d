"""HTTP plumbing: a ``ThreadingHTTPServer`` that routes each request to :class:`Api`.

Errors the endpoints raise on purpose (:class:`HubRequestError`) become 4xx replies with
``X-Error-Code``; anything else is logged and answered with a JSON 500, and the server
keeps running. Request logs show method, path (no query string) and status; never headers,
so the token is not logged.
"""

from __future__ import annotations

import hmac
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from hubtools.errors import HubRequestError, LocalHubStartError, RepoNotFoundError
from hubtools.localhub.defaults import DEFAULT_HOST, default_token
from hubtools.localhub.endpoints import Api
from hubtools.localhub.messages import BodyReader, Reply, Request
from hubtools.localhub.routes import Route, match
from hubtools.localhub.storage import Storage

logger = logging.getLogger("hubtools.localhub")
DRAIN_LIMIT = 64 * 1024 * 1024  # unread request body we still read (and drop) to keep the connection
COPY_CHUNK = 1024 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], api: Api, token: str):
        super().__init__(address, _Handler)
        self.api = api
        self.token = token


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubtools-localhub"
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        body: BodyReader | None = None
        authorized = self._authorized()
        try:
            body = BodyReader(self.rfile, self.headers)
            route = self._pick(match(url.path))
            query = parse_qs(url.query)
            request = Request(self.command, route, query, self.headers, body, self._base_url(), authorized)
            reply = self.server.api.handle(request)
        except HubRequestError as exc:
            # Like the Hub: an unknown or hidden repo is a 401 to anonymous callers.
            status = 401 if isinstance(exc, RepoNotFoundError) and not authorized else None
            reply = Reply.error(exc, status)
        except Exception:
            logger.exception("Unexpected error on %s %s", self.command, url.path)
            reply = Reply.json({"error": "Internal error in the local Hub; see the server log."}, 500,
                               {"X-Error-Code": "InternalError"})
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
            if self.command == "HEAD":
                return
            if reply.file is None:
                self.wfile.write(reply.body)
                return
            path, offset, length = reply.file
            with open(path, "rb") as source:
                source.seek(offset)
                while length > 0 and (chunk := source.read(min(COPY_CHUNK, length))):
                    self.wfile.write(chunk)
                    length -= len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to tell it

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.info("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (base class signature)
        logger.debug(format, *args)


class LocalHub:
    """A Hub-compatible server over a data dir; a context manager that serves in a thread.

    >>> with LocalHub(tmp_path) as hub:            # doctest: +SKIP
    ...     os.environ["HF_ENDPOINT"] = hub.url     # before importing huggingface_hub
    """

    def __init__(self, data_dir: Path | str, host: str = DEFAULT_HOST, port: int = 0, token: str | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.token = token or default_token()
        self.storage = Storage(self.data_dir)
        self.api = Api(self.storage)
        try:
            self._server = _Server((host, port), self.api, self.token)
        except OSError as exc:
            raise LocalHubStartError(
                f"Cannot serve on {host}:{port}: {exc.strerror or exc}. Pick another --port (0 = any free one)."
            ) from None
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` (from another thread) or Ctrl-C."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def start(self) -> "LocalHub":
        self._thread = threading.Thread(target=self._server.serve_forever, name="localhub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

