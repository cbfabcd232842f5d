"""The listening socket: a thread per connection, bounded, and :class:`LocalHub` around it.

Connections are bounded three times: each read (and write) waits at most ``read_timeout``
seconds, so an idle or stalled client gives its thread back; a request's line and headers
get ``head_timeout`` seconds in all, so a client that trickles them does too; and at most
``max_connections`` are served at once. One over the bound is answered at once with a JSON
503 and ``Retry-After`` and closed (huggingface_hub's ``http_backoff`` retries 503s), so
threads stay bounded. Each connection is handled by :class:`~hubtools.localhub.handler.Handler`.
"""

from __future__ import annotations

import logging
import socket
import threading
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from hubtools.errors import LocalHubStartError, ServerBusyError
from hubtools.localhub.defaults import DEFAULT_HOST, default_token
from hubtools.localhub.endpoints import Api
from hubtools.localhub.handler import Handler
from hubtools.localhub.messages import Reply
from hubtools.localhub.storage import Storage

logger = logging.getLogger("hubtools.localhub")
READ_TIMEOUT = 30.0  # seconds a connection may stay silent: idle between requests, or mid-request
HEAD_TIMEOUT = 20.0  # seconds for a request line and its headers, from their first byte
# Above huggingface_hub's 128 cached sessions per process, each of which may keep a connection open.
MAX_CONNECTIONS = 256


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        api: Api,
        token: str,
        read_timeout: float,
        head_timeout: float,
        max_connections: int,
    ):
        super().__init__(address, Handler)
        self.api = api
        self.token = token
        self.read_timeout = read_timeout
        self.head_timeout = head_timeout
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)  # starts the thread that releases the slot
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: tuple) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        """Answer a connection over the bound with a 503 and close it, from the accept loop."""
        error = ServerBusyError(
            f"The local Hub is already serving its maximum of {self.max_connections} connections; retry in a moment.",
            {"Retry-After": "1", "Connection": "close"},
        )
        reply = Reply.error(error)
        head = [
            f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
            *(f"{name}: {value}" for name, value in reply.headers.items()),
            f"Content-Length: {reply.length}",
        ]
        try:
            request.settimeout(1.0)  # a fresh socket's send buffer is empty: this does not wait
            request.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + reply.body)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: socket.socket, client_address: tuple) -> None:
        logger.exception("Unexpected error on a connection from %s", client_address[0])


class LocalHub:
    """A Hub-compatible server over a data dir; a context manager that serves in a thread.

    >>> with LocalHub(tmp_path) as hub:            # doctest: +SKIP
    ...     os.environ["HF_ENDPOINT"] = hub.url     # before importing huggingface_hub

    ``read_timeout``, ``head_timeout`` and ``max_connections`` bound the connections (see the
    module docstring).
    """

    def __init__(
        self,
        data_dir: Path | str,
        host: str = DEFAULT_HOST,
        port: int = 0,
        token: str | None = None,
        read_timeout: float = READ_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        head_timeout: float = HEAD_TIMEOUT,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.token = token or default_token()
        self.storage = Storage(self.data_dir)
        if self.storage.orphans_removed:
            logger.info("Removed %d temporary files left by an interrupted write.", self.storage.orphans_removed)
        self.api = Api(self.storage)
        try:
            self._server = Server((host, port), self.api, self.token, read_timeout, head_timeout, max_connections)
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

    def start(self) -> LocalHub:
        self._thread = threading.Thread(target=self._server.serve_forever, name="localhub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
